"""The compiled chunk kernel (rl_lstm/kernel.py) against the Python path, and its fallback.

The Python path (``RL_LSTM_KERNEL=0``: PyTorch's fused kernels where the math allows, else the
step loop of rl_lstm/segments.py) is the reference: the kernel must give its outputs, final
states and every gradient in float64. The extension is built once per machine and cached, so
only the first run of this file pays for the compile.
"""

from __future__ import annotations

import ast
import os
import warnings
from pathlib import Path

import pytest
import torch

import rl_lstm.lstm
from rl_lstm import CELLS, kernel, make_cell
from rl_lstm.layer_norm_lstm import LayerNormLSTM
from rl_lstm.registry import cell_class

COMPILED = [name for name in CELLS if cell_class(name).compiled]
LN_VARIANTS = [{"ln_preact": False}, {"learnable": False}, {"ln_preact": False, "learnable": False, "bias": False}]
GRU_LN_VARIANTS = [{"learnable": False}, {"learnable": False, "bias": False}]


@pytest.fixture(scope="module", autouse=True)
def _built():
    if kernel.find_compiler() is None:
        pytest.skip("no C++ compiler on this machine: the kernel cannot be built (its fallback is tested below)")
    assert kernel.load() is not None, kernel.build_error()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _cell(name: str, dropout: float, dtype=torch.float64, **kwargs):
    cell = make_cell(name, 3, 5, dropout=dropout, **kwargs).to(dtype)
    with torch.no_grad():  # away from the initial values (LN gains 1, biases 0) so every term matters
        for p in cell.parameters():
            p.normal_(0.0, 0.5)
    return cell


def _inputs(seq_len: int, batch: int, dtype=torch.float64, p_start: float = 0.2):
    x = torch.randn(seq_len, batch, 3, dtype=dtype)
    hidden = (torch.randn(1, batch, 5, dtype=dtype), torch.randn(1, batch, 5, dtype=dtype))
    starts = torch.rand(seq_len, batch) < p_start
    if seq_len > 1:
        starts[seq_len // 2, 0] = True  # an episode start inside the chunk, always
    return x, hidden, starts


def _state(cell, hidden):
    """``hidden`` as the cell takes it: ``(h, c)`` for the LSTM family, ``h`` for the GRU family."""
    return hidden if cell.state_names == ("h", "c") else hidden[0]


def _run(monkeypatch, path: str, cell, x, hidden, starts, masks, need_state=True, seed=None):
    """Outputs, final state and the gradients of a loss of all three w.r.t. x, h0, c0 and every parameter
    (h0 alone for the GRU family)."""
    monkeypatch.setenv(kernel.ENV, path)
    if seed is not None:  # the same masks on both paths: the same draws, and no per-episode masks held over
        torch.manual_seed(seed)
        cell.episode_masks = None
    x = x.clone().requires_grad_(True)
    hidden = _state(cell, tuple(s.clone().requires_grad_(True) for s in hidden))
    out, state = cell(x, hidden, starts, masks, need_state=need_state)
    loss = (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)).sum()
    results = [out]
    if need_state:
        parts = state if isinstance(state, tuple) else (state,)
        loss = loss + 0.3 * parts[0].sum() + sum(0.7 * (p**2).sum() for p in parts[1:])
        results += list(parts)
    params = [x, *(hidden if isinstance(hidden, tuple) else (hidden,)), *cell.parameters()]
    results += torch.autograd.grad(loss, params, allow_unused=True)
    return results, cell.last_masks


def _assert_same(got, want, **tol):
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        torch.testing.assert_close(g, w, msg=lambda m, k=k: f"result {k}: {m}", **tol)


# ---------------------------------------------------------------- kernel == Python path, float64
@pytest.mark.parametrize("name", COMPILED)
@pytest.mark.parametrize(("seq_len", "batch"), [(1, 1), (1, 16), (9, 4), (64, 3), (32, 16)])
def test_kernel_equals_python_path_replayed_masks(monkeypatch, name, seq_len, batch):
    """Masks given (as the update replays them): outputs, final states and every gradient."""
    cell = _cell(name, dropout=0.4)
    x, hidden, starts = _inputs(seq_len, batch)
    monkeypatch.setenv(kernel.ENV, "0")
    cell(x, _state(cell, hidden), starts)
    masks = cell.last_masks
    assert masks is not None
    got, _ = _run(monkeypatch, "1", cell, x, hidden, starts, masks)
    want, _ = _run(monkeypatch, "0", cell, x, hidden, starts, masks)
    _assert_same(got, want)


