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
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from agents.training.checkpoints import (
    CheckpointCallback,
    SaveBestModel,
    Stop,
    has_statistics,
    load_statistics,
    raise_stop,
    resolve_resume,
    save_atomically,
    save_checkpoint,
    stop_signals_deferred,
)
from agents.training.config import ConfigError, TrainConfig
from agents.training.environments import make_envs, make_eval_env, stack_frames
from agents.training.evaluation import evaluate
from agents.training.folder_lock import FolderLock
from agents.training.logs import ProgressLines, run_logger
from agents.training.resolution import ResolvedRun, resolve
from rl_lstm import kernel
from rl_lstm.base import RecurrentLayer
from rl_lstm.tooling import pin_threads


def policy_for(policy: str, observation_space: spaces.Space) -> str:
    """The algorithm's policy for the observations, as rl-baselines3-zoo picks it: ``Dict`` observations
    get the MultiInput variant (SB3's CombinedExtractor), images the Cnn one (NatureCNN), others the
    algorithm's own (``CellLstmPolicy`` -> ``MultiInputCellLstmPolicy``, ``MlpPolicy`` -> ``CnnPolicy``...)."""
    if isinstance(observation_space, spaces.Dict):
        kind = "MultiInput"
    elif is_image_space(observation_space, check_channels=False):
        kind = "Cnn"
    else:
        return policy
    return kind + policy.removeprefix("Mlp")


def _comparable(value: Any) -> Any:
    """A policy_kwargs value as it compares after a save and load (tuples and lists alike)."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    return value


def build_model(run: ResolvedRun, env: VecEnv, resume: Path | None) -> BaseAlgorithm:
    """A new model from the run's options, or the one saved at ``resume`` on ``env`` with the run's
    algorithm arguments applied (n_epochs, ent_coef, learning rate, n_steps...). What the saved network
    fixes (its policy_kwargs: memory cell, dropout, hidden size, layers, architecture) cannot change: a
    configuration that differs there is refused by name."""
    spec, config = run.spec, run.config
    kwargs, policy_kwargs = run.model_kwargs()
    try:
        if resume is None:
            policy = policy_for(spec.policy, env.observation_space)
            return spec.cls(policy, env, seed=config.seed, device=config.device, policy_kwargs=policy_kwargs, **kwargs)
        model = spec.cls.load(resume, env=env, device=config.device, **kwargs)
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(str(e)) from None
    saved, wanted = _comparable(model.policy_kwargs), _comparable(policy_kwargs)
    changed = sorted(k for k in {*saved, *wanted} if saved.get(k) != wanted.get(k))
    if changed:
        diff = ", ".join(f"{k}={wanted.get(k)!r} (the model's: {saved.get(k)!r})" for k in changed)
        raise ConfigError(
            f"--resume {str(resume)!r}: {diff}: the saved network was built with the model's values and cannot "
            "change on resume; start a new run for a different memory or architecture"
        )
    return model


def make_training_envs(run: ResolvedRun, resume: Path | None) -> VecEnv:
    """The training environments, wrapped in VecNormalize as the run's options say (with the statistics
    saved with the model resumed from)."""
    config = run.config
    env = make_envs(config, config.n_envs, config.seed)
    mode = run.normalization
    if resume is not None and has_statistics(resume) != (mode != "none"):
        env.close()
        was = "with" if mode == "none" else "without"
        raise ConfigError(
            f"--resume {str(resume)!r}: normalize={mode!r}, but the model learned {was} normalised observations; "
            "a resumed run keeps that (obs and obs-reward can be exchanged)"
        )
    if mode != "none":
        stats = None if resume is None else load_statistics(resume, env)
        if stats is not None:
            env = stats
            env.training = True
        else:
            env = VecNormalize(env)
        env.norm_reward = mode == "obs-reward"
    return stack_frames(run, env)


def latest_config(run_dir: Path, timesteps: int | None = None) -> Path:
    """The run's configuration as last recorded: the newest ``config.resumed-<steps>.yaml`` (of those
    written at or before ``timesteps``), else ``config.yaml``."""
    resumed = {}
    for path in run_dir.glob("config.resumed-*.yaml"):
        steps = path.stem.removeprefix("config.resumed-")
        if steps.isdigit() and (timesteps is None or int(steps) <= timesteps):
            resumed[int(steps)] = path
    return resumed[max(resumed)] if resumed else run_dir / "config.yaml"


def write_config(run: ResolvedRun, run_dir: Path, resumed_at: int | None) -> Path:
    """``config.yaml``: the configuration, the hyperparameter entry used and the merged algorithm arguments.
    A resumed run keeps its ``config.yaml``; where the continuation differs from the configuration last
    recorded, it is written beside it as ``config.resumed-<timesteps>.yaml``."""
    config = run.config
    text = yaml.safe_dump(
        {**dataclasses.asdict(config), "normalization": run.normalization, "memory": run.memory,
         "hyperparams_entry": f"{config.algo}.yml: {run.entry}", "algo_kwargs": run.algo_kwargs},
        sort_keys=False,
    )  # fmt: skip
    path = run_dir / "config.yaml"
    if resumed_at is not None and path.is_file():
        last = latest_config(run_dir, resumed_at)
        if last.read_text() == text:
            return last
        path = run_dir / f"config.resumed-{resumed_at}.yaml"
    path.write_text(text)
    return path


def build_kernel(model: BaseAlgorithm) -> None:
    """Build the compiled kernel now where the model's memory runs on it (the chunk kernel or the linear scan;
    once per machine, about a minute), so that the run's clock leaves the one-time compile out; a ConfigError
    where ``RL_LSTM_GEMM`` asks for a routine this CPU cannot run."""
    for module in model.policy.modules():
        if isinstance(module, RecurrentLayer) and module.uses_extension and module.fused:
            if kernel.use(next(module.parameters()).detach()):
                try:
                    kernel.gemm_path()
                except ValueError as e:
                    raise ConfigError(str(e)) from None
            return


def train(
    config: TrainConfig | ResolvedRun,
    run_dir: Path,
    resume: str | Path | None = None,
    progress_bar: bool = False,
    callbacks: list[BaseCallback] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train, checkpointing as it goes, then evaluate; returns the evaluation record.

    ``config`` is checked and resolved (:func:`~agents.training.resolution.resolve`) unless it was already;
    everything is built before anything is written to ``run_dir``. On Ctrl-C or SIGTERM
    the model (and normalisation statistics) are saved to ``run_dir/model.zip`` before the exception
    propagates.
    """
    run = resolve(config)
    resume_path = resolve_resume(resume, log) if resume is not None else None
    pin_threads(run.config.threads)
    env = make_training_envs(run, resume_path)
    try:
        model = build_model(run, env, resume_path)
        build_kernel(model)
    except ConfigError:
        env.close()
        raise
    lock = FolderLock(run_dir)
    try:
        lock.acquire()
    except ConfigError:
        env.close()
        raise
    try:
        return _train(model, env, run, run_dir, resume_path, progress_bar, callbacks or [], log)
    finally:
        lock.release()


