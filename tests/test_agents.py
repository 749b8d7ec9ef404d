"""Policies and algorithms: smoke runs over the registry, mask replay, A2C's loss, save/load."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from sb3_contrib import RecurrentPPO as SB3RecurrentPPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.utils import obs_as_tensor

import envs  # noqa: F401  (registers the memory tasks)
from agents import CellLstmPolicy, RecurrentA2C, RecurrentPPO
from agents.lean import FusedRMSprop
from rl_lstm import CELLS

NAMES = list(CELLS)
DROPOUT = 0.5


def _model(algo, name, n_envs=3, env="CartPole-v1", seed=0, **kwargs):
    vec = make_vec_env(env, n_envs=n_envs, seed=seed)
    policy_kwargs = dict(cell=name, dropout=DROPOUT, lstm_hidden_size=8, net_arch=dict(pi=[8], vf=[8]))
    policy_kwargs.update(kwargs.pop("policy_kwargs", {}))
    if algo is RecurrentPPO:
        kwargs = {**dict(n_steps=16, batch_size=16, seq_len=8, n_epochs=2), **kwargs}
    return algo("CellLstmPolicy", vec, seed=seed, device="cpu", policy_kwargs=policy_kwargs, **kwargs)


def _collect(model):
    """One rollout, as learn() would collect it."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Nop(BaseCallback):
        def _on_step(self):
            return True

    model._setup_learn(10_000, Nop())
    cb = Nop()
    cb.init_callback(model)
    assert model.collect_rollouts(model.env, cb, model.rollout_buffer, model.n_steps)
    return model.rollout_buffer


@pytest.mark.parametrize("algo", [RecurrentPPO, RecurrentA2C])
@pytest.mark.parametrize("name", NAMES)
def test_smoke_every_cell(algo, name):
    model = _model(algo, name)
    model.learn(64)
    assert model.num_timesteps >= 64
    assert isinstance(model.policy.lstm_actor.layers[0], CELLS[name])
    obs = model.env.reset()
    actions, state = model.predict(obs, deterministic=True)
    assert actions.shape == (3,) and state[0].shape == (1, 3, 8)


def _assert_replays(model, buffer, batch_size):
    """Recompute every stored step in train mode with the recorded states and masks: the
    log-probabilities and values equal those of collection (the PPO ratio is exactly 1)."""
    model.policy.set_training_mode(True)
    with th.no_grad():
        for data in buffer.get(batch_size):
            values, log_prob, _ = model.policy.evaluate_sequences(
                data.observations, data.actions.long().flatten(), data.lstm_states, data.episode_starts, data.masks
            )
            assert (log_prob - data.old_log_prob).abs().max() <= 1e-5
            assert (values - data.old_values).abs().max() <= 1e-5


@pytest.mark.parametrize("algo", [RecurrentPPO, RecurrentA2C])
@pytest.mark.parametrize("name", NAMES)
def test_replay_reproduces_collection(algo, name):
    """Before the first gradient step, the update's log-probabilities and values equal those
    recorded at collection: the PPO ratio starts at exactly 1, masks on."""
    model = _model(algo, name, n_steps=48)  # long enough for episodes to end inside it
    buffer = _collect(model)
    assert buffer.masks[0] is not None and buffer.masks[1] is not None
    assert buffer.episode_starts[1:].any(), "an episode starts inside the rollout"
    _assert_replays(model, buffer, None if algo is RecurrentA2C else model.batch_size)


@pytest.mark.parametrize("method", ["pytorch", "gal", "moon", "semeniuta", "zoneout"])
def test_replay_every_dropout_method(method):
    model = _model(RecurrentPPO, "lstm", policy_kwargs=dict(lstm_kwargs=dict(dropout_method=method)))
    assert model.policy.lstm_actor.layers[0].dropout_method == method
    _assert_replays(model, _collect(model), model.batch_size)


