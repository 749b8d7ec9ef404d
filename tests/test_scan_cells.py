"""The linear-recurrence memories (mingru, minlstm, lru, ffm): the scan (the compiled pass and the torch
scan) against the step loop (outputs, states, every gradient, in float64), gradcheck of the scan, long
chunks in float32, resets by selection, their dropout sites and bad input, and a complex state's trip
through an agent's save and load."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rl_lstm import kernel, make_cell
from rl_lstm.registry import cell_class
from rl_lstm.scan import LinearRecurrence, linear_scan, parallel_scan, recurrence_loop

SCAN_NAMES = ["mingru", "minlstm", "lru", "ffm"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(params=["1", "0"], ids=["compiled", "torch"])
def scan_mode(request, monkeypatch):
    """The scan on the compiled extension (``RL_LSTM_KERNEL=1``; skipped without a compiler) or in torch
    operations (``0``)."""
    if request.param == "1" and kernel.find_compiler() is None:
        pytest.skip("no C++ compiler on this machine: the compiled scan cannot be built")
    monkeypatch.setenv(kernel.ENV, request.param)
    return request.param


def _parts(state) -> tuple[torch.Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def _state(name: str, batch: int, hidden: int, dtype=torch.float64):
    parts = tuple(torch.randn(1, batch, hidden, dtype=dtype) for _ in cell_class(name).state_names)
    return parts if len(parts) == 2 else parts[0]


def test_registered_as_linear_recurrences():
    for name in SCAN_NAMES:
        cls = cell_class(name)
        assert issubclass(cls, LinearRecurrence) and not cls.torch_equivalent and not cls.compiled
        assert cls.state_names == (("h",) if name.startswith("min") else ("h", "c"))
        assert "gal" not in cls.dropout_methods


@pytest.mark.parametrize("name", SCAN_NAMES)
@pytest.mark.parametrize("method", [None, "moon", "semeniuta", "zoneout"])
@pytest.mark.parametrize("seq_len", [2, 7, 16, 33])
def test_scan_equals_step_loop_with_gradients(name, method, seq_len, scan_mode):
    """The blocked scan and the one-step loop are one function: outputs, final states and the
    gradients of x, the initial state and every parameter agree in float64, resets and masks in."""
    if method is not None and method not in cell_class(name).dropout_methods:
        pytest.skip(f"{name} takes no {method}")
    cell = make_cell(name, 3, 8, dropout=0.0 if method is None else 0.4, dropout_method=method or "pytorch").double()
    x = torch.randn(seq_len, 4, 3, dtype=torch.float64, requires_grad=True)
    state = tuple(p.requires_grad_() for p in _parts(_state(name, 4, 8)))
    starts = torch.rand(seq_len, 4) < 0.2
    starts[seq_len // 2, 1] = True
    weights = torch.randn(seq_len, 4, 8, dtype=torch.float64)
    cell(x.detach(), state if len(state) == 2 else state[0], starts)
    masks = cell.last_masks

    def run(fused: bool):
        cell.fused = fused
        out, final = cell(x, state if len(state) == 2 else state[0], starts, masks)
        loss = (out * weights).sum() + sum((p * p).sum() for p in _parts(final))
        grads = torch.autograd.grad(loss, [x, *state, *cell.parameters()])
        return out, _parts(final), grads

    fast, slow = run(True), run(False)
    cell.fused = True
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("decay_shape", [(9, 2, 2), (2,), (1, 2, 2), (9, 1, 2)], ids=str)
def test_linear_scan_gradcheck(complex_, decay_shape, scan_mode):
    """Gradients of the decays (one per step and row, or shared and summed), the inputs and the first state,
    and the gradient's own gradient (a double backward runs in torch operations)."""
    dtype = torch.complex128 if complex_ else torch.float64
    a = (0.9 * torch.rand(*decay_shape, dtype=dtype)).requires_grad_()
    b = torch.randn(9, 2, 2, dtype=dtype, requires_grad=True)
    s0 = torch.randn(2, 2, dtype=dtype, requires_grad=True)
    starts = torch.zeros(9, 2, dtype=torch.bool)
    starts[4, 0] = starts[7, 1] = True
    assert torch.autograd.gradcheck(lambda a, b, s0: linear_scan(a, b, s0, starts), (a, b, s0))
    assert torch.autograd.gradcheck(lambda a, b, s0: linear_scan(a, b, s0, None, block=2), (a, b, s0))
    assert torch.autograd.gradgradcheck(lambda a, b, s0: linear_scan(a, b, s0, starts), (a, b, s0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64, torch.complex128])
