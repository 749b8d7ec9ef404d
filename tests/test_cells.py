"""Contract, reference and property tests for every cell in the registry. A memory carries
``(h, c)`` or ``h`` alone (its ``state_names``); the helpers below build and take apart both."""

from __future__ import annotations

import warnings
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

import rl_lstm.paths
import rl_lstm.scan
import rl_lstm.segments
from rl_lstm import CELLS, METHODS, LayerNorm, RecurrentLayer, kernel, make_cell
from rl_lstm.paths import KERNEL, RECURRENCE_LOOP, SCAN, STEPS, TORCH_CELLS, TORCH_KERNELS
from rl_lstm.registry import cell_class

NAMES = list(CELLS)
DROPOUT_NAMES = [n for n in NAMES if n not in ("nn", "slow", "nn-gru")]  # not the torch adapters, not the pedagogic
NN_MATH = [n for n in NAMES if cell_class(n).torch_equivalent]  # the torch module's math at dropout 0


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _states(name: str, batch: int, hidden: int, dtype=torch.float32):
    """A random state in the form cell ``name`` takes: ``(h, c)`` or ``h``, each (1, batch, hidden)."""
    parts = tuple(torch.randn(1, batch, hidden, dtype=dtype) for _ in cell_class(name).state_names)
    return parts if len(parts) == 2 else parts[0]


def _parts(state) -> tuple[torch.Tensor, ...]:
    """The tensors of a state, ``(h, c)`` or ``(h,)``."""
    return state if isinstance(state, tuple) else (state,)


def _pack(parts: tuple[torch.Tensor, ...]):
    return parts if len(parts) == 2 else parts[0]


def _starts(seq_len: int, batch: int, p: float = 0.15) -> torch.Tensor:
    return (torch.rand(seq_len, batch) < p).float()


# ---------------------------------------------------------------- registry and signatures
def test_registry_names():
    assert NAMES == [
        "nn", "slow", "lstm", "gal", "moon", "semeniuta", "zoneout",
        "ln", "ln-gal", "ln-moon", "ln-semeniuta", "ln-zoneout",
        "nn-gru", "gru", "gru-gal", "gru-semeniuta", "gru-zoneout",
        "ln-gru", "ln-gru-gal", "ln-gru-semeniuta", "ln-gru-zoneout", "rnn",
        "mingru", "minlstm", "lru", "ffm",
    ]  # fmt: skip
    for name, cls in CELLS.items():
        assert issubclass(cls, RecurrentLayer), name
        method = make_cell(name, 3, 4).dropout_method
        expected = name.split("-")[-1]  # a name ends with its dropout method, if it has one
        assert method == (expected if expected in METHODS else "pytorch"), name
        carries_c = cls.state_names == ("h", "c")
        h_only = "gru" in name or name in ("rnn", "minlstm")  # lru and ffm: (real, imaginary) halves
        assert carries_c != h_only, name
        assert cls.state_names in (("h", "c"), ("h",)), name


def test_seed_signatures():
    from rl_lstm import LSTM, GalLSTM, LayerNormGalLSTM

    lstm = LSTM(3, 4, True, 0.3, "moon")
    assert (lstm.dropout, lstm.dropout_method) == (0.3, "moon")
    assert GalLSTM(3, 4, dropout=0.2).dropout_method == "gal"
    ln = LayerNormGalLSTM(3, 4, True, 0.2, ln_preact=False, learnable=False)
    assert ln.dropout_method == "gal" and not ln.ln_preact and not ln.learnable
    assert not hasattr(ln, "ln_ih")


