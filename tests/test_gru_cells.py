"""Where the GRU family's and the tanh RNN's masks and normalisation go, and their bad input.
(The registry-wide tests in test_cells.py cover them too: nn.GRU / nn.RNN equivalence, replay,
gradcheck, fast paths, bounded state.)"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rl_lstm import GRU, RNN, LayerNormGRU, make_cell
from rl_lstm.registry import CELLS

H_ONLY = [n for n, cls in CELLS.items() if cls.state_names == ("h",)]
GRU_DROPOUT = ["gru", "gru-gal", "gru-semeniuta", "gru-zoneout"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _reference_gru_step(cell, x, h, m, ln=None):
    """One GRU step written out from the docstrings: where each method puts its mask ``m`` (B, H)."""
    site = cell.mask_spec.site
    h_in = h * m if site == "hidden" else h

    def norm(v, mod):
        return v if mod is None else F.layer_norm(v, v.shape[-1:], mod.weight, mod.bias, 1e-6)

    a = norm(x @ cell.weight_ih.T, None if ln is None else ln[0]) + cell.bias_ih
    b = norm(h_in @ cell.weight_hh.T, None if ln is None else ln[1]) + cell.bias_hh
    (a_r, a_z, a_n), (b_r, b_z, b_n) = a.chunk(3, 1), b.chunk(3, 1)
    r, z = torch.sigmoid(a_r + b_r), torch.sigmoid(a_z + b_z)
    n = torch.tanh(a_n + r * b_n)
    if site == "candidate":
        n = n * m
    h_new = (1 - z) * n + z * h
    if site == "zoneout":
        h_new = m * h + (1 - m) * h_new
        return h_new, h_new
    out = h_new * m if site in ("hidden", "output") else h_new
    return out, h_new  # output, carried state


@pytest.mark.parametrize("name", GRU_DROPOUT + ["ln-gru", "ln-gru-gal", "ln-gru-semeniuta", "ln-gru-zoneout"])
def test_gru_masks_go_where_the_docstrings_say(name):
    cell = make_cell(name, 4, 6, dropout=0.5)
    ln = (cell.ln_ih, cell.ln_hh) if isinstance(cell, LayerNormGRU) else None
    if ln is not None:
        with torch.no_grad():
            for mod in ln:
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
    x, h0 = torch.randn(2, 3, 4), torch.randn(1, 3, 6)
    out, h2 = cell(x, h0)
    masks = cell.last_masks
    assert masks.shape == (2, 3, 6), "every GRU method has one block of H columns (zoneout: h only)"
    h = h0[0]
    for t in range(2):
        ref_out, h = _reference_gru_step(cell, x[t], h, masks[t], ln)
        torch.testing.assert_close(out[t], ref_out)
    torch.testing.assert_close(h2[0], h)


@pytest.mark.parametrize("method", ["pytorch", "gal", "zoneout"])
def test_rnn_masks(method):
    cell = RNN(4, 6, dropout=0.5, dropout_method=method)
    x, h0 = torch.randn(2, 3, 4), torch.randn(1, 3, 6)
    out, h2 = cell(x, h0)
    masks, h = cell.last_masks, h0[0]
    for t in range(2):
        m = masks[t]
        h_in = h * m if method == "gal" else h
        h_new = torch.tanh(x[t] @ cell.weight_ih.T + cell.bias_ih + h_in @ cell.weight_hh.T + cell.bias_hh)
        if method == "zoneout":
            h_new = m * h + (1 - m) * h_new
        torch.testing.assert_close(out[t], h_new if method == "zoneout" else h_new * m)
        h = h_new
    torch.testing.assert_close(h2[0], h)


@pytest.mark.parametrize("name", ["gru-gal", "gru-semeniuta", "gru-zoneout", "ln-gru-gal", "rnn"])
def test_carried_h_is_bounded_over_1000_steps(name):
    """The carried h of a GRU is a convex mix of candidates in [-1, 1] (Semeniuta's scaled by
    1/(1-p)); Gal's mask is not applied to the carried h again at every step, which would grow
    kept units as (z / (1 - p))^t with the update gate z near 1 (bias +3 here)."""
    p = 0.5
    cell = make_cell(name, 8, 64, dropout=p).train()
    if cell.gates == 3:
        with torch.no_grad():
            cell.bias_ih[64:128] = 3.0  # z near 1: keep the memory
    bound = 1 / (1 - p) if cell.mask_spec.site == "candidate" else 1.0
    state, worst = None, 0.0
    with torch.no_grad():
        for _ in range(10):
            out, state = cell(torch.randn(100, 4, 8), state)
            worst = max(worst, state.abs().max().item())
    assert worst <= bound + 1e-6, f"{name}: max |h| {worst:.3f} over 1000 steps, expected <= {bound}"
    assert torch.isfinite(out).all()


def test_eval_zoneout_is_the_expectation_on_h():
    cell = make_cell("gru-zoneout", 4, 6, dropout=0.3).eval()
    plain = GRU(4, 6).eval()
    plain.load_state_dict(cell.state_dict())
    x, h0 = torch.randn(1, 2, 4), torch.randn(1, 2, 6)
    _, h1 = cell(x, h0)
    _, new = plain(x, h0)
    torch.testing.assert_close(h1, 0.3 * h0 + 0.7 * new)
    assert cell.last_masks is None


@pytest.mark.parametrize("name", H_ONLY)
def test_state_is_h_alone(name):
    cell = make_cell(name, 3, 5, dropout=0.0)
    out, h = cell(torch.randn(4, 2, 3))
    assert isinstance(h, torch.Tensor) and h.shape == (1, 2, 5)
    torch.testing.assert_close(out[-1], h[0])
    out2, none = cell(torch.randn(4, 2, 3), h, need_state=False)
    assert none is None and out2.shape == (4, 2, 5)


def test_gal_mask_changes_only_at_own_start_and_replays():
    cell = make_cell("gru-gal", 3, 32, dropout=0.5)
    starts = torch.zeros(12, 4)
    starts[0] = 1
    starts[5, 2] = 1
    x = torch.randn(12, 4, 3)
    state, outs, masks = None, [], []
    for t in range(12):  # collection: one step at a time
        o, state = cell(x[t : t + 1], state, starts[t : t + 1])
        outs.append(o)
        masks.append(cell.last_masks)
    masks = torch.cat(masks)
    for t in range(1, 12):
        changed = (masks[t] != masks[t - 1]).any(-1)
        assert torch.equal(changed, starts[t].bool()), f"step {t}"
    replay, _ = cell(x, None, starts, masks=masks)  # the update: the whole sequence, masks replayed
    torch.testing.assert_close(replay, torch.cat(outs), atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- weights and bad input
def test_gru_parameters_are_nn_grus():
    cell = GRU(4, 6)
    shapes = {n: tuple(p.shape) for n, p in cell.named_parameters()}
    assert shapes == {"weight_ih": (18, 4), "weight_hh": (18, 6), "bias_ih": (18,), "bias_hh": (18,)}
    ln = LayerNormGRU(4, 6, learnable=False)
    assert {n for n, _ in ln.named_parameters()} == set(shapes)
    rnn_shapes = {n: tuple(p.shape) for n, p in RNN(4, 6).named_parameters()}
    assert rnn_shapes == {"weight_ih": (6, 4), "weight_hh": (6, 6), "bias_ih": (6,), "bias_hh": (6,)}


@pytest.mark.parametrize("cls, module, match", [
    (GRU, torch.nn.LSTM(3, 4), "module: expected a torch.nn.GRU, got LSTM"),
    (GRU, torch.nn.GRU(3, 4, num_layers=2), "expected one layer"),
    (RNN, torch.nn.GRU(3, 4), "module: expected a torch.nn.RNN, got GRU"),
    (RNN, torch.nn.RNN(3, 4, nonlinearity="relu"), "expected nonlinearity='tanh', got 'relu'"),
])  # fmt: skip
def test_from_torch_rejects_other_modules(cls, module, match):
    with pytest.raises(ValueError, match=match):
        cls.from_torch(module)


@pytest.mark.parametrize("name, kwargs, match", [
    ("gru", dict(dropout_method="moon"),
      "dropout_method='moon': expected one of 'pytorch', 'gal', 'semeniuta', 'zoneout'"),
    ("rnn", dict(dropout_method="semeniuta"),
     r"dropout_method='semeniuta': expected one of 'pytorch', 'gal', 'zoneout'"),
    ("nn-gru", dict(dropout_method="gal"), r"dropout_method='gal': expected one of 'pytorch'$"),
    ("ln-gru", dict(ln_preact=False), r"ln_preact: only the cells ln, .* take it, not cell='ln-gru'"),
    ("gru", dict(learnable=False), r"learnable: only the cells .*ln-gru-zoneout take it, not cell='gru'"),
])  # fmt: skip
def test_bad_gru_arguments(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_cell(name, 3, 4, **kwargs)


def test_layer_norm_flags_at_their_defaults_are_accepted():
    """The policies pass ln_preact=True and learnable=True to every cell."""
    assert not make_cell("ln-gru", 3, 4, ln_preact=True, learnable=False).learnable
    assert isinstance(make_cell("rnn", 3, 4, ln_preact=True, learnable=True), RNN)
