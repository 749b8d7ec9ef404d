"""What a figure was measured on, and the thread pinning every benchmark and sweep run uses."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from importlib import metadata
from pathlib import Path

import torch


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