# ---------------------------------------------------------------- reference: nn.LSTM, nn.GRU, nn.RNN
@pytest.mark.parametrize("name", NN_MATH)
@pytest.mark.parametrize("seq_len", [1, 50])
@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("given_state", [False, True])
def test_equals_torch_module(name, seq_len, batch, given_state):
    """At dropout 0 a cell computes what its torch module (nn.LSTM, nn.GRU or nn.RNN) does."""
    ref = cell_class(name).torch_module(5, 6)
    cell = cell_class(name).from_torch(ref, dropout=0.0)
    x = torch.randn(seq_len, batch, 5)
    hidden = _states(name, batch, 6) if given_state else None
    out, state = cell(x, hidden)
    ref_out, ref_state = ref(x, hidden)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=0)
    assert len(_parts(state)) == len(cell.state_names)
    for part, ref_part in zip(_parts(state), _parts(ref_state), strict=True):
        torch.testing.assert_close(part, ref_part, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", NN_MATH)
def test_weights_convert_both_ways(name):
    cell = make_cell(name, 4, 3, bias=True, dropout=0.0)
    module = cell.to_torch()
    assert type(module) is cell.torch_module
    back = cell_class(name).from_torch(module)
    for a, b in zip(cell.torch_parameters(), back.torch_parameters(), strict=True):
        assert torch.equal(a, b)
    no_bias = cell_class(name).from_torch(cell.torch_module(4, 3, bias=False))
    assert not no_bias.bias and len(no_bias.torch_parameters()) == 2


@pytest.mark.parametrize("name, kind", [("ln", "LSTM"), ("ln-gru", "GRU")])
def test_layer_norm_cells_have_no_torch_module(name, kind):
    with pytest.raises(TypeError, match=f"no nn.{kind} equivalent"):
        make_cell(name, 3, 4).to_torch()


def test_zoneout_has_no_nn_lstm_while_it_zones_out():
    """Zoneout's evaluation mixes each step with the previous state: an nn.LSTM would compute another thing."""
    cell = make_cell("zoneout", 3, 4, dropout=0.3).eval()
    with pytest.raises(TypeError, match="zoneout's evaluation mixes"):
        cell.to_torch()
    x = torch.randn(6, 2, 3)
    plain = make_cell("zoneout", 3, 4, dropout=0.0)  # exactly nn.LSTM
    torch.testing.assert_close(plain.to_torch()(x)[0], plain(x)[0], atol=1e-6, rtol=0)


def test_a_named_method_is_not_replaced_silently():
    with pytest.raises(ValueError, match="dropout_method='moon': GalLSTM applies 'gal'"):
        make_cell("gal", 3, 4, dropout=0.2, dropout_method="moon")
    assert make_cell("gal", 3, 4, dropout_method="gal").dropout_method == "gal"


@pytest.mark.parametrize("name", NAMES)
def test_episode_starts_reset_rows(name):
    """A row starting an episode at step t gives what a fresh call from step t gives; the other rows, and
    the starting rows before their start, run on from their given state."""
    cell = make_cell(name, 4, 5, dropout=0.0)
    x = torch.randn(12, 3, 4)
    hidden = _states(name, 3, 5)
    starts = torch.zeros(12, 3)
    starts[5, 1] = 1
    starts[9, 0] = 1
    out, _ = cell(x, hidden, starts)

    def row(b: int, steps: slice = slice(None), state: bool = True) -> torch.Tensor:
        given = _pack(tuple(s[:, b : b + 1] for s in _parts(hidden))) if state else None
        return cell(x[steps, b : b + 1], given)[0]

    torch.testing.assert_close(out[5:, 1:2], row(1, slice(5, None), state=False), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[9:, 0:1], row(0, slice(9, None), state=False), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, 2:3], row(2), atol=1e-5, rtol=0)  # never starts: not reset with the others
    torch.testing.assert_close(out[:5, 1:2], row(1, slice(0, 5)), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:9, 0:1], row(0, slice(0, 9)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_sequence_equals_steps(name):
    """One call over T steps equals T calls of one step, masks replayed, resets included."""
    cell = make_cell(name, 4, 5, dropout=0.5)
    x, starts, hidden = torch.randn(20, 3, 4), _starts(20, 3), _states(name, 3, 5)
    out, final = cell(x, hidden, starts)
    masks = cell.last_masks
    outs, state = [], hidden
    for t in range(20):
        o, state = cell(x[t : t + 1], state, starts[t : t + 1], masks=masks[t : t + 1])
        outs.append(o)
    # Batched and per-step matmuls round differently: a few 1e-6 either way.
    torch.testing.assert_close(torch.cat(outs), out, atol=2e-5, rtol=1e-4)
    for part, ref in zip(_parts(state), _parts(final), strict=True):
        torch.testing.assert_close(part, ref, atol=2e-5, rtol=1e-4)


# ---------------------------------------------------------------- masks
@pytest.mark.parametrize("name", DROPOUT_NAMES)
def test_masks_fraction_scale_and_rows(name):
    p = 0.3
    cell = make_cell(name, 8, 200, dropout=p)
    spec = cell.mask_spec
    cell(torch.randn(30, 16, 8))
    m = cell.last_masks
    assert m.shape == (30, 16, spec.width(cell.state_names) * 200) == (30, 16, cell.mask_width)
    if spec.site == "zoneout":
        assert set(m.unique().tolist()) <= {0.0, 1.0}
        frac = (m == 1).float().mean().item()  # units keeping their previous value
    else:
        keep = 1 / (1 - p) if spec.inverted else 1.0
        assert torch.allclose(m[m != 0], torch.tensor(keep))
        frac = (m == 0).float().mean().item()
    rows = m[0] if spec.per_episode else m.reshape(-1, m.shape[-1])
    assert abs(frac - p) < 0.03, f"{name}: fraction {frac:.3f}, expected {p}"
    assert not torch.equal(m[0, 0], m[0, 1]), "rows must have masks of their own"
    if spec.per_episode:
        assert torch.equal(m[0], m[-1]), "per-episode masks hold for the whole episode"
    else:
        assert not torch.equal(m[0], m[1]), "per-step masks change at every step"
    assert rows.numel() > 0


@pytest.mark.parametrize("name", [n for n in DROPOUT_NAMES if METHODS[make_cell(n, 1, 1).dropout_method].per_episode])
def test_episode_mask_changes_only_at_own_start(name):
    cell = make_cell(name, 3, 64, dropout=0.5)
    x = torch.randn(1, 4, 3)
    state = None
    history = []
    starts = torch.zeros(10, 4)
    starts[0] = 1
    starts[3, 1] = 1
    starts[7, 2] = 1
    for t in range(10):  # step by step, as an RL collector calls it
        _, state = cell(x, state, starts[t : t + 1])
        history.append(cell.last_masks[0].clone())
    for t in range(1, 10):
        for row in range(4):
            same = torch.equal(history[t][row], history[t - 1][row])
            assert same != bool(starts[t, row]), f"row {row}, step {t}"
    seq_cell = make_cell(name, 3, 64, dropout=0.5)
    seq_cell(torch.randn(10, 4, 3), None, starts)
    m = seq_cell.last_masks
    for t in range(1, 10):
        changed = (m[t] != m[t - 1]).any(-1)
        assert torch.equal(changed, starts[t].bool()), f"step {t}"


@pytest.mark.parametrize("name", DROPOUT_NAMES)
def test_masks_act_inside_autograd(name):
    """Masks change the output, gradients flow through them, and eval mode uses none."""
    cell = make_cell(name, 4, 32, dropout=0.5)
    x = torch.randn(6, 3, 4, requires_grad=True)
    out, _ = cell(x)
    masks = cell.last_masks
    replay, _ = cell(x, masks=masks)
    assert torch.equal(out, replay)
    ones = torch.ones_like(masks) if cell.mask_spec.site != "zoneout" else torch.zeros_like(masks)
    unmasked, _ = cell(x, masks=ones)
    assert not torch.allclose(out, unmasked), "the masks must change the computation"
    if cell.mask_spec.site in ("output", "hidden"):
        assert torch.all(out[masks == 0] == 0)
        kept = masks != 0
        if cell.mask_spec.site == "output":
            torch.testing.assert_close(out[kept], (unmasked * masks)[kept])
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    cell.eval()
    cell(x)
    assert cell.last_masks is None
    cell.masks_in_eval = True
    cell(x)
    assert cell.last_masks is not None


@pytest.mark.parametrize("name", DROPOUT_NAMES)
def test_eval_uses_no_masks(name):
    """Eval mode is the deterministic cell: no dropout (the expectation for the inverted-scaled
    methods; for Moon's 0/1 masks, the un-dropped cell), zoneout's expectation."""
    cell = make_cell(name, 4, 6, dropout=0.5).eval()
    x, hidden = torch.randn(5, 2, 4), _states(name, 2, 6)
    out, _ = cell(x, hidden)
    plain = make_cell(name, 4, 6, dropout=0.0).eval()  # the same cell without dropout
    plain.load_state_dict(cell.state_dict())
    ref, _ = plain(x, hidden)
    if cell.mask_spec.site == "zoneout":
        # each unit of each state part (c and h, or h) moves 1 - p of the way to its new value
        _, new = plain(x[:1], hidden)
        _, zoned = cell(x[:1], hidden)
        for z1, old, new1 in zip(_parts(zoned), _parts(hidden), _parts(new), strict=True):
            torch.testing.assert_close(z1, 0.5 * old + 0.5 * new1)
    else:
        torch.testing.assert_close(out, ref)


def test_sample_mask_resamples_all():
    cell = make_cell("gal", 3, 64, dropout=0.5)
    cell(torch.randn(1, 4, 3))
    before = cell.episode_masks.clone()
    cell.sample_mask()
    assert not torch.equal(before, cell.episode_masks)
    x = torch.randn(1, 4, 3)
    state = _states("gal", 4, 64)
    cell(x, state)  # no episode start: the masks hold
    after = cell.last_masks[0].clone()
    cell(x, state)
    assert torch.equal(after, cell.last_masks[0])


@pytest.mark.parametrize("name", DROPOUT_NAMES)
def test_cell_state_stays_bounded(name):
    """The keep-memory gate's bias +3 (the LSTM's forget gate f, the GRU's update gate z: rows
    H:2H of both), p = 0.5, training mode, 1000 steps: the state stays finite and small.
    (lstms.pth's MoonLSTM reached |c| ~ 6.5e11 after 50 steps.)"""
    cell = make_cell(name, 8, 64, dropout=0.5).train()
    if getattr(cell, "bias_hh", None) is not None and cell.gates > 1:  # the tanh RNN has no gate
        with torch.no_grad():
            cell.bias_ih[64:128] = 3.0
            cell.bias_hh[64:128] = 0.0
    x = torch.randn(1000, 4, 8)
    with torch.no_grad():
        out, final = cell(x)
        state, worst = None, 0.0
        for t in range(0, 1000, 100):  # and step by step, through the stored episode masks
            _, state = cell(x[t : t + 100], state)
            worst = max(worst, *(part.abs().max().item() for part in _parts(state)))
    assert torch.isfinite(out).all() and all(torch.isfinite(part).all() for part in _parts(final))
    assert max(part.abs().max().item() for part in _parts(final)) <= 100 and worst <= 100


# ---------------------------------------------------------------- layer norm
def test_layer_norm_uses_functional_and_starts_at_identity():
    ln = LayerNorm(256)
    assert torch.equal(ln.weight, torch.ones(256)) and torch.equal(ln.bias, torch.zeros(256))
    x = torch.randn(3, 256) * 5 + 2
    torch.testing.assert_close(ln(x), F.layer_norm(x, (256,), eps=1e-6))
    frozen = LayerNorm(8, learnable=False)
    assert len(list(frozen.parameters())) == 0 and torch.equal(frozen.weight, torch.ones(8))
    with pytest.raises(ValueError, match="expected a tensor of shape"):
        ln(torch.randn(3, 5))


def test_layer_norm_lstm_follows_ba_et_al():
    """gates = LN(W_ih x) + LN(W_hh h) + b; h = o * tanh(LN(c)); the carried c is not normalised."""
    cell = make_cell("ln", 4, 6)
    with torch.no_grad():
        for ln in (cell.ln_ih, cell.ln_hh, cell.ln_c):
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.uniform_(-0.5, 0.5)
    x, (h0, c0) = torch.randn(1, 3, 4), _states("ln", 3, 6)
    _, (h1, c1) = cell(x, (h0, c0))

    def ln(v, mod):
        return F.layer_norm(v, v.shape[-1:], mod.weight, mod.bias, 1e-6)

    gates = ln(x[0] @ cell.weight_ih.T, cell.ln_ih) + ln(h0[0] @ cell.weight_hh.T, cell.ln_hh)
    gates = gates + cell.bias_ih + cell.bias_hh
    i, f, g, o = gates.chunk(4, 1)
    c = torch.sigmoid(f) * c0[0] + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(ln(c, cell.ln_c))
    torch.testing.assert_close(c1[0], c)
    torch.testing.assert_close(h1[0], h)
    assert not torch.allclose(c.mean(-1), torch.zeros(3), atol=1e-3), "c itself is not normalised"


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(name):
    cell = make_cell(name, 3, 4, dropout=0.5).double()
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    state0 = tuple(s.requires_grad_() for s in _parts(_states(name, 2, 4, torch.float64)))
    starts = torch.tensor([[0, 0], [0, 1], [0, 0], [1, 0], [0, 0]], dtype=torch.float64)
    cell(x.detach(), None, starts)
    masks = cell.last_masks  # held fixed
    n_state = len(state0)

    def f(x, *args):
        state, params = _pack(args[:n_state]), args[n_state:]
        weights = dict(zip(names, params, strict=True))
        out, final = torch.func.functional_call(cell, weights, (x, state, starts, masks))
        return out, *_parts(final)

    names = [n for n, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in cell.named_parameters()]
    assert torch.autograd.gradcheck(f, (x, *state0, *params), atol=1e-6)


# ---------------------------------------------------------------- devices and dtypes
def test_to_moves_masks():
    cell = make_cell("moon", 3, 5, dropout=0.5)
    cell(torch.randn(1, 2, 3))
    cell = cell.to(torch.float64)
    assert cell.episode_masks.dtype == torch.float64
    out, _ = cell(torch.randn(1, 2, 3, dtype=torch.float64), _states("moon", 2, 5, torch.float64))
    assert out.dtype == torch.float64 and cell.last_masks.dtype == torch.float64


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, match", [
    (dict(dropout=-0.1), r"dropout=-0.1: expected a number in \[0, 1\)"),
    (dict(dropout=1.0), r"dropout=1.0: expected a number in \[0, 1\)"),
    (dict(dropout="0.5"), r"dropout='0.5'"),
    (dict(dropout_method="bernoulli"), r"dropout_method='bernoulli': expected one of 'pytorch', 'gal', 'moon'"),
])  # fmt: skip
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_cell("lstm", 3, 4, **kwargs)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sizes", [(0, 4), (3, -1), (3, 2.5)])
def test_bad_sizes(name, sizes):
    with pytest.raises(ValueError, match="expected a positive integer"):
        make_cell(name, *sizes)


