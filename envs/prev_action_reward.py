"""The previous action and reward as part of the observation, for memories that should know what they did."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class PrevActionReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Append the previous action and reward to a ``Box`` observation, as RLlib's ``use_prev_action`` and
    ``use_prev_reward`` feed them to its recurrent models (and RL^2, Duan et al. 2016, to its memory).

    Because they travel inside the observation, everything that handles observations (the rollout buffer,
    ``predict``, saving, export) carries them unchanged. After ``reset`` both are zeros.

    ## Observation Space

    ``Box(low, high, (obs_dim + action_dim + 1,), float32)``: the flattened observation, then the previous
    action (``Discrete(n)``: one-hot, n entries; ``MultiDiscrete``: one one-hot per part; ``MultiBinary``: the
    bits; ``Box``: the values, within the action bounds), then the previous reward (unbounded).

    ## Arguments

    - ``action``, ``reward``: which of the two to append (at least one).
    """

    def __init__(self, env: gym.Env, action: bool = True, reward: bool = True) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, action=action, reward=reward)
        gym.Wrapper.__init__(self, env)
        if not (action or reward):
            raise ValueError("action=False, reward=False: expected at least one of the previous action and reward")
        if not isinstance(env.observation_space, spaces.Box):
            raise ValueError(
                f"observation space {env.observation_space}: PrevActionReward appends to a Box observation"
            )
        space = env.action_space
        if action and not isinstance(space, (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary, spaces.Box)):
            raise ValueError(
                f"action space {space}: cannot encode it as a previous-action input; expected Discrete, "
                "MultiDiscrete, MultiBinary or Box"
            )
        self.use_action, self.use_reward = bool(action), bool(reward)
        low, high = [env.observation_space.low.ravel()], [env.observation_space.high.ravel()]
        if action:
            width = self._action_width(space)
            if isinstance(space, spaces.Box):
                low.append(space.low.ravel().astype(np.float32))
                high.append(space.high.ravel().astype(np.float32))
            else:
                low.append(np.zeros(width, np.float32))
                high.append(np.ones(width, np.float32))
        if reward:
            low.append(np.full(1, -np.inf, np.float32))
            high.append(np.full(1, np.inf, np.float32))
        self.observation_space = spaces.Box(np.concatenate(low), np.concatenate(high), dtype=np.float32)
        self._extra = np.zeros(self.observation_space.shape[0] - low[0].size, np.float32)

    @staticmethod
    def _action_width(space: spaces.Space) -> int:
        if isinstance(space, spaces.Discrete):
            return int(space.n)
        if isinstance(space, spaces.MultiDiscrete):
            return int(space.nvec.sum())
        return int(np.prod(space.shape))

    def _encode(self, action: Any) -> np.ndarray:
        space = self.env.action_space
        if isinstance(space, spaces.Discrete):
            out = np.zeros(space.n, np.float32)
            out[int(action) - int(space.start)] = 1.0
            return out
        if isinstance(space, spaces.MultiDiscrete):
            parts = []
            for value, n in zip(np.asarray(action).ravel(), space.nvec.ravel(), strict=True):
                part = np.zeros(int(n), np.float32)
                part[int(value)] = 1.0
                parts.append(part)
            return np.concatenate(parts)
        return np.asarray(action, np.float32).ravel()

    def _observation(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(obs, np.float32).ravel(), self._extra])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._extra = np.zeros_like(self._extra)
        return self._observation(obs), info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        parts = [self._encode(action)] if self.use_action else []
        if self.use_reward:
            parts.append(np.array([reward], np.float32))
        self._extra = np.concatenate(parts)
        return self._observation(obs), reward, terminated, truncated, info
