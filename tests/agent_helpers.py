"""Small models and rollouts shared by the agents' tests."""

from __future__ import annotations

import torch as th
from cue_envs import CueEnv
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from agents import (
    RecurrentA2C,
    RecurrentPPO,
)

ALGOS = [RecurrentPPO, RecurrentA2C]
SMALL = dict(lstm_hidden_size=8, net_arch=dict(pi=[8], vf=[8]))
CNN_SMALL = dict(SMALL, features_extractor_kwargs=dict(features_dim=16))


def _env(kind: str, n_envs: int = 2, seed: int = 0):
    if kind == "mlp":
        return make_vec_env("CartPole-v1", n_envs=n_envs, seed=seed)
    return make_vec_env(lambda: CueEnv(kind, delay=2 if kind == "image" else 4), n_envs=n_envs, seed=seed)


POLICY = {"mlp": "MlpLstmPolicy", "image": "CnnLstmPolicy", "dict": "MultiInputLstmPolicy"}


def _model(algo, kind="mlp", n_envs=2, seed=0, policy_kwargs=None, **kwargs):
    kwargs = {"n_steps": 12, **({"batch_size": 12, "n_epochs": 2} if algo is RecurrentPPO else {}), **kwargs}
    pk = dict(CNN_SMALL if kind == "image" else SMALL, **(policy_kwargs or {}))
    return algo(POLICY[kind], _env(kind, n_envs, seed), seed=seed, device="cpu", policy_kwargs=pk, **kwargs)


class _Count(BaseCallback):
    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__()
        self.steps, self.rollouts, self.stop_after = 0, 0, stop_after

    def _on_rollout_end(self) -> None:
        self.rollouts += 1

    def _on_step(self) -> bool:
        self.steps += 1
        return self.stop_after is None or self.steps < self.stop_after


def _collect(model):
    """One rollout, as learn() would collect it."""
    callback = _Count()
    model._setup_learn(10_000, callback)
    callback.init_callback(model)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    return model.rollout_buffer


def _replay_diff(model) -> float:
    """Collect one rollout, then recompute every stored step in train mode from the recorded
    states and masks; returns the largest difference of log-probability or value."""
    buffer = _collect(model)
    model.policy.set_training_mode(True)
    diff = 0.0
    with th.no_grad():
        for data in buffer.get(getattr(model, "batch_size", None)):
            values, log_prob, _ = model.evaluate_batch(data)
            diff = max(diff, (log_prob - data.old_log_prob).abs().max().item())
            diff = max(diff, (values - data.old_values).abs().max().item())
    return diff
