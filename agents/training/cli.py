"""Train a recurrent agent (PPO, A2C, DQN or SAC) whose memory is a cell from the rl_lstm registry, or a baseline.

    python scripts/train.py --env CartPole-v1 --cell gal

The run folder (--out) holds the model, config.yaml, the progress log (progress.csv, log.txt),
TensorBoard events, checkpoints/ and eval.json. The last line printed sums up the evaluation.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from agents.training.algos import ALGOS
from agents.training.checkpoints import Stop, resolve_resume, run_folder_of, saved_timesteps
from agents.training.config import (
    MEMORY_KWARGS,
    ConfigError,
    TrainConfig,
    flag,
    parse_hyperparams,
    policy_kwargs_dict,
)
from agents.training.resolution import ResolvedRun, resolve
from agents.training.run import latest_config, train
from rl_lstm.tooling import integer_arg, probability


def _value_type(hint: Any) -> type:
    """The type a field's values take, from its annotation: ``int | None`` is ``int``, ``list[str]`` is ``list``."""
    if isinstance(hint, types.UnionType):
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    return typing.get_origin(hint) or hint


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`TrainConfig` field, its help the field's, its default the field's (shown, but
    left out of the parsed namespace, so that the flags given explicitly can be told apart)."""
    defaults = TrainConfig()
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        kind = _value_type(hints[f.name])
        # The field's own default (a budget of None is resolved per environment), else the factory's value.
        default = f.default if f.default is not dataclasses.MISSING else getattr(defaults, f.name)
        shown = "" if default in (None, [], {}) else f" (default: {default})"
        kwargs: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS, help=meta["help"] + shown)
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif kind is int:
            kwargs["type"] = integer_arg(meta.get("minimum"))
        elif kind is float:
            kwargs["type"] = probability
        elif kind is list:
            kwargs["action"] = "append"
        elif kind is dict:
            kwargs["nargs"] = "+"
        elif "choices" in meta:
            kwargs["choices"] = meta["choices"]()
            if "const" in meta:  # the flag alone means this choice
                kwargs.update(nargs="?", const=meta["const"])
        parser.add_argument(flag(f.name), **kwargs)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p)
    p.add_argument("--out", type=Path, default=None, help="Run folder (default: runs/ENV/ALGO-CELL-sSEED-TIME).")
    p.add_argument("--resume", default=None, metavar="PATH",
                   help="Continue a run: its folder (last checkpoint) or a model .zip; the timestep count carries on.")
    p.add_argument("--progress-bar", action=argparse.BooleanOptionalAction, default=None,
                   help="Show a progress bar (default: when the output is a terminal).")
    return p  # fmt: skip


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`TrainConfig` fields given explicitly on the command line."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    if "hyperparams" in given:
        given["hyperparams"] = parse_hyperparams(given["hyperparams"])
    return given


def load_run_config(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The TrainConfig fields recorded in a run's configuration file ({} where there is none), and the
    algorithm's keyword arguments they give (the entry under the recorded overrides)."""
    data: Any = {}
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    recorded = {k: v for k, v in data.items() if k in fields}
    derived = TrainConfig(**recorded).algo_kwargs()
    written = data.get("algo_kwargs")
    if isinstance(written, dict):
        check_unedited(path, written, derived, recorded.get("hyperparams") or {})
    return recorded, derived


def check_unedited(path: Path, written: dict[str, Any], derived: dict[str, Any], overrides: dict[str, Any]) -> None:
    """algo_kwargs is derived from the fields (the entry under `hyperparams:`): an edit made there alone
    would be silently lost, so it is refused; a key that `hyperparams:` sets differs by design."""

    def comparable(kwargs: dict[str, Any]) -> dict[str, Any]:  # the memory's keys follow cell, dropout, hidden_size
        if not isinstance(kwargs.get("policy_kwargs"), dict):
            return kwargs
        return {**kwargs, "policy_kwargs": {k: v for k, v in kwargs["policy_kwargs"].items() if k not in MEMORY_KWARGS}}

    written, derived = comparable(written), comparable(derived)
    edited = sorted(k for k in {*written, *derived} if written.get(k) != derived.get(k) and k not in overrides)
    if edited:
        diff = ", ".join(f"{k}={written.get(k)!r} (the fields give {derived.get(k)!r})" for k in edited)
        raise ConfigError(
            f"{path}: algo_kwargs {diff}: algo_kwargs records what the hyperparameter entry and `hyperparams:` "
            "give; put a change under `hyperparams:` (or pass --hyperparams)"
        )


# What a resumed run cannot change, each with its flag: the environment, the algorithm and the memory
# (the saved network's shape). The policy_kwargs are checked against the saved model itself.
FIXED_ON_RESUME = ("env", "algo", "cell", "dropout", "hidden_size")


