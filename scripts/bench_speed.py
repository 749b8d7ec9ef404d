#!/usr/bin/env python
"""Speed of every registered cell against ``nn.LSTM`` and ``torch.lstm_cell`` on the same weights.

Two kinds of measurement:

* **Step mode** (the seed's benchmark, extended): one step per call (``seq_len`` 1), the output
  fed back as the next input (so ``input_size == hidden_size``), for every hidden size, batch
  and mode. Modes: ``eval`` (eval mode, no grad: the seed's "inference" table), ``train-nograd``
  (training mode, masks on, no grad: acting with masks, as a rollout that records them) and
  ``train`` (training mode, masks on, autograd recording the graph but no backward: what the
  seed's own loop did, and the step-by-step path of an update). References: ``nn.LSTM``
  called with ``seq_len`` 1 (the seed's yardstick) and ``torch.lstm_cell`` (the faster
  per-step kernel on CPU).
* **Sequence mode**: one call over a whole ``(T, B, H)`` sequence in training mode, forward
  plus backward of ``out.sum()``, against ``nn.LSTM``'s fused call and a ``torch.lstm_cell``
  loop; with and without episode starts; plus the bytes of activations saved for backward.

Method: for each (mode, size, batch) every timer is warmed up, then R rounds time every timer
once each in a shuffled order, so drift and a noisy neighbour hit all of them alike. Reported:
the median per-step time with min-max over rounds, and ratios taken round by round (a cell's
time over the reference's time in the same round), median with min-max. Thread count pinned.

Output: ``speed.json`` (machine, settings, every measurement) and ``speed.md`` (tables, the
targets as a pass/fail column: reported, never asserted), and ``speed.png`` when matplotlib
is installed.

    python scripts/bench_speed.py [--out DIR] [--quick] [--sizes ...] [--batches ...]
        [--cells ...] [--repeats N] [--threads N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from _bench_common import describe_machine, machine_info, md_table, pin_threads, summarize, write_json
from torch import Tensor, nn

from rl_lstm import CELLS, LSTM, LayerNormLSTM, RecurrentLayer, TorchLSTM, make_cell

Timer = Callable[[int], None]  # run n steps (or n calls); the time of the whole run is measured

REF_NN = "nn_lstm"  # nn.LSTM called with seq_len 1 (step mode) or once over the sequence (sequence mode)
REF_LC = "lstm_cell"  # torch.lstm_cell, one step per call
REF_LABELS = {REF_NN: "nn.LSTM (seq_len 1)", REF_LC: "torch.lstm_cell"}
SEQ_REF_LABELS = {REF_NN: "nn.LSTM (fused)", REF_LC: "torch.lstm_cell loop"}


@dataclass(frozen=True)
class Mode:
    """How a step-mode measurement runs the cells."""

    name: str
    train: bool  # cell.train(): masks act
    grad: bool  # autograd records the graph (no backward in step mode)
    doc: str


MODES = {
    m.name: m
    for m in (
        Mode("eval", False, False, "eval mode, no grad: inference as in the seed's table (no masks act)"),
        Mode("train-nograd", True, False, "training mode, masks on, no grad: acting with masks"),
        Mode("train", True, True, "training mode, masks on, autograd records the graph (no backward)"),
    )
}

# The seed's published table (lstms.pth README): seconds for one sequence of 1000 steps, batch 1,
# dropout 0.5, at each of SEED_SIZES, as (nn.LSTM row, cell row). Copied as data for the "seed" columns.
SEED_SIZES = (128, 256, 512, 1024, 2048)
SEED_SPEED: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "slow": ((0.757, 0.583, 0.872, 3.658, 10.077), (0.745, 0.800, 1.099, 3.969, 11.628)),
    "lstm": ((0.725, 0.615, 0.835, 3.485, 11.066), (0.379, 0.511, 0.610, 3.547, 7.762)),
    "gal": ((0.669, 0.579, 0.966, 3.630, 9.598), (0.696, 0.652, 0.885, 3.441, 9.509)),
    "moon": ((0.656, 0.652, 0.949, 3.646, 10.202), (0.551, 0.589, 0.614, 3.020, 8.539)),
    "semeniuta": ((0.580, 0.718, 0.859, 4.041, 9.587), (0.375, 0.843, 0.574, 3.372, 8.668)),
}
SEED_STEPS = 1000

# Targets (reported as pass/fail, never asserted).
TARGET_BATCHES = (1, 16)  # per-step targets against torch.lstm_cell apply at these batches, in training modes
TARGET_LC = {"lstm": 1.1, "dropout": 1.3, "layer-norm": 1.5}
TARGET_SEQ_LSTM = 1.3  # sequence mode: the plain LSTM against nn.LSTM's fused call


@dataclass
class Settings:
    """Everything that decides what is measured; saved in speed.json."""

    sizes: list[int] = field(default_factory=lambda: [128, 256, 512, 1024, 2048])
    batches: list[int] = field(default_factory=lambda: [1, 16, 64])
    cells: list[str] = field(default_factory=lambda: list(CELLS))
    modes: list[str] = field(default_factory=lambda: list(MODES))
    dropout: float = 0.5
    repeats: int = 9
    threads: int = 1
    device: str = "cpu"
    round_seconds: float = 2.0  # step counts are chosen so one round of all timers takes about this long
    min_steps: int = 5
    max_steps: int = 1000
    steps: int | None = None  # a fixed step count instead of the calibrated one
    warmup_steps: int = 5
    seq_len: int = 128
    seq_batch: int = 16
    seq_hidden: int = 256
    seq_start_prob: float = 1 / 32  # per row and step, for the "with episode starts" sequence setting
    seq_max_calls: int = 20
    seed: int = 0


def family(name: str) -> str | None:
    """The target family of a registered cell, read from its class: None for the references."""
    cls = CELLS[name]
    if issubclass(cls, LayerNormLSTM):
        return "layer-norm"
    if issubclass(cls, LSTM):
        return "lstm" if make_cell(name, 1, 1).dropout_method == "pytorch" else "dropout"
    return None  # TorchLSTM is nn.LSTM itself; SlowLSTM is pedagogic and has no target


# ---------------------------------------------------------------------------------- timing
def make_sync(device: str) -> Callable[[], None]:
    """On CUDA kernels run asynchronously: synchronize on both sides of a timed region."""
    if device == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def time_once(fn: Timer, n: int, sync: Callable[[], None]) -> float:
    """Seconds for ``fn(n)``."""
    sync()
    t0 = time.perf_counter()
    fn(n)
    sync()
    return time.perf_counter() - t0


def calibrate(timers: dict[str, Timer], s: Settings, sync: Callable[[], None], lo: int, hi: int) -> int:
    """Warm every timer up (excluded from the figures), then pick n so a round lasts ~round_seconds."""
    for fn in timers.values():
        fn(2)  # first calls: lazy initialisation, allocator growth, oneDNN primitive caches
    per_round = sum(time_once(fn, s.warmup_steps, sync) / s.warmup_steps for fn in timers.values())
    if s.steps is not None:
        return s.steps
    return max(lo, min(hi, int(s.round_seconds / per_round)))


def time_rounds(
    timers: dict[str, Timer], n: int, repeats: int, sync: Callable[[], None], rng: random.Random
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
                per_step[k].append(time_once(timers[k], n, sync) / n)
    finally:
        gc.enable()
    return per_step


def ratio_stats(num: list[float], den: list[float]) -> dict[str, float]:
    """Round-by-round ratios ``num[r] / den[r]``: both were timed in the same round."""
    return summarize([a / b for a, b in zip(num, den, strict=True)])


def us(values: list[float]) -> dict[str, float]:
    return summarize([v * 1e6 for v in values])


# ---------------------------------------------------------------------------------- models
def build(names: list[str], hidden: int, s: Settings) -> tuple[nn.LSTM, dict[str, RecurrentLayer]]:
    """An ``nn.LSTM(hidden, hidden)`` and every named cell holding a copy of its weights."""
    torch.manual_seed(s.seed)
    ref = nn.LSTM(hidden, hidden).to(s.device)
    return ref, {n: CELLS[n].from_torch(ref, dropout=s.dropout) for n in names}


def ref_params(ref: nn.LSTM) -> list[Tensor]:
    """``[weight_ih, weight_hh, bias_ih, bias_hh]`` of a one-layer nn.LSTM, for torch.lstm_cell."""
    return [ref.weight_ih_l0, ref.weight_hh_l0, ref.bias_ih_l0, ref.bias_hh_l0]


def step_timers(
    ref: nn.LSTM, cells: dict[str, RecurrentLayer], batch: int, mode: Mode, device: str
) -> dict[str, Timer]:
    """Timers that run n steps of one call each, the output fed back as the next input."""
    hidden = ref.hidden_size
    x0 = torch.randn(1, batch, hidden, device=device)  # (1, B, H): the first input
    params = ref_params(ref)
    ref.train(mode.train)

    def run_nn(n: int) -> None:
        with torch.set_grad_enabled(mode.grad):
            y, state = x0, None
            for _ in range(n):
                y, state = ref(y, state)  # (1, B, H)

    def run_lc(n: int) -> None:
        with torch.set_grad_enabled(mode.grad):
            y = x0[0]  # (B, H)
            h = c = torch.zeros_like(y)
            for _ in range(n):
                h, c = torch.lstm_cell(y, (h, c), *params)
                y = h

    def cell_timer(cell: RecurrentLayer) -> Timer:
        cell.train(mode.train)

        def run(n: int) -> None:
            with torch.set_grad_enabled(mode.grad):
                y, state = x0, None  # hidden=None on the first step: an episode starts, fresh masks
                for _ in range(n):
                    y, state = cell(y, state)  # (1, B, H)

        return run

    return {REF_NN: run_nn, REF_LC: run_lc, **{name: cell_timer(cell) for name, cell in cells.items()}}


def sequence_timers(
    ref: nn.LSTM, cells: dict[str, RecurrentLayer], x: Tensor, starts: Tensor | None
) -> dict[str, Timer]:
    """Timers that run n calls of forward over ``x`` (T, B, H) plus backward of ``out.sum()``.

    The references know nothing of episodes: they run the whole sequence without resets.
    """
    params = ref_params(ref)
    ref.train()

    def run_fused(n: int) -> None:
        for _ in range(n):
            ref.zero_grad(set_to_none=True)
            out, _ = ref(x)  # (T, B, H)
            out.sum().backward()

    def run_lc(n: int) -> None:
        for _ in range(n):
            ref.zero_grad(set_to_none=True)
            h = c = x.new_zeros(x.shape[1], ref.hidden_size)  # (B, H)
            outs = []
            for x_t in x.unbind(0):  # unbind, not x[t]: one select-backward node per step otherwise
                h, c = torch.lstm_cell(x_t, (h, c), *params)
                outs.append(h)
            torch.stack(outs).sum().backward()

    def cell_timer(cell: RecurrentLayer) -> Timer:
        cell.train()

        def run(n: int) -> None:
            for _ in range(n):
                cell.zero_grad(set_to_none=True)
                out, _ = cell(x, None, episode_starts=starts)  # (T, B, H)
                out.sum().backward()

        return run

    return {REF_NN: run_fused, REF_LC: run_lc, **{name: cell_timer(cell) for name, cell in cells.items()}}


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


# ---------------------------------------------------------------------------------- targets
def step_targets(name: str, mode: Mode, batch: int, ratio_lc: float, speedup_nn: float) -> list[dict]:
    """The targets that apply to one step-mode row, each with its value and pass/fail."""
    targets = []
    fam = family(name)
    if fam is not None and mode.train and batch in TARGET_BATCHES:
        bound = TARGET_LC[fam]
        targets.append({"target": f"<= {bound:.1f}x lstm_cell", "value": ratio_lc, "pass": ratio_lc <= bound})
    if CELLS[name] is not TorchLSTM:  # nn.LSTM behind the cells' interface is the yardstick itself
        targets.append({"target": "faster than nn.LSTM", "value": speedup_nn, "pass": speedup_nn > 1.0})
    return targets


def sequence_targets(name: str, ratio_nn: float) -> list[dict]:
    if family(name) == "lstm":
        return [
            {
                "target": f"<= {TARGET_SEQ_LSTM:.1f}x nn.LSTM fused",
                "value": ratio_nn,
                "pass": ratio_nn <= TARGET_SEQ_LSTM,
            }
        ]
    return []


# ---------------------------------------------------------------------------------- runs
def run_step_mode(s: Settings, log: Callable[[str], None]) -> list[dict]:
    sync = make_sync(s.device)
    rng = random.Random(s.seed)
    configs = [(m, h, b) for m in s.modes for h in s.sizes for b in s.batches]
    results = []
    start = time.perf_counter()
    for i, (mode_name, hidden, batch) in enumerate(configs, 1):
        mode = MODES[mode_name]
        ref, cells = build(s.cells, hidden, s)
        timers = step_timers(ref, cells, batch, mode, s.device)
        n = calibrate(timers, s, sync, s.min_steps, s.max_steps)
        per_step = time_rounds(timers, n, s.repeats, sync, rng)
        row: dict = {
            "mode": mode_name,
            "hidden": hidden,
            "batch": batch,
            "steps": n,
            "repeats": s.repeats,
            "load_average_1min": os.getloadavg()[0],  # other work on the machine: the noise to expect
            "references": {k: {"us_per_step": us(per_step[k])} for k in (REF_NN, REF_LC)},
            "cells": {},
        }
        for name in s.cells:
            r_lc = ratio_stats(per_step[name], per_step[REF_LC])
            sp_nn = ratio_stats(per_step[REF_NN], per_step[name])
            row["cells"][name] = {
                "us_per_step": us(per_step[name]),
                "ratio_lstm_cell": r_lc,
                "speedup_nn_lstm": sp_nn,
                "targets": step_targets(name, mode, batch, r_lc["median"], sp_nn["median"]),
            }
        results.append(row)
        lc = row["references"][REF_LC]["us_per_step"]["median"]
        log(
            f"[step {i}/{len(configs)}] {mode_name:12s} H={hidden:<5d} B={batch:<3d} {n:4d} steps x {s.repeats} "
            f"rounds; lstm_cell {lc:.0f} us/step; {time.perf_counter() - start:.0f} s so far"
        )
    return results


def run_sequence_mode(s: Settings, log: Callable[[str], None]) -> list[dict]:
    sync = make_sync(s.device)
    rng = random.Random(s.seed + 1)
    results = []
    for setting, prob in (("no episode starts", 0.0), ("episode starts", s.seq_start_prob)):
        ref, cells = build(s.cells, s.seq_hidden, s)
        gen = torch.Generator().manual_seed(s.seed)
        x = torch.randn(s.seq_len, s.seq_batch, s.seq_hidden, generator=gen).to(s.device)  # (T, B, H)
        starts = None
        if prob > 0:
            starts = (torch.rand(s.seq_len, s.seq_batch, generator=gen) < prob).to(s.device)  # (T, B)
        timers = sequence_timers(ref, cells, x, starts)
        n = calibrate(timers, s, sync, 1, s.seq_max_calls) if s.steps is None else 1
        per_call = time_rounds(timers, n, s.repeats, sync, rng)
        exclude = {p.untyped_storage().data_ptr() for m in (ref, *cells.values()) for p in m.parameters()}
        exclude.add(x.untyped_storage().data_ptr())
        memory = {k: {"saved_bytes": saved_bytes(fn, exclude)} for k, fn in timers.items()}
        if s.device == "cuda":
            for k, fn in timers.items():
                memory[k]["cuda_peak_bytes"] = cuda_peak_bytes(fn)
        row: dict = {
            "setting": setting,
            "seq_len": s.seq_len,
            "batch": s.seq_batch,
            "hidden": s.seq_hidden,
            "start_prob": prob,
            "steps_with_a_start": 0 if starts is None else int(starts.any(1).sum()),
            "calls": n,
            "repeats": s.repeats,
            "references": {
                k: {"ms_per_call": summarize([v * 1e3 for v in per_call[k]]), **memory[k]} for k in (REF_NN, REF_LC)
            },
            "cells": {},
        }
        for name in s.cells:
            r_nn = ratio_stats(per_call[name], per_call[REF_NN])
            row["cells"][name] = {
                "ms_per_call": summarize([v * 1e3 for v in per_call[name]]),
                "ratio_nn_lstm_fused": r_nn,
                "ratio_lstm_cell_loop": ratio_stats(per_call[name], per_call[REF_LC]),
                **memory[name],
                "targets": sequence_targets(name, r_nn["median"]),
            }
        results.append(row)
        fused = row["references"][REF_NN]["ms_per_call"]["median"]
        log(f"[sequence] {setting}: {n} call(s) x {s.repeats} rounds; nn.LSTM fused {fused:.1f} ms per call")
    return results


# ---------------------------------------------------------------------------------- reports
def fmt_us(v: float) -> str:
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def fmt_stat(st: dict[str, float], fmt: Callable[[float], str]) -> str:
    return f"{fmt(st['median'])} ({fmt(st['min'])}-{fmt(st['max'])})"


def fmt_ratio(v: float) -> str:
    return f"{v:.2f}"


def fmt_targets(targets: list[dict]) -> str:
    return "; ".join(f"{'pass' if t['pass'] else 'FAIL'} {t['target']}" for t in targets) or "-"


def missed_targets(step: list[dict], seq: list[dict]) -> list[str]:
    missed = []
    for row in step:
        for name, cell in row["cells"].items():
            for t in cell["targets"]:
                if not t["pass"]:
                    missed.append(
                        f"{name} {row['mode']} H={row['hidden']} B={row['batch']}: {t['target']} (got {t['value']:.2f})"
                    )
    for row in seq:
        for name, cell in row["cells"].items():
            for t in cell["targets"]:
                if not t["pass"]:
                    missed.append(f"{name} sequence ({row['setting']}): {t['target']} (got {t['value']:.2f})")
    return missed


def target_summary(step: list[dict], seq: list[dict], cells: list[str]) -> str:
    """Per cell, target and mode: how many measurements pass, and the worst one."""
    groups: dict[tuple[str, str, str], list[tuple[dict, str]]] = {}
    for row in step:
        for name, cell in row["cells"].items():
            for t in cell["targets"]:
                where = f"H{row['hidden']} B{row['batch']}"
                groups.setdefault((name, t["target"], row["mode"]), []).append((t, where))
    for row in seq:
        for name, cell in row["cells"].items():
            for t in cell["targets"]:
                groups.setdefault((name, t["target"], "sequence"), []).append((t, row["setting"]))
    rows = []
    order = [*MODES, "sequence"]
    for (name, target, mode), items in sorted(
        groups.items(), key=lambda kv: (cells.index(kv[0][0]), kv[0][1], order.index(kv[0][2]))
    ):
        # "faster than" targets are speedups (higher is better); "<=" targets are ratios (lower is better)
        worst = (
            min(items, key=lambda it: it[0]["value"])
            if "faster" in target
            else max(items, key=lambda it: it[0]["value"])
        )
        passed = sum(t["pass"] for t, _ in items)
        rows.append([name, target, mode, f"{passed}/{len(items)}", f"{worst[0]['value']:.2f} ({worst[1]})"])
    return md_table(["cell", "target", "mode", "passed", "worst (where)"], rows)


def seed_figures(name: str, hidden: int) -> tuple[float, float] | None:
    """The seed's (nn.LSTM, cell) seconds for 1000 steps at this size, None where it published none."""
    if name not in SEED_SPEED or hidden not in SEED_SIZES:
        return None
    k = SEED_SIZES.index(hidden)
    return SEED_SPEED[name][0][k], SEED_SPEED[name][1][k]


