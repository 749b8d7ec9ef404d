"""The kernel's small-row matrix routines (rl_lstm/csrc/small_gemm.h) against BLAS.

Each routine is forced by name (``RL_LSTM_GEMM``, or the test entry ``small_matmul``), so that the AVX2
routine is tested on an AVX-512 machine too; a routine the CPU cannot run is refused by name (the test entry
``small_matmul`` alone falls back to BLAS, which tells the tests what the CPU runs).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rl_lstm import kernel, make_cell

ROOT = Path(__file__).resolve().parents[1]
ROUTINES = ("avx512", "avx2")


@pytest.fixture(scope="module")
def module():
    if kernel.find_compiler() is None:
        pytest.skip("no C++ compiler on this machine: the kernel cannot be built")
    built = kernel.load()
    assert built is not None, kernel.build_error()
    return built


def _cpu_has(module, path: str) -> bool:
    _, ran = module.small_matmul(torch.ones(1, 1), torch.ones(1, 1), path)
    return ran == path


# (M, K, N): the agents' per-step products at 256 units (forward h W_hh^T, backward dA W_hh), 64 units,
# and odd sizes (partial panels and row blocks).
SHAPES = [(8, 256, 1024), (8, 1024, 256), (8, 64, 256), (1, 1, 1), (3, 5, 7), (9, 17, 33), (13, 100, 70), (5, 37, 148)]


@pytest.mark.parametrize("path", ROUTINES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_routine_equals_blas(module, path, dtype, m, k, n):
    torch.manual_seed(m * 1000 + k + n)
    a, w = torch.randn(m, k, dtype=dtype), torch.randn(n, k, dtype=dtype)
    tol = dict(rtol=1e-5, atol=1e-5 * k**0.5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    for b in (w.t(), w.t().contiguous()):  # W^T read through its strides (as W_hh^T), and a plain matrix
        got, ran = module.small_matmul(a, b, path)
        assert ran == (path if _cpu_has(module, path) else "blas")
        torch.testing.assert_close(got, a @ b, **tol)
    got, _ = module.small_matmul(a.t().contiguous().t(), w.t(), path)  # A through its strides too
    torch.testing.assert_close(got, a @ w.t(), **tol)


def test_routine_available_here_is_tested(module):
    """On an x86 machine with AVX2 the AVX2 routine runs (not a silent BLAS fallback)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("not an x86 machine")
    flags = open("/proc/cpuinfo").read() if platform.system() == "Linux" else ""
    if " avx2" in flags and " fma" in flags:
        assert _cpu_has(module, "avx2")
    assert _cpu_has(module, "avx512") == (" avx512f" in flags)


def test_bad_path_is_a_value_error(module, monkeypatch):
    with pytest.raises(ValueError, match="matmul: path"):
        module.small_matmul(torch.ones(1, 1), torch.ones(1, 1), "sse")
    monkeypatch.setenv(kernel.GEMM_ENV, "sse")
    with pytest.raises(ValueError, match="RL_LSTM_GEMM='sse'"):
        kernel.gemm_path()
    with pytest.raises(ValueError, match="RL_LSTM_GEMM=sse"):
        module.gemm_path()


def test_gemm_path_names_the_routine(module, monkeypatch):
    monkeypatch.setenv(kernel.GEMM_ENV, "blas")
    assert kernel.gemm_path() == "blas"
    for path in ROUTINES:
        monkeypatch.setenv(kernel.GEMM_ENV, path)
        if _cpu_has(module, path):
            assert kernel.gemm_path() == path
        else:  # asked for by name, a routine this CPU cannot run stops: nothing runs another one silently
            with pytest.raises(ValueError, match=f"RL_LSTM_GEMM={path}: this CPU cannot run the {path} routine"):
                kernel.gemm_path()
    monkeypatch.delenv(kernel.GEMM_ENV)
    assert kernel.gemm_path() in ROUTINES + ("blas",)


def _chunk(monkeypatch, path, cell, x, state, starts, masks):
    monkeypatch.setenv(kernel.ENV, "1")
    monkeypatch.setenv(kernel.GEMM_ENV, path)
    x = x.clone().requires_grad_(True)
    h0, c0 = (s.clone().requires_grad_(True) for s in state)
    out, (h, c) = cell(x, (h0, c0), starts, masks)
    loss = (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)).sum() + h.sum() + c.sum()
    return [out, h, c, *torch.autograd.grad(loss, [x, h0, c0, *cell.parameters()])]


@pytest.mark.parametrize("path", ROUTINES)
@pytest.mark.parametrize("name", ["lstm", "gal", "ln", "ln-zoneout"])
@pytest.mark.parametrize(
    ("dtype", "hidden", "batch"), [(torch.float64, 37, 8), (torch.float64, 64, 3), (torch.float32, 64, 8)]
)
def test_chunk_on_routine_equals_blas(module, monkeypatch, path, name, dtype, hidden, batch):
    """A whole chunk (forward, every gradient) on the routine against the same chunk on BLAS."""
    torch.manual_seed(0)
    cell = make_cell(name, 6, hidden, dropout=0.3).to(dtype)
    with torch.no_grad():
        for p in cell.parameters():
            p.normal_(0.0, 0.3)
    x = torch.randn(12, batch, 6, dtype=dtype)
    state = (torch.randn(1, batch, hidden, dtype=dtype), torch.randn(1, batch, hidden, dtype=dtype))
    starts = torch.rand(12, batch) < 0.2
    monkeypatch.setenv(kernel.ENV, "1")
    cell(x, state, starts)
    masks = cell.last_masks
    if not _cpu_has(module, path):
        with pytest.raises(ValueError, match=f"RL_LSTM_GEMM={path}: this CPU cannot run"):
            _chunk(monkeypatch, path, cell, x, state, starts, masks)
        return
    got = _chunk(monkeypatch, path, cell, x, state, starts, masks)
    want = _chunk(monkeypatch, "blas", cell, x, state, starts, masks)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        torch.testing.assert_close(g, w, msg=lambda m, k=k: f"result {k}: {m}", **tol)


def test_the_command_line_refuses_a_routine_this_cpu_cannot_run(module, tmp_path):
    """A run asked for a routine this CPU lacks stops before anything is written, naming the value and what runs."""
    missing = [path for path in ROUTINES if not _cpu_has(module, path)]
    if not missing:
        pytest.skip("this CPU runs every routine")
    out = tmp_path / "run"
    env = {**os.environ, kernel.GEMM_ENV: missing[0], "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "--env", "CartPole-v1", "--total-timesteps", "64",
         "--n-envs", "2", "--hidden-size", "8", "--out", str(out)],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"train.py: error: RL_LSTM_GEMM={missing[0]}: this CPU cannot run the {missing[0]} routine; it runs:" in (
        proc.stderr
    )
    assert not out.exists()
