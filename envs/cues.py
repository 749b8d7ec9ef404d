"""The cue of an episode, drawn or chosen: the ladder tasks (which state ``num_cues``) accept
``reset(options={"cue": k})``, and :class:`BalancedCues` shows every cue equally often in an evaluation."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def cue_option(options: dict[str, Any] | None, num_cues: int, rng: np.random.Generator) -> int:
    """The cue of an episode: ``options["cue"]`` where given (balanced evaluations), else drawn from ``rng``."""
    if options is None or options.get("cue") is None:
        return int(rng.integers(num_cues))
    cue = options["cue"]
    if isinstance(cue, bool) or not isinstance(cue, (int, np.integer)) or not 0 <= cue < num_cues:
        raise ValueError(f"options['cue']={cue!r}: expected an int in [0, {num_cues})")
    return int(cue)


class BalancedCues(gym.Wrapper):
    """Cue 0, 1, ..., ``num_cues - 1``, 0, ... on successive resets (unless the caller chooses one), so that
    ``n * num_cues`` evaluation episodes show each cue ``n`` times: a memoryless policy then scores exactly
    its bound instead of its bound plus the luck of the draw."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        num_cues = getattr(env.unwrapped, "num_cues", None)
        if not isinstance(num_cues, int) or num_cues < 1:
            raise ValueError(f"env {env.unwrapped!r}: has no num_cues; BalancedCues needs a task of the memory ladder")
        self.num_cues = num_cues
        self._episodes = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if options is None or options.get("cue") is None:
            options = {**(options or {}), "cue": self._episodes % self.num_cues}
        self._episodes += 1
        return self.env.reset(seed=seed, options=options)


def has_cues(env: gym.Env) -> bool:
    """Whether ``env`` is a task whose cue can be chosen at reset (a task of the memory ladder)."""
    return isinstance(getattr(env.unwrapped, "num_cues", None), int)