def seed_table(step: list[dict], cells: list[str]) -> str:
    """The seed's table (eval mode, batch 1), seconds per sequence of 1000 steps, seed beside ours."""
    rows = []
    by_size = {r["hidden"]: r for r in step if r["mode"] == "eval" and r["batch"] == 1}
    for name in cells:
        for hidden, r in sorted(by_size.items()):
            seed = seed_figures(name, hidden)
            nn_s = r["references"][REF_NN]["us_per_step"]["median"] * SEED_STEPS / 1e6
            cell = r["cells"][name]
            cell_s = cell["us_per_step"]["median"] * SEED_STEPS / 1e6
            seed_cols = [f"{seed[0]:.3f}", f"{seed[1]:.3f}", f"{seed[0] / seed[1]:.3f}"] if seed else ["-"] * 3
            rows.append(
                [name, hidden, *seed_cols, f"{nn_s:.3f}", f"{cell_s:.3f}", fmt_stat(cell["speedup_nn_lstm"], fmt_ratio)]
            )
    headers = [
        "cell",
        "size",
        "seed nn.LSTM (s)",
        "seed cell (s)",
        "seed speedup",
        "nn.LSTM (s)",
        "cell (s)",
        "speedup (min-max)",
    ]
    return md_table(headers, rows)


