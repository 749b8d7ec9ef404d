"""The deterministic, mask-free evaluation of a trained model."""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import sync_envs_normalization

from agents.training.config import TrainConfig
from agents.training.environments import make_eval_env


def evaluate(model: BaseAlgorithm, config: TrainConfig, episodes: int, seed: int) -> dict[str, Any]:
    """Deterministic evaluation, masks off (the policy's expectation)."""
    env = make_eval_env(config, seed)
    sync_envs_normalization(model.get_env(), env)
    returns, lengths = evaluate_policy(
        model, env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True
    )
    env.close()
    return {
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "episodes": episodes,
        "timesteps": int(model.num_timesteps),
        "mean_length": float(np.mean(lengths)),
    }