def test_compiled_scan_equals_torch_scan(dtype, monkeypatch):
    """The compiled pass and the torch scan agree on the states and every gradient, for each dtype, with
    episode starts at the first step and inside, and a NaN input that a start cuts off."""
    if kernel.find_compiler() is None:
        pytest.skip("no C++ compiler on this machine: the compiled scan cannot be built")
    a = (0.99 * torch.rand(300, 3, 5, dtype=dtype)).requires_grad_()
    b = torch.randn(300, 3, 5, dtype=dtype)
    b[10, 2] = complex("nan+nanj") if dtype.is_complex else float("nan")
    b.requires_grad_()
    s0 = torch.randn(3, 5, dtype=dtype, requires_grad=True)
    starts = torch.rand(300, 3) < 0.05
    starts[0, 0] = starts[20, 2] = True
    starts[11:20, 2] = False
    weights = torch.randn(300, 3, 5, dtype=dtype)
    results = {}
    for mode in ("1", "0"):
        monkeypatch.setenv(kernel.ENV, mode)
        s = linear_scan(a, b, s0, starts)
        loss = torch.view_as_real(s[20:] * weights[20:]).sum() if dtype.is_complex else (s[20:] * weights[20:]).sum()
        results[mode] = (s, *torch.autograd.grad(loss, (a, b, s0)))
    tol = 1e-4 if dtype in (torch.float32, torch.complex64) else 1e-10
    for compiled, torch_ops in zip(results["1"], results["0"], strict=True):
        torch.testing.assert_close(compiled, torch_ops, rtol=tol, atol=tol, equal_nan=True)
    assert torch.isnan(results["1"][0][10:20, 2]).all() and torch.isfinite(results["1"][0][20:]).all()


@pytest.mark.parametrize("complex_", [False, True])
def test_long_chunk_float32_matches_step_loop(complex_, scan_mode):
    """T = 4096 in float32 with decays 1e-3 and 1 - 1e-4 (and, for the complex scan, moduli 1e-3 and
    1 - 1e-4 rotating): within 1e-4 relative of the step loop, no inf or NaN."""
    seq_len, batch = 4096, 2
    modulus = torch.tensor([1e-3, 1 - 1e-4, 0.5, 1 - 1e-4])
    b = (torch.randn(seq_len, batch, 4),)
    if complex_:
        phase = torch.tensor([0.3, 0.01, 2.0, 0.0])
        a = (modulus * torch.cos(phase), modulus * torch.sin(phase))
        b = (*b, torch.randn(seq_len, batch, 4))
    else:
        a = (modulus,)
    s0 = tuple(torch.ones(batch, 4) for _ in b)
    starts = torch.zeros(seq_len, batch, dtype=torch.bool)
    starts[3000, 1] = True
    fast = parallel_scan(a, b, s0, starts)
    slow = recurrence_loop(a, b, s0, starts)
    for f, s in zip(fast, slow, strict=True):
        assert torch.isfinite(f).all()
        scale = s.abs().amax(0)  # (B, N): the size each unit reaches over the chunk
        assert ((f - s).abs() / scale).max() <= 1e-4


