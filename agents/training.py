"""One training run, end to end: configuration, environments, model, checkpoints, evaluation.

``scripts/train.py`` is a command line over :func:`train`; the memory benchmark calls it too.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
import yaml
from sb3_contrib import RecurrentPPO as SB3RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecNormalize
from torch import nn

from agents.a2c import RecurrentA2C
from agents.ppo import RecurrentPPO
from rl_lstm import CELLS

# Our algorithms, then the baselines the benchmarks run beside them.
ALGOS: dict[str, type[BaseAlgorithm]] = {
    "ppo": RecurrentPPO,
    "a2c": RecurrentA2C,
    "ppo-mlp": PPO,  # no memory: the memoryless baseline
    "sb3-ppo-lstm": SB3RecurrentPPO,  # stock sb3-contrib RecurrentPPO with nn.LSTM
}
POLICIES = {"ppo": "CellLstmPolicy", "a2c": "CellLstmPolicy", "ppo-mlp": "MlpPolicy", "sb3-ppo-lstm": "MlpLstmPolicy"}

# Defaults after rl-baselines3-zoo's PPO settings for CartPole-v1 (gamma 0.98, lambda 0.8) with its
# ppo_lstm policy for the velocity-masked CartPole; values
# "lin_X" are schedules decaying linearly from X to 0, and activation_fn is a name (ACTIVATIONS).
_RECURRENT_POLICY = dict(ortho_init=False, activation_fn="relu", net_arch=dict(pi=[64], vf=[64]))
DEFAULT_HYPERPARAMS: dict[str, dict[str, Any]] = {
    "ppo": dict(
        n_steps=32, batch_size=256, seq_len=32, n_epochs=20, learning_rate="lin_0.001", clip_range="lin_0.2",
        gamma=0.98, gae_lambda=0.8, ent_coef=0.0, policy_kwargs=_RECURRENT_POLICY,
    ),
    "a2c": dict(n_steps=16, learning_rate="lin_0.001", gamma=0.99, ent_coef=0.0, policy_kwargs=_RECURRENT_POLICY),
    "ppo-mlp": dict(
        n_steps=32, batch_size=256, n_epochs=20, learning_rate="lin_0.001", clip_range="lin_0.2",
        gamma=0.999, gae_lambda=0.98, ent_coef=0.0,
        policy_kwargs=dict(ortho_init=False, activation_fn="relu", net_arch=dict(pi=[64, 64], vf=[64, 64])),
    ),
    "sb3-ppo-lstm": dict(
        n_steps=32, batch_size=256, n_epochs=20, learning_rate="lin_0.001", clip_range="lin_0.2",
        gamma=0.999, gae_lambda=0.98, ent_coef=0.0, policy_kwargs=_RECURRENT_POLICY,
    ),
}  # fmt: skip
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU}


def linear_schedule(initial: float) -> Callable[[float], float]:
    """From ``initial`` at the start of training to 0 at the end."""

    def schedule(progress_remaining: float) -> float:
        return progress_remaining * initial

    return schedule


def _resolve(key: str, value: Any) -> Any:
    """Turn the YAML-friendly spellings of schedules and activations into objects."""
    if isinstance(value, str) and value.startswith("lin_"):
        try:
            return linear_schedule(float(value[4:]))
        except ValueError:
            raise ConfigError(f"{key}={value!r}: expected lin_<number>, e.g. lin_0.001") from None
    if key == "activation_fn" and isinstance(value, str):
        if value not in ACTIVATIONS:
            raise ConfigError(f"activation_fn={value!r}: expected one of {', '.join(ACTIVATIONS)}")
        return ACTIVATIONS[value]
    return value


@dataclass
class TrainConfig:
    """Everything that defines a training run (written to the run folder as config.yaml)."""

    env: str = "CartPole-v1"
    """Gymnasium id to train on (ids of `envs` and of --env-package modules included)."""
    algo: str = "ppo"
    """Algorithm: ppo or a2c (recurrent, memory from the cell registry); ppo-mlp and sb3-ppo-lstm are baselines."""
    cell: str = "lstm"
    """Memory cell, a name from the rl_lstm registry."""
    dropout: float = 0.0
    """Dropout probability of the cell (zoneout probability for zoneout cells), in [0, 1)."""
    hidden_size: int = 64
    """Hidden units of the memory."""
    n_envs: int = 8
    """Parallel environments."""
    total_timesteps: int = 100_000
    """Environment steps to train for (over all environments)."""
    seed: int = 0
    """Random seed (environments, torch, numpy)."""
    eval_episodes: int = 20
    """Episodes of the final deterministic evaluation (and of each periodic one)."""
    eval_freq: int = 0
    """Evaluate every this many environment steps too, keeping the best model (0: only at the end)."""
    hyperparams: dict[str, Any] = field(default_factory=dict)
    """Overrides of the algorithm's keyword arguments (policy_kwargs merged)."""
    normalize: bool = False
    """Normalise observations with VecNormalize (saved and restored with the model)."""
    vec_env: str = "dummy"
    """Vectorised environment: dummy (one process) or subproc."""
    device: str = "cpu"
    """Torch device."""
    threads: int = 1
    """torch.set_num_threads for the run."""
    checkpoint_freq: int = 10_000
    """Save a checkpoint every this many environment steps."""
    env_packages: list[str] = field(default_factory=list)
    """Modules imported before gym.make (they register their environments)."""
    tensorboard: bool = True
    """Write TensorBoard events to the run folder."""

    def algo_kwargs(self) -> dict[str, Any]:
        """The algorithm's keyword arguments as written in config.yaml: defaults, the cell, then
        the overrides (``policy_kwargs`` merged key by key)."""
        kwargs = dict(DEFAULT_HYPERPARAMS[self.algo])
        policy_kwargs = dict(kwargs.pop("policy_kwargs", {}))
        if self.algo in ("ppo", "a2c"):
            policy_kwargs.update(cell=self.cell, dropout=self.dropout, lstm_hidden_size=self.hidden_size)
        elif self.algo == "sb3-ppo-lstm":
            policy_kwargs.update(lstm_hidden_size=self.hidden_size)
        overrides = dict(self.hyperparams)
        policy_kwargs.update(overrides.pop("policy_kwargs", None) or {})
        kwargs.update(overrides)
        kwargs["policy_kwargs"] = policy_kwargs
        return kwargs

    def resolved_algo_kwargs(self) -> dict[str, Any]:
        """:meth:`algo_kwargs` with schedules and activation names turned into objects."""
        kwargs = {k: _resolve(k, v) for k, v in self.algo_kwargs().items()}
        kwargs["policy_kwargs"] = {k: _resolve(k, v) for k, v in kwargs["policy_kwargs"].items()}
        return kwargs


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names it and what was expected."""


def import_env_packages(packages: list[str]) -> None:
    """Import ``envs`` and each module that registers environments on import."""
    for name in ["envs", *packages]:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(f"--env-package {name!r}: cannot import it ({e})") from None


def check_config(config: TrainConfig) -> None:
    """Raise ConfigError naming the first bad value."""
    if config.algo not in ALGOS:
        raise ConfigError(f"algo={config.algo!r}: expected one of {', '.join(ALGOS)}")
    if config.cell not in CELLS:
        raise ConfigError(f"cell={config.cell!r}: expected one of {', '.join(CELLS)}")
    if not 0.0 <= config.dropout < 1.0:
        raise ConfigError(f"dropout={config.dropout!r}: expected a number in [0, 1)")
    sizes = ("hidden_size", "n_envs", "total_timesteps", "eval_episodes", "threads", "checkpoint_freq", "eval_freq")
    for name in sizes:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "eval_freq" else 1):
            raise ConfigError(f"{name}={value!r}: expected a positive integer")
    if config.vec_env not in ("dummy", "subproc"):
        raise ConfigError(f"vec_env={config.vec_env!r}: expected dummy or subproc")
    import_env_packages(config.env_packages)
    if config.env not in gym.registry:
        close = difflib.get_close_matches(config.env, list(gym.registry), n=5, cutoff=0.5)
        hint = f"; closest registered ids: {', '.join(close)}" if close else ""
        raise ConfigError(f"env={config.env!r}: not a registered Gymnasium id{hint}")
    accepted = set(inspect.signature(ALGOS[config.algo].__init__).parameters) - {"self", "policy", "env"}
    unknown = sorted(set(config.hyperparams) - accepted)
    if unknown:
        raise ConfigError(
            f"hyperparams {', '.join(unknown)}: not arguments of {ALGOS[config.algo].__name__}; "
            f"expected some of {', '.join(sorted(accepted))}"
        )


def parse_hyperparams(items: list[str]) -> dict[str, Any]:
    """``["file.yml"]`` or ``["key=value", ...]`` (values read as YAML) -> dict."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" in item:
            key, _, value = item.partition("=")
            out[key.strip()] = yaml.safe_load(value)
        else:
            path = Path(item)
            if not path.is_file():
                raise ConfigError(f"--hyperparams {item!r}: expected a YAML file or key=value")
            loaded = yaml.safe_load(path.read_text()) or {}
            if not isinstance(loaded, dict):
                raise ConfigError(f"--hyperparams {item!r}: expected a YAML mapping of argument names to values")
            out.update(loaded)
    return out


