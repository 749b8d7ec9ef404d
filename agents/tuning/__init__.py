"""Hyperparameter search with Optuna over the memory and the algorithm (``scripts/tune.py``,
``rl-lstm-tune``): the search space files, trials run through the training harness as tasks on the sweep's
backends, the study's summary and the best trial as a hyperparameter entry. Optuna is the ``tune`` extra;
the modules that need it are imported by :func:`agents.tuning.cli.main` once it is found."""

from agents.tuning.space import SearchSpace, Settings, SpaceError, load_space

__all__ = ["SearchSpace", "Settings", "SpaceError", "load_space"]
