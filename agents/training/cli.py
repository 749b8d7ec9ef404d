"""Train a recurrent PPO or A2C agent whose memory is a cell from the rl_lstm registry.

    python scripts/train.py --env CartPole-v1 --cell gal

The run folder (--out) holds the model, config.yaml, the progress log (progress.csv, log.txt),
TensorBoard events, checkpoints/ and eval.json. The last line printed sums up the evaluation.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from agents.training.checkpoints import Stop, resolve_resume
from agents.training.config import ConfigError, TrainConfig, check_config, expected_integer, parse_hyperparams
from agents.training.run import train


def integer_arg(minimum: int | None) -> Any:
    """An argparse type: an integer, at least ``minimum`` when one is given."""

    def parse(text: str) -> int:
        expected = expected_integer(minimum)
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected {expected}") from None
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected {expected}")
        return value

    return parse


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number in [0, 1)") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number in [0, 1)")
    return value


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`TrainConfig` field, its help the field's, its default the field's (shown, but
    left out of the parsed namespace, so that the flags given explicitly can be told apart)."""
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        flag = meta.get("flag", "--" + f.name.replace("_", "-"))
        default = getattr(defaults, f.name)
        shown = "" if default in (None, [], {}) else f" (default: {default})"
        kwargs: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS, help=meta["help"] + shown)
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        if f.type == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif f.type == "int":
            kwargs["type"] = integer_arg(meta.get("minimum"))
        elif f.type == "float | None":
            kwargs["type"] = probability
        elif f.type == "list[str]":
            kwargs["action"] = "append"
        elif f.type == "dict[str, Any]":
            kwargs["nargs"] = "+"
        elif "choices" in meta:
            kwargs["choices"] = meta["choices"]()
        parser.add_argument(flag, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(p)
    p.add_argument("--out", type=Path, default=None, help="Run folder (default: runs/ENV/ALGO-CELL-sSEED-TIME).")
    p.add_argument("--resume", default=None, metavar="PATH",
                   help="Continue a run: its folder (last checkpoint) or a model .zip; the timestep count carries on.")
    p.add_argument("--progress-bar", action=argparse.BooleanOptionalAction, default=None,
                   help="Show a progress bar (default: when the output is a terminal).")
    return p  # fmt: skip


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The configuration from the parsed flags (only those given; the rest keep the field defaults)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    if "hyperparams" in given:
        given["hyperparams"] = parse_hyperparams(given["hyperparams"])
    return TrainConfig(**given)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        check_config(config)
        if args.resume is not None:
            resolve_resume(args.resume)
    except ConfigError as e:
        parser.error(str(e))  # exit code 2
    run_dir = args.out
    if run_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = Path("runs") / config.env / f"{config.algo}-{config.cell}-s{config.seed}-{stamp}"
    progress_bar = sys.stdout.isatty() if args.progress_bar is None else args.progress_bar
    try:
        record = train(config, run_dir, resume=args.resume, progress_bar=progress_bar)
    except KeyboardInterrupt:
        return 130
    except Stop as e:
        return 128 + int(e.args[0])
    except ConfigError as e:
        parser.error(str(e))
    print(
        f"eval {config.env} {config.algo}/{config.cell}: mean_return={record['mean_return']:.1f} "
        f"+- {record['std_return']:.1f} over {record['episodes']} episodes after {record['timesteps']} steps "
        f"({record['wall_time_s']:.0f} s) -> {run_dir}"
    )
    return 0
