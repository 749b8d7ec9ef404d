"""agents.lean.FusedRMSprop, the compiled one-pass RMSprop step, against torch's: the same state and state
dict, each element torch's arithmetic with the IEEE square root (bit for bit against torch's operations with
that square root), torch's own step for every other configuration, and where the extension cannot run."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th

from agents.lean import FusedRMSprop
from rl_lstm import kernel

needs_kernel = pytest.mark.skipif(kernel.load() is None, reason="the compiled extension cannot be built here")
SHAPES = [(64, 16), (64, 3), (64,), (7, 3), (1,)]  # odd sizes leave vector tails


def _problem(dtype, steps=4, seed=0):
    generator = th.Generator().manual_seed(seed)
    start = [th.randn(*shape, dtype=dtype, generator=generator) for shape in SHAPES]
    grads = [[th.randn(*shape, dtype=dtype, generator=generator) for shape in SHAPES] for _ in range(steps)]
    return start, grads


def _run(optimizer_class, dtype, **kwargs):
    start, grads = _problem(dtype)
    params = [th.nn.Parameter(p.clone()) for p in start]
    optimizer = optimizer_class(params, **kwargs)
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        optimizer.step()
    return params, optimizer


def _reference(dtype, lr, alpha, eps):
    """torch's multi-tensor step written out with torch's own operations, the square root the IEEE one."""
    start, grads = _problem(dtype)
    params, square_avgs = [p.clone() for p in start], [th.zeros_like(p) for p in start]
    for step_grads in grads:
        for p, v, g in zip(params, square_avgs, step_grads, strict=True):
            v.mul_(alpha).addcmul_(g, g, value=1 - alpha)
            avg = th.from_numpy(np.sqrt(v.numpy())).add_(eps)
            p.addcdiv_(g, avg, value=-lr)
    return params, square_avgs


@needs_kernel
@pytest.mark.parametrize("dtype", [th.float32, th.float64])
@pytest.mark.parametrize(("lr", "alpha", "eps"), [(7e-4, 0.99, 1e-5), (1e-2, 0.9, 1e-8)])
def test_fused_step_is_torchs_arithmetic_with_the_ieee_square_root(dtype, lr, alpha, eps):
    params, optimizer = _run(FusedRMSprop, dtype, lr=lr, alpha=alpha, eps=eps, foreach=True)
    want, square_avgs = _reference(dtype, lr, alpha, eps)
    for p, w, v in zip(params, want, square_avgs, strict=True):
        assert th.equal(p.detach(), w)
        assert th.equal(optimizer.state[p]["square_avg"], v)
        assert optimizer.state[p]["step"].item() == 4 and optimizer.state[p]["step"].dtype == th.float32
    # torch's own step differs from it at most by its square root's rounding: about 1e-7 (1e-16) of a step
    stock, _ = _run(th.optim.RMSprop, dtype, lr=lr, alpha=alpha, eps=eps, foreach=True)
    tolerance = 1e-6 if dtype == th.float32 else 1e-14
    for p, s in zip(params, stock, strict=True):
        th.testing.assert_close(p, s, rtol=tolerance, atol=lr * tolerance)


@needs_kernel
def test_state_dict_moves_between_torchs_rmsprop_and_the_fused_one():
    params, fused = _run(FusedRMSprop, th.float32, lr=1e-3, foreach=True)
    stock = th.optim.RMSprop(params, lr=1e-3, foreach=True)
    stock.load_state_dict(fused.state_dict())
    assert stock.state_dict()["state"].keys() == fused.state_dict()["state"].keys()
    again = FusedRMSprop(params, lr=1e-3, foreach=True)
    again.load_state_dict(stock.state_dict())
    for p in params:
        p.grad = th.ones_like(p)
    before = [p.detach().clone() for p in params]
    again.step()
    assert all(not th.equal(p.detach(), b) for p, b in zip(params, before, strict=True))
    assert again.state[params[0]]["step"].item() == 5


@pytest.mark.parametrize(
    "kwargs",
    [dict(momentum=0.9), dict(centered=True), dict(weight_decay=0.1), dict(maximize=True), dict(lr=th.tensor(1e-3))],
    ids=["momentum", "centered", "weight_decay", "maximize", "tensor_lr"],
)
def test_other_configurations_take_torchs_step(kwargs):
    kwargs = dict(dict(lr=1e-3, foreach=True), **kwargs)
    params, _ = _run(FusedRMSprop, th.float32, **kwargs)
    stock, _ = _run(th.optim.RMSprop, th.float32, **kwargs)
    assert all(th.equal(p, s) for p, s in zip(params, stock, strict=True))


def test_without_the_extension_it_is_torchs_step(monkeypatch):
    monkeypatch.setenv(kernel.ENV, "0")
    params, _ = _run(FusedRMSprop, th.float32, lr=1e-3, foreach=True)
    stock, _ = _run(th.optim.RMSprop, th.float32, lr=1e-3, foreach=True)
    assert all(th.equal(p, s) for p, s in zip(params, stock, strict=True))


@needs_kernel
def test_a_tensor_the_pass_does_not_take_runs_torchs_step_for_its_group():
    """A non-contiguous parameter: nothing is half-updated; torch's step runs the group."""
    base = th.randn(6, 4)
    odd = th.nn.Parameter(base.t())  # non-contiguous
    plain = th.nn.Parameter(th.randn(5))
    twin_odd, twin_plain = th.nn.Parameter(base.t().clone()), th.nn.Parameter(plain.detach().clone())
    fused = FusedRMSprop([odd, plain], lr=1e-3, foreach=True)
    stock = th.optim.RMSprop([twin_odd, twin_plain], lr=1e-3, foreach=True)
    for _ in range(2):
        for p, q in ((odd, twin_odd), (plain, twin_plain)):
            p.grad = th.ones_like(p)
            q.grad = th.ones_like(q)
        fused.step()
        stock.step()
    assert th.equal(odd, twin_odd) and th.equal(plain, twin_plain)


