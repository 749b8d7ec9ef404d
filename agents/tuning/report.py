"""The study's summary: the best trial, the importance of each parameter, how many trials completed,
were pruned or failed, every trial, and the verification of the best settings, as JSON, Markdown and a
plot (optimisation history and importances)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import optuna

from rl_lstm.tooling import describe_machine, md_table, save_figure, write_json

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def importances(study: optuna.Study) -> tuple[dict[str, float] | None, str | None]:
    """Parameter importances over the completed trials by PED-ANOVA (Optuna's evaluator that needs no
    other package; fANOVA needs scikit-learn), or None and why not."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return None, f"{len(complete)} completed trial(s); importances need at least 2"
    try:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
        return {k: float(v) for k, v in found.items()}, None
    except (RuntimeError, ValueError, ImportError) as e:
        return None, str(e)


def _trial_row(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    seeds = t.user_attrs.get("seeds", [])
    return {
        "number": t.number,
        "state": t.state.name,
        "value": t.value,
        "params": t.params,
        "last_report": t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None,
        "pruned_at": t.user_attrs.get("pruned_at"),
        "seeds": seeds,
        "duration_s": t.duration.total_seconds() if t.duration else None,
        "error": (t.user_attrs.get("error") or "").strip().splitlines()[-1:] or None,
    }


def summarize(study: optuna.Study, header: dict[str, Any]) -> dict[str, Any]:
    """The study as the summary files show it; ``header`` holds the command's settings."""
    trials = study.get_trials(deepcopy=False)
    counts = {s.lower(): sum(t.state.name == s for t in trials) for s in STATES}
    values, reason = importances(study)
    best = None
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        b = study.best_trial
        best = {"number": b.number, "value": b.value, "params": b.params, "seeds": b.user_attrs.get("seeds", [])}
    return {
        **header,
        "study_name": study.study_name,
        "direction": "maximize",
        "trials_total": len(trials),
        "counts": counts,
        "best": best,
        "importances": values,
        "importances_note": reason,
        "trials": [_trial_row(t) for t in trials],
        "verification": study.user_attrs.get("verification"),
    }


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2e}"
    return str(value)


