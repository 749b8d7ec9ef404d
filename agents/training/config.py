"""The configuration of a training run: :class:`TrainConfig`, the one home of every option's default
and help (the command line is generated from it), its checks and the hyperparameter overrides."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml
from stable_baselines3.common.utils import LinearSchedule
from torch import nn

from agents.training.algos import ALGOS
from rl_lstm import CELLS
from rl_lstm.registry import default_dropout

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU}


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names it and what was expected."""


def option(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = None, **cli: Any) -> Any:
    """A :class:`TrainConfig` field with its help text; ``cli`` holds what the command line needs beyond
    the type (``flag``, ``choices`` as a callable, ``minimum``, ``metavar``)."""
    metadata = {"help": help, **cli}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Everything that defines a training run (written to the run folder as config.yaml)."""

    env: str = option("CartPole-v1", "Gymnasium id to train on (ids of envs and of --env-package modules included).")
    algo: str = option(
        "ppo", "Algorithm: ppo or a2c (recurrent, memory from the cell registry); ppo-mlp and sb3-ppo-lstm are "
        "the baselines.", choices=lambda: list(ALGOS),
    )  # fmt: skip
    cell: str = option("lstm", "Memory cell, a name from the rl_lstm registry.", choices=lambda: list(CELLS))
    dropout: float | None = option(
        None, "Dropout probability of the cell (zoneout probability for zoneout cells), in [0, 1); default: 0.1 "
        "for the cells named for a dropout method, else 0.", metavar="P",
    )  # fmt: skip
    hidden_size: int = option(64, "Hidden units of the memory.", minimum=1)
    n_envs: int = option(8, "Parallel environments.", minimum=1)
    total_timesteps: int = option(100_000, "Environment steps to train for (over all environments).", minimum=1)
    seed: int = option(0, "Random seed (environments, torch, numpy).")
    eval_episodes: int = option(20, "Episodes of the final deterministic evaluation (and of each periodic one).",
                                minimum=1)  # fmt: skip
    eval_freq: int = option(
        0, "Also evaluate every this many environment steps, keeping best_model.zip (0: only at the end).", minimum=0
    )
    hyperparams: dict[str, Any] = option(
        factory=dict, help="Overrides of the algorithm's keyword arguments: a YAML file or key=value pairs (YAML "
        "values; policy_kwargs merged key by key).", metavar="YAML_OR_KEY=VALUE",
    )  # fmt: skip
    normalize: bool = option(False, "Normalise observations with VecNormalize (saved and restored with the model).")
    vec_env: str = option("dummy", "Vectorised environment: dummy (one process) or subproc.",
                          choices=lambda: ["dummy", "subproc"])  # fmt: skip
    device: str = option("cpu", "Torch device (cpu, cuda, auto).")
    threads: int = option(1, "torch.set_num_threads for the run.", minimum=1)
    checkpoint_freq: int = option(10_000, "Save a checkpoint every this many environment steps.", minimum=1)
    env_packages: list[str] = option(
        factory=list, help="Module imported before gym.make, to register its environments (repeatable).",
        flag="--env-package", metavar="MODULE",
    )  # fmt: skip
    tensorboard: bool = option(True, "Write TensorBoard events to the run folder.")

    @property
    def cell_dropout(self) -> float:
        """The dropout the cell gets: the given one, else the registry's default for the cell."""
        return default_dropout(self.cell) if self.dropout is None else self.dropout

    def algo_kwargs(self) -> dict[str, Any]:
        """The algorithm's keyword arguments as written in config.yaml: defaults, the memory, then
        the overrides (``policy_kwargs`` merged key by key)."""
        spec = ALGOS[self.algo]
        kwargs = dict(spec.defaults)
        policy_kwargs = dict(kwargs.pop("policy_kwargs", {}))
        if spec.memory == "cell":
            policy_kwargs.update(cell=self.cell, dropout=self.cell_dropout, lstm_hidden_size=self.hidden_size)
        elif spec.memory == "lstm":
            policy_kwargs.update(lstm_hidden_size=self.hidden_size)
        overrides = dict(self.hyperparams)
        policy_kwargs.update(overrides.pop("policy_kwargs", None) or {})
        kwargs.update(overrides)
        kwargs["policy_kwargs"] = policy_kwargs
        return kwargs

    def resolved_algo_kwargs(self) -> dict[str, Any]:
        """:meth:`algo_kwargs` with schedules and activation names turned into objects."""
        kwargs = {k: resolve(k, v) for k, v in self.algo_kwargs().items()}
        kwargs["policy_kwargs"] = {k: resolve(k, v) for k, v in kwargs["policy_kwargs"].items()}
        return kwargs


