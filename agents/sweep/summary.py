"""What the sweep's tables add up to: which memory to use (the best rows per task and a ranking over
tasks by normalised score) and how far each memory reaches on the T-maze corridor ladder."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import gymnasium as gym

from rl_lstm.tooling import save_figure


def _score(row: dict[str, Any]) -> float | None:
    return row["normalised_score"] if row["ok_runs"] else None


def ranking(data: dict[str, Any]) -> list[tuple[str, float, int, int]]:
    """``(label, mean normalised score, tasks, tasks solved on every seed)`` per row that ran on every task,
    best first."""
    labels: dict[str, list[dict[str, Any]]] = {}
    for block in data.values():
        for row in block["rows"]:
            labels.setdefault(row["label"], []).append(row)
    ranked = []
    for label, rows in labels.items():
        scores = [_score(r) for r in rows]
        if len(rows) == len(data) and all(s is not None for s in scores):
            solved = sum(r["solved"] == r["ok_runs"] for r in rows)
            ranked.append((label, statistics.fmean(scores), len(rows), solved))
    return sorted(ranked, key=lambda item: -item[1])


def which_memory(data: dict[str, Any], top: int = 3) -> list[str]:
    """Markdown: the best rows of each task, and the ranking over the tasks every row ran on."""
    lines = [
        "## Which memory should I use",
        "",
        "From the tables below. Normalised score: 0 at the memoryless bound, 1 at the maximum return (mean over",
        "seeds); where a task has no memoryless bound, its rows are ranked by return.",
        "",
        "| task | best rows (normalised score, or return; seeds solved) |",
        "|---|---|",
    ]
    for env, block in data.items():
        rows = [r for r in block["rows"] if r["ok_runs"]]
        key = (lambda r: r["normalised_score"]) if block["memoryless_bound"] is not None else (
            lambda r: r["final_return_mean"])  # fmt: skip
        best = sorted((r for r in rows if key(r) is not None), key=key, reverse=True)[:top]
        cells = "; ".join(f"{r['label']} ({key(r):.2f}; {r['solved']}/{r['ok_runs']})" for r in best)
        lines.append(f"| {env} | {cells or '—'} |")
    ranked = ranking({e: b for e, b in data.items() if b["memoryless_bound"] is not None})
    if ranked:
        lines += [
            "",
            "Over every task with a memoryless bound that a row ran on all of:",
            "",
            "| rank | row | mean normalised score | tasks solved on every seed |",
            "|---|---|---|---|",
        ]
        lines += [f"| {i} | {label} | {score:.2f} | {solved}/{n} |" for i, (label, score, n, solved) in
                  enumerate(ranked, 1)]  # fmt: skip
    return lines


def ladder(data: dict[str, Any]) -> dict[int, str]:
    """``{corridor length: env id}`` of the T-maze tasks in the sweep (the ladder needs at least two)."""
    found = {}
    for env in data:
        kwargs = gym.spec(env).kwargs if env in gym.registry else {}
        if "corridor_length" in kwargs:
            found[int(kwargs["corridor_length"])] = env
    return dict(sorted(found.items())) if len(found) >= 2 else {}


def ladder_table(data: dict[str, Any]) -> list[str]:
    """Markdown: success (seeds solved / seeds, and the mean final return) per row and corridor length."""
    rungs = ladder(data)
    if not rungs:
        return []
    labels = list(dict.fromkeys(r["label"] for env in rungs.values() for r in data[env]["rows"]))
    lines = [
        "## How far each memory reaches: the T-maze ladder",
        "",
        "Seeds solved / seeds run (mean final return) per corridor length; a memoryless policy gets 0.5.",
        "",
        "| row | " + " | ".join(f"L={n}" for n in rungs) + " |",
        "|---|" + "---|" * len(rungs),
    ]
    for label in labels:
        cells = []
        for env in rungs.values():
            row = next((r for r in data[env]["rows"] if r["label"] == label), None)
            ok = row is not None and row["ok_runs"]
            cells.append(f"{row['solved']}/{row['ok_runs']} ({row['final_return_mean']:.2f})" if ok else "—")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return [*lines, "", "![T-maze ladder](memory_tmaze_ladder.png)"]


def plot_ladder(data: dict[str, Any], path: Path) -> bool:
    """Mean final return against corridor length, one line per row (baselines dashed)."""
    rungs = ladder(data)
    if not rungs:
        return False
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    by_label: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for n, env in rungs.items():
        for row in data[env]["rows"]:
            if row["ok_runs"]:
                by_label.setdefault(row["label"], []).append((n, row))
    by_label = {label: points for label, points in by_label.items() if len(points) >= 2}  # rows on the ladder
    palette = plt.get_cmap("tab20").colors
    for i, (label, points) in enumerate(by_label.items()):
        xs = [n for n, _ in points]
        ys = [row["final_return_mean"] for _, row in points]
        style = "--" if points[0][1]["cell"] is None else "-"
        ax.plot(xs, ys, style, marker="o", ms=4, color=palette[(2 * i) % 20 + (i // 10) % 2], label=label)
    ax.axhline(0.5, color="grey", ls="-.", lw=1, label="memoryless bound")
    ax.set(xscale="log", xlabel="corridor length", ylabel="final return (mean over seeds)", ylim=(-0.02, 1.02),
           title="T-maze: success against corridor length")  # fmt: skip
    ax.set_xticks(list(rungs), [str(n) for n in rungs])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # log axes label minor ticks otherwise
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return True
