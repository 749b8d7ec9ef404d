"""Repeat the first symbol of the episode at every step, as POPGym's RepeatFirst."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.cues import cue_option
from envs.recall import ROW
from envs.rendering import MARK, RENDER_MODES, SYMBOL, GridRender, check_render_mode


class RepeatFirst(GridRender, gym.Env[np.ndarray, np.int64]):
    """Answer with the symbol shown at the first step, while new symbols keep coming (POPGym, Morad et al. 2023).

    ## Description

    Every step shows a symbol drawn uniformly from ``num_symbols`` symbols; the first one, flagged, is the
    one to remember (``reset(options={"cue": k})`` chooses it, for evaluations with balanced cues). From
    the second step on, each action is scored against that first symbol, for ``length`` answers. Unlike a
    recall after blank steps, the memory must keep the first symbol while distractors arrive, and every
    answer is a reward: the signal is dense, at every distance from 1 to ``length``.

    ## Action Space

    ``Discrete(num_symbols)``: the symbol given as the answer (the first step's action is not scored).

    ## Observation Space

    ``Box(0, 1, (num_symbols + 1,), float32)``: the one-hot current symbol, then a flag that is 1 at the
    first step only.

    ## Rewards

    ``1 / length`` for each scored answer that names the first symbol. The optimal return is 1; a memoryless
    policy expects ``1 / num_symbols``, because the symbols after the first are independent of it.
    ``info["is_success"]``, at the last step only, says whether the last answer (``length`` steps after the
    first symbol) was right: success is judged on it.

    ## Episode End

    The episode terminates after ``length + 1`` steps.

    ## Arguments

    - ``length``: scored answers, the last one ``length`` steps after the first symbol, ``>= 1``.
    - ``num_symbols``: alphabet size, ``>= 2``.
    - ``render_mode``: ``None``, ``"ansi"`` (a line of text) or ``"rgb_array"`` (a picture of the state).
    """

    # The fps only paces gymnasium's renderers.
    metadata = {"render_modes": RENDER_MODES, "render_fps": 4}

    def __init__(self, length: int = 10, num_symbols: int = 4, render_mode: str | None = None):
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        if num_symbols < 2:
            raise ValueError(f"num_symbols must be >= 2, got {num_symbols}")

        self.length = int(length)
        self.num_symbols = int(num_symbols)
        self.render_mode = check_render_mode(render_mode)

        self.action_space = spaces.Discrete(self.num_symbols)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.num_symbols + 1,), dtype=np.float32)

        self._symbols = np.zeros(self.length + 1, dtype=np.int64)
        self._t = 0

    @property
    def num_cues(self) -> int:
        """The first symbol is the cue (``reset(options={"cue": k})``)."""
        return self.num_symbols

    @property
    def horizon(self) -> int:
        """Steps of every episode: the first symbol and the answers."""
        return self.length + 1

    def _observation(self) -> np.ndarray:
        obs = np.zeros(self.num_symbols + 1, dtype=np.float32)
        if self._t < self.horizon:
            obs[self._symbols[self._t]] = 1.0
        obs[self.num_symbols] = float(self._t == 0)
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._symbols = self.np_random.integers(self.num_symbols, size=self.horizon)
        self._symbols[0] = cue_option(options, self.num_symbols, self.np_random)
        self._t = 0
        return self._observation(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be in {self.action_space}, got {action!r}")
        if self._t >= self.horizon:
            raise RuntimeError("step() called after the episode ended; call reset() first")

        right = int(action) == self._symbols[0]
        reward = float(right) / self.length if self._t > 0 else 0.0
        self._t += 1
        if self._t < self.horizon:
            return self._observation(), reward, False, False, {}
        return self._observation(), reward, True, False, {"is_success": bool(right)}

    def _grid(self) -> np.ndarray:
        """The symbols shown so far, one colour each, folded into rows of ``ROW`` cells; the current step
        marked."""
        cells = np.zeros(-(-self.horizon // ROW) * ROW, dtype=np.int64)
        cells[: self._t] = SYMBOL + self._symbols[: self._t]
        cells[min(self._t, self.horizon - 1)] = MARK
        return cells.reshape(-1, ROW)

    def _text(self) -> str:
        shown = str(self._symbols[self._t]) if self._t < self.horizon else "-"
        return f"t={self._t}/{self.horizon} first={self._symbols[0]} shown={shown}"
