"""The configuration of a training run: :class:`TrainConfig`, the one home of every option's default
and help (the command line is generated from it), its checks and the hyperparameter overrides."""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch as th
import yaml
from stable_baselines3.common.utils import LinearSchedule
from torch import nn

from agents.training.algos import ALGOS
from agents.training.zoo import RUN_KEYS, entry_for
from rl_lstm import CELLS
from rl_lstm.registry import default_dropout
from rl_lstm.tooling import expected_integer


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names it and what was expected."""


def option(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = None, **cli: Any) -> Any:
    """A :class:`TrainConfig` field with its help text; ``cli`` holds what the command line needs beyond
    the type (``flag``, ``choices`` as a callable, ``minimum``, ``metavar``)."""
    metadata = {"help": help, **cli}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


PREV_INPUTS = {
    "none": "the observation alone",
    "action": "the previous action appended to the observation (envs.PrevActionReward, RLlib's use_prev_action)",
    "reward": "the previous reward appended (RLlib's use_prev_reward)",
    "action-reward": "both",
}

NORMALIZE = {
    "none": "no normalisation",
    "obs": "observations only (VecNormalize(norm_reward=False))",
    "obs-reward": "observations and rewards (VecNormalize's defaults; the zoo's normalize: true)",
}

#: The budget of a run whose environment's hyperparameter entry gives none (``n_timesteps``).
DEFAULT_BUDGET = 100_000



@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (written to the run folder as config.yaml); a run takes it
    checked and resolved (:func:`agents.training.resolution.resolve`)."""

    env: str = option("CartPole-v1", "Gymnasium id to train on (ids of envs and of --env-package modules included).")
    algo: str = option(
        "ppo", "Algorithm: ppo or a2c (recurrent, memory from the cell registry), dqn or sac (off-policy, "
        "memory from the cell registry); ppo-mlp, dqn-mlp, sac-mlp and sb3-ppo-lstm are the baselines.",
        choices=lambda: list(ALGOS),
    )  # fmt: skip
    cell: str = option("lstm", "Memory cell, a name from the rl_lstm registry.", choices=lambda: list(CELLS))
    dropout: float | None = option(
        None, "Dropout probability of the cell (zoneout probability for zoneout cells), in [0, 1); default: 0.1 "
        "for the cells named for a dropout method, else 0.", metavar="P",
    )  # fmt: skip
    hidden_size: int = option(64, "Hidden units of the memory.", minimum=1)
    n_envs: int = option(8, "Parallel environments.", minimum=1)
    total_timesteps: int | None = option(
        None, "Environment steps to train for (over all environments); default: the environment's hyperparameter "
        f"entry (n_timesteps), else {DEFAULT_BUDGET}.", minimum=1,
    )  # fmt: skip
    seed: int = option(0, "Random seed (environments, torch, numpy).", minimum=0)
    eval_episodes: int = option(20, "Episodes of the final deterministic evaluation (and of each periodic one).",
                                minimum=1)  # fmt: skip
    eval_freq: int = option(
        0, "Also evaluate every this many environment steps, keeping best_model.zip (0: only at the end).", minimum=0
    )
    hyperparams: dict[str, Any] = option(
        factory=dict, help="Overrides of the algorithm's keyword arguments, on top of the entry for the "
        "environment in agents/training/hyperparams/ALGO.yml: a YAML file or key=value pairs (YAML values; "
        "policy_kwargs merged key by key).", metavar="YAML_OR_KEY=VALUE",
    )  # fmt: skip
    normalize: str | None = option(
        None, "Normalisation with VecNormalize (statistics saved beside every model): "
        + "; ".join(f"{k}: {v}" for k, v in NORMALIZE.items())
        + ". --normalize alone means obs-reward; default: the environment's hyperparameter entry, else none.",
        choices=lambda: list(NORMALIZE), const="obs-reward",
    )  # fmt: skip
    prev_inputs: str = option(
        "none", "Memory inputs beside the observation (Box observations): "
        + "; ".join(f"{k}: {v}" for k, v in PREV_INPUTS.items()) + ".",
        choices=lambda: list(PREV_INPUTS),
    )  # fmt: skip
    vec_env: str = option("dummy", "Vectorised environment: dummy (one process) or subproc.",
                          choices=lambda: ["dummy", "subproc"])  # fmt: skip
    device: str = option("cpu", "Torch device (cpu, cuda, cuda:N, auto).")
    threads: int = option(1, "torch.set_num_threads for the run.", minimum=1)
    checkpoint_freq: int = option(10_000, "Save a checkpoint every this many environment steps.", minimum=1)
    env_packages: list[str] = option(
        factory=list, help="Module imported before gym.make, to register its environments (repeatable).",
        flag="--env-package", metavar="MODULE",
    )  # fmt: skip
    tensorboard: bool = option(True, "Write TensorBoard events to the run folder.")

    def __post_init__(self) -> None:
        if isinstance(self.normalize, bool):  # config.yaml of earlier runs, and the zoo's spelling
            object.__setattr__(self, "normalize", "obs-reward" if self.normalize else "none")
        if self.total_timesteps is None:
            object.__setattr__(self, "total_timesteps", self.entry_budget())

    def entry_budget(self) -> int:
        """The budget of the environment's hyperparameter entry (rl-baselines3-zoo's ``n_timesteps``), else
        :data:`DEFAULT_BUDGET`; a value that is not a positive whole number is a ConfigError naming the entry."""
        if self.algo not in ALGOS:  # check_fields names it
            return DEFAULT_BUDGET
        name, entry = self.hyperparams_entry()
        value = entry.get("n_timesteps", DEFAULT_BUDGET)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1 or value != int(value):
            raise ConfigError(
                f"{ALGOS[self.algo].hyperparams or self.algo}.yml entry {name!r}: n_timesteps={value!r}: expected a "
                "positive whole number of steps"
            )
        return int(value)

    @property
    def cell_dropout(self) -> float:
        """The dropout the cell gets: the given one, else the registry's default for the cell."""
        return default_dropout(self.cell) if self.dropout is None else self.dropout

    @property
    def memory(self) -> str:
        """What the run's memory is, in words: the cell, sb3-contrib's nn.LSTM, or none."""
        spec = ALGOS[self.algo]
        if spec.memory != "none":
            return self.cell if spec.memory == "cell" else "nn.LSTM"
        return f"{spec.frame_stack} frames" if spec.frame_stack else "none"

    def hyperparams_entry(self) -> tuple[str, dict[str, Any]]:
        """The name and the contents of the algorithm's hyperparameter entry for the environment."""
        return entry_for(ALGOS[self.algo].hyperparams or self.algo, self.env)

    @property
    def normalization(self) -> str:
        """The normalisation the run uses: the given one, else the entry's, else none."""
        if self.normalize is not None:
            return self.normalize
        value = self.hyperparams_entry()[1].get("normalize", False)
        if isinstance(value, dict):  # the zoo's dict(norm_obs=..., norm_reward=...)
            return "obs-reward" if value.get("norm_reward", True) else "obs" if value.get("norm_obs", True) else "none"
        return value if value in NORMALIZE else "obs-reward" if value else "none"

    def algo_kwargs(self) -> dict[str, Any]:
        """The algorithm's keyword arguments as written in config.yaml: the environment's entry, the
        memory, then the overrides (``policy_kwargs`` merged key by key)."""
        kwargs = {k: v for k, v in self.hyperparams_entry()[1].items() if k not in RUN_KEYS}
        policy_kwargs = policy_kwargs_dict(kwargs.pop("policy_kwargs", None))
        kind = ALGOS[self.algo].memory
        if kind == "cell":
            policy_kwargs.update(cell=self.cell, dropout=self.cell_dropout, lstm_hidden_size=self.hidden_size)
        elif kind == "lstm":
            policy_kwargs.update(lstm_hidden_size=self.hidden_size)
        overrides = dict(self.hyperparams)
        policy_kwargs.update(policy_kwargs_dict(overrides.pop("policy_kwargs", None)))
        kwargs.update(overrides)
        kwargs["policy_kwargs"] = policy_kwargs
        return kwargs


