"""The environments of a run: the vectorised training environments and the evaluation one."""

from __future__ import annotations

import dataclasses
import functools

import gymnasium as gym
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecEnv,
    VecFrameStack,
    VecNormalize,
    VecTransposeImage,
)

from agents.training.config import ConfigError, TrainConfig
from agents.training.resolution import ResolvedRun
from envs import BalancedCues, PrevActionReward, has_cues


def make_envs(config: TrainConfig, n_envs: int, seed: int, balanced: bool = False) -> VecEnv:
    """``n_envs`` copies of ``config.env`` seeded from ``seed`` (SB3's ``make_vec_env``); ``balanced``: the
    cues of a memory-ladder task in turn (:class:`envs.BalancedCues`), for evaluations."""
    vec_cls = SubprocVecEnv if config.vec_env == "subproc" and n_envs > 1 else DummyVecEnv
    check_dependencies(config.env)
    wrapper = functools.partial(_wrap, prev_inputs=config.prev_inputs, balanced=balanced)
    return make_vec_env(config.env, n_envs=n_envs, seed=seed, vec_env_cls=vec_cls, wrapper_class=wrapper)


def _wrap(env: gym.Env, prev_inputs: str, balanced: bool) -> gym.Env:
    """The run's wrappers inside SB3's Monitor: balanced cues (evaluations), the previous action and reward."""
    if balanced and has_cues(env):
        env = BalancedCues(env)
    if prev_inputs != "none":
        env = PrevActionReward(env, action="action" in prev_inputs, reward="reward" in prev_inputs)
    return env


def check_dependencies(env_id: str) -> None:
    """A ConfigError naming what to install where the environment needs a package this machine lacks
    (Box2D for LunarLander, MuJoCo...), instead of a traceback from deep inside the first worker."""
    try:
        gym.make(env_id).close()
    except gym.error.DependencyNotInstalled as e:
        raise ConfigError(f"env={env_id!r}: a package it needs is not installed: {e}") from None
    except ModuleNotFoundError as e:
        raise ConfigError(f"env={env_id!r}: it needs the module {e.name!r}, which is not installed ({e})") from None


def stack_frames(run: ResolvedRun, env: VecEnv) -> VecEnv:
    """The algorithm's frame stack, outside the normalisation (as rl-baselines3-zoo wraps them)."""
    n = run.spec.frame_stack
    return VecFrameStack(env, n) if n else env


def make_eval_env(run: ResolvedRun, seed: int) -> VecEnv:
    """One environment, the cues of a memory-ladder task balanced; with normalisation, statistics frozen
    (synchronised from training)."""
    env = make_envs(dataclasses.replace(run.config, vec_env="dummy"), 1, seed, balanced=True)
    if run.normalization != "none":
        env = VecNormalize(env, training=False, norm_reward=False)
    env = stack_frames(run, env)
    # Wrapped as SB3 wraps the training environments of an image policy, so that the two wrapper chains
    # match for sync_envs_normalization and the policy sees channel-first images.
    if is_image_space(env.observation_space) and not is_image_space_channels_first(env.observation_space):
        env = VecTransposeImage(env)
    return env
