"""Recurrent PPO and A2C with invalid-action masking (sb3-contrib's ``MaskablePPO``, with memory)."""

from __future__ import annotations

from typing import ClassVar, TypeVar

import numpy as np
from sb3_contrib.common.maskable.utils import get_action_masks
from stable_baselines3.common.type_aliases import MaybeCallback
from stable_baselines3.common.vec_env import VecEnv

from agents.a2c import RecurrentA2C
from agents.ppo import RecurrentPPO

SelfMaskableRecurrentPPO = TypeVar("SelfMaskableRecurrentPPO", bound="MaskableRecurrentPPO")
SelfMaskableRecurrentA2C = TypeVar("SelfMaskableRecurrentA2C", bound="MaskableRecurrentA2C")


class MaskableRecurrentPPO(RecurrentPPO):
    """:class:`agents.RecurrentPPO` that learns with invalid-action masks, as sb3-contrib's
    ``MaskablePPO`` (Huang & Ontañón 2020, *A Closer Look at Invalid Action Masking in Policy
    Gradient Algorithms*: the logits of invalid actions are replaced by a huge negative number
    before the softmax, so they get probability 0 and no gradient).

    The environments expose ``action_masks()`` (a bool array, True where an action is allowed:
    ``Discrete(n)`` n entries, ``MultiDiscrete`` ``sum(nvec)``, ``MultiBinary(n)`` 2n), directly or
    through ``sb3_contrib.common.wrappers.ActionMasker``. At every collected step the masks are read
    (``get_action_masks``), applied to the action distribution and stored in the rollout beside the
    memory states and dropout masks; the update replays them, so the recomputed log-probabilities
    equal the collected ones before the first gradient step, masks and memory together.
    ``learn(..., use_masking=False)`` and ``predict(..., action_masks=...)`` are ``MaskablePPO``'s.

    Why a class of its own rather than a switch on :class:`agents.RecurrentPPO`: the policy and
    the rollout buffer carry the masks for both (``predict(..., action_masks=...)`` works with any of
    our models), but learning with masks changes the algorithm's contract with the environment.
    As with ``MaskablePPO`` and ``PPO``, the class says which contract a saved model was trained
    under, an environment without ``action_masks()`` is refused by name rather than silently
    trained without masks, and :class:`agents.RecurrentPPO` keeps exactly sb3-contrib
    ``RecurrentPPO``'s arguments, so that stock scripts run unchanged.
    """

    action_masking: ClassVar[bool] = True

    def learn(  # type: ignore[override]
        self: SelfMaskableRecurrentPPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "MaskableRecurrentPPO",
        reset_num_timesteps: bool = True,
        use_masking: bool = True,
        progress_bar: bool = False,
    ) -> SelfMaskableRecurrentPPO:
        """``RecurrentPPO.learn``; ``use_masking`` (True): read the environments' action masks."""
        self._use_masking = self._check_masking(use_masking)
        return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)


class MaskableRecurrentA2C(RecurrentA2C):
    """:class:`agents.RecurrentA2C` that learns with invalid-action masks: the masked distribution of
    :class:`MaskableRecurrentPPO` in A2C's loss (its entropy term counts the allowed actions only).
    ``learn(..., use_masking=True)``, ``predict(..., action_masks=...)``."""

    action_masking: ClassVar[bool] = True

    def learn(  # type: ignore[override]
        self: SelfMaskableRecurrentA2C,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 100,
        tb_log_name: str = "MaskableRecurrentA2C",
        reset_num_timesteps: bool = True,
        use_masking: bool = True,
        progress_bar: bool = False,
    ) -> SelfMaskableRecurrentA2C:
        """``RecurrentA2C.learn``; ``use_masking`` (True): read the environments' action masks."""
        self._use_masking = self._check_masking(use_masking)
        return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)


def evaluate_policy(
    model: MaskableRecurrentPPO | MaskableRecurrentA2C,
    env: VecEnv,
    n_eval_episodes: int = 10,
    deterministic: bool = True,
    use_masking: bool = True,
) -> list[float]:
    """The returns of ``n_eval_episodes`` episodes, the memory state carried from step to step and the
    environments' action masks applied. (sb3-contrib's ``maskable.evaluation.evaluate_policy`` drops the
    recurrent state when it masks: 2.9.2 assigns ``predict``'s state to an unused name.)"""
    returns: list[float] = []
    current = np.zeros(env.num_envs)
    obs = env.reset()
    state, starts = None, np.ones(env.num_envs, dtype=bool)
    while len(returns) < n_eval_episodes:
        masks = get_action_masks(env) if use_masking else None
        actions, state = model.predict(obs, state, starts, deterministic=deterministic, action_masks=masks)
        obs, rewards, starts, _ = env.step(actions)
        current += rewards
        returns += [float(r) for r in current[starts]]
        current[starts] = 0.0
    return returns[:n_eval_episodes]
