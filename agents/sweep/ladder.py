"""The memory ladder (third edition of the memory benchmark): how far each row's memory reaches.

A row is an algorithm, a memory and its settings, used unchanged on every rung. For each task family of
``envs.LADDER_FAMILIES`` it climbs the rungs (``<family>-L<n>-v0``) in order, ``seeds`` runs per rung, each
training its whole budget with a deterministic evaluation every ``eval_freq`` steps on balanced cues. A run
solves a rung when its final evaluation's success rate (``info["is_success"]``, the memory-dependent answer,
never the return) reaches ``solved``; a row stops climbing a family after a rung that none of its seeds
solved. Runs are recorded one JSON each as they finish (a second invocation resumes); the report is JSON,
Markdown and the ladder plot (success against length, one line per row and family).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.sweep import records
from agents.sweep.backends import LocalBackend, run_all
from agents.sweep.records import lock_folder, strict_json
from agents.sweep.spec import SweepError, check_keys
from agents.sweep.worker import RunTask
from agents.training import ALGOS, ConfigError, TrainConfig, resolve
from envs import ENV_INFO, LADDER_FAMILIES, LADDER_RUNGS, ladder_id
from rl_lstm.tooling import machine_info, pin_threads, save_figure, write_json

DEFAULT_LADDER = Path(__file__).with_name("ladder_sweep.yaml")  # package data


#: The :class:`~agents.training.TrainConfig` fields the ladder sets on every run itself, each with where.
LADDER_SETS = {"env": "the rung", "total_timesteps": "total_timesteps", "seed": "seeds",
               "eval_episodes": "eval_episodes", "eval_freq": "eval_freq", "checkpoint_freq": "the rung's budget",
               "tensorboard": "the ladder (off)", "threads": "the workers"}  # fmt: skip


@dataclass(frozen=True)
class Row:
    """One row of the ladder: overrides of :class:`~agents.training.TrainConfig`'s fields (``algo`` at least;
    any field but :data:`LADDER_SETS`), the same on every rung. ``hyperparams`` apply on top of the
    algorithm's ``default`` hyperparameter entry (the ladder's ids have no entry of their own)."""

    options: dict[str, Any]

    @classmethod
    def from_dict(cls, where: str, data: Any) -> Row:
        if not isinstance(data, dict) or "algo" not in data:
            raise SweepError(f"{where}: expected a mapping with at least algo")
        for key in data:
            if key in LADDER_SETS:
                raise SweepError(f"{where}: {key}: set by the ladder ({LADDER_SETS[key]}), not by a row")
        check_keys(where, data, TrainConfig)
        return cls(dict(data))

    @functools.cached_property
    def settings(self) -> TrainConfig:
        """The row's options over TrainConfig's defaults (the task and the budget the defaults')."""
        return TrainConfig(**self.options)

    def config(self, **ladder_sets: Any) -> TrainConfig:
        """The configuration of one run: the row's options and what the ladder sets."""
        return TrainConfig(**{**self.options, **ladder_sets})


@dataclass
class Ladder:
    """The ladder's rows, rungs and rules (``ladder_sweep.yaml``)."""

    rows: dict[str, Row]
    families: list[str] = field(default_factory=lambda: list(LADDER_FAMILIES))
    rungs: list[int] = field(default_factory=lambda: list(LADDER_RUNGS))
    seeds: int = 3
    total_timesteps: dict[int, int] = field(default_factory=dict)
    """Budget per rung (environment steps of each run)."""
    eval_freq: int = 10_000
    eval_episodes: int = 100
    solved: float = 0.95
    """Final success rate at which a run counts as solving its rung."""
    quick: Ladder | None = None

    @classmethod
    def from_dict(cls, where: str, data: Any) -> Ladder:
        if not isinstance(data, dict) or not isinstance(data.get("rows"), dict) or not data["rows"]:
            raise SweepError(f"{where}: expected a mapping with a non-empty mapping 'rows'")
        check_keys(where, data, cls)
        data = dict(data)
        data["rows"] = {name: Row.from_dict(f"{where}: rows.{name}", row) for name, row in data["rows"].items()}
        if data.get("quick") is not None:
            data["quick"] = cls.from_dict(f"{where}: quick", data["quick"])
        ladder = cls(**data)
        for family in ladder.families:
            if family not in LADDER_FAMILIES:
                raise SweepError(f"{where}: family {family!r}: unknown; choices: {', '.join(LADDER_FAMILIES)}")
        for n in ladder.rungs:
            if n not in LADDER_RUNGS or n not in ladder.total_timesteps:
                raise SweepError(
                    f"{where}: rung {n!r}: expected one of {', '.join(map(str, LADDER_RUNGS))} with a budget in "
                    "total_timesteps"
                )
        return ladder


def load_ladder(path: Path) -> Ladder:
    import yaml

    if not path.is_file():
        raise SweepError(f"--sweep {str(path)!r}: no such file")
    try:
        return Ladder.from_dict(str(path), yaml.safe_load(path.read_text()))
    except yaml.YAMLError as e:
        raise SweepError(f"--sweep {str(path)!r}: not valid YAML ({e})") from None


@dataclass(frozen=True)
class LadderTask(RunTask):
    """A run of the ladder: named after its row, since two rows may share an algorithm and a cell."""

    row: str = ""

    @property
    def name(self) -> str:
        return f"{self.row}-s{self.seed}"


def rung_tasks(ladder: Ladder, row_name: str, family: str, n: int, out: Path) -> list[LadderTask]:
    """The seeds of one row on one rung, their configurations checked."""
    row = ladder.rows[row_name]
    env = ladder_id(family, n)
    tasks = []
    for seed in range(ladder.seeds):
        config = row.config(
            env=env, total_timesteps=ladder.total_timesteps[n], seed=seed, eval_episodes=ladder.eval_episodes,
            eval_freq=ladder.eval_freq, checkpoint_freq=ladder.total_timesteps[n], tensorboard=False,
        )  # fmt: skip
        try:
            resolve(config)
        except ConfigError as e:
            raise SweepError(f"rows.{row_name} on {env}: {e}") from None
        as_dict = {k: v for k, v in dataclasses.asdict(config).items() if k != "threads"}
        work = out / "work" / env / f"{row_name}-s{seed}"
        cell = config.cell if ALGOS[config.algo].memory == "cell" else None
        tasks.append(LadderTask(env=env, algo=config.algo, cell=cell, seed=seed, config=as_dict,
                                threshold=ENV_INFO[env].threshold, work_dir=str(work), row=row_name))  # fmt: skip
    return tasks


def record_path(out: Path, task: LadderTask) -> Path:
    return out / "runs" / task.row / task.env / f"s{task.seed}.json"


def done_record(out: Path, task: LadderTask) -> dict[str, Any] | None:
    """The run's record when it is ok and was made with the configuration planned now, and with the
    algorithm's arguments that configuration resolves to today (an edited hyperparameter entry, such as
    the ``default`` one the rows build on, makes the records made before it stale)."""
    return records.done_record(record_path(out, task), task)


def solved(record: dict[str, Any] | None, threshold: float) -> bool:
    rate = None if record is None else record.get("final_success_rate")
    return rate is not None and rate >= threshold


def climb(ladder: Ladder, out: Path, run: Any, log: Any = print) -> None:
    """Rung by rung, the seeds of every row and family still climbing (in parallel), then the rule: a row
    stops climbing a family after a rung that none of its seeds solved. ``run(tasks)`` makes the runs whose
    record is missing and writes their records."""
    climbing = {(row, family) for row in ladder.rows for family in ladder.families}
    for n in sorted(ladder.rungs):
        if not climbing:
            break
        groups = {(row, family): rung_tasks(ladder, row, family, n, out) for row, family in sorted(climbing)}
        tasks = [t for group in groups.values() for t in group]
        todo = [t for t in tasks if done_record(out, t) is None]
        log(f"rung {n}: {len(tasks)} run(s), {len(todo)} to make")
        if todo:
            run(todo)
        for (row, family), group in groups.items():
            records = [done_record(out, t) for t in group]
            if not any(solved(r, ladder.solved) for r in records):
                log(f"  {row} stops climbing {family} after rung {n} (0/{ladder.seeds} solved)")
                climbing.discard((row, family))


def summarize(ladder: Ladder, out: Path) -> dict[str, Any]:
    """Per row, family and rung: seeds solved, final and best success (mean over recorded seeds), collapse."""
    rows: dict[str, Any] = {}
    for row in ladder.rows:
        for family in ladder.families:
            for n in sorted(ladder.rungs):
                records = [done_record(out, t) for t in rung_tasks(ladder, row, family, n, out)]
                records = [r for r in records if r is not None]
                if not records:
                    continue
                finals = [r["final_success_rate"] for r in records]
                bests = [r.get("best_success_rate") or r["final_success_rate"] for r in records]
                rows.setdefault(row, {}).setdefault(family, {})[str(n)] = {
                    "seeds": len(records),
                    "solved": sum(solved(r, ladder.solved) for r in records),
                    "final_success": finals,
                    "best_success": bests,
                    "mean_final_success": sum(finals) / len(finals),
                    "collapsed": sum(b - f > 0.05 for f, b in zip(finals, bests, strict=True)),
                    "total_timesteps": ladder.total_timesteps[n],
                    "wall_time_s": [r["wall_time_s"] for r in records],
                }
    return rows


def reach(ladder: Ladder, data: dict[str, Any]) -> dict[str, dict[str, dict[str, int | None]]]:
    """Per family and row, the longest rung solved on every seed run (``all``) and on at least one
    (``some``); None where none is."""
    found: dict[str, dict[str, dict[str, int | None]]] = {}
    for family in ladder.families:
        for row in ladder.rows:
            cells = data["rows"].get(row, {}).get(family, {})
            every = [int(n) for n, c in cells.items() if c["solved"] == c["seeds"] == ladder.seeds]
            some = [int(n) for n, c in cells.items() if c["solved"] > 0]
            if cells:
                found.setdefault(family, {})[row] = {"all": max(every, default=None), "some": max(some, default=None)}
    return found


def _reach_lines(ladder: Ladder, data: dict[str, Any]) -> list[str]:
    """The report's summary: how far each row climbed on each family, and the row that reaches furthest."""
    intro = f"The longest length solved on all {ladder.seeds} seeds (and on at least one), per family:"
    lines = ["## How far each row reaches", "", intro, ""]
    for family, rows in reach(ladder, data).items():
        parts = [f"{row} {r['all'] or '—'} ({r['some'] or '—'})" for row, r in rows.items()]
        best = max(rows.items(), key=lambda kv: ((kv[1]["all"] or 0), (kv[1]["some"] or 0)))
        furthest = f"furthest: {best[0]}" if best[1]["all"] or best[1]["some"] else "no row solves a rung"
        lines.append(f"- {family}: {', '.join(parts)}; {furthest}.")
    return [*lines, ""]


def markdown(ladder: Ladder, data: dict[str, Any], command: str) -> str:
    machine = data["machine"]
    lines = [
        "# The memory ladder",
        "",
        f"Command: `{command}`. Machine: {machine['cpu_model']}, {machine['cpu_count']} cores, load average at "
        f"the start {machine['load_average_at_start']}.",
        "",
        "![ladder](ladder.png)",
        "",
        f"A run solves a rung when its final deterministic evaluation ({ladder.eval_episodes} episodes, cues "
        f"balanced) answers right in at least {ladder.solved:.0%} of episodes (`info[\"is_success\"]`, never the "
        f"return); evaluations every {ladder.eval_freq} steps, full budget. A row stops climbing a family after "
        "a rung none of its seeds solved. Cells: seeds solved / seeds run (mean final success; best success "
        "per seed). 'collapsed': runs whose final success lies more than 0.05 below their best.",
        "",
    ]
    lines += _reach_lines(ladder, data)
    for family in ladder.families:
        lines += [f"## {family}", "", "| row | " + " | ".join(f"L={n}" for n in ladder.rungs) + " |",
                  "| --- |" + " --- |" * len(ladder.rungs)]  # fmt: skip
        for row in ladder.rows:
            cells = []
            for n in ladder.rungs:
                cell = data["rows"].get(row, {}).get(family, {}).get(str(n))
                if cell is None:
                    cells.append("—")
                    continue
                best = ", ".join(f"{b:.2f}" for b in cell["best_success"])
                collapsed = f", {cell['collapsed']} collapsed" if cell["collapsed"] else ""
                cells.append(f"{cell['solved']}/{cell['seeds']} ({cell['mean_final_success']:.2f}; {best}{collapsed})")
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Rows", "", "| row | algo | memory | settings |", "| --- | --- | --- | --- |"]
    for name, row in ladder.rows.items():
        r = row.settings
        memory = f"{r.cell} {r.hidden_size}" if ALGOS[r.algo].memory == "cell" else ALGOS[r.algo].label
        lines.append(f"| {name} | {r.algo} | {memory}, {r.n_envs} envs | `{json.dumps(r.hyperparams)}` |")
    return "\n".join(lines) + "\n"


def plot(ladder: Ladder, data: dict[str, Any], path: Path) -> bool:
    """Mean final success against length, one line per row and family; the memoryless bounds dotted."""
    if not data["rows"]:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(ladder.families), figsize=(5 * len(ladder.families), 4.5), squeeze=False)
    for ax, family in zip(axes[0], ladder.families, strict=True):
        for i, row in enumerate(ladder.rows):
            cells = data["rows"].get(row, {}).get(family, {})
            points = sorted((int(n), c["mean_final_success"]) for n, c in cells.items())
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", color=plt.get_cmap("tab10")(i % 10), label=row)
        bound = ENV_INFO[ladder_id(family, ladder.rungs[0])].memoryless_bound
        ax.axhline(bound, color="grey", ls=":", lw=1, label="memoryless")
        ax.axhline(ladder.solved, color="grey", ls="--", lw=1, label="solved")
        ax.set(xscale="log", xlabel="length (steps between cue and answer)", ylabel="final success (mean of seeds)",
               ylim=(-0.02, 1.02), title=family)  # fmt: skip
        ax.set_xticks(ladder.rungs, [str(n) for n in ladder.rungs])
        ax.minorticks_off()
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return True