def _train(
    model: BaseAlgorithm,
    env: VecEnv,
    run: ResolvedRun,
    run_dir: Path,
    resume_path: Path | None,
    progress_bar: bool,
    callbacks: list[BaseCallback],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """:func:`train` once the model is built and the run folder is held."""
    config = run.config
    config_path = write_config(run, run_dir, None if resume_path is None else model.num_timesteps)
    model.set_logger(run_logger(run_dir, config.tensorboard))
    remaining = config.total_timesteps - model.num_timesteps
    log(
        f"training {config.algo} (memory: {run.memory}) on {config.env} with {config.algo}.yml entry {run.entry!r}, "
        f"normalisation {run.normalization}, in {run_dir} ({remaining} steps to go; config: {config_path.name})"
    )
    if not progress_bar:  # a line every 5% of the budget where no progress bar shows anything
        callbacks = [*callbacks, ProgressLines(config.total_timesteps, max(remaining // 20, 1), log)]
    # Ctrl-C raises KeyboardInterrupt even where the process was started with SIGINT ignored (as a
    # shell's background job is); SIGTERM raises Stop. Both save before exiting.
    previous = signal.signal(signal.SIGTERM, raise_stop), signal.signal(signal.SIGINT, signal.default_int_handler)
    start = time.perf_counter()
    periodic = None
    if config.eval_freq:
        periodic = EvalCallback(
            make_eval_env(run, seed=config.seed + 20_000),
            n_eval_episodes=config.eval_episodes,
            eval_freq=max(config.eval_freq // config.n_envs, 1),
            log_path=str(run_dir),
            callback_on_new_best=SaveBestModel(run_dir / "best_model.zip"),
            deterministic=True,
            verbose=0,
        )
    try:
        if remaining > 0:
            model.learn(
                remaining,
                callback=CallbackList(
                    [CheckpointCallback(run_dir, config.checkpoint_freq), *([periodic] if periodic else []),
                     *callbacks]
                ),  # fmt: skip
                reset_num_timesteps=resume_path is None,
                progress_bar=progress_bar,
            )
    except (KeyboardInterrupt, Stop):
        with stop_signals_deferred():  # a second Ctrl-C waits for both saves
            save_atomically(model, run_dir / "model.zip")
            save_checkpoint(model, run_dir)
        log(f"interrupted at {model.num_timesteps} steps: saved {run_dir / 'model.zip'}")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
        env.close()
        model.logger.close()
    wall = time.perf_counter() - start
    save_atomically(model, run_dir / "model.zip")
    record = evaluate(model, run, config.eval_episodes, seed=config.seed + 10_000)
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
