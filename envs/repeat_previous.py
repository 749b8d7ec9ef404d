"""Repeat the symbol shown ``k`` steps earlier."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.rendering import MARK, RENDER_MODES, SYMBOL, GridRender, check_render_mode

# Every level scores the same number of answers, so returns are comparable across ``k``.
DEFAULT_SCORED_STEPS = 16


class RepeatPrevious(GridRender, gym.Env[np.ndarray, np.int64]):
    """Answer with the symbol that was shown ``k`` steps ago.

    ## Description

    At every step ``t`` a symbol drawn uniformly and independently from ``num_symbols`` symbols is shown.
    From step ``t = k`` on, the action taken at step ``t`` is scored against the symbol shown at step
    ``t - k``. Since the symbols are independent, the current observation carries no information about the
    answer: the task can only be solved by remembering the last ``k`` symbols.

    ## Action Space

    ``Discrete(num_symbols)``: the symbol given as the answer.

    ## Observation Space

    ``Box(0, 1, (num_symbols + 1,), float32)``: the one-hot current symbol, followed by a flag that is 1 when
    the action taken after this observation is scored (``t >= k``). The observation returned with the end of
    the episode is all zeros.

    ## Rewards

    ``1 / (episode_length - k)`` for every scored step whose action equals the symbol shown ``k`` steps
    earlier, 0 otherwise. An agent that remembers gets 1 per episode; any memoryless policy gets
    ``1 / num_symbols`` in expectation.

    ## Episode End

    The episode terminates after ``episode_length`` steps.

    ## Arguments

    - ``k``: how many steps back the answer lies, ``>= 1``.
    - ``num_symbols``: alphabet size, ``>= 2``.
    - ``episode_length``: steps per episode, ``> k``; defaults to ``k + 16`` (16 scored answers).
    - ``render_mode``: ``None``, ``"ansi"`` (a line of text) or ``"rgb_array"`` (a picture of the state).
    """

    # The fps only paces gymnasium's renderers.
    metadata = {"render_modes": RENDER_MODES, "render_fps": 4}

    def __init__(
        self,
        k: int = 4,
        num_symbols: int = 4,
        episode_length: int | None = None,
        render_mode: str | None = None,
    ):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if num_symbols < 2:
            raise ValueError(f"num_symbols must be >= 2, got {num_symbols}")
        if episode_length is None:
            episode_length = k + DEFAULT_SCORED_STEPS
        if episode_length <= k:
            raise ValueError(f"episode_length must be > k = {k}, got {episode_length}")

        self.k = int(k)
        self.num_symbols = int(num_symbols)
        self.episode_length = int(episode_length)
        self.render_mode = check_render_mode(render_mode)

        self.action_space = spaces.Discrete(self.num_symbols)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.num_symbols + 1,), dtype=np.float32)

        self._symbols = np.zeros(self.episode_length, dtype=np.int64)
        self._t = 0
        self._last_action: int | None = None
        self._last_reward = 0.0

    def _observation(self) -> np.ndarray:
        obs = np.zeros(self.num_symbols + 1, dtype=np.float32)
        if self._t < self.episode_length:
            obs[self._symbols[self._t]] = 1.0
            obs[self.num_symbols] = float(self._t >= self.k)
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._symbols = self.np_random.integers(self.num_symbols, size=self.episode_length)
        self._t = 0
        self._last_action = None
        self._last_reward = 0.0
        return self._observation(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be in {self.action_space}, got {action!r}")
        if self._t >= self.episode_length:
            raise RuntimeError("step() called after the episode ended; call reset() first")

        reward = 0.0
        if self._t >= self.k and int(action) == self._symbols[self._t - self.k]:
            reward = 1.0 / (self.episode_length - self.k)
        self._last_action = int(action)
        self._last_reward = reward
        self._t += 1
        terminated = self._t >= self.episode_length
        return self._observation(), reward, terminated, False, {}

    def _grid(self) -> np.ndarray:
        """Row 0: the symbols shown so far, one colour each; row 1: the current step marked."""
        grid = np.zeros((2, self.episode_length), dtype=np.int64)
        grid[0, : self._t] = SYMBOL + self._symbols[: self._t]
        grid[1, min(self._t, self.episode_length - 1)] = MARK
        return grid

    def _text(self) -> str:
        shown = str(self._symbols[self._t]) if self._t < self.episode_length else "-"
        answer = "-" if self._last_action is None else str(self._last_action)
        return f"t={self._t} shown={shown} last_answer={answer} last_reward={self._last_reward:.4f}"
