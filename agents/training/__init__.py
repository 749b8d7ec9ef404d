"""The training harness: the algorithm table, the run configuration, its one resolution (:func:`resolve`),
environments, checkpoints, evaluation and :func:`train`, with the command line generated from
:class:`TrainConfig` (``scripts/train.py``, ``rl-lstm-train``)."""

from agents.training.algos import ALGOS, RECURRENT_ALGOS, AlgoSpec
from agents.training.checkpoints import Stop, resolve_resume
from agents.training.config import ConfigError, TrainConfig, import_env_packages, parse_hyperparams
from agents.training.evaluation import evaluate
from agents.training.resolution import ResolvedRun, resolve
from agents.training.run import train

__all__ = [
    "ALGOS",
    "RECURRENT_ALGOS",
    "AlgoSpec",
    "ConfigError",
    "Stop",
    "TrainConfig",
    "evaluate",
    "import_env_packages",
    "parse_hyperparams",
    "ResolvedRun",
    "resolve",
    "resolve_resume",
    "train",
]
