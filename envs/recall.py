"""Recall a cue after a delay of blank observations: the plainest test of how far a memory reaches."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.cues import cue_option
from envs.rendering import FLOOR, MARK, RENDER_MODES, SYMBOL, GridRender, check_render_mode

# Long delays are drawn folded into rows of this many cells.
ROW = 50


class Recall(GridRender, gym.Env[np.ndarray, np.int64]):
    """Name the cue shown at the start after ``delay`` steps that show nothing of it.

    ## Description

    The first observation shows one of ``num_cues`` cues, drawn uniformly at reset (or chosen with
    ``reset(options={"cue": k})`` for evaluations with balanced cues). The next ``delay`` observations
    are blank; the one after them raises the query flag, and the action taken there names the cue. Actions
    before the query have no effect, so nothing is to be explored but the answer: the task measures how far
    the memory carries the cue.

    ## Action Space

    ``Discrete(num_cues)``: the cue named. Only the action at the query step counts.

    ## Observation Space

    ``Box(0, 1, (num_cues + 1,), float32)``: the one-hot cue (first step only, zeros afterwards), then the
    query flag (1 at the last step only).

    ## Rewards

    1 at the query step if the action names the cue, 0 otherwise and on every earlier step. The optimal
    return is 1; a memoryless policy expects ``1 / num_cues`` (the query step's observation is the same for
    every cue). ``info["is_success"]``, at the last step only, says whether the answer was right.

    ## Episode End

    The episode terminates after the query step, i.e. after ``delay + 2`` steps.

    ## Arguments

    - ``delay``: blank steps between the cue and the query, ``>= 1``.
    - ``num_cues``: number of cues, ``>= 2``.
    - ``render_mode``: ``None``, ``"ansi"`` (a line of text) or ``"rgb_array"`` (a picture of the state).
    """

    # The fps only paces gymnasium's renderers.
    metadata = {"render_modes": RENDER_MODES, "render_fps": 4}

    def __init__(self, delay: int = 10, num_cues: int = 4, render_mode: str | None = None):
        if delay < 1:
            raise ValueError(f"delay must be >= 1, got {delay}")
        if num_cues < 2:
            raise ValueError(f"num_cues must be >= 2, got {num_cues}")

        self.delay = int(delay)
        self.num_cues = int(num_cues)
        self.render_mode = check_render_mode(render_mode)

        self.action_space = spaces.Discrete(self.num_cues)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.num_cues + 1,), dtype=np.float32)

        self._cue = 0
        self._t = 0

    @property
    def horizon(self) -> int:
        """Steps of every episode: the cue, the delay and the query."""
        return self.delay + 2

    def _observation(self) -> np.ndarray:
        obs = np.zeros(self.num_cues + 1, dtype=np.float32)
        if self._t == 0:
            obs[self._cue] = 1.0
        obs[self.num_cues] = float(self._t == self.horizon - 1)
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._cue = cue_option(options, self.num_cues, self.np_random)
        self._t = 0
        return self._observation(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be in {self.action_space}, got {action!r}")
        if self._t >= self.horizon:
            raise RuntimeError("step() called after the episode ended; call reset() first")

        self._t += 1
        if self._t < self.horizon:
            return self._observation(), 0.0, False, False, {}
        success = int(action) == self._cue
        return self._observation(), float(success), True, False, {"is_success": success}

    def _grid(self) -> np.ndarray:
        """Row 0: the cue; below it the steps of the episode folded into rows of ``ROW`` cells, those taken
        drawn as floor and the query step marked."""
        steps = np.zeros(-(-self.horizon // ROW) * ROW, dtype=np.int64)
        steps[: self._t] = FLOOR
        steps[self.horizon - 1] = MARK
        head = np.zeros(ROW, dtype=np.int64)
        head[0] = SYMBOL + self._cue
        return np.vstack([head, steps.reshape(-1, ROW)])

    def _text(self) -> str:
        return f"t={self._t}/{self.horizon} cue={self._cue}"
