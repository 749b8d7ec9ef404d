"""Recall a context bit after a delay, after bsuite's ``memory_len``."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.rendering import FLOOR, MARK, RENDER_MODES, SYMBOL, GridRender, check_render_mode


class MemoryLength(GridRender, gym.Env[np.ndarray, np.int64]):
    """Remember ``num_bits`` random bits for ``memory_length`` steps, then report the queried one.

    ## Description

    Follows bsuite's ``memory_len``/``memory_size`` experiments. The first observation shows ``num_bits``
    random context bits; the last one, ``memory_length`` steps later, shows which of them is queried. Only
    the action taken at that query step matters.

    ## Action Space

    ``Discrete(2)``: the value of the queried bit. Actions before the query step have no effect.

    ## Observation Space

    ``Box(-1, 1, (1 + 2 * num_bits,), float32)``: ``[time_remaining, context..., query...]``.

    - ``time_remaining`` is ``(memory_length - t) / memory_length``: 1 at the first step, 0 at the query.
    - ``context`` holds the bits as -1 (bit 0) and +1 (bit 1) at the first step only, 0 afterwards, so that
      "no information" is distinguishable from a bit.
    - ``query`` is the one-hot index of the queried bit at the query step only, 0 before.

    The observation returned with the end of the episode is all zeros.

    ## Rewards

    At the query step +1 if the action equals the queried bit and -1 otherwise; 0 on every earlier step. The
    optimal return is 1; a memoryless policy expects 0, since the bits are uniform and independent of
    everything shown at the query step.

    ## Episode End

    The episode terminates after the query step, i.e. after ``memory_length + 1`` steps.

    ## Arguments

    - ``memory_length``: steps between the context and the query, ``>= 1``.
    - ``num_bits``: number of context bits, ``>= 1``.
    - ``render_mode``: ``None``, ``"ansi"`` (a line of text) or ``"rgb_array"`` (a picture of the state).
    """

    # The fps only paces gymnasium's renderers.
    metadata = {"render_modes": RENDER_MODES, "render_fps": 4}

    def __init__(self, memory_length: int = 10, num_bits: int = 1, render_mode: str | None = None):
        if memory_length < 1:
            raise ValueError(f"memory_length must be >= 1, got {memory_length}")
        if num_bits < 1:
            raise ValueError(f"num_bits must be >= 1, got {num_bits}")

        self.memory_length = int(memory_length)
        self.num_bits = int(num_bits)
        self.render_mode = check_render_mode(render_mode)

        self.action_space = spaces.Discrete(2)
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(1 + 2 * self.num_bits,), dtype=np.float32)

        self._context = np.zeros(self.num_bits, dtype=np.int64)
        self._query = 0
        self._t = 0

    def _observation(self) -> np.ndarray:
        obs = np.zeros(1 + 2 * self.num_bits, dtype=np.float32)
        if self._t > self.memory_length:
            return obs
        obs[0] = (self.memory_length - self._t) / self.memory_length
        if self._t == 0:
            obs[1 : 1 + self.num_bits] = 2 * self._context - 1
        if self._t == self.memory_length:
            obs[1 + self.num_bits + self._query] = 1.0
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._context = self.np_random.integers(2, size=self.num_bits)
        self._query = int(self.np_random.integers(self.num_bits))
        self._t = 0
        return self._observation(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be in {self.action_space}, got {action!r}")
        if self._t > self.memory_length:
            raise RuntimeError("step() called after the episode ended; call reset() first")

        reward = 0.0
        terminated = self._t == self.memory_length
        if terminated:
            reward = 1.0 if int(action) == self._context[self._query] else -1.0
        self._t += 1
        return self._observation(), reward, terminated, False, {}

    def _grid(self) -> np.ndarray:
        """Row 0: the context bits; row 1: the queried bit marked; row 2: the steps taken of the episode."""
        width = max(self.num_bits, self.memory_length + 1)
        grid = np.zeros((3, width), dtype=np.int64)
        grid[0, : self.num_bits] = SYMBOL + self._context
        grid[1, self._query] = MARK
        grid[2, : min(self._t, width)] = FLOOR
        return grid

    def _text(self) -> str:
        bits = "".join(str(b) for b in self._context)
        return f"t={self._t}/{self.memory_length} context={bits} query={self._query}"
