"""The deterministic, mask-free evaluation of a trained model."""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import sync_envs_normalization

from agents.training.environments import make_eval_env
from agents.training.resolution import ResolvedRun


def evaluate(model: BaseAlgorithm, run: ResolvedRun, episodes: int, seed: int) -> dict[str, Any]:
    """Deterministic evaluation, masks off (the policy's expectation). ``success_rate``: the share of
    episodes whose last ``info["is_success"]`` is true (None where the task reports none: SB3's key, which
    the memory ladder's tasks set to whether the memory-dependent answer was right)."""
    env = make_eval_env(run, seed)
    sync_envs_normalization(model.get_env(), env)
    successes: list[bool] = []

    def record_success(local: dict[str, Any], _: dict[str, Any]) -> None:
        if local["done"] and "is_success" in local["info"]:
            successes.append(bool(local["info"]["is_success"]))

    returns, lengths = evaluate_policy(
        model, env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True,
        callback=record_success,
    )  # fmt: skip
    env.close()
    return {
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "episodes": episodes,
        "timesteps": int(model.num_timesteps),
        "mean_length": float(np.mean(lengths)),
        "success_rate": float(np.mean(successes)) if successes else None,
    }
