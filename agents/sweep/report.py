"""The sweep's report from its records: rows per environment, memory.md, memory.json and learning curves."""

from __future__ import annotations

import datetime as dt
import math
import os
import statistics
from pathlib import Path
from typing import Any

from agents.sweep.records import read_record, record_path, strict_json
from agents.sweep.summary import ladder_table, plot_ladder, which_memory
from agents.sweep.worker import RunTask
from agents.training.algos import ALGOS
from rl_lstm.tooling import describe_machine, machine_info, save_figure, write_json


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def mean_curve(curves: list[list[list[float]]]) -> dict[str, list[float | None]]:
    """Mean, min and max over seeds on the union of the logged timesteps; each seed's curve is
    interpolated inside its own range only (a seed that has not finished an episode yet counts as absent)."""
    import numpy as np

    curves = [c for c in curves if c]
    if not curves:
        return {"steps": [], "mean": [], "min": [], "max": []}
    steps = np.array(sorted({s for c in curves for s, _ in c}), dtype=float)
    stack = np.full((len(curves), len(steps)), np.nan)
    for i, curve in enumerate(curves):
        xs, ys = np.array(curve, dtype=float).T
        inside = (steps >= xs[0]) & (steps <= xs[-1])
        stack[i, inside] = np.interp(steps[inside], xs, ys)
    present = ~np.all(np.isnan(stack), axis=0)
    steps, stack = steps[present], stack[:, present]

    def listed(a: np.ndarray) -> list[float]:
        return [round(float(v), 4) for v in a]

    return {
        "steps": [int(s) for s in steps],
        "mean": listed(np.nanmean(stack, axis=0)),
        "min": listed(np.nanmin(stack, axis=0)),
        "max": listed(np.nanmax(stack, axis=0)),
    }


def _last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1].replace("`", "'") if lines else ""  # shown in a Markdown code span


