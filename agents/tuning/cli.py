"""Search the hyperparameters of a recurrent agent and its memory with Optuna.

    python scripts/tune.py --algo ppo --env CartPoleNoVel-v1 --cell ln --cell ln-gal --trials 20

Each trial draws a cell among the --cell names and the settings of the search space (the memory's and
the algorithm's; agents/tuning/spaces/ALGO.yml, or --space FILE), trains them through the training
harness (every training flag means what it means to scripts/train.py) for --n-timesteps steps on each
of --seeds-per-trial seeds, and reports an evaluation every --eval-freq steps to the pruner. Trials are
tasks on local worker processes or on Ray (--backend), --n-jobs at a time. The study lives in --storage
(SQLite in the output folder by default): running the command again resumes it, and several processes
or machines may share it. The output folder gets the study's summary (summary.json, summary.md,
study.png) and the best trial as a hyperparameter entry (best.yml; --write merges it into the
algorithm's hyperparameter file) and as a file for scripts/train.py --hyperparams.
"""

from __future__ import annotations

import argparse
import inspect
import shlex
import sys
from pathlib import Path
from typing import Any

from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from agents.training.algos import ALGOS, RECURRENT_ALGOS
from agents.training.cli import add_config_arguments, given_options
from agents.training.config import ConfigError, TrainConfig, policy_kwargs_dict
from agents.training.resolution import resolve
from agents.training.zoo import HYPERPARAMS_DIR
from rl_lstm import CELLS
from rl_lstm.tooling import NON_NEGATIVE, POSITIVE

EXTRA = 'pip install -e ".[tune]"'
DEFAULT_TIMESTEPS = 50_000


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tune.py", description=__doc__, conflict_handler="resolve",
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    add_config_arguments(p)  # the training flags; those below replace the ones a study means otherwise
    p.add_argument("--algo", choices=list(RECURRENT_ALGOS), default=argparse.SUPPRESS,
                   help="Algorithm (its search space: agents/tuning/spaces/ALGO.yml). (default: ppo)")
    p.add_argument("--cell", dest="cell", action="extend", nargs="+", choices=list(CELLS), default=argparse.SUPPRESS,
                   metavar="CELL", help="Cells a trial chooses among (repeatable; default: lstm).")
    p.add_argument("--n-timesteps", "--total-timesteps", dest="total_timesteps", type=POSITIVE,
                   default=argparse.SUPPRESS,
                   help=f"Budget of a trial on each seed, in environment steps (default: {DEFAULT_TIMESTEPS}).")
    p.add_argument("--eval-freq", dest="eval_every", type=POSITIVE, default=None, metavar="K",
                   help="Evaluate every K steps and report to the pruner (default: a fifth of the budget).")
    p.add_argument("--trials", type=NON_NEGATIVE, default=10,
                   help="New trials to run (0: only write the summary of the study as it is). (default: 10)")
    p.add_argument("--n-jobs", type=POSITIVE, default=1, help="Trials run at once (worker processes, or Ray tasks "
                   "in flight). (default: 1)")
    p.add_argument("--seeds-per-trial", type=POSITIVE, default=1,
                   help="Seeds each trial trains on, from --seed on; its value is the mean final return. (default: 1)")
    p.add_argument("--sampler", choices=["tpe", "random"], default="tpe", help="Optuna sampler. (default: tpe)")
    p.add_argument("--startup-trials", type=NON_NEGATIVE, default=5,
                   help="Random trials before TPE models the space, and trials before the median pruner prunes. "
                   "(default: 5)")
    p.add_argument("--sampler-seed", type=NON_NEGATIVE, default=None, help="Seed of the sampler.")
    p.add_argument("--pruner", choices=["median", "halving", "none"], default="median",
                   help="Optuna pruner: median (MedianPruner, warm-up a third of the budget), halving "
                   "(SuccessiveHalvingPruner) or none. (default: median)")
    p.add_argument("--study-name", default=None, help="Name of the study in the storage (default: ALGO-ENV).")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage URL, e.g. sqlite:///study.db or postgresql://... (default: sqlite:///OUT/study.db).")
    p.add_argument("--out", type=Path, default=None,
                   help="Folder of the summary, the best entry and the trials' runs (default: tuning/STUDY_NAME).")
    p.add_argument("--space", type=Path, default=None, metavar="FILE",
                   help="Search space YAML (default: agents/tuning/spaces/ALGO.yml).")
    p.add_argument("--write", nargs="?", const="", default=None, metavar="FILE",
                   help="Also merge the best entry into the algorithm's hyperparameter file "
                   "(agents/training/hyperparams/ALGO.yml), or into FILE.")
    p.add_argument("--verify-seeds", type=NON_NEGATIVE, default=0, metavar="N",
                   help="Then train the best trial's settings on N seeds (from --seed); results in the summary.")
    p.add_argument("--verify-timesteps", type=POSITIVE, default=None, metavar="STEPS",
                   help="Budget of each verification run (default: --n-timesteps).")
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="Where trials run: local worker processes or Ray tasks. (default: local)")
    p.add_argument("--address", default=None, help="Ray cluster address (auto, HOST:PORT, ray://...); default: a "
                   "local Ray instance of --n-jobs CPUs.")
    p.add_argument("--keep-runs", action="store_true", help="Keep each trial's run folders (under OUT/trials).")
    return p  # fmt: skip


