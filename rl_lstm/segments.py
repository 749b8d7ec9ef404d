"""Running a cell over episodes: resets at episode starts, one step loop, and whole-sequence
kernels run between (or around) the steps where rows start episodes.

A step function maps ``(x_t, h, c, m_t) -> (h, c, out)`` with ``x_t`` (B, ...), ``h``/``c`` (B, H)
and ``m_t`` the step's masks or None; a sequence kernel maps ``(x, h, c) -> (out, h, c)`` with
``x`` (T, B, ...) and knows nothing of episodes. For memories that carry h only, ``c`` is None
throughout.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Step = Callable[[Tensor, Tensor, "Tensor | None", "Tensor | None"], tuple[Tensor, "Tensor | None", Tensor]]
Kernel = Callable[[Tensor, Tensor, "Tensor | None"], tuple[Tensor, Tensor, "Tensor | None"]]


def reset_rows(h: Tensor, c: Tensor | None, starting: Tensor) -> tuple[Tensor, Tensor | None]:
    """Zeros for the state of the rows whose ``starting`` (B, 1) is True, by selection: a NaN or an
    infinity in a row's state cannot cross into its next episode (as it would through ``h * 0``)."""
    zero = h.new_zeros(())
    return torch.where(starting, zero, h), (None if c is None else torch.where(starting, zero, c))


def reset_steps(starts: Tensor | None) -> dict[int, Tensor]:
    """``{t: starting}`` for the steps where some row starts an episode; starting is bool (B, 1)."""
    if starts is None:
        return {}
    steps = starts.any(1).nonzero().flatten().tolist()
    return dict(zip(steps, starts[steps].unsqueeze(-1).unbind(0), strict=True))


def step_loop(
    step: Step, xs: Tensor, h: Tensor, c: Tensor | None, starts: Tensor | None, masks: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The one time loop: ``xs`` (T, B, ...) step by step, zeroing the state of the rows that
    start an episode before their step; returns the outputs stacked (T, B, H) and the final h, c."""
    step_masks = [None] * xs.shape[0] if masks is None else masks.unbind(0)
    reset = reset_steps(starts)
    outputs = []
    # unbind, not xs[t]: per-step indexing costs a select-backward node per step.
    for t, (x_t, m_t) in enumerate(zip(xs.unbind(0), step_masks, strict=True)):
        if t in reset:
            h, c = reset_rows(h, c, reset[t])
        h, c, out = step(x_t, h, c, m_t)
        outputs.append(out)
    return torch.stack(outputs), h, c


def run_segments(
    run: Kernel,
    x: Tensor,
    h: Tensor,
    c: Tensor | None,
    starts: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Run a whole-sequence kernel over the stretches between steps where some row starts.

    The state of the starting rows is zeroed between stretches, so a fused kernel that knows
    nothing of episodes gives the same result as the step-by-step loop.
    """
    reset = reset_steps(starts)
    bounds = sorted({0, x.shape[0], *reset})
    outputs = []
    for a, b in zip(bounds[:-1], bounds[1:]):  # noqa: B905 (lengths differ by one by design)
        if a in reset:
            h, c = reset_rows(h, c, reset[a])
        out, h, c = run(x[a:b], h, c)
        outputs.append(out)
    return (outputs[0] if len(outputs) == 1 else torch.cat(outputs)), h, c


def run_pieces(
    run: Kernel,
    x: Tensor,
    h: Tensor,
    c: Tensor | None,
    starts: Tensor,
    fill: float = 0.5,
) -> Tensor:
    """Run a whole-sequence kernel over each piece of a row between episode starts as a row of
    its own; returns the output only (the pieces' final states lie past their padding).

    Pieces are left-aligned and zero-padded (padding after a piece cannot change its outputs),
    in buckets of similar lengths: a piece shorter than ``fill`` times its bucket's longest opens
    a new bucket. So a few kernel calls replace the one call per stretch of :func:`run_segments`,
    and little of the compute goes to padding. A piece starts from the row's given state, or
    from zeros at an episode start.
    """
    seq_len, batch = starts.shape
    cut = starts.clone()
    cut[0] = True
    piece = cut.t().reshape(-1).cumsum(0) - 1  # (batch * seq_len,) row-major: piece of (b, t)
    n_pieces = int(piece[-1]) + 1
    pos = torch.arange(batch * seq_len, device=x.device)
    first = torch.zeros(n_pieces, dtype=torch.long, device=x.device)
    first = first.scatter_reduce(0, piece, pos, "amin", include_self=False)  # (n_pieces,) first (b, t)
    lengths = torch.bincount(piece, minlength=n_pieces)
    order = torch.argsort(lengths, descending=True, stable=True)
    # Buckets over the pieces sorted by length: (first sorted index, count, longest).
    buckets: list[tuple[int, int, int]] = []
    for k, length in enumerate(lengths[order].tolist()):
        if not buckets or length < fill * buckets[-1][2]:
            buckets.append((k, 0, length))
        start, count, longest = buckets[-1]
        buckets[-1] = (start, count + 1, longest)
    # Row of each piece's step 0 in the concatenated padded layouts; bucket b is (longest, count).
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n_pieces, device=x.device)
    base = torch.empty(n_pieces, dtype=torch.long, device=x.device)
    stride = torch.empty(n_pieces, dtype=torch.long, device=x.device)
    offset = 0
    for start, count, longest in buckets:
        members = order[start : start + count]
        base[members] = offset + rank[members] - start
        stride[members] = count
        offset += longest * count
    # row of (b, t), listed in x's time-major order
    dest = (base[piece] + (pos - first[piece]) * stride[piece]).reshape(batch, seq_len).t().reshape(-1)
    padded = x.new_zeros(offset, x.shape[2]).index_copy(0, dest, x.reshape(seq_len * batch, -1))
    row, t0 = first // seq_len, first % seq_len
    begins = starts[t0, row].unsqueeze(-1)  # zeros for pieces that begin an episode
    h0, c0 = reset_rows(h.index_select(0, row), None if c is None else c.index_select(0, row), begins)
    outputs, offset = [], 0
    for start, count, longest in buckets:
        members = order[start : start + count]
        xb = padded[offset : offset + longest * count].reshape(longest, count, -1)
        c_b = None if c0 is None else c0.index_select(0, members)
        out, _, _ = run(xb, h0.index_select(0, members), c_b)
        outputs.append(out.reshape(longest * count, -1))
        offset += longest * count
    flat = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
    return flat.index_select(0, dest).reshape(seq_len, batch, -1)


