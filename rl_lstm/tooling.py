"""The tooling every program of the project shares (the cells' benchmarks, the training harness, the
memory sweep, the tuning command): argument types for the command lines, the machine a figure was
measured on and the thread pinning of every run, and result files (statistics of repeated
measurements, JSON written atomically, Markdown tables, PNG figures).

Needs only torch (matplotlib lazily, for figures), so the cells' benchmarks use it as the harness does.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

# ---------------------------------------------------------------------------- argument types
# Each rejects a bad value with argparse's ``PROG: error: argument --flag: invalid value ...: expected ...``
# before anything runs.


def expected_integer(minimum: int | None) -> str:
    """What an integer option with this minimum expects, in words."""
    if minimum is None:
        return "an integer"
    return "a positive integer" if minimum == 1 else f"an integer >= {minimum}"


def integer_arg(minimum: int | None) -> Callable[[str], int]:
    """An argparse type: an integer, at least ``minimum`` when one is given."""

    def parse(text: str) -> int:
        expected = expected_integer(minimum)
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected {expected}") from None
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected {expected}")
        return value

    return parse


def probability(text: str) -> float:
    """An argparse type: a number in [0, 1) (a dropout probability)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number in [0, 1)") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number in [0, 1)")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a positive number")
    return value


POSITIVE = integer_arg(1)
NON_NEGATIVE = integer_arg(0)


# ---------------------------------------------------------------------------- the machine


def pin_threads(threads: int) -> int:
    """Pin torch's intra-op (and, where still allowed, inter-op) thread pools, and the OpenMP/BLAS
    pools of libraries and child processes started later; return the intra-op count.

    One thread by default: the benchmark machine is shared, and a single thread keeps the
    cost of a step from depending on what else is running on the other cores (and parallel
    sweep runs from oversubscribing them).
    """
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        pass  # only settable before the first parallel region; harmless if already fixed
    return torch.get_num_threads()


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or platform.processor() where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


PACKAGES = ("torch", "numpy", "gymnasium", "stable-baselines3", "sb3-contrib")


def _versions() -> dict[str, str]:
    """Installed versions of the packages a figure depends on (those that are installed)."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def machine_info(device: str = "cpu") -> dict:
    """What the figures were measured on: CPU, cores, threads, library versions, date, load.

    The one description of a machine that every benchmark and sweep writes into its JSON."""
    info = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "packages": _versions(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "device": device,
    }
    if device == "cuda":
        info["cuda_device"] = torch.cuda.get_device_name(0)
        info["cuda_version"] = torch.version.cuda
    return info


def describe_machine(info: dict) -> str:
    """One line for the console and the Markdown header."""
    text = (
        f"{info['cpu_model']}, {info['cores_usable']} usable cores, torch {info['torch_version']}, "
        f"{info['torch_threads']} thread(s), {info['date_utc']} UTC"
    )
    if info.get("cuda_device"):
        text += f", GPU {info['cuda_device']} (CUDA {info['cuda_version']})"
    return text


# ---------------------------------------------------------------------------- result files


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements (the median resists a noisy neighbour)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def write_json(path: Path, data: Any) -> None:
    """Write beside the target, then rename: a reader (or a resumed sweep) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def save_figure(fig: Any, path: Path, dpi: int = 110) -> None:
    """Save a matplotlib figure as a PNG beside the target, then rename (never half a picture), and close it."""
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    os.replace(tmp, path)


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table; every cell is rendered with str()."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