def test_unknown_cell_lists_choices():
    with pytest.raises(ValueError, match="cell='mgu': expected one of nn, slow, lstm, gal, .*, rnn"):
        make_cell("mgu", 3, 4)
    with pytest.raises(ValueError, match="ln_preact: only the cells ln, ln-gal, ln-moon, ln-semeniuta, ln-zoneout "):
        make_cell("gal", 3, 4, ln_preact=False)


@pytest.mark.parametrize("name", NAMES)
def test_bad_forward_arguments(name):
    cell = make_cell(name, 3, 4, dropout=0.5)
    x = torch.randn(5, 2, 3)
    if cell.state_names == ("h", "c"):
        bad_states = [
            ((x, (torch.zeros(1, 2, 4),)), r"hidden: expected a tuple \(h, c\)"),
            ((x, torch.zeros(1, 2, 4)), r"hidden: expected a tuple \(h, c\), got Tensor"),
            ((x, (torch.zeros(2, 4), torch.zeros(2, 4))), r"hidden\[0\] \(h\): expected shape \(1, batch, hidden"),
            ((x, (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4).double())), r"hidden\[1\] \(c\): expected dtype"),
        ]
    else:
        bad_states = [
            ((x, (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4))), r"hidden: expected the tensor h .* carries h only"),
            ((x, torch.zeros(2, 4)), r"hidden \(h\): expected shape \(1, batch, hidden_size\)"),
            ((x, torch.zeros(1, 2, 4).double()), r"hidden \(h\): expected dtype"),
        ]
    cases = [*bad_states,
        ((torch.randn(3),), r"x: expected a tensor of shape \(seq_len >= 1, batch >= 1, input_size=3\)"),
        ((torch.randn(2, 4),), r"or, unbatched, \(seq_len >= 1, input_size=3\)"),
        ((torch.randn(5, 2, 4),), "input_size=3"),
        ((torch.randn(0, 2, 3),), "seq_len >= 1"),
        ((x.double(),), "x: expected dtype torch.float32"),
        ((torch.empty(5, 2, 3, device="meta"),), "x: expected dtype torch.float32 on cpu"),
        ((x, None, torch.zeros(5)), r"episode_starts: expected shape \(seq_len, batch\) = \(5, 2\)"),
        ((x, None, torch.zeros(5, 2, dtype=torch.complex64)), "episode_starts: expected a bool, integer or real"),
        ((x, None, None, torch.ones(5, 2, 3)), r"masks: expected shape \(seq_len, batch, mask_width\)"),
    ]  # fmt: skip
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            cell(*args)


