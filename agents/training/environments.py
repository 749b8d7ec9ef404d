"""The environments of a run: the vectorised training environments and the evaluation one."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecFrameStack, VecNormalize

from agents.training.algos import ALGOS
from agents.training.config import TrainConfig
from envs import BalancedCues, has_cues


def make_envs(config: TrainConfig, n_envs: int, seed: int, balanced: bool = False) -> VecEnv:
    """``n_envs`` copies of ``config.env`` seeded from ``seed`` (SB3's ``make_vec_env``); ``balanced``: the
    cues of a memory-ladder task in turn (:class:`envs.BalancedCues`), for evaluations."""
    vec_cls = SubprocVecEnv if config.vec_env == "subproc" and n_envs > 1 else DummyVecEnv
    wrapper = _balance_cues if balanced else None
    return make_vec_env(config.env, n_envs=n_envs, seed=seed, vec_env_cls=vec_cls, wrapper_class=wrapper)


def _balance_cues(env: gym.Env) -> gym.Env:
    return BalancedCues(env) if has_cues(env) else env


def stack_frames(config: TrainConfig, env: VecEnv) -> VecEnv:
    """The algorithm's frame stack, outside the normalisation (as rl-baselines3-zoo wraps them)."""
    n = ALGOS[config.algo].frame_stack
    return VecFrameStack(env, n) if n else env


def make_eval_env(config: TrainConfig, seed: int) -> VecEnv:
    """One environment, the cues of a memory-ladder task balanced; with normalisation, statistics frozen
    (synchronised from training)."""
    env = make_envs(dataclasses.replace(config, vec_env="dummy"), 1, seed, balanced=True)
    if config.normalization != "none":
        env = VecNormalize(env, training=False, norm_reward=False)
    return stack_frames(config, env)