def _import_optuna(parser: argparse.ArgumentParser, backend: str) -> None:
    try:
        import optuna  # noqa: F401
    except ImportError:
        parser.error(f"optuna is not installed; the search needs the tune extra: {EXTRA}")
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            parser.error('--backend ray: ray is not installed; install the ray extra: pip install -e ".[ray]"')


def _algo_default(algo: str, name: str) -> Any:
    parameter = inspect.signature(ALGOS[algo].cls.__init__).parameters.get(name)
    return None if parameter is None else parameter.default


def check_budget(base: dict[str, Any], space: Any, eval_every: int) -> None:
    """The budget holds at least one rollout of the largest ``n_steps`` a trial may draw (on-policy), or
    more steps than the largest ``learning_starts`` (off-policy: else a trial would never learn)."""
    config = TrainConfig(**base)

    def largest(name: str) -> Any:
        for value in (space.largest(name), config.algo_kwargs().get(name)):
            if value is not None:
                return value
        return _algo_default(config.algo, name)

    if issubclass(ALGOS[config.algo].cls, OnPolicyAlgorithm):
        n_steps = largest("n_steps")
        rollout = int(n_steps) * config.n_envs
        if config.total_timesteps < rollout:
            raise ConfigError(
                f"--n-timesteps {config.total_timesteps}: smaller than one rollout (n_steps up to {n_steps} x "
                f"{config.n_envs} environments = {rollout} steps); expected at least {rollout}"
            )
    else:
        starts = int(largest("learning_starts"))
        if config.total_timesteps <= starts:
            raise ConfigError(
                f"--n-timesteps {config.total_timesteps}: not more than learning_starts (up to {starts}): a trial "
                f"would never take a gradient step; expected more than {starts} (or --hyperparams learning_starts=N)"
            )
    if eval_every > config.total_timesteps:
        raise ConfigError(f"--eval-freq {eval_every}: more than the budget of {config.total_timesteps} steps; "
                          "no evaluation would reach the pruner")  # fmt: skip


def check_overlap(base: dict[str, Any], space: Any) -> None:
    """A setting is either fixed by --hyperparams or searched, not both."""
    fixed = dict(base.get("hyperparams", {}))
    fixed_policy = policy_kwargs_dict(fixed.pop("policy_kwargs", None))
    for p in space.params:
        if p.name in fixed or p.name in fixed_policy:
            raise ConfigError(f"hyperparams {p.name}: both fixed by --hyperparams and searched in {space.path}; "
                              "expected one of the two")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _import_optuna(parser, args.backend)

    from agents.tuning.search import Search, run

    try:
        base = given_options(args)
        cells = list(dict.fromkeys(base.pop("cell", [TrainConfig().cell])))
        base.setdefault("total_timesteps", DEFAULT_TIMESTEPS)
        base.pop("eval_freq", None)
        if ALGOS[base.get("algo", "ppo")].memory != "cell":
            raise ConfigError(f"algo={base['algo']!r}: expected one of {', '.join(RECURRENT_ALGOS)}")
        for cell in cells:
            resolve(TrainConfig(**{**base, "cell": cell}))
        search = Search.from_args(args, base, cells)
        check_overlap(base, search.space)
        check_budget(base, search.space, search.eval_every)
    except ValueError as e:  # ConfigError, SpaceError, StorageError
        parser.error(str(e))
    write_to = None
    if args.write is not None:
        write_to = Path(args.write) if args.write else HYPERPARAMS_DIR / f"{search.algo}.yml"
    command = "python scripts/tune.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    try:
        return run(search, command, write_to=write_to)
    except ValueError as e:
        parser.error(str(e))
