"""Speed of every registered cell against the torch module it shares its math with, on the same weights.

Each cell is measured against the references of its class's ``torch_module``: ``nn.LSTM`` and
``torch.lstm_cell`` for the LSTM family, ``nn.GRU`` and ``torch.gru_cell`` for the GRU family,
``nn.RNN`` and ``torch.rnn_tanh_cell`` for the tanh RNN, ``nn.GRU``'s for the linear recurrences, which
share no torch module's math (``speed_spec.yardstick``); each family's module is drawn from the
same seed and its cells hold copies of its weights. Two kinds of measurement:

* **Step mode** (lstms.pth's benchmark, extended): one step per call (``seq_len`` 1), the output
  fed back as the next input (so ``input_size == hidden_size``), for every hidden size, batch
  and mode. Modes: ``eval`` (eval mode, no grad: lstms.pth's "inference" table), ``train-nograd``
  (training mode, masks on, no grad: acting with masks, as a rollout that records them) and
  ``train`` (training mode, masks on, autograd recording the graph but no backward: what the
  seed's own loop did, and the step-by-step path of an update). References: the torch module
  called with ``seq_len`` 1 (lstms.pth's yardstick) and its step kernel (the faster per-step
  path on CPU).
* **Sequence mode**: one call over a whole ``(T, B, H)`` sequence in training mode, forward
  plus backward of ``out.sum()``, against the torch module's fused call and a loop of its step
  kernel; with and without episode starts; plus the bytes of activations saved for backward.

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
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor, nn

from rl_lstm import CELLS, RecurrentLayer
from rl_lstm.bench.speed_report import markdown, missed_targets, plot
from rl_lstm.bench.speed_spec import (
    MODES,
    SEED_SIZES,
    SEED_SPEED,
    SEED_STEPS,
    Mode,
    References,
    Settings,
    bench_cell,
    families,
    references,
    sequence_targets,
    step_targets,
)
from rl_lstm.bench.timing import Timer, calibrate, cuda_peak_bytes, make_sync, ratio_stats, saved_bytes, time_rounds, us
from rl_lstm.tooling import POSITIVE, describe_machine, machine_info, pin_threads, positive_float, summarize, write_json


def build(names: list[str], hidden: int, s: Settings) -> tuple[dict[References, nn.RNNBase], dict[str, RecurrentLayer]]:
    """One torch module ``(hidden, hidden)`` per family the named cells need (nn.LSTM, nn.GRU,
    nn.RNN), each drawn from the same seed, and every named cell holding a copy of its family's
    weights."""
    modules = {}
    for refs in families(names):
        torch.manual_seed(s.seed)
        modules[refs] = refs.module(hidden, hidden).to(s.device)
    return modules, {n: bench_cell(n, modules[references(n)], s.dropout) for n in names}


def module_params(module: nn.RNNBase) -> list[Tensor]:
    """``[weight_ih, weight_hh, bias_ih, bias_hh]`` of a one-layer torch module, for its step kernel."""
    return module.all_weights[0]


def step_timers(
    modules: dict[References, nn.RNNBase], cells: dict[str, RecurrentLayer], batch: int, mode: Mode, device: str
) -> dict[str, Timer]:
    """Timers that run n steps of one call each, the output fed back as the next input: each
    family's module and step kernel (keyed by :attr:`References.nn_key` / ``kernel_key``) and the cells."""
    hidden = next(iter(modules.values())).hidden_size
    x0 = torch.randn(1, batch, hidden, device=device)  # (1, B, H): the first input

    def module_timer(module: nn.RNNBase) -> Timer:
        module.train(mode.train)

        def run(n: int) -> None:
            with torch.set_grad_enabled(mode.grad):
                y, state = x0, None
                for _ in range(n):
                    y, state = module(y, state)  # (1, B, H)

        return run

    def kernel_timer(refs: References, module: nn.RNNBase) -> Timer:
        params = module_params(module)

        def run(n: int) -> None:
            with torch.set_grad_enabled(mode.grad):
                y = x0[0]  # (B, H)
                state = refs.zero_state(torch.zeros_like(y))
                for _ in range(n):
                    y, state = refs.step(y, state, params)

        return run

    def cell_timer(cell: RecurrentLayer) -> Timer:
        cell.train(mode.train)

        def run(n: int) -> None:
            with torch.set_grad_enabled(mode.grad):
                y, state = x0, None  # hidden=None on the first step: an episode starts, fresh masks
                for _ in range(n):
                    y, state = cell(y, state)  # (1, B, H)

        return run

    timers = {}
    for refs, module in modules.items():
        timers[refs.nn_key] = module_timer(module)
        timers[refs.kernel_key] = kernel_timer(refs, module)
    return {**timers, **{name: cell_timer(cell) for name, cell in cells.items()}}