Cell = Callable[[Tensor, Tensor, "Tensor | None"], tuple[Tensor, "Tensor | None"]]


def run_fused(
    cell: Cell | None,
    kernel: Kernel,
    x: Tensor,
    h: Tensor,
    c: Tensor | None,
    starts: Tensor | None,
    need_state: bool,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Run a memory whose masks leave the carried state alone on fused kernels: ``cell``
    ``(x_t, h, c) -> (h, c)`` for one step (the output is h), ``kernel`` over whole stretches.

    One step: one cell call. Without episode starts: one kernel call. When the final state is not
    wanted: :func:`run_pieces`. With many stretches (more than one start per 16 steps), where one
    kernel call each costs more than it saves: the cell step by step. Otherwise :func:`run_segments`.
    Without a one-step ``cell`` (None): the kernel once per stretch (:func:`run_segments`), or over the
    pieces when the final state is not wanted.
    Returns the output (T, B, H) and the final h, c (None when ``need_state`` is False).
    """
    if cell is None:
        if need_state or starts is None:
            return run_segments(kernel, x, h, c, starts)
        return run_pieces(kernel, x, h, c, starts), None, None
    if x.shape[0] == 1:
        if starts is not None:
            h, c = reset_rows(h, c, starts[0].unsqueeze(-1))
        (x_0,) = x.unbind(0)  # not x[0]: a traced call then refuses another seq_len
        h, c = cell(x_0, h, c)
        return h.unsqueeze(0), h, c
    if starts is None:
        return kernel(x, h, c)
    if not need_state:
        return run_pieces(kernel, x, h, c, starts), None, None
    if int(starts.any(1).sum()) > x.shape[0] // 16:

        def step(x_t: Tensor, h: Tensor, c: Tensor | None, m: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor]:
            h, c = cell(x_t, h, c)
            return h, c, h

        return step_loop(step, x, h, c, starts, None)
    return run_segments(kernel, x, h, c, starts)