@pytest.mark.parametrize("name", COMPILED)
@pytest.mark.parametrize("need_state", [True, False])
def test_kernel_equals_python_path_sampled_masks(monkeypatch, name, need_state):
    """Masks sampled inside the call (same seed, same masks), episode starts inside, both update paths."""
    cell = _cell(name, dropout=0.3)
    x, hidden, starts = _inputs(24, 6)
    got, got_masks = _run(monkeypatch, "1", cell, x, hidden, starts, None, need_state, seed=5)
    want, want_masks = _run(monkeypatch, "0", cell, x, hidden, starts, None, need_state, seed=5)
    torch.testing.assert_close(got_masks, want_masks, rtol=0, atol=0)
    _assert_same(got, want)


@pytest.mark.parametrize("name", COMPILED)
def test_kernel_equals_python_path_without_dropout_or_starts(monkeypatch, name):
    cell = _cell(name, dropout=0.0)
    x, hidden, _ = _inputs(17, 5)
    got, _ = _run(monkeypatch, "1", cell, x, hidden, None, None)
    want, _ = _run(monkeypatch, "0", cell, x, hidden, None, None)
    _assert_same(got, want)


@pytest.mark.parametrize("method", ["gal", "zoneout"])
def test_rnn_kernel_takes_each_of_its_dropout_methods(monkeypatch, method):
    """The RNN's methods other than its default (Gal's on the recurrent input and output, zoneout)."""
    cell = _cell("rnn", dropout=0.3, dropout_method=method)
    x, hidden, starts = _inputs(16, 5)
    got, got_masks = _run(monkeypatch, "1", cell, x, hidden, starts, None, seed=6)
    want, want_masks = _run(monkeypatch, "0", cell, x, hidden, starts, None, seed=6)
    torch.testing.assert_close(got_masks, want_masks, rtol=0, atol=0)
    _assert_same(got, want)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [(name, kwargs) for name in ("ln", "ln-gal", "ln-zoneout") for kwargs in LN_VARIANTS]
    + [(name, kwargs) for name in ("ln-gru", "ln-gru-gal", "ln-gru-zoneout") for kwargs in GRU_LN_VARIANTS],
)
def test_kernel_layer_norm_variants(monkeypatch, name, kwargs):
    """Layer norm on c only (the LSTMs), frozen gains, no bias: the same results as the Python path."""
    cell = _cell(name, dropout=0.3, **kwargs)
    x, hidden, starts = _inputs(12, 4)
    got, _ = _run(monkeypatch, "1", cell, x, hidden, starts, None, seed=2)
    want, _ = _run(monkeypatch, "0", cell, x, hidden, starts, None, seed=2)
    _assert_same(got, want)


@pytest.mark.parametrize(
    "name", ["lstm", "gal", "zoneout", "gru", "gru-gal", "gru-zoneout", "ln-gru-semeniuta", "rnn"]
)
def test_kernel_without_bias(monkeypatch, name):
    cell = _cell(name, dropout=0.3, bias=False)
    x, hidden, starts = _inputs(10, 3)
    got, _ = _run(monkeypatch, "1", cell, x, hidden, starts, None, seed=3)
    want, _ = _run(monkeypatch, "0", cell, x, hidden, starts, None, seed=3)
    _assert_same(got, want)