# ---------------------------------------------------------------- fast paths
def _spy_paths(monkeypatch) -> Counter:
    """Count the calls of each way a cell can run a sequence: the compiled kernel, torch's sequence
    kernels once per stretch (segments) or once over the padded pieces (pieces), torch's fused cell step
    by step (cells), the parallel scan of a linear recurrence (scan), the step loop (steps)."""
    ran: Counter = Counter()

    def counting(function, label):
        def wrapper(*args, **kwargs):
            step = getattr(args[0], "__name__", "") if args else ""
            ran["cells" if label == "steps" and step in ("_cell_step", "step") else label] += 1
            return function(*args, **kwargs)

        return wrapper

    modules = (rl_lstm.paths, rl_lstm.segments, rl_lstm.scan)
    for module in modules:
        for function, label in (
            ("run_segments", "segments"), ("run_pieces", "pieces"), ("step_loop", "steps"),
            ("recurrence_loop", "steps"), ("parallel_scan", "scan"),
        ):  # fmt: skip
            if hasattr(module, function):
                monkeypatch.setattr(module, function, counting(getattr(module, function), label))
    monkeypatch.setattr(kernel, "run", counting(kernel.run, "kernel"))
    return ran


def _expected_path(name: str, kernel_mode: str, need_state: bool, fused: bool) -> str:
    """The path a whole-sequence call with a few episode starts and masks (dropout 0.5, the class's
    method) should take, from the paths its class lists."""
    cls = cell_class(name)
    fast = fused or not _has_loop(cls)  # a thin adapter over a torch module has no step loop of its own
    stage = cls.mask_stages.get(METHODS[cls.method].site, "step")
    if fast and kernel_mode == "auto" and KERNEL in cls.paths and kernel.load() is not None:
        return "kernel"
    if fast and SCAN in cls.paths:
        return "scan"
    if fast and TORCH_KERNELS in cls.paths and stage == "output":  # torch's own math, the mask on the output
        return "segments" if need_state else "pieces"
    if fast and TORCH_CELLS in cls.paths and stage == "after_step":
        return "cells"
    return "steps"


