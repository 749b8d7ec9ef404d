"""Robust statistics of repeated measurements, JSON written atomically, and Markdown tables."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any


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