@pytest.mark.parametrize("name", COMPILED)
@pytest.mark.parametrize("masks_in_eval", [False, True])
def test_kernel_in_eval_mode(monkeypatch, name, masks_in_eval):
    """Eval mode: the expectation (zoneout's mixing weight p, no dropout), or the masks when
    ``masks_in_eval`` (collection), step by step with seq_len 1 as collection calls the cell."""
    cell = _cell(name, dropout=0.4).eval()
    cell.masks_in_eval = masks_in_eval
    x, hidden, starts = _inputs(6, 8)
    outs = {}
    for path in ("1", "0"):
        monkeypatch.setenv(kernel.ENV, path)
        torch.manual_seed(1)
        cell.episode_masks = None
        state, steps = _state(cell, hidden), []
        with torch.no_grad():
            for t in range(6):
                out, state = cell(x[t : t + 1], state, starts[t : t + 1])
                steps.append(out)
        assert (cell.last_masks is not None) == masks_in_eval
        outs[path] = [torch.cat(steps), *(state if isinstance(state, tuple) else (state,))]
    _assert_same(outs["1"], outs["0"])


@pytest.mark.parametrize("name", ["gal", "ln-moon", "zoneout", "gru-gal", "ln-gru-zoneout", "rnn"])
def test_collection_masks_replay_on_the_kernel(monkeypatch, name):
    """The replay property with the kernel: masks used step by step in collection (eval mode,
    masks_in_eval) give the same outputs when the whole chunk is replayed with them in training."""
    monkeypatch.setenv(kernel.ENV, "1")
    cell = _cell(name, dropout=0.4).eval()
    cell.masks_in_eval = True
    x, hidden, starts = _inputs(10, 4)
    hidden = _state(cell, hidden)
    state, outs, masks = hidden, [], []
    with torch.no_grad():
        for t in range(10):
            out, state = cell(x[t : t + 1], state, starts[t : t + 1])
            outs.append(out)
            masks.append(cell.last_masks)
    cell.train()
    replay, _ = cell(x, hidden, starts, torch.cat(masks))
    torch.testing.assert_close(replay, torch.cat(outs))


@pytest.mark.parametrize("name", ["lstm", "gal", "ln-zoneout", "ln-semeniuta", "gru", "gru-gal", "ln-gru-zoneout"])
def test_kernel_float32_close_to_python_path(monkeypatch, name):
    cell = _cell(name, dropout=0.3, dtype=torch.float32)
    x, hidden, starts = _inputs(32, 8, dtype=torch.float32)
    got, _ = _run(monkeypatch, "1", cell, x, hidden, starts, None, seed=4)
    want, _ = _run(monkeypatch, "0", cell, x, hidden, starts, None, seed=4)
    _assert_same(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["moon", "ln-gal", "ln-zoneout"])
def test_kernel_gradcheck(monkeypatch, name):
    """Finite differences against the hand-written backward: inputs, state and every parameter."""
    monkeypatch.setenv(kernel.ENV, "1")
    cell = _cell(name, dropout=0.3)
    x, hidden, starts = _inputs(5, 2)
    cell(x, hidden, starts)
    masks = cell.last_masks
    names = [n for n, _ in cell.named_parameters()]

    def f(x, h0, c0, *params):
        out, (h, c) = torch.func.functional_call(
            cell, dict(zip(names, params, strict=True)), (x, (h0, c0), starts, masks)
        )
        return out, h, c

    args = [t.clone().requires_grad_(True) for t in (x, *hidden, *cell.parameters())]
    assert torch.autograd.gradcheck(f, args)


@pytest.mark.parametrize("name", ["gru-gal", "gru-semeniuta", "ln-gru-zoneout", "rnn"])
def test_gru_kernel_gradcheck(monkeypatch, name):
    """Finite differences against the GRU kernel's hand-written backward: inputs, h0 and every parameter."""
    monkeypatch.setenv(kernel.ENV, "1")
    cell = _cell(name, dropout=0.3)
    x, hidden, starts = _inputs(5, 2)
    cell(x, hidden[0], starts)
    masks = cell.last_masks
    names = [n for n, _ in cell.named_parameters()]

    def f(x, h0, *params):
        out, h = torch.func.functional_call(cell, dict(zip(names, params, strict=True)), (x, h0, starts, masks))
        return out, h

    args = [t.clone().requires_grad_(True) for t in (x, hidden[0], *cell.parameters())]
    assert torch.autograd.gradcheck(f, args)