def _has_loop(cls) -> bool:
    """Whether the class's reference is a step loop of its own (a thin adapter's is torch's kernel)."""
    return cls.paths[-1] in (STEPS, RECURRENCE_LOOP)


@pytest.mark.parametrize("name", NAMES)
def test_a_class_lists_paths_it_can_run_and_a_reference_that_runs_every_call(name):
    """Each path a class lists names the methods it calls, and the class has them; the last path, the
    reference, takes every call (dropout or not, masks or not, one step or many)."""
    cls = cell_class(name)
    assert cls.paths and len(set(cls.paths)) == len(cls.paths)
    for path in cls.paths:
        missing = [m for m in path.needs if not callable(getattr(cls, m, None))]
        assert not missing, f"{name} lists {path} without {missing}"
    assert cls.compiled == (KERNEL in cls.paths)
    assert cls.uses_extension == (KERNEL in cls.paths or SCAN in cls.paths)
    for p in (0.0, 0.5):
        cell = cls(3, 4, dropout=p)
        for t in (1, 5):
            x = torch.randn(t, 2, 3)
            for masks in (None, torch.ones(t, 2, cell.mask_width)) if p else (None,):
                assert cls.paths[-1].can_run(cell, x, masks)


#: What :meth:`RecurrentLayer.execution_path` calls each path the spies see.
PATH_OF = {
    "kernel": "kernel", "segments": "fused", "pieces": "fused", "cells": "cells", "scan": "scan", "steps": "steps",
}  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("need_state", [True, False])
@pytest.mark.parametrize("kernel_mode", ["auto", "0"])
@pytest.mark.parametrize("fused", [True, False])
def test_each_path_runs_where_its_facts_say_and_equals_the_step_loop(monkeypatch, name, need_state, kernel_mode, fused):
    """Every path a cell can take (the compiled kernel on or off, the reference switch ``fused`` on or
    off): the path its class facts choose runs (and no other fast path), and its outputs, final state and
    gradients equal the step loop's (``fused = False``) and those of one call per step, in float64, with
    episode starts inside the sequences."""
    monkeypatch.setenv(kernel.ENV, kernel_mode)
    ran = _spy_paths(monkeypatch)
    cell = make_cell(name, 3, 5, dropout=0.5).double()
    x = torch.randn(32, 4, 3, dtype=torch.float64, requires_grad=True)
    hidden = _states(name, 4, 5, torch.float64)
    starts = torch.zeros(32, 4)
    starts[9, 0] = starts[9, 2] = starts[20, 3] = 1  # three stretches, a fused call each (not one per step)
    cell(x.detach(), hidden, starts)
    masks = cell.last_masks
    weights = torch.randn(32, 4, 5, dtype=torch.float64)

    def grads(out):
        params = [x, *cell.parameters()]
        return torch.autograd.grad((out * weights).sum(), params, retain_graph=True)

    cell.fused = fused
    expected = _expected_path(name, kernel_mode, need_state, fused)
    assert cell.execution_path(x, masks).name == PATH_OF[expected]
    ran.clear()
    out, state = cell(x, hidden, starts, masks, need_state=need_state)
    assert ran[expected] >= 1, f"expected the {expected} path, ran {dict(ran)}"
    assert not ({"kernel", "segments", "pieces", "cells", "scan"} - {expected}) & set(ran), f"ran {dict(ran)}"
    assert (state is None) != need_state
    if _has_loop(cell):
        cell.fused = False  # the reference
        ran.clear()
        ref, ref_state = cell(x, hidden, starts, masks)
        assert set(ran) == {"steps"}, f"the reference ran {dict(ran)}"
        if expected == "steps":
            assert torch.equal(out, ref)
        torch.testing.assert_close(out, ref)
        for g, g_ref in zip(grads(out), grads(ref), strict=True):
            torch.testing.assert_close(g, g_ref)
        if need_state:
            for part, ref_part in zip(_parts(state), _parts(ref_state), strict=True):
                torch.testing.assert_close(part, ref_part)
        cell.fused = fused
    steps, s = [], hidden
    for t in range(32):
        o, s = cell(x[t : t + 1], s, starts[t : t + 1], masks[t : t + 1])
        steps.append(o)
    ref = torch.cat(steps)
    torch.testing.assert_close(out, ref)
    for g, g_ref in zip(grads(out), grads(ref), strict=True):
        torch.testing.assert_close(g, g_ref)
    if need_state:
        for part, ref_part in zip(_parts(state), _parts(s), strict=True):
            torch.testing.assert_close(part, ref_part)