def test_stock_ratio_is_not_one_with_dropout():
    """Why the replay matters: stock sb3-contrib acts in eval mode and updates in train mode."""
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    stock = SB3RecurrentPPO(CellLstmPolicy, env, n_steps=16, batch_size=32, seed=0, device="cpu",
                            policy_kwargs=dict(cell="gal", dropout=0.5, lstm_hidden_size=8))  # fmt: skip
    stock.learn(32)  # works as a drop-in
    buffer = stock.rollout_buffer
    stock.policy.set_training_mode(True)
    data = next(buffer.get(32))
    with th.no_grad():
        _, log_prob, _ = stock.policy.evaluate_actions(
            data.observations, data.actions.long().flatten(), data.lstm_states, data.episode_starts
        )
    assert (log_prob - data.old_log_prob)[data.mask > 0].abs().max() > 1e-3


@pytest.mark.parametrize("name", ["gal", "moon", "ln-gal", "ln-moon"])
def test_episode_masks_resampled_per_env_at_its_own_start(name):
    model = _model(RecurrentPPO, name, n_envs=4)
    buffer = _collect(model)
    starts = buffer.episode_starts.astype(bool)  # (n_steps, n_envs)
    for masks in buffer.masks:
        for t in range(1, buffer.buffer_size):
            changed = (masks[t] != masks[t - 1]).any(-1)
            np.testing.assert_array_equal(changed, starts[t])
        assert not np.array_equal(masks[0, 0], masks[0, 1]), "each environment has its own mask"


def test_a2c_defaults_and_loss_by_hand():
    model = _model(RecurrentA2C, "gal", n_envs=2, ent_coef=0.01)
    assert (model.n_steps, model.learning_rate, model.gae_lambda, model.normalize_advantage) == (5, 7e-4, 1.0, False)
    opt = model.policy.optimizer
    assert isinstance(opt, th.optim.RMSprop)
    assert opt.defaults["alpha"] == 0.99 and opt.defaults["eps"] == 1e-5
    buffer = _collect(model)
    model.policy.set_training_mode(True)
    batches = list(buffer.get(None))
    assert len(batches) == 1, "A2C takes the whole rollout as one batch"
    data = batches[0]
    loss, _ = model.loss(data)

    # By hand: step through each env's rollout one step at a time with the recorded masks.
    policy = model.policy
    n_steps = buffer.buffer_size
    logps, values, entropies = [], [], []
    states = (  # the recorded state before the first chunk (the whole rollout)
        (th.as_tensor(buffer.states[0][0]), th.as_tensor(buffer.states[1][0])),
        (th.as_tensor(buffer.states[2][0]), th.as_tensor(buffer.states[3][0])),
    )
    for t in range(n_steps):
        obs = obs_as_tensor(buffer.observations[t], "cpu")
        start = th.as_tensor(buffer.episode_starts[t]).float()
        feats = policy.extract_features(obs)
        m_pi, m_vf = (th.as_tensor(m[t : t + 1]) for m in buffer.masks)
        latent_pi, s_pi = policy.lstm_actor(feats[None], states[0], start[None], m_pi)
        latent_vf, s_vf = policy.lstm_critic(feats[None], states[1], start[None], m_vf)
        states = (s_pi, s_vf)
        dist = policy._get_action_dist_from_latent(policy.mlp_extractor.forward_actor(latent_pi[0]))
        logps.append(dist.log_prob(th.as_tensor(buffer.actions[t]).long().flatten()))
        entropies.append(dist.entropy())
        values.append(policy.value_net(policy.mlp_extractor.forward_critic(latent_vf[0])).flatten())
    logp, value, entropy = th.stack(logps), th.stack(values), th.stack(entropies)  # (n_steps, n_envs)
    adv = th.as_tensor(buffer.advantages)
    ret = th.as_tensor(buffer.returns)
    by_hand = -(adv * logp).mean() + 0.5 * ((ret - value) ** 2).mean() - 0.01 * entropy.mean()
    th.testing.assert_close(loss, by_hand, atol=1e-5, rtol=1e-5)

    before = [p.detach().clone() for p in policy.parameters()]
    model.train()
    assert all(s["step"] == 1 for s in opt.state.values()), "one gradient step per rollout"
    assert any(not th.equal(a, b) for a, b in zip(before, policy.parameters(), strict=True))