def make_envs(config: TrainConfig, n_envs: int, seed: int) -> VecEnv:
    vec_cls = SubprocVecEnv if config.vec_env == "subproc" and n_envs > 1 else DummyVecEnv
    return make_vec_env(config.env, n_envs=n_envs, seed=seed, vec_env_cls=vec_cls)


def save_atomically(model: BaseAlgorithm, path: Path) -> None:
    """Save the model (and VecNormalize statistics beside it): write a temporary file, then
    rename, so that a run killed while saving keeps its previous complete file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.zip")
    model.save(tmp)
    os.replace(tmp, path)
    env = model.get_vec_normalize_env()
    if env is not None:
        stats = path.with_name(f"{path.stem}_vecnormalize.pkl")
        tmp_stats = stats.with_name(f".{stats.name}.tmp")
        env.save(str(tmp_stats))
        os.replace(tmp_stats, stats)


class CheckpointCallback(BaseCallback):
    """Every ``save_freq`` environment steps, save ``checkpoints/last.zip`` atomically (plus a
    numbered copy), and record the timesteps in ``checkpoints/last.json``."""

    def __init__(self, run_dir: Path, save_freq: int) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.save_freq = save_freq
        self._next = save_freq

    def _init_callback(self) -> None:
        self._next = (self.model.num_timesteps // self.save_freq + 1) * self.save_freq

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next += self.save_freq
            save_checkpoint(self.model, self.run_dir)
        return True


def save_checkpoint(model: BaseAlgorithm, run_dir: Path) -> Path:
    ckpt = run_dir / "checkpoints"
    save_atomically(model, ckpt / "last.zip")
    save_atomically(model, ckpt / f"model_{model.num_timesteps}_steps.zip")
    tmp = ckpt / ".last.json.tmp"
    tmp.write_text(json.dumps({"timesteps": model.num_timesteps}))
    os.replace(tmp, ckpt / "last.json")
    return ckpt / "last.zip"


class Stop(Exception):
    """Raised in the main thread by SIGTERM so that the run saves and exits like on Ctrl-C."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise Stop(signum)