@pytest.mark.parametrize("name", [n for n in NAMES if _has_loop(cell_class(n))])
@pytest.mark.parametrize("starts_at", ["dense", "sparse", "none"])
@pytest.mark.parametrize("training", [True, False])
def test_unfused_cell_is_the_same_function(name, starts_at, training):
    """The fast paths (the compiled kernel, torch.lstm_cell, torch.gru_cell, torch.rnn_tanh_cell, the
    sequence kernels between episode starts, the parallel scan) compute the cell's own step math, the
    Python step loop of ``fused = False``: the same outputs, final state and gradients, in float64."""
    cell = make_cell(name, 3, 5, dropout=0.5).double().train(training)
    x = torch.randn(32, 3, 3, dtype=torch.float64, requires_grad=True)
    hidden = _states(name, 3, 5, torch.float64)
    starts = {"dense": _starts(32, 3, 0.3), "sparse": torch.zeros(32, 3), "none": None}[starts_at]
    if starts_at == "sparse":  # one stretch boundary: the sequence kernel once per stretch
        starts[9, 1] = 1
    weights = torch.randn(32, 3, 5, dtype=torch.float64)

    def run():
        out, state = cell(x, hidden, starts, masks=masks)
        loss = (out * weights).sum() + sum((part * part).sum() for part in _parts(state))
        return out, _parts(state), torch.autograd.grad(loss, [x, *cell.parameters()])

    cell(x.detach(), hidden, starts)
    masks = cell.last_masks  # None in eval mode: no masks, the expectation
    fast = run()
    cell.fused = False
    slow = run()
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- a NaN stays in its episode
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kernel_mode", ["auto", "0"])
@pytest.mark.parametrize("call", ["sequence", "sequence-no-state", "steps"])
def test_nan_does_not_cross_an_episode_boundary(monkeypatch, name, kernel_mode, call):
    """A NaN observation poisons the rest of its episode only: the row's next episode starts from zeros
    (reset by selection, not by multiplying by zero), and the other rows are untouched; on every path."""
    monkeypatch.setenv(kernel.ENV, kernel_mode)
    cell = make_cell(name, 3, 4, dropout=0.0)
    x = torch.randn(32, 3, 3)
    starts = torch.zeros(32, 3)
    starts[0] = 1
    starts[9, 0] = 1  # row 0's second episode; one start step in 16: the fused paths run per stretch

    def run(x):
        if call != "steps":
            return cell(x, None, starts, need_state=call == "sequence")[0]
        outs, state = [], None
        for t in range(32):
            out, state = cell(x[t : t + 1], state, starts[t : t + 1])
            outs.append(out)
        return torch.cat(outs)

    clean = run(x)
    x[4, 0, 1] = float("nan")
    out = run(x)
    assert out[4:9, 0].isnan().all()  # the NaN's own episode
    assert out[9:, 0].isfinite().all()
    torch.testing.assert_close(out[9:, 0], clean[9:, 0])
    torch.testing.assert_close(out[:, 1:], clean[:, 1:])