def flag(field: str) -> str:
    """The command-line flag of the :class:`TrainConfig` field ``field`` (``hidden_size``: ``--hidden-size``)."""
    f = next(f for f in dataclasses.fields(TrainConfig) if f.name == field)
    return f.metadata.get("flag", "--" + field.replace("_", "-"))


# Arguments of the algorithms that the run sets itself, each with the flag to use instead.
RESERVED = {"seed": flag("seed"), "device": flag("device"), "tensorboard_log": flag("tensorboard"), "verbose": None,
            "policy": flag("algo"), "env": flag("env"), "_init_setup_model": None}  # fmt: skip
# rl-baselines3-zoo's keys of a hyperparameter entry that are settings of the run here, each with its flag.
ZOO_RUN_KEYS = {"normalize": flag("normalize"), "n_envs": flag("n_envs"), "n_timesteps": flag("total_timesteps"),
                "frame_stack": f"{flag('algo')} ppo-mlp-fs4 or ppo-mlp-fs16"}  # fmt: skip
# policy_kwargs that the memory's fields set, each with the field.
MEMORY_KWARGS = {"cell": "cell", "dropout": "dropout", "lstm_hidden_size": "hidden_size"}


def policy_kwargs_dict(value: Any) -> dict[str, Any]:
    """``policy_kwargs`` as a dict: a mapping, None, or the zoo's string ``"dict(key=value, ...)"`` whose
    values are literals or names (``nn.ReLU``, ``th.optim.AdamW``: read as their last part)."""
    if value is None:
        return {}
    parsed = value
    if isinstance(value, str):
        try:
            parsed = _literal("policy_kwargs", ast.parse(value.strip(), mode="eval").body)
        except SyntaxError:
            parsed = None
    if not isinstance(parsed, dict):
        raise ConfigError(f"policy_kwargs={value!r}: expected a mapping, e.g. {{net_arch: [64]}}, or 'dict(k=v, ...)'")
    return dict(parsed)