def test_predict_uses_no_dropout_unless_asked():
    model = _model(RecurrentPPO, "semeniuta", n_envs=2, policy_kwargs=dict(lstm_hidden_size=64))
    obs = model.env.reset()
    starts = np.ones(2, dtype=bool)
    a1, s1 = model.predict(obs, None, starts, deterministic=True)
    a2, s2 = model.predict(obs, None, starts, deterministic=True)
    assert np.array_equal(s1[0], s2[0])
    assert model.policy.lstm_actor.last_masks is None
    with model.policy.dropout_masks_on():
        _, s3 = model.predict(obs, None, starts, deterministic=True)
    assert model.policy.lstm_actor.last_masks is not None and not np.allclose(s1[0], s3[0])
    assert not model.policy.lstm_actor.masks_in_eval


@pytest.mark.parametrize("algo", [RecurrentPPO, RecurrentA2C])
def test_save_load_identical_actions(algo, tmp_path):
    model = _model(algo, "ln-gal")
    model.learn(48)
    model.save(tmp_path / "m.zip")
    loaded = algo.load(tmp_path / "m.zip", device="cpu")
    assert loaded.policy.cell_name == "ln-gal" and loaded.policy.lstm_actor.layers[0].dropout == DROPOUT
    obs = model.env.reset()
    state, loaded_state, starts = None, None, np.ones(3, dtype=bool)
    for _ in range(10):
        a, state = model.predict(obs, state, starts, deterministic=True)
        b, loaded_state = loaded.predict(obs, loaded_state, starts, deterministic=True)
        assert np.array_equal(a, b) and np.allclose(state[0], loaded_state[0])
        obs, _, dones, _ = model.env.step(a)
        starts = dones


def test_policy_bad_input():
    env = make_vec_env("CartPole-v1", n_envs=1)
    with pytest.raises(ValueError, match="cell='mgu': expected one of"):
        RecurrentPPO("CellLstmPolicy", env, policy_kwargs=dict(cell="mgu"))
    with pytest.raises(ValueError, match=r"dropout=1.5: expected a number in \[0, 1\)"):
        RecurrentPPO("CellLstmPolicy", env, policy_kwargs=dict(cell="gal", dropout=1.5))
    with pytest.raises(ValueError, match="n_lstm_layers=0: expected a positive integer"):
        RecurrentPPO("CellLstmPolicy", env, policy_kwargs=dict(n_lstm_layers=0))
    with pytest.raises(ValueError, match="seq_len=7: expected a positive divisor of n_steps=32"):
        RecurrentPPO("CellLstmPolicy", env, n_steps=32, seq_len=7)
    with pytest.raises(ValueError, match="batch_size=20: expected a multiple of seq_len=8"):
        RecurrentPPO("CellLstmPolicy", env, n_steps=32, seq_len=8, batch_size=20)


@pytest.mark.parametrize("kwargs", [dict(shared_lstm=True, enable_critic_lstm=False), dict(enable_critic_lstm=False)])
def test_shared_or_no_critic_memory_replays(kwargs):
    model = _model(RecurrentPPO, "gal", policy_kwargs=kwargs)
    assert model.policy.lstm_critic is None
    _assert_replays(model, _collect(model), model.batch_size)
    model.learn(48)
    assert model.num_timesteps >= 48


def test_lean_collection_step_is_the_stock_forward():
    """Our forward (actions sampled straight from the logits, arguments checked on the first call only)
    gives what sb3-contrib's forward gives, from the same random numbers."""
    from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy

    model = _model(RecurrentPPO, "gal")
    policy = model.policy
    obs = obs_as_tensor(model.env.reset(), "cpu")
    zeros = th.zeros(1, 3, 8)
    states = type(model._last_lstm_states)((zeros, zeros), (zeros, zeros))
    starts = th.tensor([1.0, 0.0, 1.0])
    for deterministic in (False, True):
        results = []
        for lean in (True, False):
            for memory in policy.memories():  # both calls start from no per-episode masks
                memory.layers[0].episode_masks = None
            th.manual_seed(7)
            with th.no_grad(), policy.dropout_masks_on(), policy.argument_checks_off() if lean else th.no_grad():
                forward = policy.forward if lean else RecurrentActorCriticPolicy.forward.__get__(policy)
                results.append(forward(obs, states, starts, deterministic))
        (a1, v1, lp1, s1), (a2, v2, lp2, s2) = results
        assert th.equal(a1, a2) and th.equal(v1, v2) and th.equal(lp1, lp2)
        assert all(th.equal(x, y) for x, y in zip((*s1.pi, *s1.vf), (*s2.pi, *s2.vf), strict=True))
    assert policy.lstm_actor.check_args, "checks are back on after the block"


