"""Passive T-maze: a cue at the start decides which way to turn at the far end of a corridor."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.rendering import AGENT, FLOOR, GOAL, RENDER_MODES, GridRender, check_render_mode

RIGHT, LEFT, UP, DOWN = 0, 1, 2, 3
GOAL_NAMES = ("up", "down")


class TMaze(GridRender, gym.Env[np.ndarray, np.int64]):
    """Passive T-maze (Bakker, 2001) with a 0/1 reward.

    ## Description

    The agent starts at position 0 of a corridor whose far end, position ``corridor_length``, is the junction
    of the T. The goal arm (up or down) is drawn uniformly at reset and shown only in the first observation.
    At the junction the agent has to turn towards the goal arm, so it must carry the cue along the whole
    corridor. The cue is visible in the start cell only at the first step: leaving the cell and coming back
    does not show it again.

    ## Action Space

    ``Discrete(4)``: 0 right (towards the junction), 1 left, 2 up, 3 down. Moving left at position 0, right
    at the junction, and up or down inside the corridor bump into a wall and leave the agent in place.

    ## Observation Space

    ``Box(0, 1, (3,), float32)``: ``[cue_up, cue_down, at_junction]``. The cue entries are non-zero only in
    the observation returned by ``reset``; ``at_junction`` is 1 when the agent stands at the junction.

    ## Rewards

    Turning up or down at the junction gives 1 if the turn matches the cue and 0 otherwise; every other
    step gives 0. The optimal return is 1; no memoryless policy can expect more than 0.5, because the
    observations after the first one do not depend on the cue.

    ## Episode End

    The episode terminates when the agent turns up or down at the junction. Truncation (wandering agents)
    is left to the ``max_episode_steps`` of the registration.

    ## Arguments

    - ``corridor_length``: number of moves from the start to the junction, ``>= 1``.
    - ``render_mode``: ``None``, ``"ansi"`` (a line of text) or ``"rgb_array"`` (a picture of the state).
    """

    # The fps only paces gymnasium's renderers.
    metadata = {"render_modes": RENDER_MODES, "render_fps": 4}

    def __init__(self, corridor_length: int = 10, render_mode: str | None = None):
        if corridor_length < 1:
            raise ValueError(f"corridor_length must be >= 1, got {corridor_length}")

        self.corridor_length = int(corridor_length)
        self.render_mode = check_render_mode(render_mode)

        self.action_space = spaces.Discrete(4)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32)

        self._goal = UP
        self._position = 0
        self._show_cue = False
        self._done = False

    def _observation(self) -> np.ndarray:
        obs = np.zeros(3, dtype=np.float32)
        if self._show_cue:
            obs[0 if self._goal == UP else 1] = 1.0
        obs[2] = float(self._position == self.corridor_length)
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._goal = UP if self.np_random.integers(2) == 0 else DOWN
        self._position = 0
        self._show_cue = True
        self._done = False
        return self._observation(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be in {self.action_space}, got {action!r}")
        if self._done:
            raise RuntimeError("step() called after the episode ended; call reset() first")

        action = int(action)
        self._show_cue = False
        reward = 0.0
        if self._position == self.corridor_length and action in (UP, DOWN):
            reward = float(action == self._goal)
            self._done = True
        elif action == RIGHT:
            self._position = min(self._position + 1, self.corridor_length)
        elif action == LEFT:
            self._position = max(self._position - 1, 0)
        return self._observation(), reward, self._done, False, {}

    def _grid(self) -> np.ndarray:
        """Three rows: the up arm, the corridor (start left, junction right), the down arm; the goal arm
        green, the agent red."""
        grid = np.zeros((3, self.corridor_length + 1), dtype=np.int64)
        grid[1] = FLOOR
        grid[0, -1] = grid[2, -1] = FLOOR
        grid[0 if self._goal == UP else 2, -1] = GOAL
        grid[1, self._position] = AGENT
        return grid

    def _text(self) -> str:
        cells = ["."] * (self.corridor_length + 1)
        cells[self._position] = "A"
        return f"{''.join(cells)}| goal={GOAL_NAMES[self._goal - UP]}"
