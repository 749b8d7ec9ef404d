"""Velocity masking: turns fully observed classic-control tasks into POMDPs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.envs.classic_control.pendulum import PendulumEnv

CARTPOLE_VELOCITY_INDICES = (1, 3)
PENDULUM_VELOCITY_INDICES = (2,)


class MaskVelocityWrapper(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Zeroes selected entries of a flat ``Box`` observation.

    ## Description

    The observation is multiplied by a 0/1 mask, as rl-baselines3-zoo's ``MaskVelocityWrapper`` does, so the
    velocity terms of a classic-control task can be hidden and the agent has to infer them from the history
    of positions. The observation space is left unchanged: the masked entries are always 0, which has to lie
    inside their bounds.

    ## Action Space

    The wrapped environment's action space.

    ## Observation Space

    The wrapped environment's observation space; entries listed in ``indices`` are always 0.

    ## Rewards

    The wrapped environment's rewards.

    ## Episode End

    As in the wrapped environment.

    ## Arguments

    - ``env``: environment with a one-dimensional ``Box`` observation space.
    - ``indices``: positions to zero, each in ``[0, observation size)``.
    """

    def __init__(self, env: gym.Env, indices: Sequence[int]):
        gym.utils.RecordConstructorArgs.__init__(self, indices=tuple(int(i) for i in indices))
        gym.ObservationWrapper.__init__(self, env)

        space = env.observation_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"observation space must be a one-dimensional Box, got {space}")
        size = space.shape[0]
        self.indices = tuple(int(i) for i in indices)
        out_of_range = [i for i in self.indices if not 0 <= i < size]
        if out_of_range:
            raise ValueError(f"indices must lie in [0, {size}), got {out_of_range} out of range")
        # A masked entry reads 0, so 0 must be a legal value or the observations leave their space.
        outside = [i for i in self.indices if not space.low[i] <= 0 <= space.high[i]]
        if outside:
            raise ValueError(f"0 must lie within the bounds of masked indices, got indices {outside}")

        self.mask = np.ones(space.shape, dtype=space.dtype)
        self.mask[list(self.indices)] = 0

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation * self.mask


def cartpole_no_vel(**kwargs: Any) -> MaskVelocityWrapper:
    """CartPole with the cart velocity and pole angular velocity hidden."""
    return MaskVelocityWrapper(CartPoleEnv(**kwargs), CARTPOLE_VELOCITY_INDICES)


def pendulum_no_vel(**kwargs: Any) -> MaskVelocityWrapper:
    """Pendulum with the angular velocity hidden."""
    return MaskVelocityWrapper(PendulumEnv(**kwargs), PENDULUM_VELOCITY_INDICES)