def test_sparse_gradients_are_refused_as_torch_refuses_them():
    p = th.nn.Parameter(th.randn(4))
    p.grad = th.randn(4).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        FusedRMSprop([p], lr=1e-3).step()


@needs_kernel
def test_closure_is_evaluated_and_returned():
    p = th.nn.Parameter(th.ones(3))

    def closure():
        p.grad = th.full_like(p, 2.0)
        return 1.5

    assert FusedRMSprop([p], lr=1e-3).step(closure) == 1.5
    assert not th.equal(p.detach(), th.ones(3))


@needs_kernel
def test_where_torchs_addcmul_does_not_round_as_one_fma_it_is_torchs_step(monkeypatch):
    monkeypatch.setattr("agents.lean._fma_matches", lambda dtype: False)
    params, _ = _run(FusedRMSprop, th.float32, lr=1e-3, foreach=True)
    stock, _ = _run(th.optim.RMSprop, th.float32, lr=1e-3, foreach=True)
    assert all(th.equal(p, s) for p, s in zip(params, stock, strict=True))


def test_step_hooks_run_once_on_either_path():
    """torch wraps RMSprop.step with the hook runner once an RMSprop exists: the fallback must not run them twice."""
    th.optim.RMSprop([th.nn.Parameter(th.ones(1))])  # wraps RMSprop.step
    for kwargs in (dict(), dict(momentum=0.9)):  # the fused step where it can run, torch's otherwise
        p = th.nn.Parameter(th.ones(3))
        p.grad = th.ones(3)
        optimizer = FusedRMSprop([p], lr=1e-3, **kwargs)
        calls = []
        optimizer.register_step_pre_hook(lambda *args, calls=calls: calls.append("pre"))
        optimizer.register_step_post_hook(lambda *args, calls=calls: calls.append("post"))
        optimizer.step()
        assert calls == ["pre", "post"], kwargs


@needs_kernel
@pytest.mark.filterwarnings("ignore:optimizer contains a parameter group with duplicate parameters")
def test_a_parameter_listed_twice_takes_torchs_step():
    """torch steps a group's tensors operation by operation, the pass tensor by tensor: they agree only where no
    two entries share memory, so a repeated parameter (torch warns, and takes it) takes torch's step."""
    p = th.nn.Parameter(th.randn(5))
    q = th.nn.Parameter(p.detach().clone())
    fused, stock = FusedRMSprop([p, p], lr=1e-2, foreach=True), th.optim.RMSprop([q, q], lr=1e-2, foreach=True)
    for _ in range(2):
        p.grad, q.grad = th.ones(5), th.ones(5)
        fused.step()
        stock.step()
    assert th.equal(p, q)
