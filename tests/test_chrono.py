"""Chrono initialisation of the memories' gate biases (agents.chrono)."""

from __future__ import annotations

import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from agents import RecurrentPPO
from agents.chrono import chrono_init_
from agents.memory import MemoryStack

SMALL = dict(lstm_hidden_size=8, net_arch=[8])


@pytest.mark.parametrize("cell, gates", [("lstm", 4), ("ln", 4), ("nn", 4), ("gru", 3), ("nn-gru", 3)])
def test_keep_gate_biases_spread_up_to_t_max(cell, gates):
    th.manual_seed(0)
    memory = MemoryStack(cell, 3, 16, n_layers=2)
    chrono_init_(memory, 100)
    for layer in memory.layers:
        keep = layer.bias_hh.detach()[16:32]
        assert th.all(keep >= 0) and th.all(keep <= th.log(th.tensor(99.0))) and keep.std() > 0.3
        assert th.all(layer.bias_ih.detach()[16:32] == 0)
        if gates == 4:  # the input gate opens as little as the forget gate keeps
            assert th.equal(layer.bias_hh.detach()[:16], -keep)
    # A unit at bias b keeps sigmoid(b) of its cell per step: the slowest keeps about 1 - 1/99.
    assert th.sigmoid(memory.layers[0].bias_hh.detach()[16:32]).max() > 0.9


def test_policy_option_survives_save_and_load(tmp_path):
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = RecurrentPPO("MlpLstmPolicy", env, n_steps=8, batch_size=16, seed=0,
                         policy_kwargs=dict(cell="lstm", chrono_init=50, **SMALL))  # fmt: skip
    keep = model.policy.lstm_actor.layers[0].bias_hh.detach()[8:16].clone()
    assert keep.min() >= 0 and model.policy.lstm_critic.layers[0].bias_hh.detach()[8:16].min() >= 0
    model.save(tmp_path / "m.zip")
    loaded = RecurrentPPO.load(tmp_path / "m.zip")
    assert loaded.policy.chrono_init == 50
    assert th.equal(loaded.policy.lstm_actor.layers[0].bias_hh.detach()[8:16], keep)


@pytest.mark.parametrize(
    "cell, t_max, message",
    [
        ("lstm", 1, r"chrono_init=1: expected an int >= 2"),
        ("lstm", 2.5, r"chrono_init=2.5: expected an int >= 2"),
        ("rnn", 10, r"chrono_init=10: the .* layer has no forget or update gate"),
    ],
)
def test_bad_values_are_named(cell, t_max, message):
    with pytest.raises(ValueError, match=message):
        chrono_init_(MemoryStack(cell, 3, 4), t_max)
    no_bias = MemoryStack("lstm", 3, 4, bias=False)
    with pytest.raises(ValueError, match="has no forget or update gate with biases"):
        chrono_init_(no_bias, 10)
