"""lstms.pth's artificial memory benchmark, for every registered cell, over several seeds.

A data set of random sequences (inputs uniform in [0, 1), as lstms.pth drew them); the target is
the sum of a sequence's inputs, read from the layer's last output. Training as in lstms.pth:
dropout 0.9, layer size 256, 10 epochs, SGD (lr 0.01, momentum 0.9), one gradient step every 10
sequences on the sum of their smooth-L1 losses. The 10 sequences of a step run as one batch:
each row starts from a zero state with masks of its own, drawn when its sequence starts, as an
episode would. The error is the mean smooth-L1 loss over the training set, evaluated in eval
mode (lstms.pth reported the same loss but, never calling ``.eval()``, with dropout acting; that
figure is kept as "error, train mode").

Tasks:

* ``seq10``: lstms.pth's settings, one scalar input per step (``--input-size`` changes it), a
  linear head on the last output.
* ``seq50``: the same with sequences of 50 steps, where memory matters more.
* ``seed-no-head``: as lstms.pth's script: input and target have the layer's size and the last
  output regresses the per-unit sums with no head. The output lies in (-1, 1) and the sums
  are about 5, so the error cannot go below about 3.5: kept only to set lstms.pth's figures
  beside ours.

Every cell starts from the weights of its own ``torch_module`` (``nn.LSTM``, ``nn.GRU`` or
``nn.RNN``; a linear recurrence, which has none, from ``nn.GRU``'s: ``speed_spec.yardstick``) drawn from
the run's seed, so the cells of one family start alike. The adapters over
the torch modules (``nn``, ``nn-gru``) run without dropout, as in lstms.pth, where a one-layer
``nn.LSTM`` ignores its ``dropout`` argument. Output: ``capacity.json`` and ``capacity.md``.

    python scripts/bench_capacity.py [--out DIR] [--quick] [--seeds N] [--cells ...]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rl_lstm import CELLS, RecurrentLayer
from rl_lstm.bench.speed_spec import bench_cell, is_adapter, yardstick
from rl_lstm.tooling import POSITIVE, describe_machine, machine_info, md_table, pin_threads, write_json

# lstms.pth's published errors (lstms.pth README, dropout 0.9, SEQ_LEN 10, 100 sequences, size 256).
SEED_SEQ_LEN = 10
SEED_ERRORS = {"nn": 3.515, "slow": 4.171, "lstm": 4.158, "gal": 3.517, "moon": 4.443, "semeniuta": 3.773}


@dataclass(frozen=True)
class Task:
    """One setting of the benchmark."""

    name: str
    seq_len: int
    head: bool  # a linear layer from the last output to the target; False: the output is the prediction
    input_size: int | None  # None: the layer size (and a target of that size, as in lstms.pth)
    doc: str


TASKS = (
    # Input size 1: the sum is of scalars. LayerNorm cells normalise W_ih x over the gates, which
    # removes the scale of a scalar input, so on these tasks they cannot see the values they must sum.
    Task("seq10", 10, True, 1, "lstms.pth's settings, with a linear head that reads the sum from the last output"),
    Task("seq50", 50, True, 1, "the same with sequences of 50 steps"),
    Task(
        "seed-no-head",
        10,
        False,
        None,
        "as lstms.pth's script: input and target of the layer size, no head (error floor near 3.5)",
    ),
)


@dataclass
class Settings:
    """Everything that decides what is measured; saved in capacity.json."""

    cells: list[str] = field(default_factory=lambda: list(CELLS))
    tasks: list[str] = field(default_factory=lambda: [t.name for t in TASKS])
    seeds: int = 5
    dropout: float = 0.9
    size: int = 256
    n_seqs: int = 100
    epochs: int = 10
    lr: float = 0.01
    momentum: float = 0.9
    seqs_per_step: int = 10
    threads: int = 1
    input_size: int | None = None  # overrides the input size of the tasks with a head (1 by default)


def smooth_l1_per_seq(pred: Tensor, target: Tensor) -> Tensor:
    """``pred``, ``target`` (N, D) -> (N,): each sequence's smooth-L1 loss, averaged over D."""
    return F.smooth_l1_loss(pred, target, reduction="none").mean(-1)


