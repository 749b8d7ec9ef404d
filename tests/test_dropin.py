"""``agents`` as a drop-in for ``sb3_contrib.RecurrentPPO``: image and Dict observations, stacked
layers, any n_steps, stock's policy names and keywords, stock's models, stock's scripts."""

from __future__ import annotations

import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from agent_helpers import ALGOS, POLICY, SMALL, _collect, _Count, _env, _model, _replay_diff
from cue_envs import CueEnv
from gymnasium import spaces
from sb3_contrib import RecurrentPPO as SB3RecurrentPPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.torch_layers import CombinedExtractor, NatureCNN

from agents import (
    CellLstmPolicy,
    CnnCellLstmPolicy,
    MultiInputCellLstmPolicy,
    RecurrentPPO,
)


# ---------------------------------------------------------------------------------------- policies
def test_stock_names_are_registered():
    for algo in ALGOS:
        aliases = algo.policy_aliases
        assert aliases["MlpLstmPolicy"] is aliases["CellLstmPolicy"] is CellLstmPolicy
        assert aliases["CnnLstmPolicy"] is aliases["CnnCellLstmPolicy"] is CnnCellLstmPolicy
        assert aliases["MultiInputLstmPolicy"] is aliases["MultiInputCellLstmPolicy"] is MultiInputCellLstmPolicy


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("kind", ["image", "dict"])
def test_cnn_and_dict_policies_smoke(algo, kind):
    model = _model(algo, kind)
    extractor = model.policy.features_extractor
    assert isinstance(extractor, NatureCNN if kind == "image" else CombinedExtractor)
    model.learn(48)
    assert model.num_timesteps >= 48
    obs = model.env.reset()
    actions, state = model.predict(obs, None, np.ones(2, dtype=bool), deterministic=True)
    assert actions.shape == (2,) and state[0].shape == (1, 2, 8)


def test_images_are_preprocessed_as_sb3_does():
    model = _model(RecurrentPPO, "image")
    assert model.observation_space.shape == (1, 36, 36), "channel-last images are transposed, as SB3 does"
    buffer = _collect(model)
    assert buffer.observations.dtype == np.uint8
    obs = th.as_tensor(buffer.observations[:1, 0])
    policy = model.policy
    scaled = policy.features_extractor(obs.float() / 255.0)
    th.testing.assert_close(policy.extract_features(obs), scaled)
    raw = _model(RecurrentPPO, "image", policy_kwargs=dict(normalize_images=False)).policy
    th.testing.assert_close(raw.extract_features(obs), raw.features_extractor(obs.float()))


CELL_METHODS = [("lstm", "pytorch"), ("gal", None), ("moon", None), ("semeniuta", None), ("zoneout", None)]


@pytest.mark.parametrize("kind", ["image", "dict"])
@pytest.mark.parametrize(("cell", "method"), CELL_METHODS)
def test_replay_cnn_dict_and_stacked_for_every_dropout_method(kind, cell, method):
    """Recomputed log-probabilities and values equal the collected ones, for image and Dict
    observations, three layers with dropout between them, and each dropout method."""
    lstm_kwargs = dict(dropout=0.3, **({"dropout_method": method} if method else {}))
    pk = dict(cell=cell, dropout=0.4, n_lstm_layers=3, lstm_kwargs=lstm_kwargs)
    model = _model(RecurrentPPO, kind, policy_kwargs=pk)
    assert model.policy.lstm_actor.num_layers == 3
    assert _replay_diff(model) <= 1e-5


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("kind", ["mlp", "image", "dict"])
def test_replay_logged_with_stacked_layers(algo, kind):
    model = _model(algo, kind, policy_kwargs=dict(cell="ln-gal", dropout=0.3, n_lstm_layers=2))
    model.learn(24)
    assert model.logger.name_to_value["train/replay_max_abs_logp_diff"] <= 1e-5


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("kwargs", [dict(), dict(enable_critic_lstm=False), dict(n_lstm_layers=2)])
def test_separate_features_extractors(algo, kwargs):
    """``share_features_extractor=False``: the critic's memory reads the critic's extractor."""
    model = _model(algo, "image", policy_kwargs=dict(share_features_extractor=False, cell="gal", dropout=0.3, **kwargs))
    policy = model.policy
    assert policy.pi_features_extractor is not policy.vf_features_extractor
    assert _replay_diff(model) <= 1e-5
    model.learn(24)
    assert model.num_timesteps >= 24