def sequence_timers(
    modules: dict[References, nn.RNNBase], cells: dict[str, RecurrentLayer], x: Tensor, starts: Tensor | None
) -> dict[str, Timer]:
    """Timers that run n calls of forward over ``x`` (T, B, H) plus backward of ``out.sum()``:
    each family's module in one fused call and its step kernel in a loop, and the cells.

    The references know nothing of episodes: they run the whole sequence without resets.
    """

    def fused_timer(module: nn.RNNBase) -> Timer:
        module.train()

        def run(n: int) -> None:
            for _ in range(n):
                module.zero_grad(set_to_none=True)
                out, _ = module(x)  # (T, B, H)
                out.sum().backward()

        return run

    def loop_timer(refs: References, module: nn.RNNBase) -> Timer:
        params = module_params(module)

        def run(n: int) -> None:
            for _ in range(n):
                module.zero_grad(set_to_none=True)
                state = refs.zero_state(x.new_zeros(x.shape[1], module.hidden_size))  # (B, H)
                outs = []
                for x_t in x.unbind(0):  # unbind, not x[t]: one select-backward node per step otherwise
                    h, state = refs.step(x_t, state, params)
                    outs.append(h)
                torch.stack(outs).sum().backward()

        return run

    def cell_timer(cell: RecurrentLayer) -> Timer:
        cell.train()

        def run(n: int) -> None:
            for _ in range(n):
                cell.zero_grad(set_to_none=True)
                out, _ = cell(x, None, episode_starts=starts)  # (T, B, H)
                out.sum().backward()

        return run

    timers = {}
    for refs, module in modules.items():
        timers[refs.nn_key] = fused_timer(module)
        timers[refs.kernel_key] = loop_timer(refs, module)
    return {**timers, **{name: cell_timer(cell) for name, cell in cells.items()}}


def reference_keys(modules: dict[References, nn.RNNBase]) -> list[str]:
    return [k for refs in modules for k in (refs.nn_key, refs.kernel_key)]


def against(name: str) -> dict[str, str]:
    """The keys of the references a cell's ratios are taken against (its yardstick's)."""
    refs = references(name)
    return {"nn": refs.nn_key, "kernel": refs.kernel_key}


def run_step_mode(s: Settings, log: Callable[[str], None]) -> list[dict]:
    sync = make_sync(s.device)
    rng = random.Random(s.seed)
    configs = [(m, h, b) for m in s.modes for h in s.sizes for b in s.batches]
    results = []
    start = time.perf_counter()
    for i, (mode_name, hidden, batch) in enumerate(configs, 1):
        mode = MODES[mode_name]
        modules, cells = build(s.cells, hidden, s)
        timers = step_timers(modules, cells, batch, mode, s.device)
        n = calibrate(timers, s, sync, s.min_steps, s.max_steps)
        per_step = time_rounds(timers, n, s.repeats, sync, rng)
        row: dict = {
            "mode": mode_name,
            "hidden": hidden,
            "batch": batch,
            "steps": n,
            "repeats": s.repeats,
            "load_average_1min": os.getloadavg()[0],  # other work on the machine: the noise to expect
            "references": {k: {"us_per_step": us(per_step[k])} for k in reference_keys(modules)},
            "cells": {},
        }
        for name in s.cells:
            refs = against(name)
            r_kernel = ratio_stats(per_step[name], per_step[refs["kernel"]])
            sp_nn = ratio_stats(per_step[refs["nn"]], per_step[name])
            row["cells"][name] = {
                "us_per_step": us(per_step[name]),
                "against": refs,
                "ratio_step_kernel": r_kernel,
                "speedup_nn_step": sp_nn,
                "targets": step_targets(name, mode, batch, r_kernel["median"], sp_nn["median"]),
            }
        results.append(row)
        kernels = ", ".join(
            f"{refs.kernel_key} {row['references'][refs.kernel_key]['us_per_step']['median']:.0f}" for refs in modules
        )
        log(
            f"[step {i}/{len(configs)}] {mode_name:12s} H={hidden:<5d} B={batch:<3d} {n:4d} steps x {s.repeats} "
            f"rounds; {kernels} us/step; {time.perf_counter() - start:.0f} s so far"
        )
    return results


