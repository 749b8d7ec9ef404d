"""Speed of the linear-recurrence memories (``mingru``, ``minlstm``, ``lru``, ``ffm``) against the LSTM
and the GRU step.

Times are CPU seconds of the process (``time.process_time``, one thread): the uncontended cost on a
machine shared with other work. Two measurements, each side by side in one run (timers interleaved
in a shuffled order each round, medians over rounds, ratios taken round by round):

* **update**: the memory part of an update, forward plus backward of one chunk ``(T, B, input)``
  (training mode, ``need_state=False``, as the update runs it; the input's gradient included, as
  ``rl_lstm.bench.kernel`` measures it), with and without episode starts,
  for each memory against the ``lstm`` cell (on the compiled chunk kernel where it builds);
* **collection**: one step per call (``seq_len`` 1, no gradient, eval mode, the state fed back,
  arguments checked once as collection does), for each memory against ``torch.gru_cell`` at the
  same hidden size.

```bash
python scripts/bench_scan.py [--seq-len 128] [--batch 8] [--hidden 256] [--input-size 16] [--step-batch 8]
    [--repeats 15] [--threads 1] [--out docs/linear_memory]
```

Writes ``scan_speed.json`` and ``scan_speed.md`` to ``--out`` and prints the tables.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rl_lstm.bench.timing import Timer, calibrate, make_sync, ratio_stats, time_rounds
from rl_lstm.registry import make_cell
from rl_lstm.scan import LinearRecurrence
from rl_lstm.tooling import POSITIVE, describe_machine, machine_info, md_table, pin_threads, summarize, write_json

MEMORIES = ("mingru", "minlstm", "lru", "ffm")


@dataclass
class Rounds:
    """What :func:`rl_lstm.bench.timing.calibrate` reads."""

    round_seconds: float = 0.5
    warmup_steps: int = 3
    steps: int | None = None


def update_timers(
    seq_len: int, batch: int, hidden: int, input_size: int, starts: bool, gen: torch.Generator
) -> dict[str, Timer]:
    """Forward + backward of one chunk (the input's gradient included) for ``lstm`` and each memory."""
    x = torch.randn(seq_len, batch, input_size, generator=gen).requires_grad_()
    begins = (torch.rand(seq_len, batch, generator=gen) < 1 / 32) if starts else None
    timers: dict[str, Timer] = {}
    for name in ("lstm", *MEMORIES):
        cell = make_cell(name, input_size, hidden).train()

        def run(n: int, cell: nn.Module = cell) -> None:
            for _ in range(n):
                out, _ = cell(x, None, begins, need_state=False)
                out.sum().backward()

        timers[name] = run
    return timers


def step_timers(batch: int, hidden: int, gen: torch.Generator) -> dict[str, Timer]:
    """One step per call for ``torch.gru_cell`` and each memory, the output fed back as the input."""
    x0 = torch.randn(batch, hidden, generator=gen)
    gru = nn.GRU(hidden, hidden)
    params = [gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0]

    def gru_step(n: int) -> None:
        with torch.no_grad():
            h = torch.zeros(batch, hidden)
            y = x0
            for _ in range(n):
                h = torch.gru_cell(y, h, *params)
                y = h

    timers: dict[str, Timer] = {"gru_cell": gru_step}
    for name in MEMORIES:
        cell = make_cell(name, hidden, hidden).eval()

        def run(n: int, cell: LinearRecurrence = cell) -> None:
            with torch.no_grad():
                y, state = x0.unsqueeze(0), None
                y, state = cell(y, state)  # checked once, as a rollout's first step
                cell.check_args = False
                for _ in range(n - 1):
                    y, state = cell(y, state)
                cell.check_args = True

        timers[name] = run
    return timers


def measure(timers: dict[str, Timer], reference: str, repeats: int, seed: int) -> dict[str, dict]:
    """Milliseconds per call of every timer and its ratio to ``reference`` (reference / timer: >1 is faster)."""
    sync = make_sync("cpu")
    n = calibrate(timers, Rounds(), sync, lo=2, hi=2000, clock=time.process_time)
    per_call = time_rounds(timers, n, repeats, sync, random.Random(seed), clock=time.process_time)
    return {
        k: {
            "ms": summarize([v * 1e3 for v in per_call[k]]),
            "speedup_vs_" + reference: ratio_stats(per_call[reference], per_call[k]),
            "calls_per_round": n,
        }
        for k in timers
    }


def report(results: dict) -> str:
    s = results["settings"]
    lines = [
        "# Linear-recurrence memories: speed",
        "",
        f"Machine: {describe_machine(results['machine'])}. Command: `{results['command']}`.",
        "CPU time of the process (one thread; the machine is shared). Medians over shuffled interleaved rounds; "
        "ratios taken round by round (reference time / memory time: above 1 is faster than the reference).",
        "",
    ]
    for key, title, ref in (
        ("update", f"Update: forward + backward of one chunk, T {s['seq_len']}, B {s['batch']}, H {s['hidden']}, "
         f"input {s['input_size']}", "lstm"),
        ("update_starts", "The same with episode starts (1 in 32 steps per row)", "lstm"),
        ("collection", f"Collection: one step, B {s['step_batch']}, H {s['hidden']}, no gradient", "gru_cell"),
    ):  # fmt: skip
        rows = []
        for name, r in results[key].items():
            ratio = r["speedup_vs_" + ref]
            spread = f"{ratio['median']:.2f}x ({ratio['min']:.2f}-{ratio['max']:.2f})"
            rows.append([name, f"{r['ms']['median']:.3f}", spread])
        lines += [f"## {title}", "", md_table(["memory", "ms per call", f"speed-up vs {ref}"], rows), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seq-len", type=POSITIVE, default=128, help="Steps of the update's chunk.")
    p.add_argument("--batch", type=POSITIVE, default=8, help="Rows of the update's chunk.")
    p.add_argument("--hidden", type=POSITIVE, default=256, help="Hidden size.")
    p.add_argument("--input-size", type=POSITIVE, default=16, help="update: the memory's input features.")
    p.add_argument("--step-batch", type=POSITIVE, default=8, help="Rows of a collection step.")
    p.add_argument("--repeats", type=POSITIVE, default=15, help="Timed rounds.")
    p.add_argument("--threads", type=POSITIVE, default=1, help="torch threads.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/scan"))
    p.add_argument("--quick", action="store_true", help="Tiny sizes, three rounds (for CI).")
    args = p.parse_args(argv)
    if args.quick:
        args.seq_len, args.batch, args.hidden, args.step_batch, args.repeats = 16, 2, 16, 2, 3
    pin_threads(args.threads)
    command = "python scripts/bench_scan.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results: dict = {"machine": machine_info(), "command": command, "settings": vars(args) | {"out": str(args.out)}}
    gen = torch.Generator().manual_seed(args.seed)
    for key, starts in (("update", False), ("update_starts", True)):
        timers = update_timers(args.seq_len, args.batch, args.hidden, args.input_size, starts, gen)
        results[key] = measure(timers, "lstm", args.repeats, args.seed)
    results["collection"] = measure(step_timers(args.step_batch, args.hidden, gen), "gru_cell", args.repeats, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "scan_speed.json", results)
    text = report(results)
    (args.out / "scan_speed.md").write_text(text + "\n")
    print(text)
    return 0
