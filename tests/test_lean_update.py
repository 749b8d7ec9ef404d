"""The lean update (agents/lean.py; PPO's and A2C's train) against the distribution path it replaces:
the same values, log-probabilities, entropies and gradients in float64, and the same parameters after
one PPO and one A2C iteration, for every registry cell."""

from __future__ import annotations

import copy
from unittest import mock

import numpy as np
import pytest
import torch as th
import torch.nn.functional as F
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.torch_layers import FlattenExtractor

from agents import RecurrentA2C, RecurrentPPO, lean
from agents.policies import flatten_steps
from agents.type_aliases import RNNMasks, RNNStates
from rl_lstm import CELLS

NAMES = [name for name in CELLS if name != "slow"]  # "slow" is "lstm" on the Python step loop


class Nop(BaseCallback):
    def _on_step(self) -> bool:
        return True


def _collected(algo, name, seed=0):
    vec = make_vec_env("CartPole-v1", n_envs=3, seed=seed)
    policy_kwargs = dict(cell=name, dropout=0.3, lstm_hidden_size=8, net_arch=dict(pi=[8], vf=[8]))
    kwargs = dict(n_steps=16, batch_size=16, seq_len=8, n_epochs=2) if algo is RecurrentPPO else dict(n_steps=5)
    model = algo("CellLstmPolicy", vec, seed=seed, device="cpu", policy_kwargs=policy_kwargs, ent_coef=0.01, **kwargs)
    model._setup_learn(10_000, Nop())
    callback = Nop()
    callback.init_callback(model)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    return model


def _distribution_path(model, data):
    """What evaluate_sequences returned before the lean path: a Categorical distribution object."""
    policy = model.policy
    features = policy.extract_features(flatten_steps(data.observations))
    latent_pi, latent_vf = policy._memory_sequences(features, data.lstm_states, data.episode_starts, data.masks)
    distribution = policy._get_action_dist_from_latent(policy.mlp_extractor.forward_actor(latent_pi))
    values = policy.value_net(policy.mlp_extractor.forward_critic(latent_vf)).flatten()
    actions = data.actions.long().flatten()
    return values, distribution.log_prob(actions), distribution.entropy()


class Float64Flatten(FlattenExtractor):
    """SB3's preprocessing casts observations to float32: this extractor hands float64 features on."""

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return super().forward(observations).to(th.float64)


def _double(data):
    def d(t):
        return None if t is None else t.to(th.float64)

    states = RNNStates(tuple(d(s) for s in data.lstm_states.pi), tuple(d(s) for s in data.lstm_states.vf))
    return data._replace(
        observations=d(data.observations), lstm_states=states, masks=RNNMasks(d(data.masks.pi), d(data.masks.vf))
    )


@pytest.mark.parametrize("name", NAMES)
def test_lean_evaluation_equals_distribution_float64(name):
    model = _collected(RecurrentPPO, name)
    policy = model.policy.to(th.float64)
    policy.features_extractor = policy.pi_features_extractor = policy.vf_features_extractor = Float64Flatten(
        model.observation_space
    )
    policy.set_training_mode(True)
    params = list(policy.parameters())
    data = _double(next(iter(model.rollout_buffer.get(16))))
    results = []
    with mock.patch("agents.policies.log_prob_entropy", wraps=lean.log_prob_entropy) as lean_path:
        lean_values = model.evaluate_batch(data)
    assert lean_path.call_count == 1  # a Categorical policy without action masks takes the lean path
    for evaluate in (lambda d: lean_values, lambda d: _distribution_path(model, d)):
        values, log_prob, entropy = evaluate(data)
        assert values.dtype == log_prob.dtype == entropy.dtype == th.float64
        loss = values.square().sum() + (log_prob * th.linspace(-1, 1, len(log_prob))).sum() + entropy.sum()
        results.append([values, log_prob, entropy, *th.autograd.grad(loss, params, allow_unused=True)])
    for got, want in zip(*results, strict=True):
        if want is None:
            assert got is None
        else:
            th.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def _reference_ppo_train(model):
    """PPO's train loop before the lean update: the distribution path, .item() per minibatch, the
    per-tensor gradient clip."""
    model.policy.set_training_mode(True)
    model._update_learning_rate(model.policy.optimizer)
    clip_range = model.clip_range(model._current_progress_remaining)
    for _ in range(model.n_epochs):
        for data in model.rollout_buffer.get(model.batch_size):
            values, log_prob, entropy = _distribution_path(model, data)
            advantages = data.advantages
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
            ratio = th.exp(log_prob - data.old_log_prob)
            policy_loss = -th.min(
                advantages * ratio, advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)
            ).mean()
            value_loss = F.mse_loss(data.returns, values)
            entropy_loss = -th.mean(entropy)
            loss = policy_loss + model.ent_coef * entropy_loss + model.vf_coef * value_loss
            policy_loss.item(), value_loss.item(), entropy_loss.item()
            model.policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(model.policy.parameters(), model.max_grad_norm, foreach=False)
            model.policy.optimizer.step()


def _reference_a2c_train(model):
    model.policy.set_training_mode(True)
    model._update_learning_rate(model.policy.optimizer)
    for data in model.rollout_buffer.get(batch_size=None):
        values, log_prob, entropy = _distribution_path(model, data)
        loss = -(data.advantages * log_prob).mean() + model.vf_coef * F.mse_loss(data.returns, values)
        loss = loss - model.ent_coef * entropy.mean()
        model.policy.optimizer.zero_grad()
        loss.backward()
        th.nn.utils.clip_grad_norm_(model.policy.parameters(), model.max_grad_norm, foreach=False)
        model.policy.optimizer.step()


@pytest.mark.parametrize("algo", [RecurrentPPO, RecurrentA2C])
@pytest.mark.parametrize("name", NAMES)
def test_one_iteration_matches_the_distribution_path(algo, name):
    """One update from the same rollout, the same parameters and the same random state: the lean
    train and the previous loop end at the same parameters (float32: SB3's buffers hold float32)."""
    model = _collected(algo, name)
    reference = copy.deepcopy(model)
    np_state, th_state = np.random.get_state(), th.get_rng_state()  # noqa: NPY002 (SB3's buffers draw from it)
    model.train()
    np.random.set_state(np_state)  # noqa: NPY002
    th.set_rng_state(th_state)
    (_reference_ppo_train if algo is RecurrentPPO else _reference_a2c_train)(reference)
    before = _collected(algo, name).policy.state_dict()
    after, want = model.policy.state_dict(), reference.policy.state_dict()
    assert any(not th.equal(after[k], before[k]) for k in after), "the update changed nothing"
    for key in after:
        th.testing.assert_close(after[key], want[key], rtol=1e-5, atol=1e-5, msg=lambda m, key=key: f"{key}: {m}")


def test_clip_is_the_global_norm():
    th.manual_seed(0)
    grads = [th.randn(5, 3, dtype=th.float64), th.randn(7, dtype=th.float64), th.randn(2, 2, dtype=th.float64)]
    params = [th.zeros_like(g, requires_grad=True) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    lean.clip_grad_norm(params, 0.5)
    total = th.cat([g.flatten() for g in grads]).norm()
    for p, g in zip(params, grads, strict=True):
        th.testing.assert_close(p.grad, g * (0.5 / (total + 1e-6)), rtol=1e-12, atol=1e-12)
