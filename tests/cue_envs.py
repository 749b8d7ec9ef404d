"""Tiny memory tasks for the agents' tests: a cue shown on the first step must be named after a
delay. Image and Dict observations, so that the CNN and MultiInput policies meet memory."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class CueEnv(gym.Env):
    """Name the cue seen at the start.

    Description:
        At the first step the observation shows a cue, 0 or 1; for the next ``delay`` steps it
        shows nothing of it. At the last step the action names the cue.
    Action Space:
        ``Discrete(2)``: the cue named (only the last step's action counts).
    Observation Space:
        ``kind="image"``: ``Box(0, 255, (size, size, 1), uint8)``, channel-last (SB3 transposes
        it): the cue lights the left (0) or right (1) half at the first step, then all black.
        ``kind="dict"``: ``Dict(cue=Box(0, 1, (2,)), clock=Discrete(delay + 1))``: the cue one-hot
        at the first step, then zeros; the clock counts the steps.
    Rewards:
        1 for naming the cue at the last step, else 0: a memoryless policy expects 0.5.
    Episode End:
        After ``delay + 1`` steps.
    Arguments:
        ``kind`` ("image" or "dict"), ``delay`` (steps between cue and answer), ``size`` (image side,
        at least 36 for SB3's NatureCNN).
    """

    def __init__(self, kind: str = "image", delay: int = 2, size: int = 36) -> None:
        if kind not in ("image", "dict"):
            raise ValueError(f"kind={kind!r}: expected 'image' or 'dict'")
        self.kind, self.delay, self.size = kind, delay, size
        self.action_space = spaces.Discrete(2)
        if kind == "image":
            self.observation_space = spaces.Box(0, 255, (size, size, 1), np.uint8)
        else:
            self.observation_space = spaces.Dict(
                cue=spaces.Box(0.0, 1.0, (2,), np.float32), clock=spaces.Discrete(delay + 1)
            )
        self.cue, self.t = 0, 0

    def _obs(self):
        shown = self.t == 0
        if self.kind == "image":
            image = np.zeros(self.observation_space.shape, np.uint8)
            if shown:
                half = self.size // 2
                image[:, half * self.cue : half * (self.cue + 1)] = 255
            return image
        cue = np.zeros(2, np.float32)
        if shown:
            cue[self.cue] = 1.0
        return {"cue": cue, "clock": min(self.t, self.delay)}  # the terminal observation stays in the space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.cue, self.t = int(self.np_random.integers(2)), 0
        return self._obs(), {}

    def step(self, action):
        last = self.t == self.delay
        reward = float(last and int(action) == self.cue)
        self.t += 1
        return self._obs(), reward, last, False, {}