def merge_hyperparams(recorded: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The recorded overrides with the given ones on top, ``policy_kwargs`` merged key by key."""
    merged = {**recorded, **given}
    if "policy_kwargs" in recorded and "policy_kwargs" in given:
        merged["policy_kwargs"] = {**policy_kwargs_dict(recorded["policy_kwargs"]),
                                   **policy_kwargs_dict(given["policy_kwargs"])}  # fmt: skip
    return merged


def config_from_args(args: argparse.Namespace, log: Any = print) -> tuple[TrainConfig, Path | None]:
    """The configuration and the model to resume from. A resumed run starts from its configuration as last
    recorded (``config.yaml``, or the newest ``config.resumed-<steps>.yaml``); the options given explicitly
    change it (``--hyperparams`` on top of the recorded overrides) and the log says which. What the saved
    model fixes (environment, algorithm, memory) cannot change."""
    given = given_options(args)
    if args.resume is None:
        config = TrainConfig(**given)
        if "cell" in given and ALGOS[config.algo].memory != "cell":
            raise ConfigError(f"cell={config.cell!r}: algo {config.algo!r} has no memory cell ({config.memory})")
        return config, None
    model = resolve_resume(args.resume, log)
    steps = saved_timesteps(model)
    source = latest_config(run_folder_of(model), steps)
    recorded, old_kwargs = load_run_config(source)  # old_kwargs: the entry's values under the recorded overrides
    if "hyperparams" in given:
        given["hyperparams"] = merge_hyperparams(recorded.get("hyperparams") or {}, given["hyperparams"])
    for key in FIXED_ON_RESUME:
        if key in given and key in recorded and given[key] != recorded[key]:
            raise ConfigError(
                f"{flag(key)} {given[key]!r}: a resumed run keeps its {key} ({recorded[key]!r}, {source}); "
                "start a new run to change it"
            )
    changes = [f"{k}={v!r} (was {recorded.get(k)!r})" for k, v in given.items() if k != "hyperparams"
               and recorded.get(k) != v]  # fmt: skip
    old_hp, new_hp = recorded.get("hyperparams") or {}, given.get("hyperparams", {})
    changes += [f"{k}={new_hp[k]!r} (was {old_kwargs.get(k, 'the default')!r})" for k in new_hp
                if old_hp.get(k) != new_hp[k]]  # fmt: skip
    origin = source if recorded else "the command line (no config.yaml found)"
    log(f"resuming {model} ({steps} steps) with the configuration of {origin}"
        + (f"; overridden: {', '.join(changes)}" if changes else ""))  # fmt: skip
    return TrainConfig(**{**recorded, **given}), model


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    log = functools.partial(print, flush=True)  # shown as it happens where the output is a file or a pipe
    try:
        config, resume = config_from_args(args, log)
        run = resolve(config)
    except ConfigError as e:
        parser.error(str(e))  # exit code 2
    run_dir = args.out
    if run_dir is not None and run_dir.exists() and not run_dir.is_dir():
        parser.error(f"--out {str(run_dir)!r}: an existing file; expected a run folder (new or to resume)")
    if run_dir is None and resume is not None:
        run_dir = run_folder_of(resume)  # the same run goes on
    if run_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = Path("runs") / config.env / f"{config.algo}-{run.memory}-s{config.seed}-{stamp}"
    progress_bar = sys.stdout.isatty() if args.progress_bar is None else args.progress_bar
    try:
        record = train(run, run_dir, resume=resume, progress_bar=progress_bar, log=log)
    except KeyboardInterrupt:
        return 130
    except Stop as e:
        return 128 + int(e.args[0])
    except ConfigError as e:
        parser.error(str(e))
    print(summary_line(run, record, run_dir))
    return 0


def _figure(x: float) -> str:
    """A return with the digits it needs: 500.0, 17.25, 0.250 (a success-or-not return keeps its 0.25)."""
    return f"{x:.{1 if abs(x) >= 10 else 2 if abs(x) >= 1 else 3}f}"


def summary_line(run: ResolvedRun, record: dict[str, Any], run_dir: Path) -> str:
    """The run's last line: the final evaluation's return and, where the task reports ``is_success``, its
    success rate (the measure of the memory ladder's tasks)."""
    success = record.get("success_rate")
    rate = "" if success is None else f", success_rate={success:.2f}"
    config = run.config
    return (
        f"eval {config.env} {config.algo}/{run.memory}: mean_return={_figure(record['mean_return'])} "
        f"+- {_figure(record['std_return'])}{rate} over {record['episodes']} episodes after {record['timesteps']} "
        f"steps ({record['wall_time_s']:.0f} s) -> {run_dir}"
    )
