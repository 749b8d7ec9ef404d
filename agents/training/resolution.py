"""A run's options resolved once: :func:`resolve` checks a :class:`~agents.training.config.TrainConfig`
and returns a frozen :class:`ResolvedRun` (the algorithm, the hyperparameter entry, the algorithm's and
the policy's keyword arguments, the normalisation) that the command line, the run, the sweep, the ladder
and the tuner take, so that nothing is looked up or checked twice."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from agents.training.algos import ALGOS, AlgoSpec
from agents.training.config import TrainConfig, check_fields, check_hyperparams, resolve_kwargs


@dataclass(frozen=True)
class ResolvedRun:
    """A checked :class:`~agents.training.config.TrainConfig` and what follows from it."""

    config: TrainConfig
    spec: AlgoSpec
    """The algorithm's row of :data:`agents.training.algos.ALGOS`."""
    entry: str
    """The name of the hyperparameter entry used (the environment's id, or ``default``)."""
    recorded_kwargs: dict[str, Any]
    """The algorithm's keyword arguments as ``config.yaml`` records them (YAML spellings: ``lin_0.001``,
    ``relu``); read them through :attr:`algo_kwargs`."""
    normalization: str
    """``none``, ``obs`` or ``obs-reward``: the given one, else the entry's."""
    memory: str
    """What the run's memory is, in words: the cell, sb3-contrib's nn.LSTM, frames, or none."""

    @property
    def algo_kwargs(self) -> dict[str, Any]:
        """A copy of :attr:`recorded_kwargs` (``policy_kwargs`` included), the caller's to change."""
        return copy.deepcopy(self.recorded_kwargs)

    def model_kwargs(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The algorithm's keyword arguments and its policy's, schedules and class names turned into new
        objects (each model gets its own)."""
        kwargs = resolve_kwargs(self.algo_kwargs)
        return kwargs, kwargs.pop("policy_kwargs")


def resolve(config: TrainConfig | ResolvedRun) -> ResolvedRun:
    """Check ``config`` (a ConfigError names the first bad value; nothing is built or written) and resolve
    it; a :class:`ResolvedRun` is returned as it is."""
    if isinstance(config, ResolvedRun):
        return config
    check_fields(config)
    kwargs = config.algo_kwargs()
    check_hyperparams(config, kwargs)
    return ResolvedRun(
        config=config, spec=ALGOS[config.algo], entry=config.hyperparams_entry()[0], recorded_kwargs=kwargs,
        normalization=config.normalization, memory=config.memory,
    )  # fmt: skip
