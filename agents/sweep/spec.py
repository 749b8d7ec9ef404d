"""The sweep as data: its file's schema, and the plan of runs (validated) in the order they run."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.sweep.worker import RunTask
from agents.training import ALGOS, ConfigError, TrainConfig, resolve
from agents.training.algos import RECURRENT_ALGOS
from envs import ENV_INFO
from rl_lstm import CELLS, FFM, LRU, LayerNormLSTM, MinGRU, MinLSTM, SlowLSTM
from rl_lstm.base import NAMED_METHOD_DROPOUT
from rl_lstm.registry import cell_class, has_dropout_method

DEFAULT_SWEEP = Path(__file__).with_name("memory_sweep.yaml")  # package data


class SweepError(ValueError):
    """A bad argument or sweep file; the message names the value and the choices."""


def check_keys(where: str, data: dict[str, Any], cls: type) -> None:
    """A SweepError naming ``where`` and the keys of ``data`` that are not fields of the dataclass ``cls``."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SweepError(f"{where}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(sorted(names))}")


@dataclass
class EnvSpec:
    """Budget and hyperparameters of one environment."""

    total_timesteps: int
    """Environment steps per run."""
    n_envs: int = TrainConfig.n_envs
    eval_episodes: int = TrainConfig.eval_episodes
    hidden_size: int = TrainConfig.hidden_size
    dropout: float = NAMED_METHOD_DROPOUT
    """Dropout (zoneout) probability of the cells that have one; the others get 0."""
    normalize: str | None = TrainConfig.normalize
    """Normalisation (none, obs, obs-reward; None: the hyperparameter entry's)."""
    hyperparams: dict[str, Any] = field(default_factory=dict)
    """Algorithm arguments for every algorithm that takes them (e.g. ppo-mlp has no seq_len)."""
    algo_hyperparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-algorithm arguments, applied after ``hyperparams`` (e.g. ``ppo: {seq_len: 16}``)."""
    max_seeds: dict[str, int] = field(default_factory=dict)
    """Per-algorithm cap on the number of seeds (for the slow stock baseline)."""
    cells: list[str] | None = None
    """Only these of the sweep's cells on this environment (None: all of them)."""
    algos: list[str] | None = None
    """Only these of the sweep's algorithms and baselines on this environment (None: all of them)."""

    @classmethod
    def from_dict(cls, where: str, data: Any) -> EnvSpec:
        if not isinstance(data, dict) or "total_timesteps" not in data:
            raise SweepError(f"{where}: expected a mapping with at least total_timesteps")
        check_keys(where, data, cls)
        return cls(**data)


@dataclass
class Sweep:
    """Which runs to make: the cross product of cells x algos x seeds (plus baselines x seeds) per env."""

    envs: dict[str, EnvSpec]
    cells: list[str] | None = None
    """Registry names; None (``all`` in the file) for every registry entry."""
    algos: list[str] = field(default_factory=lambda: ["ppo"])
    algo_cells: dict[str, list[str]] = field(default_factory=dict)
    """Per recurrent algorithm, only these of ``cells`` (e.g. ``a2c: [lstm, gal, ln]``)."""
    baselines: list[str] = field(default_factory=lambda: ["ppo-mlp", "sb3-ppo-lstm"])
    seeds: int = 3
    quick: Sweep | None = None
    """The small sweep of ``--quick``, same schema."""

    @classmethod
    def from_dict(cls, where: str, data: Any) -> Sweep:
        if not isinstance(data, dict) or not isinstance(data.get("envs"), dict) or not data["envs"]:
            raise SweepError(f"{where}: expected a mapping with a non-empty mapping 'envs'")
        check_keys(where, data, cls)
        data = dict(data)
        data["envs"] = {env: EnvSpec.from_dict(f"{where}: envs.{env}", spec) for env, spec in data["envs"].items()}
        if data.get("cells") == "all":
            data["cells"] = None
        if data.get("quick") is not None:
            data["quick"] = cls.from_dict(f"{where}: quick", data["quick"])
        return cls(**data)