def ratio_matrix(step: list[dict], mode: str, key: str, cells: list[str]) -> str:
    """Rows: cells; columns: (batch, size); entries: the median ratio ``key``."""
    cols = sorted((r["batch"], r["hidden"]) for r in step if r["mode"] == mode)
    by = {(r["batch"], r["hidden"]): r for r in step if r["mode"] == mode}
    headers = ["cell", *(f"B{b} H{h}" for b, h in cols)]
    rows = [[name, *(f"{by[c]['cells'][name][key]['median']:.2f}" for c in cols)] for name in cells]
    return md_table(headers, rows)


def step_table(step: list[dict], mode: str, cells: list[str]) -> str:
    rows = []
    for r in (r for r in step if r["mode"] == mode):
        for ref in (REF_NN, REF_LC):
            st = r["references"][ref]["us_per_step"]
            rows.append([REF_LABELS[ref], r["hidden"], r["batch"], fmt_stat(st, fmt_us), "", "", ""])
        for name in cells:
            c = r["cells"][name]
            rows.append(
                [
                    name,
                    r["hidden"],
                    r["batch"],
                    fmt_stat(c["us_per_step"], fmt_us),
                    fmt_stat(c["ratio_lstm_cell"], fmt_ratio),
                    fmt_stat(c["speedup_nn_lstm"], fmt_ratio),
                    fmt_targets(c["targets"]),
                ]
            )
    headers = ["cell", "H", "B", "us/step (min-max)", "cell / lstm_cell", "nn.LSTM / cell (speedup)", "targets"]
    return md_table(headers, rows)