@pytest.mark.parametrize("name", SCAN_NAMES)
@pytest.mark.parametrize("fused", [True, False])
def test_nan_does_not_cross_an_episode_start(name, fused, scan_mode):
    """A NaN input in one episode leaves the next episode of that row (and the other rows) exact."""
    cell = make_cell(name, 3, 8)
    cell.fused = fused
    x = torch.randn(20, 2, 3)
    x[4, 0] = float("nan")
    starts = torch.zeros(20, 2)
    starts[9, 0] = 1
    out, _ = cell(x, None, starts)
    assert torch.isnan(out[4:9, 0]).all()
    torch.testing.assert_close(out[9:, 0:1], cell(x[9:, 0:1])[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[:, 1:2], cell(x[:, 1:2])[0], rtol=1e-5, atol=1e-6)
    state, outs = None, []  # and step by step, as collection runs
    for t in range(20):
        o, state = cell(x[t : t + 1], state, starts[t : t + 1])
        outs.append(o)
    assert torch.isfinite(torch.cat(outs)[9:]).all()


@pytest.mark.parametrize("name, method", [(n, "gal") for n in SCAN_NAMES] + [("lru", "zoneout"), ("ffm", "zoneout")])
def test_methods_that_do_not_apply_are_refused(name, method):
    with pytest.raises(ValueError, match=f"dropout_method='{method}': expected one of 'pytorch', 'moon'"):
        make_cell(name, 3, 8, dropout=0.1, dropout_method=method)


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("lru", dict(r_min=0.9, r_max=0.5), r"r_min=0.9, r_max=0.5: expected 0 <= r_min < r_max <= 1"),
        ("lru", dict(max_phase=0), r"max_phase=0: expected a positive number"),
        ("ffm", dict(context_size=3), r"context_size=3: expected a divisor of hidden_size=8"),
        ("ffm", dict(context_size=0), r"context_size=0: expected a positive integer"),
        ("ffm", dict(min_period=5, max_period=2), r"min_period=5, max_period=2: expected 0 < min_period"),
    ],
)
def test_bad_family_arguments(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_cell(name, 3, 8, **kwargs)


def test_lru_starts_on_its_ring_and_stays_stable():
    cell = make_cell("lru", 3, 64, r_min=0.5, r_max=0.9)
    re, im = cell.decay()
    modulus = torch.sqrt(re**2 + im**2)
    assert modulus.min() >= 0.5 - 1e-6 and modulus.max() <= 0.9 + 1e-6
    with torch.no_grad():
        cell.nu_log.fill_(-30.0)  # exp(-exp(nu)) -> 1 from below: never above 1
    re, im = cell.decay()
    assert torch.exp(-torch.exp(cell.nu_log)).max() <= 1.0 and (re**2 + im**2).max() <= 1.0 + 1e-6  # cos^2 + sin^2


def test_ffm_state_is_the_complex_trace():
    """(h, c) are the real and imaginary halves of S_t = gamma * S_{t-1} + x~ 1^T, computed by hand."""
    cell = make_cell("ffm", 3, 8).double()
    m, c = cell.memory_size, cell.context_size
    assert (m, c) == (2, 4)
    x = torch.randn(5, 1, 3, dtype=torch.float64)
    _, (h, c_im) = cell(x)
    pre, gate = (x[:, 0] @ cell.weight_ih[: 2 * m].T + cell.bias_ih[: 2 * m]).chunk(2, -1)
    gamma = torch.exp(torch.complex(cell.alpha.clamp(max=-1e-6)[:, None], cell.omega[None, :].expand(m, c)))
    s = torch.zeros(m, c, dtype=torch.complex128)
    for t in range(5):
        s = gamma * s + (pre[t] * gate[t].sigmoid())[:, None]
    torch.testing.assert_close(h[0, 0], s.real.reshape(-1))
    torch.testing.assert_close(c_im[0, 0], s.imag.reshape(-1))


def test_min_gru_and_min_lstm_follow_the_paper():
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    gru = make_cell("mingru", 3, 4).double()
    z, cand = (x @ gru.weight_ih.T + gru.bias_ih).chunk(2, -1)
    h, hs = torch.zeros(2, 4, dtype=torch.float64), []
    for t in range(6):
        h = (1 - z[t].sigmoid()) * h + z[t].sigmoid() * cand[t]
        hs.append(h)
    torch.testing.assert_close(gru(x)[0], torch.stack(hs))
    lstm = make_cell("minlstm", 3, 4).double()
    f, i, cand = (x @ lstm.weight_ih.T + lstm.bias_ih).sigmoid().chunk(3, -1)
    cand = (x @ lstm.weight_ih.T + lstm.bias_ih)[..., 8:]
    h, hs = torch.zeros(2, 4, dtype=torch.float64), []
    for t in range(6):
        h = f[t] / (f[t] + i[t]) * h + i[t] / (f[t] + i[t]) * cand[t]
        hs.append(h)
    torch.testing.assert_close(lstm(x)[0], torch.stack(hs))


@pytest.mark.parametrize("name", ["lru", "ffm"])
def test_complex_state_survives_save_and_load(name, tmp_path):
    """The (real, imaginary) halves travel as the agents' (h, c): predict, save, load, predict on."""
    from stable_baselines3.common.env_util import make_vec_env

    from agents import RecurrentPPO

    vec = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    policy_kwargs = dict(cell=name, lstm_hidden_size=8, net_arch=dict(pi=[8], vf=[8]))
    model = RecurrentPPO("CellLstmPolicy", vec, n_steps=16, batch_size=16, seq_len=8, n_epochs=1, seed=0,
                         device="cpu", policy_kwargs=policy_kwargs)  # fmt: skip
    model.learn(32)
    model.save(tmp_path / "m.zip")
    loaded = RecurrentPPO.load(tmp_path / "m.zip", device="cpu")
    obs, starts = vec.reset(), np.ones(2, dtype=bool)
    state = loaded_state = None
    imaginary = 0.0
    for _ in range(8):
        a, state = model.predict(obs, state, starts, deterministic=True)
        b, loaded_state = loaded.predict(obs, loaded_state, starts, deterministic=True)
        assert np.array_equal(a, b)
        for ours, theirs in zip(state, loaded_state, strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=0)
        imaginary = max(imaginary, float(np.abs(state[1]).max()))
        obs, _, dones, _ = vec.step(a)
        starts = dones
    assert imaginary > 0, "the imaginary half is carried, not zeros"
    assert math.isfinite(float(np.abs(state[0]).max()))


def test_parallel_is_a_deprecated_alias_of_fused():
    """``parallel``, the linear recurrences' former switch, reads and sets ``fused`` (the switch every
    cell shares) with a DeprecationWarning."""
    cell = make_cell("mingru", 3, 8)
    with pytest.warns(DeprecationWarning, match="parallel is deprecated: use fused"):
        cell.parallel = False
    assert cell.fused is False
    assert cell.execution_path(torch.randn(5, 2, 3), None).name == "steps"
    with pytest.warns(DeprecationWarning, match="use fused"):
        assert cell.parallel is False
    cell.fused = True
    assert cell.execution_path(torch.randn(5, 2, 3), None).name == "scan"
    assert cell.execution_path(torch.randn(1, 2, 3), None).name == "steps"  # one step: the loop