def expected_integer(minimum: int | None) -> str:
    """What an integer option with this minimum expects, in words."""
    if minimum is None:
        return "an integer"
    return "a positive integer" if minimum == 1 else f"an integer >= {minimum}"


def resolve(key: str, value: Any) -> Any:
    """Turn the YAML-friendly spellings into objects: ``lin_X`` is SB3's linear schedule from X to 0,
    and ``activation_fn`` is a name of :data:`ACTIVATIONS`."""
    if isinstance(value, str) and value.startswith("lin_"):
        try:
            return LinearSchedule(float(value[4:]), 0.0, 1.0)
        except ValueError:
            raise ConfigError(f"{key}={value!r}: expected lin_<number>, e.g. lin_0.001") from None
    if key == "activation_fn" and isinstance(value, str):
        if value not in ACTIVATIONS:
            raise ConfigError(f"activation_fn={value!r}: expected one of {', '.join(ACTIVATIONS)}")
        return ACTIVATIONS[value]
    return value


def import_env_packages(packages: list[str]) -> None:
    """Import ``envs`` and each module that registers environments on import."""
    for name in ["envs", *packages]:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(f"--env-package {name!r}: cannot import it ({e})") from None


def check_config(config: TrainConfig) -> None:
    """Raise ConfigError naming the first bad value."""
    for f in dataclasses.fields(config):
        choices = f.metadata.get("choices")
        value = getattr(config, f.name)
        if choices is not None and value not in choices():
            raise ConfigError(f"{f.name}={value!r}: expected one of {', '.join(choices())}")
        minimum = f.metadata.get("minimum")
        if minimum is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
            raise ConfigError(f"{f.name}={value!r}: expected {expected_integer(minimum)}")
    dropout = config.dropout
    if dropout is not None and (
        isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0
    ):
        raise ConfigError(f"dropout={dropout!r}: expected a number in [0, 1)")
    import_env_packages(config.env_packages)
    if config.env not in gym.registry:
        close = difflib.get_close_matches(config.env, list(gym.registry), n=5, cutoff=0.5)
        hint = f"; closest registered ids: {', '.join(close)}" if close else ""
        raise ConfigError(f"env={config.env!r}: not a registered Gymnasium id{hint}")
    algo_cls = ALGOS[config.algo].cls
    accepted = set(inspect.signature(algo_cls.__init__).parameters) - {"self", "policy", "env"}
    unknown = sorted(set(config.hyperparams) - accepted)
    if unknown:
        raise ConfigError(
            f"hyperparams {', '.join(unknown)}: not arguments of {algo_cls.__name__}; "
            f"expected some of {', '.join(sorted(accepted))}"
        )


def _number(value: Any) -> Any:
    """A string that spells a finite number (``1e-3``, which YAML 1.1 leaves as a string) as that number."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    return value


def _numbers(data: Any) -> Any:
    """:func:`_number` applied through a loaded YAML document."""
    if isinstance(data, dict):
        return {k: _numbers(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_numbers(v) for v in data]
    return _number(data)


def yaml_value(text: str) -> Any:
    """A value as YAML reads it, numbers as numbers (``1e-3`` included)."""
    return _numbers(yaml.safe_load(text))


def parse_hyperparams(items: list[str]) -> dict[str, Any]:
    """``["file.yml"]`` or ``["key=value", ...]`` (values read as YAML; numbers as numbers) -> dict."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" in item:
            key, _, value = item.partition("=")
            if not key.strip():
                raise ConfigError(f"--hyperparams {item!r}: expected key=value with a key")
            out[key.strip()] = yaml_value(value)
        else:
            path = Path(item)
            if not path.is_file():
                raise ConfigError(f"--hyperparams {item!r}: expected a YAML file or key=value")
            try:
                loaded = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"--hyperparams {item!r}: not valid YAML ({e})") from None
            if not isinstance(loaded, dict):
                raise ConfigError(f"--hyperparams {item!r}: expected a YAML mapping of argument names to values")
            out.update(_numbers(loaded))
    return out
