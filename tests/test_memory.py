"""MemoryStack (agents/memory.py): stacked registry cells with nn.LSTM's multi-layer conventions."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from agent_helpers import _model, _replay_diff

from agents import (
    MemoryStack,
    RecurrentPPO,
)
from rl_lstm import LSTM, METHODS


def test_stack_of_lstm_cells_is_nn_lstm():
    """Two layers of ``lstm`` cells load nn.LSTM(num_layers=2)'s state dict and compute what it
    computes; with episode starts, what it computes from zeros at each start."""
    th.manual_seed(0)
    torch_lstm = th.nn.LSTM(3, 5, num_layers=2)
    stack = MemoryStack("lstm", 3, 5, n_layers=2)
    stack.load_state_dict(torch_lstm.state_dict())
    x = th.randn(7, 4, 3)
    h0 = (th.randn(2, 4, 5), th.randn(2, 4, 5))
    out, (h, c) = stack(x, h0)
    ref, (h_ref, c_ref) = torch_lstm(x, h0)
    th.testing.assert_close(out, ref)
    th.testing.assert_close(h, h_ref)
    th.testing.assert_close(c, c_ref)
    starts = th.zeros(7, 4)
    starts[3, 1] = 1
    out, _ = stack(x, h0, starts)
    ref_row, _ = torch_lstm(x[3:, 1:2])  # row 1 restarts from zeros at step 3
    th.testing.assert_close(out[3:, 1:2], ref_row)


def test_stack_loads_a_lone_cell_saved_before_stacking():
    cell = LSTM(3, 5)
    stack = MemoryStack("lstm", 3, 5)
    stack.load_state_dict(cell.state_dict())
    x = th.randn(4, 2, 3)
    th.testing.assert_close(stack(x)[0], cell(x)[0])


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("layer_dropout", [0.0, 0.5])
def test_stack_masks_replay(method, layer_dropout):
    stack = MemoryStack("lstm", 3, 6, n_layers=3, layer_dropout=layer_dropout, dropout=0.5, dropout_method=method)
    assert stack.mask_width == 3 * stack.layers[0].mask_width + (2 * 6 if layer_dropout else 0)
    stack.train()
    x, starts = th.randn(9, 4, 3), (th.rand(9, 4) < 0.2).float()
    out, state = stack(x, None, starts)
    masks = stack.last_masks
    assert masks.shape == (9, 4, stack.mask_width)
    again, state_again = stack(x, None, starts, masks)
    assert th.equal(out, again) and all(th.equal(a, b) for a, b in zip(state, state_again, strict=True))
    if layer_dropout:
        between = masks[..., stack.layers[0].mask_width : stack.layers[0].mask_width + 6]
        assert set(between.unique().tolist()) == {0.0, 2.0}, "nn.LSTM's dropout: 0 or 1/(1-p)"
    stack.eval()
    assert stack(x, None, starts)[0] is not None and stack.last_masks is None


def test_stack_bad_input():
    stack = MemoryStack("lstm", 3, 5, n_layers=2)
    with pytest.raises(ValueError, match=r"hidden: expected \(h, c\), each \(n_layers, batch, hidden_size\) = \(2, 4,"):
        stack(th.randn(2, 4, 3), (th.zeros(1, 4, 5), th.zeros(1, 4, 5)))
    with pytest.raises(ValueError, match="masks: this memory has no dropout"):
        stack(th.randn(2, 4, 3), None, None, th.ones(2, 4, 5))
    with pytest.raises(ValueError, match="n_lstm_layers=0: expected a positive integer"):
        MemoryStack("lstm", 3, 5, n_layers=0)
    with pytest.raises(ValueError, match=r"lstm_kwargs\['dropout'\]=1.0: expected a number in \[0, 1\)"):
        MemoryStack("lstm", 3, 5, n_layers=2, layer_dropout=1.0)


@pytest.mark.parametrize("cell", ["gru-gal", "rnn"])
def test_h_only_memories_keep_the_h_c_layout(cell):
    """GRU and RNN memories carry h only; the agents keep sb3-contrib's (h, c) pairs, c passing through
    as zeros, so that the buffer, predict and save/load are the same for every memory."""
    stack = MemoryStack(cell, 3, 5, n_layers=2, dropout=0.3)
    out, (h, c) = stack(th.randn(4, 2, 3), (th.randn(2, 2, 5), th.randn(2, 2, 5)))
    assert h.shape == c.shape == (2, 2, 5) and not c.any(), "c passes through as zeros"
    model = _model(RecurrentPPO, policy_kwargs=dict(cell=cell, dropout=0.3, n_lstm_layers=2))
    assert _replay_diff(model) <= 1e-5
    model.learn(48)
    _, state = model.predict(model.env.reset(), None, np.ones(2, dtype=bool))
    assert state[0].shape == state[1].shape == (2, 2, 8) and not state[1].any()


@pytest.mark.parametrize("name", ["lstm", "ln", "gru", "rnn"])
@pytest.mark.parametrize("kernel_mode", ["auto", "0"])
def test_stack_keeps_a_nan_in_its_episode(monkeypatch, name, kernel_mode):
    """A NaN input poisons both layers' state of its row until that row's next episode start, no further;
    with 0.5 between-layer dropout replayed, in the collection's one-step calls and in a sequence call."""
    from rl_lstm import kernel

    monkeypatch.setenv(kernel.ENV, kernel_mode)
    stack = MemoryStack(name, 3, 4, n_layers=2, layer_dropout=0.5)
    x = th.randn(24, 2, 3)
    starts = th.zeros(24, 2)
    starts[0] = 1
    starts[10, 0] = 1
    clean, _ = stack(x, None, starts)
    masks = stack.last_masks
    x[3, 0, 0] = float("nan")
    out, _ = stack(x, None, starts, masks)
    state, steps = None, []
    for t in range(24):
        o, state = stack(x[t : t + 1], state, starts[t : t + 1], masks[t : t + 1])
        steps.append(o)
    for got in (out, th.cat(steps)):
        assert got[3:10, 0].isnan().all()
        th.testing.assert_close(got[10:, 0], clean[10:, 0], atol=1e-5, rtol=0)
        th.testing.assert_close(got[:, 1], clean[:, 1], atol=1e-5, rtol=0)