class _Bits(gym.Env):
    """Random observations; the reward counts the ones among the actions."""

    def __init__(self, action_space: spaces.Space) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = action_space
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        return self.observation_space.sample(), float(np.sum(action)), self.t >= 5, False, {}


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("action_space", [spaces.MultiBinary(3), spaces.MultiDiscrete([3, 2])])
def test_multi_binary_and_multi_discrete_actions(algo, action_space):
    env = make_vec_env(lambda: _Bits(action_space), n_envs=2, seed=0)
    model = algo("MlpLstmPolicy", env, n_steps=10, seed=0, policy_kwargs=dict(SMALL, cell="gal", dropout=0.3))
    assert _replay_diff(model) <= 1e-5
    model.learn(40)
    assert model.rollout_buffer.actions.dtype == action_space.dtype
    actions, _ = model.predict(env.reset())
    assert actions.shape == (2, *action_space.shape) and action_space.contains(actions[0].astype(action_space.dtype))


@pytest.mark.parametrize("algo", ALGOS)
def test_gsde_on_box_actions(algo):
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    model = algo("MlpLstmPolicy", env, n_steps=10, use_sde=True, sde_sample_freq=4, seed=0,
                 policy_kwargs=dict(SMALL, cell="gal", dropout=0.3))  # fmt: skip
    assert _replay_diff(model) <= 1e-5
    model.learn(40)
    actions, state = model.predict(env.reset(), None, np.ones(2, dtype=bool))
    assert actions.shape == (2, 1) and np.all(np.abs(actions) <= 2.0)


def test_policy_kwargs_stock_accepts():
    """Every keyword of sb3-contrib's policies works: net_arch forms, extractor class and kwargs,
    optimizer class and kwargs, activation, ortho_init, lstm_kwargs."""
    env = _env("mlp")
    short = dict(n_steps=8, batch_size=8, n_epochs=1)
    for net_arch in ([16], dict(pi=[16, 8], vf=[4]), []):
        RecurrentPPO("MlpLstmPolicy", env, policy_kwargs=dict(SMALL, net_arch=net_arch), **short).learn(8)
    pk = dict(
        SMALL, activation_fn=th.nn.ReLU, ortho_init=False, optimizer_class=th.optim.SGD,
        optimizer_kwargs=dict(momentum=0.5), features_extractor_kwargs=dict(), normalize_images=False,
        lstm_kwargs=dict(bias=False, dropout=0.2, batch_first=False, bidirectional=False, proj_size=0),
        n_lstm_layers=2,
    )  # fmt: skip
    model = RecurrentPPO("MlpLstmPolicy", env, policy_kwargs=pk, **short)
    assert isinstance(model.policy.optimizer, th.optim.SGD) and model.policy.optimizer.defaults["momentum"] == 0.5
    assert not model.policy.lstm_actor.layers[0].bias and model.policy.lstm_actor.layer_dropout == 0.2
    model.learn(8)