def resolve_resume(path: str | Path) -> Path:
    """A run folder (its last checkpoint, else its model) or a model .zip -> the .zip to load."""
    path = Path(path)
    for candidate in (path, path / "checkpoints" / "last.zip", path / "model.zip"):
        if candidate.is_file() and candidate.suffix == ".zip":
            return candidate
    raise ConfigError(f"--resume {str(path)!r}: expected a run folder with checkpoints/last.zip or a model .zip")


def build_model(config: TrainConfig, env: VecEnv, run_dir: Path | None, resume: Path | None) -> BaseAlgorithm:
    algo_cls = ALGOS[config.algo]
    if resume is not None:
        model = algo_cls.load(resume, env=env, device=config.device)
        return model
    kwargs = config.resolved_algo_kwargs()
    try:
        return algo_cls(POLICIES[config.algo], env, seed=config.seed, device=config.device, **kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from None


def make_eval_env(config: TrainConfig, seed: int) -> VecEnv:
    """One environment; with normalisation, statistics frozen (synchronised from training)."""
    env = make_envs(dataclasses.replace(config, vec_env="dummy"), 1, seed)
    return VecNormalize(env, training=False, norm_reward=False) if config.normalize else env


def evaluate(model: BaseAlgorithm, config: TrainConfig, episodes: int, seed: int) -> dict[str, Any]:
    """Deterministic evaluation, masks off (the policy's expectation)."""
    env = make_eval_env(config, seed)
    train_env = model.get_vec_normalize_env()
    if train_env is not None:
        env.obs_rms = train_env.obs_rms
    returns, lengths = evaluate_policy(
        model, env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True
    )
    env.close()
    return {
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "episodes": episodes,
        "timesteps": int(model.num_timesteps),
        "mean_length": float(np.mean(lengths)),
    }


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
    model = build_model(config, env, run_dir, resume_path)
    formats = ["csv", "log"] + (["tensorboard"] if config.tensorboard else [])
    model.set_logger(configure(str(run_dir), formats))
    remaining = config.total_timesteps - model.num_timesteps
    log(f"training {config.algo} with cell {config.cell} on {config.env} in {run_dir} ({remaining} steps to go)")
    # Ctrl-C raises KeyboardInterrupt even where the process was started with SIGINT ignored (as a
    # shell's background job is); SIGTERM raises Stop. Both save before exiting.
    previous = signal.signal(signal.SIGTERM, _raise_stop), signal.signal(signal.SIGINT, signal.default_int_handler)
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