def test_adam_is_fused_unless_chosen_otherwise():
    assert _model(RecurrentPPO, "lstm").policy.optimizer.defaults["fused"] is True
    chosen = _model(RecurrentPPO, "lstm", policy_kwargs=dict(optimizer_kwargs=dict(eps=1e-5, foreach=True)))
    assert not chosen.policy.optimizer.defaults.get("fused")
    assert _model(RecurrentPPO, "lstm").policy.optimizer.defaults["eps"] == 1e-5


def test_rmsprop_runs_the_fused_step_unless_chosen_otherwise():
    """A2C's RMSprop: the compiled one-pass step, falling back to the multi-tensor one (PyTorch picks the
    per-tensor loop on the CPU); an implementation the user chose is kept."""
    a2c = _model(RecurrentA2C, "lstm").policy.optimizer
    assert type(a2c) is FusedRMSprop and a2c.defaults["foreach"] is True
    assert a2c.defaults["alpha"] == 0.99 and a2c.defaults["eps"] == 1e-5  # SB3's A2C settings kept
    kwargs = dict(alpha=0.99, eps=1e-5, weight_decay=0, foreach=False)
    chosen = _model(RecurrentA2C, "lstm", policy_kwargs=dict(optimizer_class=th.optim.RMSprop, optimizer_kwargs=kwargs))
    chosen = chosen.policy.optimizer
    assert type(chosen) is th.optim.RMSprop and chosen.defaults["foreach"] is False


class _MultiDiscreteObs(gym.Env):
    """Observations from a MultiDiscrete space (SB3 one-hot encodes them: a features size of numpy type)."""

    observation_space = spaces.MultiDiscrete([3, 4])
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self._t += 1
        return self.observation_space.sample(), float(action), self._t >= 5, False, {}


@pytest.mark.parametrize("algo", [RecurrentPPO, RecurrentA2C])
def test_multidiscrete_observations_train(algo):
    model = algo("MlpLstmPolicy", _MultiDiscreteObs(), n_steps=16, seed=0, device="cpu",
                 policy_kwargs=dict(cell="gru", lstm_hidden_size=8))  # fmt: skip
    model.learn(32)
    assert model.policy.lstm_actor.input_size == 7 and type(model.policy.features_dim) is int


@pytest.mark.parametrize("name", ["gal", "ln-zoneout", "gru-semeniuta", "lstm"])
def test_policy_dropout_defaults_to_the_cells(name):
    """``policy_kwargs=dict(cell="gal")`` acts with Gal's dropout (the registry's default), as make_cell
    and the command line do; an explicit 0 still turns it off."""
    from rl_lstm.registry import default_dropout

    model = _model(RecurrentPPO, name, policy_kwargs=dict(dropout=None))
    for memory in model.policy.memories():
        assert all(layer.dropout == default_dropout(name) for layer in memory.layers)
    assert model.policy._get_constructor_parameters()["dropout"] == default_dropout(name)
    plain = RecurrentPPO("CellLstmPolicy", "CartPole-v1", n_steps=8, device="cpu", policy_kwargs=dict(cell=name))
    assert plain.policy.lstm_actor.layers[0].dropout == default_dropout(name)
    off = _model(RecurrentPPO, name, policy_kwargs=dict(dropout=0.0))
    assert off.policy.lstm_actor.layers[0].dropout == 0.0


def test_renamed_context_managers_keep_their_old_names_with_a_warning():
    model = RecurrentPPO("CellLstmPolicy", "CartPole-v1", n_steps=8, batch_size=8, policy_kwargs=dict(cell="gal"))
    policy = model.policy
    with pytest.warns(DeprecationWarning, match="dropout_masks_on"), policy.masks_active():
        assert policy.lstm_actor.masks_in_eval
    assert not policy.lstm_actor.masks_in_eval
    with pytest.warns(DeprecationWarning, match="argument_checks_off"), policy.args_checked():
        assert not policy.lstm_actor.check_args
    assert policy.lstm_actor.check_args
