"""Linear recurrences ``s_t = a_t * s_{t-1} + b_t`` (elementwise, real or complex), whose gates come
from the input alone: the recurrence over a chunk (:func:`linear_scan`), the one-step loop it is checked
against, and :class:`LinearRecurrence`, the layer the memories of this kind share (``mingru``, ``minlstm``,
``lru``, ``ffm``).

Where the compiled extension runs (:mod:`rl_lstm.kernel`), a chunk is one pass over its steps, forward and
backward (``rl_lstm/csrc/linear_scan.inc``): the recurrence is memory-bound, and one pass reads each
coefficient once. Elsewhere (no compiler, ``RL_LSTM_KERNEL=0``, other devices, a graph being traced) it is a
blocked parallel scan in torch operations, which never divides by a cumulative product (which over- or
underflows at long T with small decays): a chunk of T steps is cut into about sqrt(T) blocks of about
sqrt(T) steps; every block runs the recurrence from zero step by step, all blocks at once; the blocks' end
states are then chained block by block, and each step adds its block's entering state times the product of
the decays so far in its block. Both loops are about sqrt(T) elementwise operations over
``(T / L, B, N)`` tensors, and every product is a product of the decays themselves.

An episode start at step t cuts the recurrence by selection (``torch.where``), never by
multiplying with 0, so a NaN or inf in one episode cannot reach the next.
"""

from __future__ import annotations

import math
import warnings
from typing import ClassVar

import torch
from torch import Tensor, nn

from rl_lstm import kernel
from rl_lstm.base import RecurrentLayer
from rl_lstm.paths import RECURRENCE_LOOP, SCAN

#: A state or coefficient in real arithmetic: ``(x,)`` for a real recurrence, ``(re, im)`` for a
#: complex one; each part (..., N).
Parts = tuple[Tensor, ...]


def linear_scan(a: Tensor, b: Tensor, s0: Tensor, starts: Tensor | None = None, block: int | None = None) -> Tensor:
    """The states of ``s_t = a_t * s_{t-1} + b_t`` for every step: one pass over the steps on the compiled
    extension (:mod:`rl_lstm.kernel`, ``RL_LSTM_KERNEL``) where it can run, else a blocked parallel scan in
    torch operations.

    :param a: decays ``(T, B, N)`` (or broadcastable to ``b``), real or complex.
    :param b: inputs ``(T, B, N)``, the dtype of ``a``.
    :param s0: the state before step 0, ``(B, N)``.
    :param starts: ``(T, B)`` bool, True where a row starts an episode: its state before that step is
        zero, whatever came before (selected, never multiplied away).
    :param block: steps per block of the torch scan (default ``ceil(sqrt(T))``); the compiled pass has none.

    Returns ``(T, B, N)``: ``s_t`` after each step. Under autograd the backward is the same recurrence run
    backwards in time (``g_t = dL/ds_t + conj(a_{t+1}) g_{t+1}``, cut at episode starts), not a
    graph of the forward's steps; a double backward (``create_graph=True``) runs it in torch operations.
    """
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad or s0.requires_grad):
        return _LinearScan.apply(a, b, s0, starts, block)
    return _forward(a, b, s0, starts, block)[0]


def _forward(a: Tensor, b: Tensor, s0: Tensor, starts: Tensor | None, block: int | None) -> tuple[Tensor, bool]:
    """The states, by the compiled pass where it runs (one dtype for all three, as ``RL_LSTM_KERNEL`` allows),
    else by the torch scan (starts: selection inside, so no NaN crosses a start); and whether it was compiled."""
    if a.dtype == b.dtype == s0.dtype and kernel.use(b.real if b.is_complex() else b):
        return kernel.load().linear_scan(a, b, s0, starts), True
    return _scan(a, b, s0, starts, block), False