def summarize_row(records: list[dict[str, Any]], planned: int, info: Any) -> dict[str, Any]:
    """One table row from the records of its seeds."""
    ok = [r for r in records if r.get("status") == "ok"]
    returns = [r["final_return_mean"] for r in ok]
    mean = statistics.fmean(returns) if returns else None
    std = statistics.pstdev(returns) if len(returns) > 1 else (0.0 if returns else None)
    span = info.max_return - info.memoryless_bound
    normalised = (mean - info.memoryless_bound) / span if mean is not None and _finite(span) and span > 0 else None
    to_threshold = [r["steps_to_threshold"] for r in ok]
    reached = [s for s in to_threshold if s is not None]
    # The median over seeds, a seed that never reached the threshold counting as infinitely slow.
    ordered = sorted(to_threshold, key=lambda s: math.inf if s is None else s)
    median_steps = None
    if ordered:
        lo, hi = ordered[(len(ordered) - 1) // 2], ordered[len(ordered) // 2]
        median_steps = None if lo is None or hi is None else (lo + hi) / 2
    speeds = [r["env_steps_per_s"] for r in ok if _finite(r.get("env_steps_per_s"))]
    return {
        "seeds": sorted(r["seed"] for r in ok),
        "planned_runs": planned,
        "ok_runs": len(ok),
        "failed": [
            {"seed": r["seed"], "attempts": r.get("attempts"), "error": _last_line(r.get("error"))}
            for r in records
            if r.get("status") != "ok"
        ],
        "missing_runs": planned - len(records),
        "returns": returns,
        "final_return_mean": mean,
        "final_return_std": std,
        "normalised_score": normalised,
        "solved": sum(r >= info.threshold for r in returns),
        "steps_to_threshold": to_threshold,
        "reached_threshold": len(reached),
        "steps_to_threshold_median": median_steps,
        "env_steps_per_s": statistics.median(speeds) if speeds else None,
        "wall_time_s": sum(r["wall_time_s"] for r in ok if _finite(r.get("wall_time_s"))),
        "curve": mean_curve([r["curve"] for r in ok]),
    }


def aggregate(out: Path, tasks: list[RunTask]) -> dict[str, Any]:
    """memory.json's data: per env, its reference returns, its settings and one row per cell/baseline."""
    from envs import ENV_INFO

    result: dict[str, Any] = {}
    for env in dict.fromkeys(t.env for t in tasks):
        info = ENV_INFO[env]
        env_tasks = [t for t in tasks if t.env == env]
        groups: dict[tuple[str, str | None], list[RunTask]] = {}
        for task in env_tasks:
            groups.setdefault((task.algo, task.cell), []).append(task)
        rows = []
        for (algo, cell), group in groups.items():
            records = [r for r in (read_record(record_path(out, t)) for t in group) if r is not None]
            label = f"{algo} {cell}" if cell else algo
            rows.append({"label": label, "algo": algo, "cell": cell, **summarize_row(records, len(group), info)})
        first = env_tasks[0].config
        result[env] = {
            "max_return": info.max_return,
            "memoryless_bound": None if math.isnan(info.memoryless_bound) else info.memoryless_bound,
            "threshold": info.threshold,
            "settings": {k: first[k] for k in ("total_timesteps", "n_envs", "eval_episodes", "hidden_size")},
            "rows": rows,
        }
    return result


def _fmt(value: float | None, digits: int = 2, scale: float | None = None) -> str:
    """``digits`` decimals for values of magnitude below 10 (or ``scale``), one below 100, none above."""
    if value is None:
        return "—"
    size = abs(value if scale is None else scale)
    return f"{value:.{0 if size >= 100 else 1 if size >= 10 else digits}f}"


def _steps(value: float | None) -> str:
    return "—" if value is None else f"{value / 1000:.1f}k"


SMOKE_NOTE = (
    "**A smoke run (`--quick`)**: budgets of a few hundred steps that check the sweep runs end to end. The "
    "returns below say nothing about which memory is better, so no row is ranked here; the full sweep "
    "(without `--quick`) makes the findings."
)


def markdown(data: dict[str, Any], header: dict[str, Any]) -> str:
    machine = header["machine"]
    smoke = header.get("smoke_run", False)
    lines = [
        "# Memory benchmark",
        "",
        f"Command: `{header['command']}`  ",
        f"Machine: {describe_machine(machine)}, Python {machine['python_version']}  ",
        f"Report written: {header['date']}",
        "",
        "Final return: the deterministic evaluation after training (mean over its episodes), then mean ± std "
        "over seeds. Normalised: 0 at the memoryless bound, 1 at the maximum return. Solved: seeds whose final "
        "return reaches the threshold. Steps to threshold: median over seeds of the first step at which the "
        "training curve (`rollout/ep_rew_mean`, stochastic policy, last 100 episodes) reaches the threshold; "
        "— when the median seed never did. Env-steps/s: median over seeds, training only.",
        "",
        *([SMOKE_NOTE] if smoke else [*which_memory(data), "", *ladder_table(data)]),
    ]
    for env, block in data.items():
        s = block["settings"]
        bound = _fmt(block["memoryless_bound"])
        lines += [
            "",
            f"## {env}",
            "",
            f"{s['total_timesteps']:,} steps per run, {s['n_envs']} envs, hidden size {s['hidden_size']}, "
            f"{s['eval_episodes']} evaluation episodes; maximum return {_fmt(block['max_return'])}, memoryless "
            f"bound {bound}, threshold {_fmt(block['threshold'])}.",
            "",
            "| algo | memory | final return | normalised | solved | steps to threshold | env-steps/s "
            "| memoryless bound | threshold | runs |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in block["rows"]:
            memory = row["cell"] or ALGOS[row["algo"]].label
            ret = (
                f"{_fmt(row['final_return_mean'])} ± {_fmt(row['final_return_std'], scale=row['final_return_mean'])}"
                if row["final_return_mean"] is not None
                else "—"
            )
            n_ok, planned = row["ok_runs"], row["planned_runs"]
            runs = f"{n_ok}/{planned} ok"
            if row["failed"]:
                runs += f", **{len(row['failed'])} FAILED**"
            if row["missing_runs"]:
                runs += f", {row['missing_runs']} not run"
            reached = f" ({row['reached_threshold']}/{n_ok})" if n_ok else ""
            solved = f"{row['solved']}/{n_ok}" if n_ok else "—"
            lines.append(
                f"| {row['algo']} | {memory} | {ret} | {_fmt(row['normalised_score'])} | {solved} "
                f"| {_steps(row['steps_to_threshold_median'])}{reached} | {_fmt(row['env_steps_per_s'], 0)} "
                f"| {bound} | {_fmt(block['threshold'])} | {runs} |"
            )
        failures = [(row["label"], f) for row in block["rows"] for f in row["failed"]]
        if failures:
            lines += ["", "Failed runs:", ""]
            lines += [
                f"- {label} seed {f['seed']} after {f['attempts']} attempt(s): `{f['error']}`" for label, f in failures
            ]
        lines += ["", f"![learning curves on {env}](memory_{env}.png)"]
    return "\n".join(lines) + "\n"


def plot(env: str, block: dict[str, Any], path: Path) -> None:
    """Mean training curve per row with its min-max band over seeds; the bound and threshold dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.5))
    palette = plt.get_cmap("tab20").colors
    colors = palette[::2] + palette[1::2]  # the ten strong colours first
    baseline_colors = {"ppo-mlp": "dimgrey", "sb3-ppo-lstm": "black"}
    cell_rows = [row["label"] for row in block["rows"] if row["cell"] is not None]
    for row in block["rows"]:
        curve = row["curve"]
        if not curve["steps"]:
            continue
        if row["cell"] is None:
            color, style = baseline_colors.get(row["algo"], "grey"), "--"
        else:  # by position in the table, so that a cell keeps its colour when other rows have no data
            color, style = colors[cell_rows.index(row["label"]) % len(colors)], "-"
        ax.plot(curve["steps"], curve["mean"], style, color=color, lw=1.4, label=row["label"])
        ax.fill_between(curve["steps"], curve["min"], curve["max"], color=color, alpha=0.12, lw=0)
    ax.axhline(block["threshold"], color="black", ls=":", lw=1, label="threshold")
    if block["memoryless_bound"] is not None:
        ax.axhline(block["memoryless_bound"], color="grey", ls="-.", lw=1, label="memoryless bound")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("training episode return (last 100 episodes)")
    ax.set_title(f"{env}: mean over seeds, band = min-max")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def report(out: Path, tasks: list[RunTask], command: str, smoke: bool = False) -> dict[str, Any]:
    """``memory.json``, ``memory.md`` and the plots; ``smoke``: the runs are a smoke test (``--quick``),
    which the report says instead of ranking them."""
    data = aggregate(out, tasks)
    header = {
        "command": command,
        "smoke_run": smoke,
        "machine": machine_info(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    write_json(out / "memory.json", strict_json({**header, "envs": data}))
    tmp = out / ".memory.md.tmp"
    tmp.write_text(markdown(data, header))
    os.replace(tmp, out / "memory.md")
    for env, block in data.items():
        plot(env, block, out / f"memory_{env}.png")
    plot_ladder(data, out / "memory_tmaze_ladder.png")
    return data
