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
import torch as th
import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from agents.training.algos import ALGOS
from agents.training.checkpoints import (
    CheckpointCallback,
    Stop,
    raise_stop,
    resolve_resume,
    save_atomically,
    save_checkpoint,
)
from agents.training.config import ConfigError, TrainConfig, check_config
from agents.training.environments import make_envs, make_eval_env
from agents.training.evaluation import evaluate


def build_model(config: TrainConfig, env: VecEnv, resume: Path | None) -> BaseAlgorithm:
    """A new model from the configuration, or the one saved at ``resume`` on ``env``."""
    spec = ALGOS[config.algo]
    if resume is not None:
        return spec.cls.load(resume, env=env, device=config.device)
    kwargs = config.resolved_algo_kwargs()
    try:
        return spec.cls(spec.policy, env, seed=config.seed, device=config.device, **kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from None


def train(
    config: TrainConfig,
    run_dir: Path,
    resume: str | Path | None = None,
    progress_bar: bool = False,
    callbacks: list[BaseCallback] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train, checkpointing as it goes, then evaluate; returns the evaluation record.

    On Ctrl-C or SIGTERM the model (and normalisation statistics) are saved to
    ``run_dir/model.zip`` before the exception propagates.
    """
    check_config(config)
    resume_path = resolve_resume(resume) if resume is not None else None
    th.set_num_threads(config.threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(
        yaml.safe_dump({**dataclasses.asdict(config), "algo_kwargs": config.algo_kwargs()}, sort_keys=False)
    )
    env = make_envs(config, config.n_envs, config.seed)
    if config.normalize:
        stats = None if resume_path is None else resume_path.with_name(f"{resume_path.stem}_vecnormalize.pkl")
        env = VecNormalize.load(str(stats), env) if stats is not None and stats.is_file() else VecNormalize(env)
    model = build_model(config, env, resume_path)
    formats = ["csv", "log"] + (["tensorboard"] if config.tensorboard else [])
    model.set_logger(configure(str(run_dir), formats))
    remaining = config.total_timesteps - model.num_timesteps
    log(f"training {config.algo} with cell {config.cell} on {config.env} in {run_dir} ({remaining} steps to go)")
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
    (run_dir / "eval.json").write_text(json.dumps(record, indent=2))
    return record
