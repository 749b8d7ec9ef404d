"""Train a recurrent PPO or A2C agent whose memory is a cell from the rl_lstm registry.

    python scripts/train.py --env CartPole-v1 --cell gal

The run folder (--out) holds the model, config.yaml, the progress log (progress.csv, log.txt),
TensorBoard events, checkpoints/ and eval.json. The last line printed sums up the evaluation.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from agents.training import (  # noqa: E402
    ALGOS,
    ConfigError,
    Stop,
    TrainConfig,
    check_config,
    parse_hyperparams,
    resolve_resume,
    train,
)
from rl_lstm import CELLS, make_cell  # noqa: E402

FIELD_DOCS = {  # the help text of each flag is the field's doc in TrainConfig
    "env": "Gymnasium id to train on; ids of the envs package and of --env-package modules included.",
    "algo": "ppo or a2c: recurrent, memory from the cell registry (ppo-mlp and sb3-ppo-lstm are baselines).",
    "cell": "Memory cell: a name from the rl_lstm registry.",
    "dropout": "Dropout probability of the cell (zoneout probability for zoneout cells), in [0, 1).",
    "hidden_size": "Hidden units of the memory.",
    "n_envs": "Parallel environments.",
    "total_timesteps": "Environment steps to train for, over all environments.",
    "seed": "Random seed (environments, torch, numpy).",
    "eval_episodes": "Episodes of the final deterministic evaluation.",
}


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a positive integer")
    return value


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number in [0, 1)") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number in [0, 1)")
    return value


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default=d.env, help=FIELD_DOCS["env"])
    p.add_argument("--algo", default=d.algo, choices=list(ALGOS), help=FIELD_DOCS["algo"])
    p.add_argument("--cell", default=d.cell, choices=list(CELLS), help=FIELD_DOCS["cell"])
    p.add_argument("--dropout", type=probability, default=None,
                   help=FIELD_DOCS["dropout"] + " Default: 0.1 for the dropout cells, else 0.")  # fmt: skip
    p.add_argument("--hidden-size", type=positive_int, default=d.hidden_size, help=FIELD_DOCS["hidden_size"])
    p.add_argument("--n-envs", type=positive_int, default=d.n_envs, help=FIELD_DOCS["n_envs"])
    p.add_argument("--total-timesteps", type=positive_int, default=d.total_timesteps,
                   help=FIELD_DOCS["total_timesteps"])
    p.add_argument("--seed", type=int, default=d.seed, help=FIELD_DOCS["seed"])
    p.add_argument("--eval-episodes", type=positive_int, default=d.eval_episodes, help=FIELD_DOCS["eval_episodes"])
    p.add_argument("--eval-freq", type=int, default=d.eval_freq,
                   help="Also evaluate every this many steps, keeping best_model.zip (0: only at the end).")
    p.add_argument("--out", type=Path, default=None, help="Run folder (default: runs/ENV/ALGO-CELL-sSEED-TIME).")
    p.add_argument("--resume", default=None, metavar="PATH",
                   help="Continue a run: its folder (last checkpoint) or a model .zip; the timestep count carries on.")
    p.add_argument("--env-package", action="append", default=[], metavar="MODULE",
                   help="Module imported before gym.make, to register its environments (repeatable).")
    p.add_argument("--hyperparams", nargs="+", default=[], metavar="YAML_OR_KEY=VALUE",
                   help="Overrides of the algorithm's arguments: a YAML file or key=value pairs (YAML values).")
    p.add_argument("--normalize", action="store_true",
                   help="Normalise observations (VecNormalize); saved with the model.")
    p.add_argument("--vec-env", choices=["dummy", "subproc"], default=d.vec_env, help="Vectorised environment class.")
    p.add_argument("--device", default=d.device, help="Torch device (cpu, cuda, auto).")
    p.add_argument("--threads", type=positive_int, default=d.threads, help="torch.set_num_threads for the run.")
    p.add_argument("--checkpoint-freq", type=positive_int, default=d.checkpoint_freq,
                   help="Save a checkpoint every this many environment steps.")
    p.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=True,
                   help="Write TensorBoard events to the run folder.")
    p.add_argument("--progress-bar", action=argparse.BooleanOptionalAction, default=None,
                   help="Show a progress bar (default: when the output is a terminal).")
    return p  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    dropout = args.dropout
    if dropout is None:
        dropout = 0.1 if make_cell(args.cell, 1, 1).dropout_method != "pytorch" else 0.0
    try:
        config = TrainConfig(
            env=args.env, algo=args.algo, cell=args.cell, dropout=dropout, hidden_size=args.hidden_size,
            n_envs=args.n_envs, total_timesteps=args.total_timesteps, seed=args.seed,
            eval_episodes=args.eval_episodes, eval_freq=args.eval_freq, hyperparams=parse_hyperparams(args.hyperparams),
            normalize=args.normalize, vec_env=args.vec_env, device=args.device, threads=args.threads,
            checkpoint_freq=args.checkpoint_freq, env_packages=args.env_package, tensorboard=args.tensorboard,
        )  # fmt: skip
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


if __name__ == "__main__":
    sys.exit(main())