# ---------------------------------------------------------------- class facts
def test_class_facts():
    """Whether a class runs on the kernel is a class attribute, read through the registry."""
    assert cell_class("nn").compiled is False and cell_class("slow").compiled is False
    assert {"lstm", "gal", "moon", "semeniuta", "zoneout", "ln", "ln-gal", "ln-moon", "ln-zoneout"} <= set(COMPILED)
    gru_family = {"gru", "gru-gal", "gru-semeniuta", "gru-zoneout", "ln-gru", "ln-gru-gal", "ln-gru-semeniuta"}
    assert gru_family | {"ln-gru-zoneout"} <= set(COMPILED)
    assert cell_class("nn-gru").compiled is False and cell_class("rnn").compiled is True


# ---------------------------------------------------------------- choice and fallback
def _reset(monkeypatch):
    """A fresh, not yet loaded kernel module state (restored after the test)."""
    monkeypatch.setattr(kernel, "_module", None)
    monkeypatch.setattr(kernel, "_error", None)
    monkeypatch.setattr(kernel, "_warned", set())


def _python_path_result(monkeypatch, cell, x):
    monkeypatch.setenv(kernel.ENV, "0")
    out, _ = cell(x)
    return out


def test_no_compiler_falls_back_with_one_warning(monkeypatch):
    _reset(monkeypatch)
    monkeypatch.setattr(kernel, "find_compiler", lambda: None)
    cell = _cell("gal", dropout=0.0)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    want = _python_path_result(monkeypatch, cell, x)
    monkeypatch.setenv(kernel.ENV, "auto")
    with pytest.warns(UserWarning, match="no C..? compiler"):
        out, _ = cell(x)
    torch.testing.assert_close(out, want)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning per reason, not one per call
        cell(x)
    monkeypatch.setenv(kernel.ENV, "1")
    with pytest.raises(RuntimeError, match="RL_LSTM_KERNEL=1.*no C"):
        cell(x)


def test_failed_build_falls_back(monkeypatch):
    _reset(monkeypatch)

    def broken_build():
        raise RuntimeError("Error building extension 'x':\nlstm_chunk.cpp:1:1: error: something is wrong")

    monkeypatch.setattr(kernel, "_build", broken_build)
    monkeypatch.setenv(kernel.ENV, "auto")
    cell = _cell("ln", dropout=0.0)
    x = torch.randn(3, 2, 3, dtype=torch.float64)
    with pytest.warns(UserWarning, match="the build failed.*error: something is wrong"):
        out, _ = cell(x)
    assert kernel.build_error() is not None and kernel.load() is None
    torch.testing.assert_close(out, _python_path_result(monkeypatch, cell, x))


def test_unsupported_dtype_and_device_fall_back(monkeypatch):
    monkeypatch.setattr(kernel, "_warned", set())
    monkeypatch.setenv(kernel.ENV, "auto")
    assert "dtype torch.bfloat16" in kernel.unavailable(torch.zeros(1, dtype=torch.bfloat16))
    assert "meta" in kernel.unavailable(torch.zeros(1, device="meta"))
    assert kernel.unavailable(torch.zeros(1)) is None
    cell = _cell("lstm", dropout=0.0, dtype=torch.bfloat16)
    x = torch.randn(3, 2, 3, dtype=torch.bfloat16)
    with pytest.warns(UserWarning, match="bfloat16"):
        out, _ = cell(x)
    torch.testing.assert_close(out, _python_path_result(monkeypatch, cell, x))