# ---------------------------------------------------------------- defaults and nn.LSTM's calling conventions
@pytest.mark.parametrize("name", NAMES)
def test_one_default_dropout_from_the_class(name):
    """A cell named for a dropout method acts with it when no dropout is given (0.1), whether built by
    make_cell, by its class or by a policy; the others default to 0."""
    from agents.memory import MemoryStack
    from rl_lstm.registry import default_dropout

    expected = 0.1 if cell_class(name).method != "pytorch" else 0.0
    assert default_dropout(name) == cell_class(name).default_dropout() == expected
    assert make_cell(name, 3, 4).dropout == cell_class(name)(3, 4).dropout == expected
    assert make_cell(name, 3, 4, dropout=None).dropout == expected
    assert MemoryStack(name, 3, 4, n_layers=2).layers[1].dropout == expected
    assert make_cell(name, 3, 4, dropout=0.0).dropout == 0.0


def test_signature_shows_the_documented_defaults():
    import inspect

    from rl_lstm import LSTM, GalLSTM

    params = inspect.signature(LSTM).parameters
    assert params["dropout_method"].default == "pytorch" and params["bias"].default is True
    assert LSTM(3, 4, dropout=0.2).dropout_method == "pytorch"
    assert GalLSTM(3, 4).dropout_method == "gal"  # the class's own method: the family default stands for it


@pytest.mark.parametrize("name", NAMES)
def test_batch_first_is_the_transposed_call(name):
    """``batch_first=True`` as in nn.LSTM: x, the output, episode starts and masks take the batch first;
    the state keeps (1, batch, hidden)."""
    cell = make_cell(name, 3, 4, dropout=0.5)
    first = make_cell(name, 3, 4, dropout=0.5, batch_first=True)
    first.load_state_dict(cell.state_dict())
    assert "batch_first=True" in repr(first)
    x, starts = torch.randn(6, 2, 3), _starts(6, 2, 0.3)
    hidden = _states(name, 2, 4)
    out, state = cell(x, hidden, starts)
    out_first, state_first = first(x.transpose(0, 1), hidden, starts.t(), cell.last_masks.transpose(0, 1))
    torch.testing.assert_close(out_first, out.transpose(0, 1))
    for a, b in zip(_parts(state_first), _parts(state), strict=True):
        torch.testing.assert_close(a, b)
    assert first.last_masks.shape[:2] == (2, 6)
    with pytest.raises(ValueError, match=r"x: expected a tensor of shape \(batch >= 1, seq_len >= 1, input_size=3\)"):
        first(torch.randn(2, 6, 5))


