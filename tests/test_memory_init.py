"""Memory times: the cells' keep gates and decays (rl_lstm.memory_times) and the agents' initialisation of
them (agents.memory_init), on-policy and off-policy."""

from __future__ import annotations

import math

import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env

import envs  # noqa: F401 (registers the ladder's ids)
from agents import RecurrentPPO
from agents.memory_init import FALLBACK_HORIZON, keep_cells
from agents.off_policy import RecurrentDQN, RecurrentSAC
from rl_lstm import CELLS, make_cell

SMALL = dict(lstm_hidden_size=8, net_arch=[8])
KEEPING = keep_cells()


def _reach(cell, steps: int = 30) -> float:  # noqa: ANN001
    """How much the first input still moves the output ``steps`` steps later (mean |d out_T / d x_0|)."""
    th.manual_seed(1)
    x = th.randn(steps, 4, cell.input_size, dtype=th.float64, requires_grad=True)
    out, _ = cell(x)
    out[-1].sum().backward()
    return float(x.grad[0].abs().mean())


@pytest.mark.parametrize("name", [n for n in KEEPING if not n.startswith("ln-") and n != "ln"])
def test_long_memory_times_carry_the_first_input_far(name):
    """Memory times of 500 steps keep the first input's influence 30 steps on; times of 2 steps lose it.
    (Not the layer-norm cells: normalising ``W_h h`` restores h's scale at every step, so there the first
    input's reach is not the keep gate's alone; their keep fraction is tested below.)"""
    cells = {}
    for times in (2.0, 500.0):
        th.manual_seed(0)
        cell = make_cell(name, 3, 8).double().eval()
        cell.init_memory_times_(th.full((cell.memory_units,), times))
        cells[times] = cell
    short, long = _reach(cells[2.0]), _reach(cells[500.0])
    assert long > 100 * short, f"{name}: {long:.2e} vs {short:.2e}"


@pytest.mark.parametrize("name", ["lstm", "ln", "nn", "slow", "gru", "ln-gru", "nn-gru", "mingru", "minlstm", "lru",
                                  "ffm"])  # fmt: skip
def test_a_unit_keeps_one_minus_one_over_its_time(name):
    cell = make_cell(name, 3, 8)
    times = th.linspace(2.0, 200.0, cell.memory_units)
    cell.init_memory_times_(times)
    h = cell.hidden_size
    if name in ("mingru",):
        keep = 1 - th.sigmoid(cell.bias_ih[:h])
    elif name == "minlstm":
        f, i = th.sigmoid(cell.bias_ih[:h]), th.sigmoid(cell.bias_ih[h : 2 * h])
        keep = f / (f + i)
    elif name == "lru":
        keep = th.exp(-th.exp(cell.nu_log))
    elif name == "ffm":
        keep = th.exp(cell.alpha)
    else:
        keep = th.sigmoid(cell.bias_ih + cell.bias_hh)[h : 2 * h]
    assert th.allclose(keep.detach().double(), 1 - 1 / times.double(), atol=1e-5)


def test_what_has_no_keep_gate_is_refused_by_name():
    assert CELLS["rnn"].keep_gate is None and "rnn" not in KEEPING
    with pytest.raises(ValueError, match="RNN: no keep gate or decay"):
        make_cell("rnn", 3, 4).init_memory_times_(th.full((4,), 10.0))
    with pytest.raises(ValueError, match="bias=False"):
        make_cell("lstm", 3, 4, bias=False).init_memory_times_(th.full((4,), 10.0))
    with pytest.raises(ValueError, match=r"times: expected finite memory times > 1 step"):
        make_cell("lstm", 3, 4).init_memory_times_(th.full((4,), 1.0))
    with pytest.raises(ValueError, match=r"times: expected 4 memory times for LSTM, got shape \(3,\)"):
        make_cell("lstm", 3, 4).init_memory_times_(th.full((3,), 10.0))


def _keep(layer) -> th.Tensor:  # noqa: ANN001
    h = layer.hidden_size
    return th.sigmoid((layer.bias_ih + layer.bias_hh)[h : 2 * h]).detach()


def test_ppo_defaults_to_spread_memory_times_over_the_episode_limit():
    """Recall-L50-v0's episodes last 52 steps: the memory times spread over 2..52 steps (keep 1 - 1/tau)."""
    model = RecurrentPPO("MlpLstmPolicy", make_vec_env("Recall-L50-v0", n_envs=2), n_steps=16, batch_size=32,
                         seed=0, policy_kwargs=SMALL)  # fmt: skip
    assert model.policy.memory_horizon == 52 and model.policy.memory_init is None
    for memory in model.policy.memories():
        times = 1 / (1 - _keep(memory.layers[0]))
        assert times.min() >= 2 - 1e-3 and times.max() <= 52 + 1e-2 and times.std() > 2
    # Without an episode limit the horizon is the update's reach (n_steps); the user's value wins.
    from gymnasium.wrappers import TimeLimit  # noqa: F401

    plain = RecurrentPPO("MlpLstmPolicy", make_vec_env("Recall-L50-v0", n_envs=1), n_steps=16, batch_size=16,
                         policy_kwargs=dict(SMALL, memory_horizon=7))  # fmt: skip
    assert plain.policy.memory_horizon == 7 and (1 / (1 - _keep(plain.policy.lstm_actor.layers[0]))).max() <= 7.01