def test_forced_python_path_never_builds(monkeypatch):
    _reset(monkeypatch)
    monkeypatch.setattr(kernel, "_build", lambda: pytest.fail("RL_LSTM_KERNEL=0 must not build the kernel"))
    monkeypatch.setenv(kernel.ENV, "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_cell("ln-gal", 3, 5)(torch.randn(2, 1, 3))


def test_bad_mode_is_a_value_error(monkeypatch):
    monkeypatch.setenv(kernel.ENV, "yes")
    with pytest.raises(ValueError, match="RL_LSTM_KERNEL='yes'.*auto, 0, 1"):
        make_cell("lstm", 3, 5)(torch.randn(2, 1, 3))


# ---------------------------------------------------------------- double backward, input checks, memory, build key
@pytest.mark.parametrize("name", ["lstm", "ln-gal"])
def test_double_backward_raises_on_the_kernel_and_is_right_on_the_python_path(monkeypatch, name):
    """A gradient penalty needs the gradient's own graph (create_graph=True): the kernel's hand-written
    backward has none and says so, naming the switch; the Python path's double backward agrees with
    finite differences."""
    cell = _cell(name, 0.3)
    x, hidden, starts = _inputs(6, 2)
    x.requires_grad_(True)

    def penalty(weight_ih, weight_hh):
        weights = dict(weight_ih=weight_ih, weight_hh=weight_hh)
        out, _ = torch.func.functional_call(cell, weights, (x, hidden, starts, masks))
        (grad_x,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
        return grad_x.square().sum()

    cell(x.detach(), hidden, starts)
    masks = cell.last_masks
    weights = (cell.weight_ih, cell.weight_hh)
    monkeypatch.setenv(kernel.ENV, "1")
    with pytest.raises(RuntimeError, match="RL_LSTM_KERNEL=0"):
        penalty(*weights)
    monkeypatch.setenv(kernel.ENV, "0")
    weights = tuple(w.detach().clone().requires_grad_(True) for w in weights)
    assert torch.autograd.gradcheck(penalty, weights, eps=1e-6, atol=1e-5)


def _direct_args(H=5, inputs=3, T=4, B=2, dtype=torch.float32):
    G = 4 * H
    return dict(
        x=torch.randn(T, B, inputs, dtype=dtype), h0=torch.zeros(B, H, dtype=dtype), c0=torch.zeros(B, H, dtype=dtype),
        w_ih=torch.randn(G, inputs, dtype=dtype), w_hh=torch.randn(G, H, dtype=dtype),
        b_ih=torch.randn(G, dtype=dtype), b_hh=torch.randn(G, dtype=dtype),
        g_ih=torch.ones(G, dtype=dtype), be_ih=torch.zeros(G, dtype=dtype),
        g_hh=torch.ones(G, dtype=dtype), be_hh=torch.zeros(G, dtype=dtype),
        g_c=torch.ones(H, dtype=dtype), be_c=torch.zeros(H, dtype=dtype),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("wrong", "match"),
    [
        (dict(b_ih=torch.randn(7)), r"bias_ih, bias_hh: expected \(4H,\) = \(20,\)"),
        (dict(b_hh=torch.randn(2, 20)), r"bias_ih, bias_hh: expected \(4H,\)"),
        (dict(g_ih=torch.ones(5)), r"pre-activation layer norms' weights and biases: expected \(4H,\)"),
        (dict(be_hh=torch.zeros(3)), r"pre-activation layer norms' weights and biases: expected \(4H,\)"),
        (dict(g_c=torch.ones(20)), r"cell layer norm's weight and bias: expected \(H,\) = \(5,\)"),
        (dict(be_c=None), "a layer norm's weight and bias: both or neither"),
        (dict(w_hh=torch.randn(20)), r"weight_hh: expected \(4H, H\)"),
    ],
)
def test_direct_call_checks_every_size(wrong, match):
    """The extension reads G or H entries of every bias and layer-norm vector: a wrong size is an error,
    not a read out of bounds."""
    module = kernel.load()
    args = _direct_args()
    module.lstm_chunk(*args.values(), None, None, 0, 1e-5, 1e-5)  # the right sizes run
    args.update(wrong)
    with pytest.raises(RuntimeError, match=match):
        module.lstm_chunk(*args.values(), None, None, 0, 1e-5, 1e-5)


def _resident_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads resident memory from /proc")
def test_large_call_returns_its_workspace():
    """A chunk of T 64, B 1024, H 256 takes ~512 MiB of workspace (input projection and gate gradients);
    once the call (forward and backward) returns, resident memory is back within 64 MiB of before."""
    cell = make_cell("lstm", 256, 256)
    x = torch.randn(64, 1024, 256)
    cell(x[:2, :8])[0].sum().backward()  # the extension and its small buffers in place
    before = _resident_mib()
    out, (h, c) = cell(x.requires_grad_(True))
    (out.sum() + h.sum() + c.sum()).backward()
    peak = _resident_mib()
    del out, h, c
    x.grad = None
    cell.zero_grad(set_to_none=True)
    after = _resident_mib()
    assert peak - before > 256, f"the call did not take the memory this test is about ({peak - before:.0f} MiB)"
    assert after - before < 64, f"{after - before:.0f} MiB still resident after the call"


def test_build_name_is_the_source_content_not_its_path(monkeypatch, tmp_path):
    """Clones of one source share one build (no compile per checkout); another source gets another build."""
    name = kernel._name()
    copy = tmp_path / "clone" / "lstm_chunk.cpp"
    copy.parent.mkdir()
    copy.write_bytes(kernel.SOURCE.read_bytes())
    monkeypatch.setattr(kernel, "SOURCE", copy)
    assert kernel._name() == name
    copy.write_bytes(kernel.SOURCE.read_bytes() + b"\n// changed\n")
    assert kernel._name() != name


def test_each_torch_installation_gets_its_own_build(monkeypatch, tmp_path):
    """Torch's build file names the torch installation's include folders, so two virtual environments
    sharing one build would recompile it at every switch: the installation is part of the name."""
    name = kernel._name()
    assert kernel._name() == name  # the same installation: the same build
    other = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "torch" / "__init__.py"
    monkeypatch.setattr(kernel.torch, "__file__", str(other))
    assert kernel._name() != name


def test_a_clone_loads_the_build_without_compiling(tmp_path):
    """The build compiles a copy of the source in its own folder, so its command line is the same from
    every clone: a clone of this checkout loads the existing build (a compile would print its time)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    built = kernel.load().__file__  # first, so that a build another test process has started is finished
    clone = tmp_path / "clone"
    shutil.copytree(Path(kernel.__file__).parent, clone / "rl_lstm", ignore=shutil.ignore_patterns("__pycache__"))
    code = "from rl_lstm import kernel; m = kernel.load(); print(m.__file__, kernel.build_error())"
    env = {**os.environ, "PYTHONPATH": str(clone)}
    done = subprocess.run([sys.executable, "-c", code], cwd=clone, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == built
    assert "compiled in" not in done.stderr and "compiling" not in done.stderr, done.stderr


def _imported_project_modules(module: str) -> set[str]:
    """The ``rl_lstm`` modules ``module`` imports anywhere in its text: at the top, inside functions and
    under ``TYPE_CHECKING`` (a late import hides a dependency, it does not remove it)."""
    root = Path(__file__).resolve().parents[1]
    tree = ast.parse((root / (module.replace(".", "/") + ".py")).read_text())
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found |= {n for n in names if (root / (n.replace(".", "/") + ".py")).exists()}
    return found


def test_kernel_imports_no_cell_module():
    """The kernel depends on no cell module, not even for type checking: the layer that dispatches to it
    (rl_lstm.base) and the LSTM import it, so any such import would close a cycle. It reads what it needs of
    a cell through the public ``KernelCell`` protocol (``kernel_norms()`` for the layer norms)."""
    seen, todo = set(), ["rl_lstm.kernel"]
    while todo:
        for imported in _imported_project_modules(todo.pop()) - seen:
            seen.add(imported)
            todo.append(imported)
    assert not seen & {"rl_lstm.kernel", "rl_lstm.base", "rl_lstm.lstm", "rl_lstm.layer_norm_lstm"}, sorted(seen)
    assert callable(rl_lstm.lstm.LSTM.kernel_norms) and callable(LayerNormLSTM.kernel_norms)


def test_the_kernel_benchmark_runs_every_compiled_cell_against_its_family(tmp_path, capsys):
    """bench_kernel at a tiny size: each compiled cell against its family's torch module and fused cell."""
    from rl_lstm.bench import kernel as bench

    args = ["--hidden", "4", "--batches", "2", "--step-batches", "1", "--seq-len", "4", "--input-size", "3"]
    args += ["--repeats", "1", "--round-seconds", "0.01", "--out", str(tmp_path)]
    assert bench.main(["--cells", *COMPILED, *args]) == 0
    text = (tmp_path / "kernel_speed.md").read_text()
    assert all(f"| {name} H4 B2 |" in text and f"| {name} H4 B1 |" in text for name in COMPILED)