def report(ladder: Ladder, out: Path, command: str) -> dict[str, Any]:
    data = {"command": command, "machine": machine_info(), "ladder": strict_json(dataclasses.asdict(ladder)),
            "rows": summarize(ladder, out)}  # fmt: skip
    write_json(out / "ladder.json", data)
    plot(ladder, data, out / "ladder.png")
    (out / "ladder.md").write_text(markdown(ladder, data, command))
    return data


def _file_contents(path: Path) -> str:
    """What ``--help`` says of the default ladder file: its rows, families and rungs."""
    try:
        ladder = load_ladder(path)
    except (OSError, SweepError) as e:  # the help still prints
        return f"{path}: {e}"
    rungs = ", ".join(str(n) for n in ladder.rungs)
    return (
        f"The ladder file {path.name}:\n  rows: {', '.join(ladder.rows)}\n  families: {', '.join(ladder.families)}\n"
        f"  rungs: {rungs}; {ladder.seeds} seeds a rung"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=_file_contents(DEFAULT_LADDER),
        formatter_class=argparse.RawTextHelpFormatter,
    )  # fmt: skip
    p.add_argument("--sweep", type=Path, default=DEFAULT_LADDER, help="Ladder file (default: %(default)s).")
    p.add_argument("--quick", action="store_true", help="The file's small 'quick' ladder (smoke test).")
    p.add_argument("--rows", nargs="+", help="Only these rows.")
    p.add_argument("--families", nargs="+", help="Only these task families.")
    p.add_argument("--max-rung", type=int, help="Climb no higher than this length.")
    p.add_argument("--workers", type=int, default=None, help="Runs in parallel (default: usable cores).")
    p.add_argument("--out", type=Path, default=Path("results/ladder"), help="Output folder (default: %(default)s).")
    p.add_argument("--report-only", action="store_true", help="Write the report from the records; run nothing.")
    return p.parse_args(argv)