def run_sequence_mode(s: Settings, log: Callable[[str], None]) -> list[dict]:
    sync = make_sync(s.device)
    rng = random.Random(s.seed + 1)
    results = []
    for setting, prob in (("no episode starts", 0.0), ("episode starts", s.seq_start_prob)):
        modules, cells = build(s.cells, s.seq_hidden, s)
        gen = torch.Generator().manual_seed(s.seed)
        x = torch.randn(s.seq_len, s.seq_batch, s.seq_hidden, generator=gen).to(s.device)  # (T, B, H)
        starts = None
        if prob > 0:
            starts = (torch.rand(s.seq_len, s.seq_batch, generator=gen) < prob).to(s.device)  # (T, B)
        timers = sequence_timers(modules, cells, x, starts)
        n = calibrate(timers, s, sync, 1, s.seq_max_calls) if s.steps is None else 1
        per_call = time_rounds(timers, n, s.repeats, sync, rng)
        exclude = {p.untyped_storage().data_ptr() for m in (*modules.values(), *cells.values()) for p in m.parameters()}
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
                k: {"ms_per_call": summarize([v * 1e3 for v in per_call[k]]), **memory[k]}
                for k in reference_keys(modules)
            },
            "cells": {},
        }
        for name in s.cells:
            refs = against(name)
            r_nn = ratio_stats(per_call[name], per_call[refs["nn"]])
            row["cells"][name] = {
                "ms_per_call": summarize([v * 1e3 for v in per_call[name]]),
                "against": refs,
                "ratio_nn_fused": r_nn,
                "ratio_kernel_loop": ratio_stats(per_call[name], per_call[refs["kernel"]]),
                **memory[name],
                "targets": sequence_targets(name, r_nn["median"]),
            }
        results.append(row)
        fused = ", ".join(
            f"{refs.module_name} {row['references'][refs.nn_key]['ms_per_call']['median']:.1f}" for refs in modules
        )
        log(f"[sequence] {setting}: {n} call(s) x {s.repeats} rounds; fused {fused} ms per call")
    return results


def parse_args(argv: list[str] | None = None) -> tuple[Settings, Path, bool]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("results/speed"), help="folder for speed.json, speed.md, speed.png")
    p.add_argument("--quick", action="store_true", help="sizes 32 and 64, batches 1 and 16, 50 steps, 2 rounds")
    p.add_argument("--sizes", type=POSITIVE, nargs="+", help="hidden sizes (default 128 256 512 1024 2048)")
    p.add_argument("--batches", type=POSITIVE, nargs="+", help="batch sizes (default 1 16 64)")
    p.add_argument("--cells", nargs="+", choices=list(CELLS), help="registered cells to time (default: all)")
    p.add_argument("--modes", nargs="+", choices=list(MODES), help="step modes (default: all)")
    p.add_argument("--repeats", type=POSITIVE, help="timed rounds per measurement (default 9)")
    p.add_argument("--threads", type=POSITIVE, default=1, help="torch threads (default 1)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--steps", type=POSITIVE, help="fixed steps per timing instead of calibrating to --round-seconds")
    p.add_argument("--round-seconds", type=positive_float, help="length of one round of all timers (default 2.0)")
    p.add_argument("--seq-len", type=POSITIVE, help="sequence mode T (default 128)")
    p.add_argument("--seq-batch", type=POSITIVE, help="sequence mode B (default 16)")
    p.add_argument("--seq-hidden", type=POSITIVE, help="sequence mode H (default 256)")
    p.add_argument("--no-plot", action="store_true", help="skip speed.png")
    a = p.parse_args(argv)
    s = Settings(threads=a.threads, device=a.device)
    if a.quick:
        s.quick = True
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
    data["missed_targets"] = [] if s.quick else missed_targets(step, seq)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "speed.json", data)
    (out / "speed.md").write_text(markdown(data) + "\n")
    wrote = ["speed.json", "speed.md"]
    if not no_plot and plot(data, out / "speed.png"):
        wrote.append("speed.png")
    missed = f"{len(data['missed_targets'])} target(s) missed"
    verdict = "smoke run (--quick): targets not judged" if s.quick else missed
    log(f"{verdict}; wrote {', '.join(wrote)} to {out} in {machine['seconds']} s")
    return 0