def test_the_options_set_and_switch_it_off():
    torch_init = RecurrentPPO("MlpLstmPolicy", "CartPole-v1", n_steps=16, batch_size=16, seed=0,
                              policy_kwargs=dict(SMALL, memory_init="torch"))  # fmt: skip
    layer = torch_init.policy.lstm_actor.layers[0]
    bound = 1 / 8**0.5
    assert layer.bias_hh.abs().max() <= bound and layer.bias_ih.abs().max() <= bound  # nn.LSTM's
    fixed = RecurrentPPO("MlpLstmPolicy", "CartPole-v1", n_steps=16, batch_size=16,
                         policy_kwargs=dict(SMALL, memory_init=3))  # fmt: skip
    for memory in fixed.policy.memories():
        assert th.allclose(_keep(memory.layers[0]), th.sigmoid(th.tensor(3.0)))
    rnn = RecurrentPPO("MlpLstmPolicy", "CartPole-v1", n_steps=16, batch_size=16, policy_kwargs=dict(SMALL, cell="rnn"))
    assert rnn.policy.memory_init is None  # the default passes over a memory without a keep gate


def test_the_deprecated_chrono_option_still_works():
    with pytest.warns(DeprecationWarning, match="memory_init='chrono', memory_horizon=T"):
        model = RecurrentPPO("MlpLstmPolicy", "CartPole-v1", n_steps=16, batch_size=16,
                             policy_kwargs=dict(SMALL, chrono_init=30))  # fmt: skip
    assert model.policy.memory_horizon == 30 and (1 / (1 - _keep(model.policy.lstm_actor.layers[0]))).max() <= 30.01


@pytest.mark.parametrize(
    "policy_kwargs, message",
    [
        (dict(cell="rnn", memory_init="chrono"), r"memory_init='chrono': cell 'rnn' has no keep gate or decay .* it "
                                                 r"applies to nn, slow, lstm"),
        (dict(cell="rnn", memory_init=3.0), r"memory_init=3.0: cell 'rnn' has no keep gate"),
        (dict(memory_init="abc"), r"memory_init='abc': expected None .* 'chrono', 'torch' .* or a number"),
        (dict(memory_init=True), r"memory_init=True: expected None"),
        (dict(memory_init=float("nan")), r"memory_init=nan: expected None"),
        (dict(memory_horizon=1), r"memory_horizon=1: expected an int >= 2"),
        (dict(memory_horizon=2.5), r"memory_horizon=2.5: expected an int >= 2"),
        (dict(memory_init=3, lstm_kwargs=dict(bias=False)), r"memory_init=3: the LSTM layer has no keep gate .* bias"),
    ],
)
@pytest.mark.parametrize("algo", [RecurrentPPO, RecurrentDQN])
def test_bad_values_are_named(policy_kwargs, message, algo):
    with pytest.raises(ValueError, match=message):
        algo("MlpLstmPolicy", "CartPole-v1", policy_kwargs=dict(SMALL, **policy_kwargs))


@pytest.mark.parametrize(
    "algo, env_id, horizon", [(RecurrentDQN, "Recall-L20-v0", 22), (RecurrentSAC, "Pendulum-v1", 200)]
)
def test_off_policy_agents_share_the_default(algo, env_id, horizon):
    model = algo("MlpLstmPolicy", env_id, seed=0, policy_kwargs=dict(lstm_hidden_size=8))
    assert model.policy.memory_horizon == horizon
    for net in model.policy.stored_memories():
        times = 1 / (1 - _keep(net.memory.layers[0]))
        assert times.max() <= horizon + 0.1 and times.std() > 1


def test_a_model_saved_before_the_option_loads_and_acts_the_same(tmp_path):
    """A model saved without memory_init in its policy_kwargs (as every model before it) is rebuilt at the new
    default, then its saved parameters replace the initialisation: the same parameters, the same actions."""
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = RecurrentPPO("MlpLstmPolicy", env, n_steps=16, batch_size=32, seed=0,
                         policy_kwargs=dict(SMALL, memory_init="torch"))  # fmt: skip
    model.learn(32)
    del model.policy_kwargs["memory_init"]  # as saved before the option existed
    model.save(tmp_path / "old.zip")
    loaded = RecurrentPPO.load(tmp_path / "old.zip", env=env)
    assert loaded.policy.memory_init is None  # rebuilt at the default ...
    for (name, a), (_, b) in zip(model.policy.state_dict().items(), loaded.policy.state_dict().items(), strict=True):
        assert th.equal(a, b), name  # ... and its parameters are the saved ones
    obs = env.reset()
    a, _ = model.predict(obs, deterministic=True)
    b, _ = loaded.predict(obs, deterministic=True)
    assert (a == b).all()


@pytest.mark.parametrize(
    "choice, median, below_10",
    [("spread", (2 * 500) ** 0.5, math.log(5) / math.log(250)), ("chrono", (2 + 500) / 2, 8 / 498)],
)
def test_the_times_are_spread_as_named(choice, median, below_10):
    """'spread': log-uniform over 2..T (as many units per octave: the median is sqrt(2T), a share log 5 / log
    (T/2) remembers under 10 steps); 'chrono': uniform (Tallec & Ollivier: nearly every unit slow at T=500)."""
    from agents.memory_init import memory_times

    th.manual_seed(0)
    times = memory_times(choice, 100_000, 500)
    assert times.min() >= 2 and times.max() <= 500
    assert abs(float(times.median()) / median - 1) < 0.03
    assert abs(float((times < 10).double().mean()) - below_10) < 0.01


def test_fallback_horizon_where_nothing_gives_one():
    from agents.memory_init import default_horizon

    assert default_horizon(None, None) == FALLBACK_HORIZON
    assert default_horizon(None, 64) == 64
    assert default_horizon(make_vec_env("Recall-L100-v0", n_envs=1), 64) == 102
