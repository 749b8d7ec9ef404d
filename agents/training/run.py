"""One training run, end to end: environments, model, checkpoints, periodic and final evaluation."""

from __future__ import annotations

import dataclasses
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from agents.training.algos import ALGOS
from agents.training.checkpoints import (
    CheckpointCallback,
    SaveVecNormalize,
    Stop,
    raise_stop,
    resolve_resume,
    save_atomically,
    save_checkpoint,
    vecnormalize_path,
)
from agents.training.config import ConfigError, TrainConfig, check_config
from agents.training.environments import make_envs, make_eval_env, stack_frames
from agents.training.evaluation import evaluate
from rl_lstm.bench.machine import pin_threads


def build_model(config: TrainConfig, env: VecEnv, resume: Path | None) -> BaseAlgorithm:
    """A new model from the configuration, or the one saved at ``resume`` on ``env``."""
    spec = ALGOS[config.algo]
    try:
        if resume is not None:
            return spec.cls.load(resume, env=env, device=config.device)
        return spec.cls(spec.policy, env, seed=config.seed, device=config.device, **config.resolved_algo_kwargs())
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(str(e)) from None


def make_training_envs(config: TrainConfig, resume: Path | None) -> VecEnv:
    """The training environments, wrapped in VecNormalize as the configuration says (with the saved
    statistics of the model resumed from)."""
    env = make_envs(config, config.n_envs, config.seed)
    mode = config.normalization
    if mode != "none":
        stats = None if resume is None else vecnormalize_path(resume)
        if stats is not None and stats.is_file():
            env = VecNormalize.load(str(stats), env)
            env.training = True
        else:
            env = VecNormalize(env)
        env.norm_reward = mode == "obs-reward"
    return stack_frames(config, env)


def write_config(config: TrainConfig, run_dir: Path, resumed_at: int | None) -> Path:
    """``config.yaml``: the configuration, the hyperparameter entry used and the merged algorithm arguments.
    A resumed run keeps its ``config.yaml``; where the continuation differs, it is written beside it as
    ``config.resumed-<timesteps>.yaml``."""
    entry, _ = config.hyperparams_entry()
    text = yaml.safe_dump(
        {**dataclasses.asdict(config), "normalization": config.normalization, "memory": config.memory,
         "hyperparams_entry": f"{config.algo}.yml: {entry}", "algo_kwargs": config.algo_kwargs()},
        sort_keys=False,
    )  # fmt: skip
    path = run_dir / "config.yaml"
    if resumed_at is not None and path.is_file():
        if path.read_text() == text:
            return path
        path = run_dir / f"config.resumed-{resumed_at}.yaml"
    path.write_text(text)
    return path


def train(
    config: TrainConfig,
    run_dir: Path,
    resume: str | Path | None = None,
    progress_bar: bool = False,
    callbacks: list[BaseCallback] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train, checkpointing as it goes, then evaluate; returns the evaluation record.

    Everything is checked and built before anything is written to ``run_dir``. On Ctrl-C or SIGTERM
    the model (and normalisation statistics) are saved to ``run_dir/model.zip`` before the exception
    propagates.
    """
    check_config(config)
    resume_path = resolve_resume(resume) if resume is not None else None
    pin_threads(config.threads)
    env = make_training_envs(config, resume_path)
    try:
        model = build_model(config, env, resume_path)
    except ConfigError:
        env.close()
        raise
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = write_config(config, run_dir, None if resume_path is None else model.num_timesteps)
    formats = ["csv", "log"] + (["tensorboard"] if config.tensorboard else [])
    model.set_logger(configure(str(run_dir), formats))
    remaining = config.total_timesteps - model.num_timesteps
    entry, _ = config.hyperparams_entry()
    log(
        f"training {config.algo} (memory: {config.memory}) on {config.env} with {config.algo}.yml entry {entry!r}, "
        f"normalisation {config.normalization}, in {run_dir} ({remaining} steps to go; config: {config_path.name})"
    )
    # Ctrl-C raises KeyboardInterrupt even where the process was started with SIGINT ignored (as a
    # shell's background job is); SIGTERM raises Stop. Both save before exiting.
    previous = signal.signal(signal.SIGTERM, raise_stop), signal.signal(signal.SIGINT, signal.default_int_handler)
    start = time.perf_counter()
    periodic = None
    if config.eval_freq:
        periodic = EvalCallback(
            make_eval_env(config, seed=config.seed + 20_000),
            n_eval_episodes=config.eval_episodes,
            eval_freq=max(config.eval_freq // config.n_envs, 1),
            log_path=str(run_dir),
            best_model_save_path=str(run_dir),
            callback_on_new_best=SaveVecNormalize(run_dir / "best_model.zip"),
            deterministic=True,
            verbose=0,
        )
    try:
        if remaining > 0:
            model.learn(
                remaining,
                callback=CallbackList(
                    [CheckpointCallback(run_dir, config.checkpoint_freq), *([periodic] if periodic else []),
                     *(callbacks or [])]
                ),  # fmt: skip
                reset_num_timesteps=resume_path is None,
                progress_bar=progress_bar,
            )
    except (KeyboardInterrupt, Stop):
        save_atomically(model, run_dir / "model.zip")
        save_checkpoint(model, run_dir)
        log(f"interrupted at {model.num_timesteps} steps: saved {run_dir / 'model.zip'}")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
        env.close()
    wall = time.perf_counter() - start
    save_atomically(model, run_dir / "model.zip")
    record = evaluate(model, config, config.eval_episodes, seed=config.seed + 10_000)
    record.update(wall_time_s=wall, env_steps_per_s=max(remaining, 0) / wall if wall > 0 else None)
    if periodic is not None and periodic.evaluations_timesteps:
        means = [float(np.mean(r)) for r in periodic.evaluations_results]
        best = int(np.argmax(means))
        record.update(
            best_mean_return=max(means[best], record["mean_return"]),
            best_timesteps=periodic.evaluations_timesteps[best] if means[best] >= record["mean_return"]
            else record["timesteps"],
            evaluations=[[t, m] for t, m in zip(periodic.evaluations_timesteps, means, strict=True)],
        )  # fmt: skip
        if periodic.evaluations_successes and record["success_rate"] is not None:
            rates = [float(np.mean(s)) for s in periodic.evaluations_successes]
            record.update(
                best_success_rate=max(*rates, record["success_rate"]),
                success_evaluations=[[t, r] for t, r in zip(periodic.evaluations_timesteps, rates, strict=True)],
            )
    (run_dir / "eval.json").write_text(json.dumps(record, indent=2))
    return record