def markdown(summary: dict[str, Any]) -> str:
    c = summary["counts"]
    lines = [
        f"# Study {summary['study_name']}: {summary['algo']} on {summary['env']}",
        "",
        f"Command: `{summary['command']}`",
        "",
        f"Machine: {describe_machine(summary['machine'])}; load average at the start "
        f"{', '.join(f'{x:.1f}' for x in summary['machine'].get('load_average_at_start') or [])}.",
        "",
        f"Cells searched: {', '.join(summary['cells'])}. Budget per trial: {summary['n_timesteps']} steps x "
        f"{summary['seeds_per_trial']} seed(s), an evaluation ({summary['eval_episodes']} episodes, deterministic, "
        f"without dropout masks) every {summary['eval_every']} steps reported to the {summary['pruner']} pruner; "
        f"sampler {summary['sampler']}; search space `{summary['space']}`. A trial's value is the mean over its "
        "seeds of the final evaluation.",
        "",
        f"Trials: {summary['trials_total']} ({c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed"
        + (f", {c['running']} running" if c["running"] else "") + ").",
        "",
    ]  # fmt: skip
    best = summary["best"]
    if best:
        lines += [f"## Best trial: {best['number']}, value {_fmt(best['value'], 2)}", ""]
        lines += [md_table(["parameter", "value"], [[k, _fmt(v, 4)] for k, v in best["params"].items()]), ""]
        if summary.get("best_files"):
            lines += [f"Entry: `{summary['best_files']['entry']}`; for `--hyperparams`: "
                      f"`{summary['best_files']['hyperparams']}`.", "",
                      f"Train with it: `{summary['best_files']['command']}`", ""]  # fmt: skip
    else:
        lines += ["No trial has completed yet.", ""]
    lines += ["## Parameter importances (PED-ANOVA over the completed trials)", ""]
    if summary["importances"]:
        rows = [[k, f"{v:.3f}"] for k, v in summary["importances"].items()]
        lines += [md_table(["parameter", "importance"], rows), ""]
    else:
        lines += [f"Not computed: {summary['importances_note']}.", ""]
    verification = summary.get("verification")
    if verification:  # the latest verification of the study, by whichever run of the command made it
        v = verification
        lines += [f"## Verification of trial {v['trial']}: {v['timesteps']} steps, seeds {v['seeds']}", ""]
        rows = [[s["seed"], _fmt(s["final"]), _fmt(s["final_std"]), _fmt(s["best"])] for s in v["runs"]]
        lines += [md_table(["seed", "final return", "std", "best evaluation"], rows), ""]
        if v.get("threshold") is not None:
            lines += [f"Final return >= {v['threshold']:g} on {v['reached']} of {len(v['runs'])} seeds "
                      f"(best evaluation >= threshold on {v['reached_best']}).", ""]  # fmt: skip
        if v.get("errors"):
            lines += [f"- failed: `{e}`" for e in v["errors"]] + [""]
    lines += ["## Trials", ""]
    names = sorted({k for t in summary["trials"] for k in t["params"]})
    rows = []
    for t in summary["trials"]:
        end = t["state"].lower() + (f" at {t['pruned_at']}" if t["pruned_at"] is not None else "")
        end += f": {t['error'][0][:80]}" if t["error"] else ""
        finals = ", ".join(_fmt(s.get("final")) for s in t["seeds"] if s.get("final") is not None) or "-"
        rows.append([t["number"], end, _fmt(t["value"], 2), finals, _fmt(t["duration_s"], 0)]
                    + [_fmt(t["params"].get(n), 3) for n in names])  # fmt: skip
    lines += [md_table(["#", "state", "value", "final per seed", "s", *names], rows), ""]
    lines += ["![optimisation history and importances](study.png)", ""]
    return "\n".join(lines)


def plot(summary: dict[str, Any], path: Path) -> None:
    """Left: each trial's value (pruned: its last report) and the best so far; right: importances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    done = [t for t in summary["trials"] if t["state"] == "COMPLETE"]
    pruned = [t for t in summary["trials"] if t["state"] == "PRUNED" and t["last_report"] is not None]
    ax.plot([t["number"] for t in done], [t["value"] for t in done], "o", color="tab:blue", label="complete")
    ax.plot([t["number"] for t in pruned], [t["last_report"] for t in pruned], "x", color="tab:red",
            label="pruned (last evaluation)")  # fmt: skip
    best, steps, values = -math.inf, [], []
    for t in done:
        best = max(best, t["value"])
        steps.append(t["number"])
        values.append(best)
    if steps:
        ax.step(steps, values, where="post", color="black", lw=1, label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("value (mean final return over seeds)")
    ax.set_title(f"{summary['study_name']}: optimisation history")
    ax.legend(fontsize=8)
    if summary["importances"]:
        names = list(summary["importances"])[::-1]
        bx.barh(names, [summary["importances"][n] for n in names], color="tab:green")
        bx.set_xlabel("importance (PED-ANOVA)")
    else:
        bx.text(0.5, 0.5, f"importances not computed:\n{summary['importances_note']}", ha="center", va="center",
                wrap=True, fontsize=8)  # fmt: skip
        bx.set_axis_off()
    bx.set_title("parameter importances")
    fig.tight_layout()
    save_figure(fig, path)


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    """``summary.json``, ``summary.md`` and ``study.png`` in ``out``."""
    write_json(out / "summary.json", json.loads(json.dumps(summary, default=str)))
    tmp = out / ".summary.md.tmp"
    tmp.write_text(markdown(summary))
    os.replace(tmp, out / "summary.md")
    plot(summary, out / "study.png")