def sequence_table(row: dict, cells: list[str]) -> str:
    mib = 2**20
    rows = []
    for ref in (REF_NN, REF_LC):
        r = row["references"][ref]
        peak = f"{r['cuda_peak_bytes'] / mib:.1f}" if "cuda_peak_bytes" in r else "-"
        rows.append(
            [SEQ_REF_LABELS[ref], fmt_stat(r["ms_per_call"], fmt_us), "", "", f"{r['saved_bytes'] / mib:.2f}", peak, ""]
        )
    for name in cells:
        c = row["cells"][name]
        peak = f"{c['cuda_peak_bytes'] / mib:.1f}" if "cuda_peak_bytes" in c else "-"
        rows.append(
            [
                name,
                fmt_stat(c["ms_per_call"], fmt_us),
                fmt_stat(c["ratio_nn_lstm_fused"], fmt_ratio),
                fmt_stat(c["ratio_lstm_cell_loop"], fmt_ratio),
                f"{c['saved_bytes'] / mib:.2f}",
                peak,
                fmt_targets(c["targets"]),
            ]
        )
    headers = [
        "cell",
        "ms per fwd+bwd (min-max)",
        "cell / nn.LSTM fused",
        "cell / lstm_cell loop",
        "saved for backward (MiB)",
        "CUDA peak (MiB)",
        "targets",
    ]
    return md_table(headers, rows)


