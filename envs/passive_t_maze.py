"""Passive T-maze with a fixed horizon and a progress signal: the memory test of Ni et al. (2023)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.cues import cue_option
from envs.rendering import AGENT, FLOOR, GOAL, MARK, RENDER_MODES, GridRender, check_render_mode
from envs.t_maze import DOWN, GOAL_NAMES, LEFT, RIGHT, UP

__all__ = ["DOWN", "LEFT", "RIGHT", "UP", "PassiveTMaze"]


class PassiveTMaze(GridRender, gym.Env[np.ndarray, np.int64]):
    """Passive T-maze of Ni et al. 2023 ("When Do Transformers Shine in RL?"), where only memory is tested.

    ## Description

    The agent starts at position 0 of a corridor whose far end, position ``corridor_length`` (L), is the
    junction of the T. The goal arm (up or down) is drawn uniformly at reset and shown only in the first
    observation. Every episode lasts exactly L + 1 steps: L moves to the junction and the turn. A small
    penalty for each step behind that schedule makes walking the corridor a dense, memoryless signal; what
    remains is carrying the cue for L steps, and trying the turn at all: an agent that has learned to walk
    without a slip may have stopped exploring by the time it first reaches the junction (recurrent PPO
    beyond about 20 steps, docs/memory/ppo_defaults.md). ``reset(options=
    {"cue": 0 or 1})`` chooses the goal (0 up, 1 down), for evaluations with balanced cues.

    ## Action Space

    ``Discrete(4)``: 0 right (towards the junction), 1 left, 2 up, 3 down. Moving left at position 0, right
    at the junction, and up or down anywhere but the junction leave the agent in place.

    ## Observation Space

    ``Box(0, 1, (3,), float32)``: ``[cue_up, cue_down, at_junction]``. The cue entries are non-zero only in
    the observation returned by ``reset``; ``at_junction`` is 1 when the agent stands at the junction.

    ## Rewards

    After each of the first L steps, ``-1 / L`` if the agent stands behind the schedule (position < steps
    taken). At the last step, 1 if the agent turns up or down at the junction towards the goal, 0
    otherwise. The optimal return is 1. A memoryless policy can walk the corridor but not know the goal:
    it expects at most 0.5 (its return and its rate of correct turns). ``info["is_success"]``, at the last
    step only, says whether the final turn was right: success is judged on it, not on the return.

    ## Episode End

    The episode terminates after L + 1 steps, whatever the agent did (a fixed horizon).

    ## Arguments

    - ``corridor_length``: number of moves from the start to the junction (L), ``>= 1``.
    - ``render_mode``: ``None``, ``"ansi"`` (a line of text) or ``"rgb_array"`` (a picture of the state).
    """

    # The fps only paces gymnasium's renderers.
    metadata = {"render_modes": RENDER_MODES, "render_fps": 4}
    num_cues = 2

    def __init__(self, corridor_length: int = 10, render_mode: str | None = None):
        if corridor_length < 1:
            raise ValueError(f"corridor_length must be >= 1, got {corridor_length}")

        self.corridor_length = int(corridor_length)
        self.render_mode = check_render_mode(render_mode)

        self.action_space = spaces.Discrete(4)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32)

        self._goal = UP
        self._position = 0
        self._t = 0

    @property
    def horizon(self) -> int:
        """Steps of every episode: the corridor and the turn."""
        return self.corridor_length + 1

    def _observation(self) -> np.ndarray:
        obs = np.zeros(3, dtype=np.float32)
        if self._t == 0:
            obs[0 if self._goal == UP else 1] = 1.0
        obs[2] = float(self._position == self.corridor_length)
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        cue = cue_option(options, self.num_cues, self.np_random)
        self._goal = UP if cue == 0 else DOWN
        self._position = 0
        self._t = 0
        return self._observation(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be in {self.action_space}, got {action!r}")
        if self._t >= self.horizon:
            raise RuntimeError("step() called after the episode ended; call reset() first")

        action = int(action)
        self._t += 1
        at_junction = self._position == self.corridor_length
        if action == RIGHT:
            self._position = min(self._position + 1, self.corridor_length)
        elif action == LEFT:
            self._position = max(self._position - 1, 0)
        if self._t < self.horizon:
            reward = -1.0 / self.corridor_length if self._position < self._t else 0.0
            return self._observation(), reward, False, False, {}
        success = at_junction and action == self._goal
        return self._observation(), float(success), True, False, {"is_success": success}

    def _grid(self) -> np.ndarray:
        """Three rows: the up arm, the corridor (start left, junction right; the scheduled position
        marked), the down arm; the goal arm green, the agent red."""
        grid = np.zeros((3, self.corridor_length + 1), dtype=np.int64)
        grid[1] = FLOOR
        grid[1, min(self._t, self.corridor_length)] = MARK
        grid[0, -1] = grid[2, -1] = FLOOR
        grid[0 if self._goal == UP else 2, -1] = GOAL
        grid[1, self._position] = AGENT
        return grid

    def _text(self) -> str:
        cells = ["."] * (self.corridor_length + 1)
        cells[self._position] = "A"
        return f"t={self._t}/{self.horizon} {''.join(cells)}| goal={GOAL_NAMES[self._goal - UP]}"