def _restrict(ladder: Ladder, args: argparse.Namespace) -> Ladder:
    for flag, given, choices in (
        ("--rows", args.rows, list(ladder.rows)),
        ("--families", args.families, ladder.families),
    ):
        for name in given or []:
            if name not in choices:
                raise SweepError(f"{flag} {name!r}: not in the ladder file; choices: {', '.join(choices)}")
    rows = {k: v for k, v in ladder.rows.items() if args.rows is None or k in args.rows}
    families = [f for f in ladder.families if args.families is None or f in args.families]
    rungs = [n for n in ladder.rungs if args.max_rung is None or n <= args.max_rung]
    if not rungs:
        raise SweepError(f"--max-rung {args.max_rung}: below the lowest rung ({min(ladder.rungs)})")
    return dataclasses.replace(ladder, rows=rows, families=families, rungs=rungs, quick=None)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pin_threads(1)
    given = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--report-only"]
    command = shlex.join(["python", "scripts/bench_ladder.py", *given])
    try:
        ladder = load_ladder(args.sweep)
        if args.quick:
            if ladder.quick is None:
                raise SweepError(f"--quick: the ladder file {str(args.sweep)!r} has no 'quick' section")
            ladder = ladder.quick
        ladder = _restrict(ladder, args)
    except SweepError as e:
        print(f"bench_ladder.py: error: {e}", file=sys.stderr)
        return 2
    out = args.out
    if not args.report_only:
        lock = lock_folder(out)
        if lock is False:
            print(f"bench_ladder.py: error: another sweep is writing {out}", file=sys.stderr)
            return 2
        workers = args.workers or max(1, os.cpu_count() or 1)
        backend = LocalBackend(workers, 1)

        def run(tasks: list[LadderTask]) -> None:
            def on_record(record: dict[str, Any]) -> None:
                task = next(t for t in tasks if t.env == record["env"] and t.name == record["name"])
                write_json(record_path(out, task), strict_json(record))
                print(f"  {record['status']:6} {task.run_id}: success {record.get('final_success_rate')}", flush=True)

            run_all(backend, tasks, 1, on_record)

        try:
            climb(ladder, out, run)
        except KeyboardInterrupt:
            backend.close(abort=True)
            print("interrupted: finished runs are recorded; run the same command again to resume", file=sys.stderr)
            return 130
        backend.close()
    report(ladder, out, command)
    print(f"report: {out / 'ladder.md'}")
    return 0
