"""The sequence rollout buffers (agents/buffers.py): chunks of any length over each environment's rollout."""

from __future__ import annotations

import pytest
from agent_helpers import SMALL, _collect, _env, _model, _replay_diff

from agents import (
    RecurrentPPO,
    chunk_lengths,
)


@pytest.mark.parametrize(
    ("n_steps", "batch_size"),
    [(128, 128), (2048, 64), (50, 64), (100, None), (7, 64), (37, 64), (5, None)],
)
def test_default_chunk_is_the_whole_rollout(n_steps, batch_size):
    """Credit reaches as far back as stock sb3-contrib's sequences (up to n_steps): one chunk per rollout,
    whatever the batch size (the earlier default cut chunks of at most 32 steps)."""
    assert chunk_lengths(n_steps, None, batch_size) == (n_steps,)
    model = RecurrentPPO("MlpLstmPolicy", _env("mlp"), n_steps=n_steps, batch_size=batch_size or 64,
                         policy_kwargs=SMALL)  # fmt: skip
    assert model.rollout_buffer.chunk_lengths == (n_steps,)


def test_chunks_set_by_the_user():
    assert chunk_lengths(128, 16, 64) == (16,) * 8
    assert chunk_lengths(16, 32) == (16,), "longer than the rollout: the whole rollout"
    with pytest.raises(ValueError, match="seq_len=32: expected a positive divisor of n_steps=50"):
        chunk_lengths(50, 32)
    with pytest.raises(ValueError, match="batch_size=20: expected a multiple of seq_len=8"):
        chunk_lengths(32, 8, 20)
    with pytest.raises(ValueError, match="seq_len=0: expected a positive integer"):
        chunk_lengths(32, 0)
    env = _env("mlp")
    with pytest.raises(ValueError, match="seq_len=32: expected a positive divisor of n_steps=50"):
        RecurrentPPO("MlpLstmPolicy", env, n_steps=50, seq_len=32)


@pytest.mark.parametrize(("n_steps", "batch_size"), [(50, 64), (7, 10), (37, 100), (33, 5)])
def test_any_n_steps_and_batch_size_learn_and_replay(n_steps, batch_size):
    model = _model(RecurrentPPO, n_steps=n_steps, batch_size=batch_size, policy_kwargs=dict(cell="gal", dropout=0.3))
    assert _replay_diff(model) <= 1e-5
    model.learn(2 * n_steps * 2)
    assert model.num_timesteps >= 2 * n_steps * 2
    assert model.logger.name_to_value["train/replay_max_abs_logp_diff"] <= 1e-5


def test_minibatches_hold_about_batch_size_steps_of_whole_chunks():
    model = _model(RecurrentPPO, n_envs=4, n_steps=36, batch_size=24, seq_len=12)
    buffer = _collect(model)
    sizes = [(d.episode_starts.shape, d.old_log_prob.shape[0]) for d in buffer.get(24)]
    assert all(shape == (12, 2) and n == 24 for shape, n in sizes), "24 / 12 = 2 chunks of 12 steps"
    assert sum(n for _, n in sizes) == 36 * 4, "every step once per epoch"
    model = _model(RecurrentPPO, n_envs=4, n_steps=37, batch_size=40)  # default: whole rollouts
    sizes = [d.episode_starts.shape for d in _collect(model).get(40)]
    assert sizes == [(37, 1)] * 4, "round(40 / 37) = 1 rollout per minibatch"