def _literal(key: str | None, node: ast.expr) -> Any:
    if isinstance(node, (ast.Name, ast.Attribute)):  # nn.ReLU -> "ReLU": resolved by name
        return node.id if isinstance(node, ast.Name) else node.attr
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {kw.arg: _literal(kw.arg, kw.value) for kw in node.keywords}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(key, e) for e in node.elts]
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ConfigError(f"policy_kwargs: {key}={ast.unparse(node)}: expected a literal or a class name") from None


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU}
OPTIMIZERS = {"adam": th.optim.Adam, "adamw": th.optim.AdamW, "rmsprop": th.optim.RMSprop, "sgd": th.optim.SGD}
NAMED_CLASSES = {"activation_fn": ACTIVATIONS, "optimizer_class": OPTIMIZERS}


def resolve(key: str, value: Any) -> Any:
    """Turn the YAML-friendly spellings into objects: ``lin_X`` is SB3's linear schedule from X to 0;
    ``activation_fn`` and ``optimizer_class`` are names (any case: ``relu``, ``ReLU``, ``AdamW``)."""
    if isinstance(value, str) and value.startswith("lin_"):
        try:
            return LinearSchedule(float(value[4:]), 0.0, 1.0)
        except ValueError:
            raise ConfigError(f"{key}={value!r}: expected lin_<number>, e.g. lin_0.001") from None
    if key in NAMED_CLASSES and isinstance(value, str):
        named = NAMED_CLASSES[key]
        found = {k.replace("_", ""): v for k, v in named.items()}.get(value.lower().replace("_", ""))
        if found is None:
            raise ConfigError(f"{key}={value!r}: expected one of {', '.join(named)}")
        return found
    return value


def resolve_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """An algorithm's keyword arguments (``policy_kwargs`` included) with schedules and class names turned
    into objects (:func:`resolve`)."""
    out = {k: resolve(k, v) for k, v in kwargs.items()}
    out["policy_kwargs"] = {k: resolve(k, v) for k, v in out["policy_kwargs"].items()}
    return out


def import_env_packages(packages: list[str]) -> None:
    """Import ``envs`` and each module that registers environments on import."""
    for name in ["envs", *packages]:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(f"--env-package {name!r}: cannot import it ({e})") from None