class _LinearScan(torch.autograd.Function):
    """The scan with its backward written as the reverse scan (PyTorch's conjugate convention for
    complex inputs: ``grad_a = g * conj(s_{t-1})``, ``grad_s_{t-1} = g * conj(a_t)``)."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, s0: Tensor, starts: Tensor | None, block: int | None) -> Tensor:
        s, ctx.compiled = _forward(a, b, s0, starts, block)
        ctx.save_for_backward(a, s0, s)
        ctx.starts, ctx.block = starts, block
        return s

    @staticmethod
    def backward(ctx, g: Tensor):
        a, s0, s = ctx.saved_tensors
        need_a, need_s0 = ctx.needs_input_grad[0], ctx.needs_input_grad[2]
        if ctx.compiled and not torch.is_grad_enabled():  # a double backward needs the graph of torch operations
            grad_a, total, grad_s0 = kernel.load().linear_scan_backward(a, s0, ctx.starts, s, g, need_a, need_s0)
            if grad_a is not None:  # (N) where summed over T and B inside (a decay every step shares)
                grad_a = grad_a.reshape(a.shape) if grad_a.dim() == 1 else grad_a.sum_to_size(a.shape)
            return grad_a, total, (grad_s0.sum_to_size(s0.shape) if need_s0 else None), None, None
        grad_a, total, grad_s0 = _reverse_scan(a, s0, s, g, ctx.starts, ctx.block, need_a, need_s0)
        return grad_a, total, grad_s0, None, None


def _reverse_scan(a: Tensor, s0: Tensor, s: Tensor, g: Tensor, starts: Tensor | None, block: int | None,
                  need_a: bool, need_s0: bool) -> tuple[Tensor | None, Tensor, Tensor | None]:  # fmt: skip
    """The backward of the scan in torch operations: the gradients of ``a``, ``b`` and ``s0``."""
    decay = _cut(a.expand_as(g), starts)
    # g_t (total) = g_t + conj(a_{t+1}) g_{t+1}: the same recurrence backwards in time; a start at
    # t+1 already zeroed a_{t+1}, so no gradient crosses it.
    after = torch.cat([decay[1:], decay.new_zeros(1, *decay.shape[1:])]).conj()
    total = _scan(after.flip(0), g.flip(0), torch.zeros_like(g[0]), None, block).flip(0)
    grad_a = grad_s0 = None
    if need_a:
        before = torch.cat([s0.expand_as(g[0]).unsqueeze(0), s[:-1]])  # s_{t-1}
        grad_a = total * before.conj()
        if starts is not None:  # a was replaced by 0 there: it had no effect
            grad_a = torch.where(starts.unsqueeze(-1), torch.zeros((), dtype=grad_a.dtype), grad_a)
        grad_a = grad_a.sum_to_size(a.shape)
    if need_s0:
        grad_s0 = (total[0] * decay[0].conj()).sum_to_size(s0.shape)
    return grad_a, total, grad_s0


def _cut(a: Tensor, starts: Tensor | None) -> Tensor:
    """``a`` with 0 selected where a row starts an episode."""
    if starts is None:
        return a
    return torch.where(starts.unsqueeze(-1), torch.zeros((), dtype=a.dtype), a)


def _scan(a: Tensor, b: Tensor, s0: Tensor, starts: Tensor | None, block: int | None) -> Tensor:
    """The blocked scan of :func:`linear_scan`, differentiable step by step by autograd."""
    seq_len = b.shape[0]
    a = _cut(a.expand_as(b), starts)
    if starts is not None:
        cut = starts.unsqueeze(-1)  # (T, B, 1)
    length = block or max(1, math.isqrt(seq_len - 1) + 1)  # ceil(sqrt(T))
    n_blocks = -(-seq_len // length)
    pad = n_blocks * length - seq_len
    if pad:  # steps after the last change nothing before them: decay 1, input 0
        a = torch.cat([a, a.new_ones(pad, *a.shape[1:])])
        b = torch.cat([b, b.new_zeros(pad, *b.shape[1:])])
        if starts is not None:
            cut = torch.cat([cut, cut.new_zeros(pad, *cut.shape[1:])])
    # (K, L, B, N): block k, step i of the block.
    a_blocks = a.reshape(n_blocks, length, *a.shape[1:]).unbind(1)
    b_blocks = b.reshape(n_blocks, length, *b.shape[1:]).unbind(1)
    cut_blocks = None if starts is None else cut.reshape(n_blocks, length, *cut.shape[1:]).unbind(1)
    # Every block from zero, all blocks at once: local states and the decay products so far.
    local, prod = [b_blocks[0]], [a_blocks[0]]
    for i in range(1, length):
        step = a_blocks[i] * local[-1] + b_blocks[i]
        if cut_blocks is not None:
            step = torch.where(cut_blocks[i], b_blocks[i], step)
        local.append(step)
        prod.append(a_blocks[i] * prod[-1])
    local_s = torch.stack(local, 1)  # (K, L, B, N)
    prod_s = torch.stack(prod, 1)
    # Chain the blocks: the state entering each block.
    ends, ends_prod = local[-1].unbind(0), prod[-1].unbind(0)  # K x (B, N)
    cut_any = None
    if cut_blocks is not None:
        seen = torch.stack(cut_blocks, 1).cumsum(1) > 0  # (K, L, B, 1): a start so far in the block
        cut_any = seen[:, -1].unbind(0)
    entering, state = [], s0
    for k in range(n_blocks):
        entering.append(state)
        nxt = ends_prod[k] * state + ends[k]
        state = nxt if cut_any is None else torch.where(cut_any[k], ends[k], nxt)
    carried = prod_s * torch.stack(entering).unsqueeze(1)  # (K, L, B, N)
    out = local_s + carried if cut_blocks is None else torch.where(seen, local_s, local_s + carried)
    out = out.reshape(n_blocks * length, *out.shape[2:])
    return out[:seq_len] if pad else out


def complex_mul(a: Parts, s: Parts) -> Parts:
    """``a * s`` in real arithmetic for ``(x,)`` or ``(re, im)`` parts."""
    if len(a) == 1:
        return (a[0] * s[0],)
    (ar, ai), (sr, si) = a, s
    return ar * sr - ai * si, ar * si + ai * sr


def recurrence_loop(a: Parts, b: Parts, s0: Parts, starts: Tensor | None) -> Parts:
    """The reference: ``s_t = a_t * s_{t-1} + b_t`` one step at a time in real arithmetic (complex
    numbers as ``(re, im)`` parts), the state zeroed by selection at episode starts. Each part of
    ``a`` and ``b`` is ``(T, B, N)`` (``a`` may broadcast), of ``s0`` ``(B, N)``; returns the states
    ``(T, B, N)`` per part."""
    seq_len = b[0].shape[0]
    a = tuple(p.expand_as(b[0]) for p in a)
    states, s = [], s0
    a_steps = [p.unbind(0) for p in a]
    b_steps = [p.unbind(0) for p in b]
    for t in range(seq_len):
        if starts is not None:
            cut = starts[t].unsqueeze(-1)  # (B, 1)
            s = tuple(torch.where(cut, torch.zeros((), dtype=p.dtype), p) for p in s)
        a_t, b_t = tuple(p[t] for p in a_steps), tuple(p[t] for p in b_steps)
        s = tuple(m + v for m, v in zip(complex_mul(a_t, s), b_t, strict=True))
        states.append(s)
    return tuple(torch.stack(part) for part in zip(*states, strict=True))


def parallel_scan(a: Parts, b: Parts, s0: Parts, starts: Tensor | None) -> Parts:
    """:func:`recurrence_loop`'s result by :func:`linear_scan` (complex parts joined into a complex tensor
    for the scan and split again)."""
    if len(b) == 1:
        return (linear_scan(a[0], b[0], s0[0], starts),)
    states = linear_scan(torch.complex(*a), torch.complex(*b), torch.complex(*s0), starts)
    return torch.view_as_real(states).unbind(-1)  # views whose gradients stack into one tensor


class LinearRecurrence(RecurrentLayer):
    """A memory whose state follows ``s_t = a_t * s_{t-1} + b_t`` elementwise, with ``a_t`` and ``b_t``
    computed from the input alone, and whose output is read from ``s_t`` (and the input) step by
    step. Subclasses give the coefficients (:meth:`_coefficients`) and the read-out
    (:meth:`_readout`), both for a whole chunk at once; the layer runs the recurrence one step at
    a time when ``T == 1`` (collection, export: real arithmetic only) or when :attr:`fused` is
    False (the reference), else as the blocked scan of :func:`linear_scan` (class fact :attr:`scan`).

    A real state is carried as ``h`` (``state_names ("h",)``); a complex state of N units as
    ``(h, c)`` = (real part, imaginary part), each ``(1, batch, N)``, so the agents' ``(h, c)``
    layout, rollout buffer, save/load and export carry it unchanged.

    Dropout sites, for a memory with no recurrent weight matrix:

    - ``'pytorch'``: a fresh mask at every step on the output.
    - ``'moon'``: one 0/1 mask per episode on the carried state (RNNDrop): a dropped unit stays 0
      for the episode; both coefficients are masked, so the recurrence stays linear and the mask
      needs no inverted scaling that would compound over the steps.
    - ``'semeniuta'``: a fresh mask at every step on the input term ``b_t`` (the candidate): what
      is stored is never erased.
    - ``'zoneout'`` (real states only): each unit keeps its previous value with probability p,
      ``a' = m + (1 - m) a``, ``b' = (1 - m) b``, still linear.
    - ``'gal'`` does not apply: there is no recurrent weight matrix for a tied mask to feed, and
      an inverted per-episode mask on the carried state would rescale it at every step.
    """

    torch_module: ClassVar[type[nn.RNNBase] | None] = None
    torch_equivalent = False
    dropout_methods: ClassVar[tuple[str, ...]] = ("pytorch", "moon", "semeniuta", "zoneout")
    paths = (SCAN, RECURRENCE_LOOP)

    @property
    def parallel(self) -> bool:
        """Deprecated alias of :attr:`fused`, the one switch of every cell (False: the step loop)."""
        _warn_parallel()
        return self.fused

    @parallel.setter
    def parallel(self, value: bool) -> None:
        _warn_parallel()
        self.fused = value

    def _coefficients(self, x: Tensor, masks: Tensor | None) -> tuple[Parts, Parts, object]:
        """``a`` and ``b`` as parts ``(T, B, N)`` (``a`` may broadcast) from ``x`` (T, B, I), and
        what the read-out needs of the input."""
        raise NotImplementedError

    def _readout(self, s: Parts, ctx: object, masks: Tensor | None) -> Tensor:
        """The output ``(T, B, H)`` from the states ``s`` (parts ``(T, B, N)``)."""
        raise NotImplementedError

    def _mask_coefficients(self, a: Parts, b: Parts, masks: Tensor | None) -> tuple[Parts, Parts]:
        """The masks that act on the recurrence: Moon's on the state, Semeniuta's on ``b``, zoneout."""
        site = self.mask_spec.site
        if site == "zoneout" and self.dropout > 0.0:
            m = self.dropout if masks is None else masks  # the expectation without masks
            return tuple(torch.lerp(p, torch.ones_like(p), m) for p in a), tuple(p * (1 - m) for p in b)
        if masks is None:
            return a, b
        if site == "cell":
            return tuple(p * masks for p in a), tuple(p * masks for p in b)
        if site == "candidate":
            return a, tuple(p * masks for p in b)
        return a, b

    def _output_mask(self, out: Tensor, masks: Tensor | None) -> Tensor:
        return out * masks if masks is not None and self.mask_spec.site == "output" else out

    def _run_steps(
        self, x: Tensor, h: Tensor, c: Tensor | None, starts: Tensor | None, masks: Tensor | None, need_state
    ):
        return self._recurrence(recurrence_loop, x, h, c, starts, masks, need_state)

    def _run_scan(
        self, x: Tensor, h: Tensor, c: Tensor | None, starts: Tensor | None, masks: Tensor | None, need_state
    ):
        return self._recurrence(parallel_scan, x, h, c, starts, masks, need_state)

    def _recurrence(self, solve, x: Tensor, h: Tensor, c: Tensor | None, starts, masks, need_state: bool):
        """The coefficients, the states by ``solve`` (:func:`recurrence_loop` or :func:`parallel_scan`), the
        read-out."""
        a, b, ctx = self._coefficients(x, masks)
        a, b = self._mask_coefficients(a, b, masks)
        s0 = (h,) if c is None else (h, c)
        s = solve(a, b, s0, starts)
        out = self._readout(s, ctx, masks)
        if not need_state:
            return out, None, None
        return out, s[0][-1], (s[1][-1] if len(s) == 2 else None)

    def torch_parameters(self) -> list[Tensor]:
        raise TypeError(f"{type(self).__name__} is a linear recurrence: no torch module shares its parameters")


def _warn_parallel() -> None:
    warnings.warn(
        "LinearRecurrence.parallel is deprecated: use fused, the switch every cell shares (False: the step "
        "loop, the reference)",
        DeprecationWarning,
        stacklevel=3,
    )