def test_policy_kwargs_rejected_by_name():
    env = _env("mlp")
    cases = [
        (dict(lstm_kwargs=dict(bidirectional=True)), r"lstm_kwargs\['bidirectional'\]=True"),
        (dict(lstm_kwargs=dict(proj_size=4)), r"lstm_kwargs\['proj_size'\]=4"),
        (dict(lstm_kwargs=dict(batch_first=True)), r"lstm_kwargs\['batch_first'\]=True"),
        (dict(lstm_kwargs=dict(nonlinearity="relu")), r"lstm_kwargs\['nonlinearity'\]: neither"),
        (dict(lstm_kwargs=dict(ln_preact=False)), r"lstm_kwargs\['ln_preact'\]: pass it as a policy keyword"),
        (dict(lstm_kwargs=dict(dropout=1.5), n_lstm_layers=2), r"lstm_kwargs\['dropout'\]=1.5"),
        (dict(n_lstm_layers=0), "n_lstm_layers=0"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            RecurrentPPO("MlpLstmPolicy", env, policy_kwargs=kwargs)
    with pytest.raises(TypeError, match="lstm_size"):
        RecurrentPPO("MlpLstmPolicy", env, policy_kwargs=dict(lstm_size=8))


# ---------------------------------------------------------------------------------------- model API
@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("kind", ["image", "dict"])
def test_save_load_predict_with_states(algo, kind, tmp_path):
    model = _model(algo, kind, policy_kwargs=dict(cell="gal", dropout=0.3, n_lstm_layers=2))
    model.learn(24)
    model.save(tmp_path / "m.zip")
    loaded = algo.load(tmp_path / "m.zip", device="cpu")
    assert loaded.policy.lstm_actor.num_layers == 2 and type(loaded.policy) is type(model.policy)
    env = model.env
    obs, state, loaded_state, starts = env.reset(), None, None, np.ones(2, dtype=bool)
    for _ in range(8):
        a, state = model.predict(obs, state, starts, deterministic=True)
        b, loaded_state = loaded.predict(obs, loaded_state, starts, deterministic=True)
        assert np.array_equal(a, b) and np.allclose(state[0], loaded_state[0]) and state[0].shape == (2, 2, 8)
        obs, _, starts, _ = env.step(a)
    loaded.set_env(env)
    loaded.learn(24, reset_num_timesteps=False)
    assert loaded.num_timesteps == model.num_timesteps + 24


@pytest.mark.parametrize("algo", ALGOS)
def test_set_env_and_load_with_another_env_count(algo, tmp_path):
    model = _model(algo, n_envs=2, policy_kwargs=dict(n_lstm_layers=2))
    model.learn(24)
    model.set_env(_env("mlp", n_envs=2, seed=1))
    model.learn(24, reset_num_timesteps=False)
    assert model.num_timesteps == 48
    model.save(tmp_path / "m.zip")
    loaded = algo.load(tmp_path / "m.zip", env=_env("mlp", n_envs=3, seed=2), device="cpu")
    loaded.learn(36, reset_num_timesteps=False)
    assert loaded.rollout_buffer.n_envs == 3 and loaded._last_lstm_states.pi[0].shape == (2, 3, 8)
    assert loaded.num_timesteps == 48 + 36


@pytest.mark.parametrize("algo", ALGOS)
def test_callbacks_and_progress_bar(algo):
    model = _model(algo)
    counter = _Count()
    model.learn(48, callback=counter, progress_bar=True)
    assert counter.steps == 24 and counter.rollouts == 2
    stopper = _Count(stop_after=5)
    model.learn(48, callback=[stopper])
    assert stopper.steps == 5 and model.num_timesteps == 10, "a callback returning False stops learning"


# ---------------------------------------------------------------------------------------- stock models
@pytest.mark.parametrize(
    "policy_kwargs",
    [
        dict(lstm_hidden_size=8, n_lstm_layers=2),
        dict(lstm_hidden_size=8, lstm_kwargs=dict(bias=False)),
        dict(lstm_hidden_size=8, shared_lstm=True, enable_critic_lstm=False),
    ],
)
def test_model_saved_by_stock_loads(policy_kwargs, tmp_path):
    """nn.LSTM's parameters load into a stack of ``lstm`` cells: the same actions and states."""
    env = _env("mlp")
    stock = SB3RecurrentPPO("MlpLstmPolicy", env, n_steps=16, batch_size=16, seed=0, policy_kwargs=policy_kwargs)
    stock.learn(32)
    stock.save(tmp_path / "stock.zip")
    ours = RecurrentPPO.load(tmp_path / "stock.zip", env=env, device="cpu")
    assert type(ours.policy) is CellLstmPolicy and ours.policy.cell_name == "lstm"
    obs, s1, s2, starts = env.reset(), None, None, np.ones(2, dtype=bool)
    for _ in range(10):
        a1, s1 = stock.predict(obs, s1, starts, deterministic=True)
        a2, s2 = ours.predict(obs, s2, starts, deterministic=True)
        assert np.array_equal(a1, a2)
        np.testing.assert_allclose(s1[0], s2[0], atol=1e-6)
        np.testing.assert_allclose(s1[1], s2[1], atol=1e-6)
        obs, _, starts, _ = env.step(a1)
    ours.learn(32, reset_num_timesteps=False)
    assert ours.num_timesteps == 64


def test_model_saved_by_stock_without_equivalent_is_rejected(tmp_path):
    stock = SB3RecurrentPPO("MlpLstmPolicy", _env("mlp"), n_steps=16, batch_size=16,
                            policy_kwargs=dict(lstm_hidden_size=8, lstm_kwargs=dict(proj_size=4)))  # fmt: skip
    stock.save(tmp_path / "stock.zip")
    with pytest.raises(ValueError, match=r"RecurrentActorCriticPolicy .* cannot load: lstm_kwargs\['proj_size'\]=4"):
        RecurrentPPO.load(tmp_path / "stock.zip")


STOCK_SCRIPT = """
import numpy as np
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

vec_env = make_vec_env(ENV, n_envs=2, seed=0)
model = RecurrentPPO(POLICY, vec_env, n_steps=16, batch_size=16, n_epochs=2, policy_kwargs=POLICY_KWARGS, verbose=0)
model.learn(64, progress_bar=False)
mean_reward, std_reward = evaluate_policy(model, vec_env, n_eval_episodes=2, warn=False)
model.save("ppo_recurrent")
del model
model = RecurrentPPO.load("ppo_recurrent")
obs = vec_env.reset()
lstm_states = None
episode_starts = np.ones((2,), dtype=bool)
for _ in range(10):
    action, lstm_states = model.predict(obs, state=lstm_states, episode_start=episode_starts, deterministic=True)
    obs, rewards, dones, info = vec_env.step(action)
    episode_starts = dones
"""


@pytest.mark.parametrize(
    ("env", "policy", "policy_kwargs"),
    [
        ("'CartPole-v1'", "MlpLstmPolicy", "dict(lstm_hidden_size=16)"),
        ("lambda: CueEnv('image')", "CnnLstmPolicy", "dict(features_extractor_kwargs=dict(features_dim=16))"),
        ("lambda: CueEnv('dict', delay=4)", "MultiInputLstmPolicy", "dict(lstm_hidden_size=8)"),
        ("'CartPole-v1'", "MlpLstmPolicy", "dict(lstm_hidden_size=8, n_lstm_layers=2, lstm_kwargs=dict(dropout=0.2))"),
    ],
)
def test_stock_script_runs_with_only_the_import_changed(env, policy, policy_kwargs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = STOCK_SCRIPT.replace("ENV", env).replace("POLICY_KWARGS", policy_kwargs).replace("POLICY", repr(policy))
    ours = script.replace("from sb3_contrib import RecurrentPPO", "from agents import RecurrentPPO")
    assert ours.count("\n") == script.count("\n") and ours != script
    for source in (script, ours):  # stock first: the script is a working stock script
        namespace = {"CueEnv": CueEnv}
        exec(compile(textwrap.dedent(source), "user_script.py", "exec"), namespace)
        assert namespace["model"].num_timesteps == 64
    assert type(namespace["model"]).__module__ == "agents.ppo"


# ---------------------------------------------------------------------------------------- learning
def _learn_cue(kind, policy_kwargs, budget):
    env = _env(kind, n_envs=8, seed=0)
    model = RecurrentPPO(POLICY[kind], env, n_steps=32, batch_size=128, n_epochs=4, learning_rate=1e-3,
                         ent_coef=0.01, seed=0, device="cpu", policy_kwargs=policy_kwargs)  # fmt: skip
    model.learn(budget)
    mean, _ = evaluate_policy(model, _env(kind, n_envs=4, seed=1), n_eval_episodes=40)
    return mean


def test_cnn_policy_learns_a_tiny_image_memory_task():
    """CueEnv image (36x36, the cue shown on the first of 3 steps): a memoryless policy expects
    0.5. Measured: 1.0 from 2k steps; the test takes about 14 CPU-s."""
    pk = dict(lstm_hidden_size=32, net_arch=dict(pi=[32], vf=[32]), features_extractor_kwargs=dict(features_dim=32))
    assert _learn_cue("image", pk, 6144) >= 0.95


@pytest.mark.slow
def test_dict_policy_learns_a_memory_task_with_stacked_layers():
    """CueEnv dict (the cue one-hot on the first of 5 steps, then zeros; a clock): a memoryless
    policy expects 0.5. Two ``gal`` layers with dropout within and between them (about 40 CPU-s)."""
    pk = dict(cell="gal", dropout=0.1, n_lstm_layers=2, lstm_kwargs=dict(dropout=0.1), lstm_hidden_size=32,
              net_arch=dict(pi=[32], vf=[32]))  # fmt: skip
    assert _learn_cue("dict", pk, 12288) >= 0.95