def markdown(data: dict) -> str:
    s = Settings(**data["settings"])
    step, seq = data["step"], data["sequence"]
    parts = [
        "# Speed of the cells",
        "",
        f"Machine: {describe_machine(data['machine'])}.",
        "",
        f"Step mode: one call per step (seq_len 1), output fed back as the next input (input size = hidden size), "
        f"dropout {s.dropout}, every cell on the same weights as the references. Each (mode, size, batch) is warmed "
        f"up, then timed in {s.repeats} rounds, every timer once per round in a shuffled order; figures are medians "
        "with min-max over rounds; ratios are taken within a round. Modes:",
        "",
        *(f"- `{m}`: {MODES[m].doc}" for m in s.modes),
        "",
        f"Targets (reported, not asserted): in training modes at batch {' and '.join(map(str, TARGET_BATCHES))}, "
        f"cell / lstm_cell <= {TARGET_LC['lstm']} for `lstm`, <= {TARGET_LC['dropout']} for the dropout cells, "
        f"<= {TARGET_LC['layer-norm']} for the LayerNorm cells; every cell faster than nn.LSTM called with seq_len 1; "
        f"sequence mode: `lstm` <= {TARGET_SEQ_LSTM} x nn.LSTM fused.",
        "",
    ]
    parts += [
        f"## Targets: {len(data['missed_targets'])} missed (the list is in speed.json)",
        "",
        target_summary(step, seq, s.cells),
        "",
    ]
    if any(r["mode"] == "eval" and r["batch"] == 1 for r in step):
        parts += [
            "## The seed's table: inference, batch 1, seconds per sequence of 1000 steps",
            "",
            "Ours are eval mode, no grad, and scaled from the per-step median (fewer steps are timed at large sizes). "
            "The seed's script timed modules left in training mode with autograd on; its figures come from "
            "another machine and an old PyTorch, so compare speedups, not seconds.",
            "",
            seed_table(step, s.cells),
            "",
        ]
    for mode in s.modes:
        parts += [
            f"## Step mode `{mode}`: cell / torch.lstm_cell (median)",
            "",
            ratio_matrix(step, mode, "ratio_lstm_cell", s.cells),
            "",
            f"## Step mode `{mode}`: speedup over nn.LSTM with seq_len 1 (median, > 1 is faster)",
            "",
            ratio_matrix(step, mode, "speedup_nn_lstm", s.cells),
            "",
        ]
    for mode in s.modes:
        parts += [
            f"## Step mode `{mode}`: all figures",
            "",
            f"{MODES[mode].doc}.",
            "",
            step_table(step, mode, s.cells),
            "",
        ]
    for row in seq:
        parts += [
            f"## Sequence mode, {row['setting']}: T={row['seq_len']}, B={row['batch']}, H={row['hidden']}, "
            "training mode, forward + backward of out.sum()",
            "",
            f"Episode starts: each row and step with probability {row['start_prob']:.3f} "
            f"({row['steps_with_a_start']} of {row['seq_len']} steps hold one); the references run without resets. "
            f"{row['calls']} call(s) per timing, {row['repeats']} rounds. Saved for backward: distinct "
            "storages autograd keeps for backward, without parameters and input.",
            "",
            sequence_table(row, s.cells),
            "",
        ]
    return "\n".join(parts)


