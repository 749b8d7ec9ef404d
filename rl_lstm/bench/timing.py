"""Timing harness: warm-up, calibration, shuffled interleaved rounds and round-by-round ratios."""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from rl_lstm.tooling import summarize

Timer = Callable[[int], None]  # run n steps (or n calls); the time of the whole run is measured


def make_sync(device: str) -> Callable[[], None]:
    """On CUDA kernels run asynchronously: synchronize on both sides of a timed region."""
    if device == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def time_once(fn: Timer, n: int, sync: Callable[[], None], clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds for ``fn(n)`` on ``clock`` (wall clock by default; ``time.process_time`` counts only this
    process's CPU time, the uncontended cost of one thread on a machine shared with other work)."""
    sync()
    t0 = clock()
    fn(n)
    sync()
    return clock() - t0


def calibrate(
    timers: dict[str, Timer],
    s: Any,
    sync: Callable[[], None],
    lo: int,
    hi: int,
    clock: Callable[[], float] = time.perf_counter,
) -> int:
    """Warm every timer up (excluded from the figures), then pick n so a round lasts ~round_seconds.

    ``s`` holds the settings read here: ``warmup_steps``, ``steps`` (a fixed count, or None) and
    ``round_seconds``."""
    for fn in timers.values():
        fn(2)  # first calls: lazy initialisation, allocator growth, oneDNN primitive caches
    per_round = sum(time_once(fn, s.warmup_steps, sync, clock) / s.warmup_steps for fn in timers.values())
    if s.steps is not None:
        return s.steps
    return max(lo, min(hi, int(s.round_seconds / per_round)))


def time_rounds(
    timers: dict[str, Timer],
    n: int,
    repeats: int,
    sync: Callable[[], None],
    rng: random.Random,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds per step (or call) of every timer in each of ``repeats`` shuffled rounds."""
    per_step: dict[str, list[float]] = {k: [] for k in timers}
    order = list(timers)
    gc.collect()
    gc.disable()  # a collection inside one timer's block would charge it alone
    try:
        for _ in range(repeats):
            rng.shuffle(order)
            for k in order:
                per_step[k].append(time_once(timers[k], n, sync, clock) / n)
    finally:
        gc.enable()
    return per_step


def ratio_stats(num: list[float], den: list[float]) -> dict[str, float]:
    """Round-by-round ratios ``num[r] / den[r]``: both were timed in the same round."""
    return summarize([a / b for a, b in zip(num, den, strict=True)])


def us(values: list[float]) -> dict[str, float]:
    return summarize([v * 1e6 for v in values])


def saved_bytes(fn: Timer, exclude: set[int]) -> int:
    """Bytes of the distinct storages autograd saves for backward in one call of ``fn``.

    Parameters and the input (``exclude``, storage addresses) are left out: every timer holds
    them anyway. A storage saved by several nodes (views, chunks of the gates) counts once.
    """
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in exclude:
            seen[ptr] = max(seen.get(ptr, 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(1)
    return sum(seen.values())


def cuda_peak_bytes(fn: Timer) -> int:
    """Peak CUDA memory allocated during one call of ``fn``, above what was allocated before it."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn(1)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base