def make_data(task: Task, s: Settings, seed: int) -> tuple[Tensor, Tensor]:
    """Inputs (T, N, I) uniform in [0, 1) and targets (N, D): the sum over the sequence."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(task.seq_len, s.n_seqs, task.input_size or s.size, generator=gen)  # (T, N, I)
    y = x.sum(0)  # (N, I): per-input sums, lstms.pth's target
    return x, (y.sum(-1, keepdim=True) if task.head else y)  # with a head: one scalar per sequence


def run_one(name: str, task: Task, s: Settings, seed: int) -> dict:
    """Train one cell on one task with one seed; return its errors and learning curve."""
    x, y = make_data(task, s, seed)
    torch.manual_seed(seed)
    ref = yardstick(name)(x.shape[2], s.size)  # the same initial weights for every cell of its family and seed
    cell: RecurrentLayer = bench_cell(name, ref, 0.0 if is_adapter(name) else s.dropout)
    head = nn.Linear(s.size, y.shape[1]) if task.head else None
    params = [*cell.parameters(), *(head.parameters() if head is not None else [])]
    opt = torch.optim.SGD(params, lr=s.lr, momentum=s.momentum)

    def predict(xb: Tensor) -> Tensor:
        out, _ = cell(xb)  # (T, b, H); hidden None: zero state and fresh masks for every row
        return head(out[-1]) if head is not None else out[-1]  # (b, D)

    curve = []
    cell.train()
    for _ in range(s.epochs):
        total = 0.0
        for k in range(0, s.n_seqs, s.seqs_per_step):
            # lstms.pth summed (not averaged) the losses of the sequences between two steps.
            loss = smooth_l1_per_seq(predict(x[:, k : k + s.seqs_per_step]), y[k : k + s.seqs_per_step]).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        curve.append(total / s.n_seqs)

    with torch.no_grad():
        cell.eval()
        pred = predict(x)
        error = smooth_l1_per_seq(pred, y).mean().item()
        mae = (pred - y).abs().mean().item()
        cell.train()  # what lstms.pth's evaluation measured: dropout still acting
        error_train_mode = smooth_l1_per_seq(predict(x), y).mean().item()
    return {"error": error, "mae": mae, "error_train_mode": error_train_mode, "train_curve": curve}


def constant_baseline(task: Task, s: Settings, seed: int) -> dict[str, float]:
    """Errors of predicting the training set's mean target: what a model without memory can reach."""
    _, y = make_data(task, s, seed)
    pred = y.mean(0, keepdim=True).expand_as(y)
    return {"error": smooth_l1_per_seq(pred, y).mean().item(), "mae": (pred - y).abs().mean().item()}


def mean_std(values: list[float]) -> dict[str, float]:
    finite = [v for v in values if math.isfinite(v)]
    return {
        "mean": statistics.fmean(finite) if finite else math.nan,
        "std": statistics.stdev(finite) if len(finite) > 1 else 0.0,
        "n": len(finite),
        "non_finite": len(values) - len(finite),
    }


def selected_tasks(s: Settings) -> list[Task]:
    """The tasks named in the settings, with ``--input-size`` applied to those with a head."""
    tasks = [t for t in TASKS if t.name in s.tasks]
    if s.input_size is not None:
        tasks = [replace(t, input_size=s.input_size) if t.head else t for t in tasks]
    return tasks


def run(s: Settings, log: Callable[[str], None]) -> tuple[list[dict], list[dict]]:
    rows, baselines = [], []
    tasks = selected_tasks(s)
    start = time.perf_counter()
    for task in tasks:
        base = [constant_baseline(task, s, seed) for seed in range(s.seeds)]
        baselines.append({"task": task.name, **{k: mean_std([b[k] for b in base]) for k in ("error", "mae")}})
        for name in s.cells:
            t0 = time.perf_counter()
            runs = [run_one(name, task, s, seed) for seed in range(s.seeds)]
            row = {
                "task": task.name,
                "cell": name,
                "torch_module": f"nn.{yardstick(name).__name__}",
                "seed_published": SEED_ERRORS.get(name),
                **{k: mean_std([r[k] for r in runs]) for k in ("error", "mae", "error_train_mode")},
                "per_seed": runs,
                "seconds": round(time.perf_counter() - t0, 2),
            }
            rows.append(row)
            e = row["error"]
            log(
                f"[{task.name}] {name:13s} error {e['mean']:.3f} +- {e['std']:.3f} over {s.seeds} seed(s) "
                f"({row['seconds']:.1f} s; {time.perf_counter() - start:.0f} s so far)"
            )
    return rows, baselines


# ---------------------------------------------------------------------------------- reports
def pm(st: dict[str, float]) -> str:
    text = f"{st['mean']:.3f} +- {st['std']:.3f}"
    return text + (f" ({st['non_finite']} diverged)" if st.get("non_finite") else "")