def plot(data: dict, path: Path) -> bool:
    """Training mode (``train``, else the first mode run): per-step time against hidden size at the
    smallest batch, and cell / lstm_cell at each batch that has a target, with the target lines."""
    try:
        import matplotlib
        import matplotlib.ticker

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    s = Settings(**data["settings"])
    mode = "train" if "train" in s.modes else s.modes[0]
    batches = [b for b in s.batches if b in TARGET_BATCHES] or s.batches[:1]

    def rows_at(batch: int) -> list[dict]:
        rows = (r for r in data["step"] if r["mode"] == mode and r["batch"] == batch)
        return sorted(rows, key=lambda r: r["hidden"])

    if len(s.sizes) < 2:
        return False
    fig, axes = plt.subplots(1, 1 + len(batches), figsize=(6 * (1 + len(batches)), 5.5))
    rows = rows_at(batches[0])
    sizes = [r["hidden"] for r in rows]
    styles = {name: ":" if issubclass(CELLS[name], LayerNormLSTM) else "-" for name in s.cells}
    ax = axes[0]
    for ref, style in ((REF_NN, "k--"), (REF_LC, "k-")):
        times = [r["references"][ref]["us_per_step"]["median"] for r in rows]
        ax.plot(sizes, times, style, lw=2, label=REF_LABELS[ref])
    for name in s.cells:
        ax.plot(sizes, [r["cells"][name]["us_per_step"]["median"] for r in rows], ls=styles[name], marker="o", ms=3)
    ax.set(yscale="log", ylabel="microseconds per step (median)", title=f"Per-step time, batch {batches[0]}")
    for ax, batch in zip(axes[1:], batches, strict=True):
        rows = rows_at(batch)
        for name in s.cells:
            ratios = [r["cells"][name]["ratio_lstm_cell"]["median"] for r in rows]
            ax.plot(sizes, ratios, ls=styles[name], marker="o", ms=3, label=name)
        for bound in sorted(set(TARGET_LC.values())):
            ax.axhline(bound, color="grey", lw=0.8, ls="--")
        ax.set(yscale="log", ylabel="cell / torch.lstm_cell (median)", title=f"Against torch.lstm_cell, batch {batch}")
        lo, hi = ax.get_ylim()
        ax.set_yticks([v for v in (0.8, 0.9, 1, 1.1, 1.3, 1.5, 2, 3, 5, 10, 20) if lo <= v <= hi])
    for ax in axes:
        ax.set(xscale="log", xlabel="hidden size")
        ax.set_xticks(sizes, [str(v) for v in sizes])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # log axes label minor ticks otherwise
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left")
    axes[-1].legend(fontsize=7, ncol=2)
    fig.suptitle(
        f"Step mode `{mode}`: {MODES[mode].doc}; dropout {s.dropout}; {data['machine']['torch_threads']} thread(s)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> tuple[Settings, Path, bool]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("results/speed"), help="folder for speed.json, speed.md, speed.png")
    p.add_argument("--quick", action="store_true", help="sizes 32 and 64, batches 1 and 16, 50 steps, 2 rounds")
    p.add_argument("--sizes", type=int, nargs="+", help="hidden sizes (default 128 256 512 1024 2048)")
    p.add_argument("--batches", type=int, nargs="+", help="batch sizes (default 1 16 64)")
    p.add_argument("--cells", nargs="+", choices=list(CELLS), help="registered cells to time (default: all)")
    p.add_argument("--modes", nargs="+", choices=list(MODES), help="step modes (default: all)")
    p.add_argument("--repeats", type=int, help="timed rounds per measurement (default 9)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--steps", type=int, help="fixed steps per timing instead of calibrating to --round-seconds")
    p.add_argument("--round-seconds", type=float, help="target length of one round of all timers (default 2.0)")
    p.add_argument("--seq-len", type=int, help="sequence mode T (default 128)")
    p.add_argument("--seq-batch", type=int, help="sequence mode B (default 16)")
    p.add_argument("--seq-hidden", type=int, help="sequence mode H (default 256)")
    p.add_argument("--no-plot", action="store_true", help="skip speed.png")
    a = p.parse_args(argv)
    s = Settings(threads=a.threads, device=a.device)
    if a.quick:
        s.sizes, s.batches, s.repeats, s.steps = [32, 64], [1, 16], 2, 50
        s.seq_len, s.seq_batch, s.seq_hidden = 16, 4, 32
    for key in (
        "sizes",
        "batches",
        "cells",
        "modes",
        "repeats",
        "steps",
        "round_seconds",
        "seq_len",
        "seq_batch",
        "seq_hidden",
    ):
        if getattr(a, key) is not None:
            setattr(s, key, getattr(a, key))
    for key in ("repeats", "threads", "seq_len", "seq_batch", "seq_hidden"):
        if getattr(s, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be at least 1")
    if s.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    return s, a.out, a.no_plot


def main(argv: list[str] | None = None) -> int:
    s, out, no_plot = parse_args(argv)
    threads = pin_threads(s.threads)
    machine = machine_info(s.device)
    log = lambda msg: print(msg, flush=True)
    log(f"Machine: {describe_machine(machine)}")
    log(f"Cells: {', '.join(s.cells)}; modes: {', '.join(s.modes)}; sizes {s.sizes}; batches {s.batches}")
    start = time.perf_counter()
    step = run_step_mode(s, log)
    seq = run_sequence_mode(s, log)
    machine["load_average_at_end"] = list(os.getloadavg())
    machine["seconds"] = round(time.perf_counter() - start, 1)
    machine["torch_threads"] = threads
    data = {
        "machine": machine,
        "settings": asdict(s),
        "seed_published": {"steps": SEED_STEPS, "sizes": SEED_SIZES, "seconds_nn_lstm_then_cell": SEED_SPEED},
        "step": step,
        "sequence": seq,
    }
    data["missed_targets"] = missed_targets(step, seq)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "speed.json", data)
    (out / "speed.md").write_text(markdown(data) + "\n")
    wrote = ["speed.json", "speed.md"]
    if not no_plot and plot(data, out / "speed.png"):
        wrote.append("speed.png")
    log(f"{len(data['missed_targets'])} target(s) missed; wrote {', '.join(wrote)} to {out} in {machine['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
