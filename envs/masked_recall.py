"""Recall a cue through a delay in which most actions are forbidden, as ``action_masks()`` says."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.rendering import MARK, RENDER_MODES, SYMBOL, GridRender, check_render_mode


class MaskedRecall(GridRender, gym.Env[np.ndarray, np.int64]):
    """Name the cue seen at the first step, after a delay whose allowed actions change at every step.

    ## Description

    The first observation shows a cue, one of ``num_cues`` symbols drawn uniformly at reset. For the
    first ``delay`` steps only ``allowed`` of the ``num_cues`` actions are allowed, a fresh random set
    at every step, told by :meth:`action_masks` (as sb3-contrib's ``MaskablePPO`` reads it) and not by
    the observation. At the step after the delay, flagged in the observation, every action is
    allowed and the action names the cue. An agent must both respect the masks and remember the cue:
    without the masks it cannot know which actions are allowed, and without memory it cannot name
    the cue.

    ## Action Space

    ``Discrete(num_cues)``: during the delay, a move (any allowed one); at the last step, the cue named.

    ## Observation Space

    ``Box(0, 1, (num_cues + 1,), float32)``: the one-hot cue in the first observation (zeros after),
    followed by a flag that is 1 in the observation of the answer step.

    ## Rewards

    1 for naming the cue at the last step, 0 for naming another; -1 for a forbidden action, which ends
    the episode. With the masks, an agent that remembers gets 1 and a memoryless one ``1 / num_cues``;
    without the masks, even an agent that remembers survives the delay with probability
    ``(allowed / num_cues) ** delay`` only.

    ## Episode End

    The episode terminates after ``delay + 1`` steps, or at a forbidden action.

    ## Arguments

    - ``num_cues``: number of cues and of actions, ``>= 2``.
    - ``delay``: masked steps between the cue and the answer, ``>= 1``.
    - ``allowed``: actions allowed at each delay step, ``1 <= allowed <= num_cues``.
    - ``render_mode``: ``None``, ``"ansi"`` (a line of text) or ``"rgb_array"`` (a picture of the state).
    """

    # The fps only paces gymnasium's renderers.
    metadata = {"render_modes": RENDER_MODES, "render_fps": 4}

    def __init__(self, num_cues: int = 4, delay: int = 4, allowed: int = 2, render_mode: str | None = None) -> None:
        if num_cues < 2:
            raise ValueError(f"num_cues must be >= 2, got {num_cues}")
        if delay < 1:
            raise ValueError(f"delay must be >= 1, got {delay}")
        if not 1 <= allowed <= num_cues:
            raise ValueError(f"allowed must be in [1, num_cues={num_cues}], got {allowed}")
        self.num_cues, self.delay, self.allowed = int(num_cues), int(delay), int(allowed)
        self.render_mode = check_render_mode(render_mode)
        self.action_space = spaces.Discrete(self.num_cues)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.num_cues + 1,), dtype=np.float32)
        self._cue = 0
        self._t = 0
        self._mask = np.ones(self.num_cues, dtype=bool)
        self._done = False

    def _draw_mask(self) -> np.ndarray:
        if self._t >= self.delay:
            return np.ones(self.num_cues, dtype=bool)
        mask = np.zeros(self.num_cues, dtype=bool)
        mask[self.np_random.choice(self.num_cues, self.allowed, replace=False)] = True
        return mask

    def _observation(self) -> np.ndarray:
        obs = np.zeros(self.num_cues + 1, dtype=np.float32)
        if self._t == 0:
            obs[self._cue] = 1.0
        obs[-1] = float(self._t == self.delay)
        return obs

    def action_masks(self) -> np.ndarray:
        """The actions allowed at this step: a bool array of ``num_cues`` entries."""
        return self._mask.copy()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._cue = int(self.np_random.integers(self.num_cues))
        self._t = 0
        self._done = False
        self._mask = self._draw_mask()
        return self._observation(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be in {self.action_space}, got {action!r}")
        if self._done:
            raise RuntimeError("step() called after the episode ended; call reset() first")
        action = int(action)
        if not self._mask[action]:
            reward, self._done = -1.0, True
        elif self._t == self.delay:
            reward, self._done = float(action == self._cue), True
        else:
            reward = 0.0
        self._t += 1
        self._mask = self._draw_mask()
        return self._observation(), reward, self._done, False, {}

    def _grid(self) -> np.ndarray:
        """Row 0: the cue while it is shown; row 1: the actions allowed now."""
        grid = np.zeros((2, self.num_cues), dtype=np.int64)
        if self._t == 0:
            grid[0, self._cue] = SYMBOL + self._cue
        grid[1, self._mask] = MARK
        return grid

    def _text(self) -> str:
        allowed = "".join("x" if m else "." for m in self._mask)
        return f"t={self._t} cue={self._cue if self._t == 0 else '-'} allowed={allowed}"
