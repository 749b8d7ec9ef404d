"""Speed of the compiled chunk kernel (rl_lstm/kernel.py) against the Python path and PyTorch.

Two measurements, each side by side in one run (timers interleaved in a shuffled order each
round, medians over rounds, ratios taken round by round):

* **update**: the memory part of an update, forward plus backward of one chunk ``(T, B)`` as
  the update runs it (training mode, masks on, ``need_state=False``), with and without episode
  starts, for each cell on the kernel and on the Python path, against its family's fused module
  (``nn.LSTM``, ``nn.GRU`` or ``nn.RNN``) forward plus backward over the same steps without resets;
* **collection**: one step per call (``seq_len`` 1, no gradient, eval mode with masks on, as
  collection runs), the state fed back, for each cell on both paths, against its family's fused
  cell (``torch.lstm_cell``, ``torch.gru_cell`` or ``torch.rnn_tanh_cell``) on the cell's weights.

```bash
python scripts/bench_kernel.py [--cells lstm gal ln] [--hidden 64 256] [--batches 8 16 32 64]
    [--step-batches 1 4 16] [--seq-len 32] [--input-size 16] [--repeats 9] [--threads 1] [--out DIR]
```

Prints Markdown tables (and writes ``kernel_speed.json`` and ``kernel_speed.md`` to ``--out``).
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from rl_lstm import kernel
from rl_lstm.bench.timing import calibrate, make_sync, ratio_stats, time_rounds
from rl_lstm.registry import cell_class, default_dropout, make_cell
from rl_lstm.tooling import POSITIVE, describe_machine, machine_info, pin_threads, positive_float, summarize, write_json

Timer = Callable[[], None]


def on_path(path: str, fn: Timer, gemm: str = "auto") -> Timer:
    """``fn`` run with ``RL_LSTM_KERNEL=path`` and ``RL_LSTM_GEMM=gemm``."""

    def run() -> None:
        os.environ[kernel.ENV] = path
        os.environ[kernel.GEMM_ENV] = gemm
        fn()

    return run


@dataclass
class Rounds:
    """What :func:`rl_lstm.bench.timing.calibrate` reads."""

    round_seconds: float
    warmup_steps: int = 3
    steps: int | None = None


def measure(timers: dict[str, Timer], reference: str, repeats: int, round_seconds: float) -> dict[str, dict]:
    """Median ms per call of each timer and its ratio to ``reference``, interleaved over ``repeats`` rounds."""
    runs = {name: (lambda n, fn=fn: [fn() for _ in range(n)]) for name, fn in timers.items()}
    sync = make_sync("cpu")
    n = calibrate(runs, Rounds(round_seconds), sync, 1, 1000)
    per_call = time_rounds(runs, n, repeats, sync, random.Random(0))
    ms = {name: summarize([t * 1e3 for t in ts])["median"] for name, ts in per_call.items()}
    ratios = {name: ratio_stats(ts, per_call[reference])["median"] for name, ts in per_call.items()}
    return {name: {"ms": ms[name], "ratio": ratios[name]} for name in per_call}


#: The fused one-step cell of each family's torch module: the collection step's yardstick.
TORCH_CELLS = {torch.nn.LSTM: torch.lstm_cell, torch.nn.GRU: torch.gru_cell, torch.nn.RNN: torch.rnn_tanh_cell}


def _zero_state(cell, batch: int, hidden: int, layer_dim: bool = True):
    """Zeros as the cell carries its state: ``(h, c)`` for the LSTM family, ``h`` for the GRU family."""
    shape = (1, batch, hidden) if layer_dim else (batch, hidden)
    return (torch.zeros(shape), torch.zeros(shape)) if cell.state_names == ("h", "c") else torch.zeros(shape)


def update_timers(name: str, hidden: int, batch: int, seq_len: int, input_size: int) -> dict[str, Timer]:
    cell = make_cell(name, input_size, hidden, dropout=default_dropout(name)).train()
    module = cell.torch_module(input_size, hidden)  # nn.LSTM, nn.GRU or nn.RNN: the cell family's fused module
    x = torch.randn(seq_len, batch, input_size, requires_grad=True)
    state = _zero_state(cell, batch, hidden)
    starts = torch.zeros(seq_len, batch, dtype=torch.bool)
    starts[torch.randint(seq_len, (batch,)), torch.arange(batch)] = True  # one episode start per row

    def chunk(episode_starts) -> Timer:
        def run() -> None:
            out, _ = cell(x, state, episode_starts, need_state=False)
            out.sum().backward()

        return run

    def fused() -> None:
        out, _ = module(x, state)
        out.sum().backward()

    timers = {"nn module": fused, "kernel BLAS": on_path("1", chunk(None), gemm="blas")}
    for label, st in (("", None), (" +starts", starts)):
        timers[f"kernel{label}"] = on_path("1", chunk(st))
        timers[f"python{label}"] = on_path("0", chunk(st))
    return timers


def step_timers(name: str, hidden: int, batch: int) -> dict[str, Timer]:
    """One collection step: the output fed back as the next input (input_size == hidden_size)."""
    cell = make_cell(name, hidden, hidden, dropout=default_dropout(name)).eval()
    cell.masks_in_eval = True
    w = [p.detach() for p in cell.torch_parameters()]
    torch_cell = TORCH_CELLS[cell.torch_module]
    state = {"x": torch.randn(1, batch, hidden), "hc": None, "lc": _zero_state(cell, batch, hidden, layer_dim=False)}

    def step() -> None:
        with torch.no_grad():
            out, state["hc"] = cell(state["x"], state["hc"])
        state["x"] = out

    def reference() -> None:
        with torch.no_grad():
            state["lc"] = torch_cell(state["x"][0], state["lc"], *w)

    return {"torch cell": reference, "kernel": on_path("1", step), "python": on_path("0", step)}


def table(title: str, rows: list[dict], columns: list[str], reference: str) -> str:
    head = f"| {title} | {reference} ms | " + " | ".join(f"{c} / {reference}" for c in columns) + " |"
    lines = [head, "|" + " --- |" * (len(columns) + 2)]
    for row in rows:
        r = row["results"]
        cells = " | ".join(f"{r[c]['ratio']:.2f}" for c in columns)
        lines.append(f"| {row['setting']} | {r[reference]['ms']:.3f} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", nargs="+", default=["lstm", "gal", "ln"], help="registry names (compiled cells)")
    parser.add_argument("--hidden", nargs="+", type=POSITIVE, default=[64, 256], help="hidden sizes")
    parser.add_argument("--batches", nargs="+", type=POSITIVE, default=[8, 16, 32, 64], help="update: chunks per batch")
    parser.add_argument("--step-batches", nargs="+", type=POSITIVE, default=[1, 4, 16], help="collection: envs")
    parser.add_argument("--seq-len", type=POSITIVE, default=32, help="update: steps per chunk")
    parser.add_argument("--input-size", type=POSITIVE, default=16, help="update: the memory's input features")
    parser.add_argument("--repeats", type=POSITIVE, default=9, help="rounds per setting")
    parser.add_argument("--round-seconds", type=positive_float, default=1.0, help="about how long one round takes")
    parser.add_argument("--threads", type=POSITIVE, default=1, help="torch threads")
    parser.add_argument("--skip-update", action="store_true", help="measure collection steps only")
    parser.add_argument("--skip-collection", action="store_true", help="measure update chunks only")
    parser.add_argument("--out", type=Path, default=None, help="folder for kernel_speed.json and kernel_speed.md")
    args = parser.parse_args(argv)
    for name in args.cells:
        if not cell_class(name).compiled:
            parser.error(f"--cells: {name!r} does not run on the compiled kernel")
    threads = pin_threads(args.threads)
    torch.manual_seed(0)
    random.seed(0)
    os.environ[kernel.ENV] = "1"
    start = time.perf_counter()
    kernel.load()
    if kernel.build_error():
        raise SystemExit(f"the kernel cannot be built: {kernel.build_error()}")
    info = machine_info()
    info["torch_threads"] = threads
    machine = describe_machine(info)
    report = {"machine": info, "settings": vars(args) | {"out": str(args.out)}, "update": [], "collection": []}
    report["gemm_path"] = kernel.gemm_path()
    print(f"# Compiled kernel speed\n\n{machine}; kernel loaded in {time.perf_counter() - start:.1f} s\n")
    if not args.skip_update:
        for name in args.cells:
            for hidden in args.hidden:
                for batch in args.batches:
                    timers = update_timers(name, hidden, batch, args.seq_len, args.input_size)
                    results = measure(timers, "nn module", args.repeats, args.round_seconds)
                    setting = f"{name} H{hidden} B{batch}"
                    report["update"].append({"setting": setting, "results": results})
                    print(f"update {setting}: " + ", ".join(f"{k} {v['ms']:.2f} ms" for k, v in results.items()))
    if not args.skip_collection:
        for name in args.cells:
            for hidden in args.hidden:
                for batch in args.step_batches:
                    timers = step_timers(name, hidden, batch)
                    results = measure(timers, "torch cell", args.repeats, args.round_seconds)
                    setting = f"{name} H{hidden} B{batch}"
                    report["collection"].append({"setting": setting, "results": results})
                    print(f"step {setting}: " + ", ".join(f"{k} {v['ms'] * 1e3:.0f} us" for k, v in results.items()))
    md = [
        f"# Compiled kernel speed\n\n{machine}. Medians over {args.repeats} interleaved rounds. Recurrent products: "
        f"{report['gemm_path']} (`RL_LSTM_GEMM`; `kernel BLAS`: the same chunk with the products on BLAS).\n"
    ]
    if report["update"]:
        md.append(
            f"## Update: forward + backward of a chunk (T={args.seq_len}, input {args.input_size}), training mode, "
            "masks on, against the cell family's fused module (`nn module`: nn.LSTM, nn.GRU or nn.RNN, no resets)\n"
        )
        cols = ["kernel", "kernel BLAS", "kernel +starts", "python", "python +starts"]
        md.append(table("cell", report["update"], cols, "nn module"))
    if report["collection"]:
        md.append(
            "\n## Collection: one step per call, no grad, masks on, against the family's fused cell (`torch cell`: "
            "torch.lstm_cell, torch.gru_cell or torch.rnn_tanh_cell, same weights)\n"
        )
        md.append(table("cell", report["collection"], ["kernel", "python"], "torch cell"))
    text = "\n".join(md) + "\n"
    print("\n" + text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(args.out / "kernel_speed.json", report)
        (args.out / "kernel_speed.md").write_text(text)
    return 0