@pytest.mark.parametrize("name", NAMES)
def test_unbatched_input_as_nn_lstm(name):
    """x of shape (seq_len, input_size) is one sequence, as nn.LSTM takes it: each state part (1, hidden)."""
    cell = make_cell(name, 3, 4, dropout=0.0)
    x, starts = torch.randn(6, 3), torch.zeros(6)
    starts[3] = 1
    hidden = _states(name, 1, 4)
    out, state = cell(x, _pack(tuple(t[:, 0] for t in _parts(hidden))), starts)
    ref, ref_state = cell(x.unsqueeze(1), hidden, starts.unsqueeze(1))
    assert out.shape == (6, 4)
    torch.testing.assert_close(out, ref[:, 0])
    for a, b in zip(_parts(state), _parts(ref_state), strict=True):
        assert a.shape == (1, 4)
        torch.testing.assert_close(a, b[:, 0])
    if name in NN_MATH:  # the torch module's own unbatched call
        module = make_cell(name, 3, 4, dropout=0.0).to_torch()
        torch.testing.assert_close(cell.from_torch(module, dropout=0.0)(x)[0], module(x)[0])
    with pytest.raises(ValueError, match=r"for unbatched input x \(seq_len, input_size\) expected each state part"):
        cell(x, hidden)


def test_unknown_arguments_and_numpy_sizes():
    import numpy as np

    with pytest.raises(ValueError, match=r"batch_size: cell='lstm' takes no such argument \(it takes bias, dropout"):
        make_cell("lstm", 3, 4, batch_size=2)
    cell = make_cell("gal", np.int64(3), np.int32(4))
    assert (cell.input_size, cell.hidden_size) == (3, 4) and type(cell.input_size) is int


# ---------------------------------------------------------------- trace, script, export, compile
@pytest.mark.parametrize("name", NAMES)
def test_trace_matches_eager_or_refuses(name):
    """torch.jit.trace of a cell in eval mode records its Python path (never the opaque kernel): the
    traced module computes what the cell does at the traced seq_len for any batch; at another seq_len
    it gives the cell's result or refuses (never another number)."""
    cell = make_cell(name, 3, 4).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seq_len in (1, 5):
            traced = torch.jit.trace(cell, (torch.randn(seq_len, 2, 3), _states(name, 2, 4)), check_trace=False)
            x, hidden = torch.randn(seq_len, 6, 3), _states(name, 6, 4)
            for a, b in zip(traced(x, hidden), cell(x, hidden), strict=True):
                for part, ref in zip(_parts(a), _parts(b), strict=True):
                    torch.testing.assert_close(part, ref)
            longer = torch.randn(seq_len + 2, 2, 3), _states(name, 2, 4)
            try:
                got = traced(*longer)[0]
            except RuntimeError as e:
                assert "elements in a list" in str(e)
            else:  # nn.LSTM's and torch's sequence kernels trace with a free seq_len
                torch.testing.assert_close(got, cell(*longer)[0])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_trace_refuses_what_it_would_freeze():
    cell = make_cell("gal", 3, 4, dropout=0.5)
    x = torch.randn(5, 2, 3)
    with pytest.raises(ValueError, match="trace it in eval mode"):
        torch.jit.trace(cell, (x,))
    cell.eval()
    with pytest.raises(ValueError, match="episode_starts: torch.jit.trace would freeze"):
        torch.jit.trace(lambda x, starts: cell(x, None, starts)[0], (x, torch.zeros(5, 2)))


@pytest.mark.parametrize("name", ["lstm", "gru", "ln-zoneout", "nn"])
def test_script_is_refused_by_name(name):
    from agents.memory import MemoryStack

    for module in (make_cell(name, 3, 4), MemoryStack(name, 3, 4)):
        with pytest.raises(TypeError, match="torch.jit.script cannot compile"):
            torch.jit.script(module)


@pytest.mark.parametrize("name", ["lstm", "ln-gal", "gru", "rnn", "mingru", "lru"])
def test_torch_export_and_compile_match_eager(name):
    """torch.export records the Python path at the example's shapes (others fail its guards); torch.compile
    (here with the eager backend, to keep the test fast) runs the kernel (or the compiled scan) through a
    graph break."""
    cell = make_cell(name, 3, 4).eval()
    x, hidden = torch.randn(5, 2, 3), _states(name, 2, 4)
    exported = torch.export.export(cell, (x, hidden)).module()
    torch.testing.assert_close(exported(x, hidden)[0], cell(x, hidden)[0])
    compiled = torch.compile(cell, backend="eager")
    torch.testing.assert_close(compiled(x, hidden)[0], cell(x, hidden)[0])