def check_fields(config: TrainConfig) -> None:
    """Raise ConfigError naming the first bad field (nothing is built or written here); the algorithm's
    arguments are :func:`check_hyperparams`'."""
    for f in dataclasses.fields(config):
        choices = f.metadata.get("choices")
        value = getattr(config, f.name)
        if choices is not None and value is not None and value not in choices():
            raise ConfigError(f"{f.name}={value!r}: expected one of {', '.join(choices())}")
        minimum = f.metadata.get("minimum")
        if minimum is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
            raise ConfigError(f"{f.name}={value!r}: expected {expected_integer(minimum)}")
    dropout = config.dropout
    if dropout is not None and (
        isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0
    ):
        raise ConfigError(f"dropout={dropout!r}: expected a number in [0, 1)")
    check_device(config.device)
    import_env_packages(config.env_packages)
    if config.env not in gym.registry:
        raise ConfigError(f"env={config.env!r}: not a registered Gymnasium id{_closest(config.env, gym.registry)}")
    if config.prev_inputs != "none":
        _check_prev_inputs(config)


def _check_prev_inputs(config: TrainConfig) -> None:
    """The environment's spaces can carry the previous action and reward (``envs.PrevActionReward``)."""
    from envs import PrevActionReward

    env = gym.make(config.env)
    try:
        PrevActionReward(env, action="action" in config.prev_inputs, reward="reward" in config.prev_inputs)
    except ValueError as e:
        raise ConfigError(f"prev_inputs={config.prev_inputs!r} on {config.env}: {e}") from None
    finally:
        env.close()


def _closest(name: str, names: Any) -> str:
    close = difflib.get_close_matches(name, list(names), n=5, cutoff=0.5)
    return f"; closest: {', '.join(close)}" if close else ""


def check_device(device: str) -> None:
    """A device torch knows and this machine has (``auto``: CUDA where there is one, else the CPU)."""
    if device == "auto":
        return
    try:
        dev = th.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device={device!r}: expected cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and (not th.cuda.is_available() or (dev.index or 0) >= th.cuda.device_count()):
        raise ConfigError(f"device={device!r}: no such CUDA device on this machine; expected cpu or auto")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={device!r}: expected cpu, cuda, cuda:N or auto")


def check_hyperparams(config: TrainConfig, kwargs: dict[str, Any]) -> None:
    """The overrides and the entry are arguments of the algorithm, none of them set by a flag; ``kwargs``:
    the configuration's :meth:`~TrainConfig.algo_kwargs`."""
    algo_cls = ALGOS[config.algo].cls
    accepted = set(inspect.signature(algo_cls.__init__).parameters) - {"self", *RESERVED}
    for key in config.hyperparams:
        if key in ZOO_RUN_KEYS:
            raise ConfigError(
                f"hyperparams {key}: a setting of the run (rl-baselines3-zoo's key), not an argument of "
                f"{algo_cls.__name__}; use {ZOO_RUN_KEYS[key]}"
            )
        if key in RESERVED:
            instead = f"; use {RESERVED[key]}" if RESERVED[key] else ""
            raise ConfigError(f"hyperparams {key}: set by the run itself, not by --hyperparams{instead}")
        if key not in accepted:
            raise ConfigError(
                f"hyperparams {key}: not an argument of {algo_cls.__name__}{_closest(key, accepted)}; "
                f"expected some of {', '.join(sorted(accepted))}"
            )
    given_policy_kwargs = policy_kwargs_dict(config.hyperparams.get("policy_kwargs"))
    memory = ALGOS[config.algo].memory
    set_by_fields = {
        k: name for k, name in MEMORY_KWARGS.items() if memory == "cell" or memory == "lstm" and k == "lstm_hidden_size"
    }
    for key, name in set_by_fields.items():
        if key in given_policy_kwargs:
            raise ConfigError(f"policy_kwargs {key}: the memory is set with {flag(name)}, not in --hyperparams")
    resolve_kwargs(kwargs)  # a bad schedule or class name fails here, before anything is built
    starts = kwargs.get("learning_starts")
    if isinstance(starts, int) and not isinstance(starts, bool) and starts >= config.total_timesteps:
        raise ConfigError(
            f"learning_starts={starts}: at or above --total-timesteps {config.total_timesteps}, so the run would take "
            "no gradient step; expected fewer"
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