def load_sweep(path: Path) -> Sweep:
    import yaml

    if not path.is_file():
        raise SweepError(f"--sweep {str(path)!r}: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SweepError(f"--sweep {str(path)!r}: not valid YAML ({e})") from None
    return Sweep.from_dict(str(path), data)


def _names(values: list[str] | None) -> list[str] | None:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``: lists may be given space- or comma-separated."""
    if values is None:
        return None
    return [name for value in values for name in value.split(",") if name]


def _choose(flag: str, given: list[str] | None, default: list[str], choices: list[str]) -> list[str]:
    if given is None:
        return default
    for name in given:
        if name not in choices:
            raise SweepError(f"{flag} {name!r}: unknown; choices: {', '.join(choices)}")
    return list(dict.fromkeys(given))


def _algo_hyperparams(algo: str, spec: EnvSpec) -> dict[str, Any]:
    """The common hyperparameters the algorithm takes, then its own."""
    accepted = set(inspect.signature(ALGOS[algo].cls.__init__).parameters)
    common = {k: v for k, v in spec.hyperparams.items() if k in accepted}
    return {**common, **spec.algo_hyperparams.get(algo, {})}


def plan(sweep: Sweep, args: argparse.Namespace, out: Path) -> list[RunTask]:
    """The runs of the sweep, restricted by the flags, as tasks; validates every configuration."""
    envs = _choose("--envs", _names(args.envs), list(sweep.envs), list(sweep.envs))
    cells = _choose("--cells", _names(args.cells), sweep.cells or list(CELLS), list(CELLS))
    algos = _choose("--algos", _names(args.algos), [*sweep.algos, *sweep.baselines], list(ALGOS))
    seeds = args.seeds if args.seeds is not None else sweep.seeds
    if args.first_seed >= seeds:
        raise SweepError(f"--first-seed {args.first_seed}: expected less than the number of seeds ({seeds})")
    named_cells = [*(sweep.cells or []), *(c for cs in sweep.algo_cells.values() for c in cs)]
    named_cells += [c for spec in sweep.envs.values() for c in spec.cells or []]
    named_algos = [a for spec in sweep.envs.values() for a in spec.algos or []]
    for key, names, choices in (
        ("cells", named_cells, CELLS),
        ("algos of an env", named_algos, ALGOS),
        ("algo_cells", list(sweep.algo_cells), RECURRENT_ALGOS),
        ("algos", sweep.algos, RECURRENT_ALGOS),
        ("baselines", sweep.baselines, [a for a in ALGOS if a not in RECURRENT_ALGOS]),
    ):
        for name in names:
            if name not in choices:
                raise SweepError(f"sweep file: {key} {name!r}: unknown; choices: {', '.join(choices)}")
    accepted_anywhere = set().union(*(inspect.signature(a.cls.__init__).parameters for a in ALGOS.values()))
    tasks: list[RunTask] = []
    for env in envs:
        spec = sweep.envs[env]
        if env not in ENV_INFO:
            raise SweepError(f"sweep env {env!r}: not one of envs.ENV_INFO ({', '.join(ENV_INFO)})")
        unknown = sorted(set(spec.hyperparams) - accepted_anywhere)
        if unknown:
            raise SweepError(f"envs.{env}.hyperparams {', '.join(unknown)}: an argument of no algorithm")
        for algo in (a for a in algos if spec.algos is None or a in spec.algos):
            n_seeds = min(seeds, spec.max_seeds.get(algo, seeds))
            row_cells = [
                c for c in cells if c in sweep.algo_cells.get(algo, cells) and (spec.cells is None or c in spec.cells)
            ]
            for cell in row_cells if algo in RECURRENT_ALGOS else [None]:
                has_dropout = cell is not None and has_dropout_method(cell)
                for seed in range(args.first_seed, n_seeds):
                    config = TrainConfig(
                        env=env, algo=algo, cell=cell or TrainConfig.cell, dropout=spec.dropout if has_dropout else 0.0,
                        hidden_size=spec.hidden_size, n_envs=spec.n_envs, total_timesteps=spec.total_timesteps,
                        seed=seed, eval_episodes=spec.eval_episodes, hyperparams=_algo_hyperparams(algo, spec),
                        normalize=spec.normalize,
                        checkpoint_freq=spec.total_timesteps, tensorboard=False,
                    )  # fmt: skip
                    try:
                        resolve(config)  # every run checked before the first starts
                    except ConfigError as e:
                        raise SweepError(f"envs.{env} ({algo}): {e}") from None
                    as_dict = {k: v for k, v in dataclasses.asdict(config).items() if k != "threads"}
                    name = f"{algo}-{cell}-s{seed}" if cell else f"{algo}-s{seed}"
                    tasks.append(
                        RunTask(
                            env=env, algo=algo, cell=cell, seed=seed, config=as_dict,
                            threshold=ENV_INFO[env].threshold, work_dir=str((out / "work" / env / name).resolve()),
                            keep_work=args.keep_work,
                        )
                    )  # fmt: skip
    return tasks


#: Rough training time per step of a cell relative to ``lstm``, by class (a subclass takes its nearest listed
#: base's; others 1.0). It only orders the sweep's queue, longest runs first.
CELL_COSTS: dict[type, float] = {SlowLSTM: 1.6, LayerNormLSTM: 1.4, FFM: 0.7, LRU: 0.6, MinGRU: 0.5, MinLSTM: 0.5}


def cell_cost(name: str) -> float:
    """:data:`CELL_COSTS` of the registry cell ``name``."""
    return next((CELL_COSTS[c] for c in cell_class(name).__mro__ if c in CELL_COSTS), 1.0)


def _cost(task: RunTask) -> float:
    """Rough cost of a run: its steps times the algorithm's and the cell's relative costs."""
    cost = 1.0 if task.cell is None else cell_cost(task.cell)
    return task.config["total_timesteps"] * ALGOS[task.algo].relative_cost * cost


def order(tasks: list[RunTask]) -> list[RunTask]:
    """The queue: first seed 0 of every row, then the other seeds environment by environment, the cheapest
    environment first; the longest runs first within each group, so that the workers finish close together.

    A sweep cut short (by time or by an interruption) then has every row, and as many environments as
    possible with all their seeds, rather than many rows without any run.
    """
    env_cost: dict[str, float] = {}
    for task in tasks:
        env_cost[task.env] = env_cost.get(task.env, 0.0) + _cost(task)
    return sorted(tasks, key=lambda t: (t.seed > 0, env_cost[t.env] if t.seed else 0.0, t.env, t.seed, -_cost(t)))