def markdown(data: dict) -> str:
    s = Settings(**data["settings"])
    parts = [
        "# Capacity of the cells",
        "",
        f"Machine: {describe_machine(data['machine'])}.",
        "",
        f"lstms.pth's artificial memory benchmark: {s.n_seqs} sequences, inputs uniform in [0, 1), target = the "
        f"sum of the inputs; dropout {s.dropout} (none for the adapters over the torch modules, "
        f"{', '.join(f'`{n}`' for n in s.cells if is_adapter(n)) or 'none run here'}, as for `nn` in lstms.pth), "
        f"each cell starting from the weights of its torch module drawn from the random seed, layer size {s.size}, "
        f"{s.epochs} epochs, SGD lr {s.lr} momentum {s.momentum}, a step every {s.seqs_per_step} sequences on the "
        f"sum of their smooth-L1 losses. Each sequence starts from a zero state with its own masks. {s.seeds} "
        "seed(s): mean +- std. Error: mean smooth-L1 loss over the training set in eval mode; MAE: mean absolute "
        "error, eval mode; train mode: the same loss with dropout acting (what lstms.pth's script measured). "
        "Warning (lstms.pth's): an artificial memory benchmark, not necessarily representative of each method's "
        "capacity.",
        "",
    ]
    tasks = {t["name"]: Task(**t) for t in data["tasks"]}
    for name in s.tasks:
        task = tasks[name]
        base = next(b for b in data["baselines"] if b["task"] == name)
        # lstms.pth published one setting: sequences of 10 steps; its figures stand beside those only.
        seed_col = task.seq_len == SEED_SEQ_LEN
        rows = [
            [r["cell"], r["torch_module"], pm(r["error"]), pm(r["mae"]), pm(r["error_train_mode"])]
            + ([r["seed_published"] or "-"] if seed_col else [])
            for r in data["results"]
            if r["task"] == name
        ]
        headers = ["cell", "weights of", "error (eval)", "MAE (eval)", "error (train mode)"]
        headers += ["seed's error"] if seed_col else []
        parts += [
            f"## `{name}`: sequence length {task.seq_len}, input size {task.input_size or s.size}",
            "",
            f"{task.doc[0].upper()}{task.doc[1:]}. Predicting the mean target (no memory): error "
            f"{base['error']['mean']:.3f}, MAE {base['mae']['mean']:.3f}.",
            "",
            md_table(headers, rows),
            "",
        ]
    return "\n".join(parts)


def parse_args(argv: list[str] | None = None) -> tuple[Settings, Path]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("results/capacity"), help="folder for capacity.json, capacity.md")
    p.add_argument("--quick", action="store_true", help="layer size 32, 2 epochs, 1 seed, 20 sequences")
    p.add_argument("--seeds", type=POSITIVE, help="seeds per cell and task (default 5)")
    p.add_argument("--cells", nargs="+", choices=list(CELLS), help="registered cells (default: all)")
    p.add_argument("--tasks", nargs="+", choices=[t.name for t in TASKS], help="tasks (default: all)")
    p.add_argument("--epochs", type=POSITIVE, help="training epochs (default 10, lstms.pth's)")
    p.add_argument("--size", type=POSITIVE, help="layer size (default 256, lstms.pth's)")
    p.add_argument("--input-size", type=POSITIVE, help="input size of the tasks with a head (default 1)")
    p.add_argument("--threads", type=POSITIVE, default=1, help="torch threads (default 1)")
    a = p.parse_args(argv)
    s = Settings(threads=a.threads)
    if a.quick:
        s.size, s.epochs, s.seeds, s.n_seqs = 32, 2, 1, 20
    for key in ("seeds", "cells", "tasks", "epochs", "size", "input_size"):
        if getattr(a, key) is not None:
            setattr(s, key, getattr(a, key))
    return s, a.out


def main(argv: list[str] | None = None) -> int:
    s, out = parse_args(argv)
    pin_threads(s.threads)
    machine = machine_info("cpu")
    log = lambda msg: print(msg, flush=True)
    log(f"Machine: {describe_machine(machine)}")
    start = time.perf_counter()
    results, baselines = run(s, log)
    machine["load_average_at_end"] = list(os.getloadavg())
    machine["seconds"] = round(time.perf_counter() - start, 1)
    data = {
        "machine": machine,
        "settings": asdict(s),
        "tasks": [asdict(t) for t in selected_tasks(s)],
        "seed_published": {"errors": SEED_ERRORS, "task": "seed-no-head"},
        "baselines": baselines,
        "results": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "capacity.json", data)
    (out / "capacity.md").write_text(markdown(data) + "\n")
    log(f"wrote capacity.json, capacity.md to {out} in {machine['seconds']} s")
    return 0
