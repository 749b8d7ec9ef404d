"""Memory benchmark: every cell of the registry as the memory of recurrent PPO, beside a memoryless PPO
and sb3-contrib's stock RecurrentPPO, on the partially observable tasks of ``envs``.

    python scripts/bench_memory.py --workers 2                # the sweep of scripts/memory_sweep.yaml
    python scripts/bench_memory.py --quick --out /tmp/memory  # a minute's smoke run (CI)
    python scripts/bench_memory.py --envs TMaze-v0 --cells lstm gal --seeds 1
    python scripts/bench_memory.py --backend ray --address auto   # on a running Ray cluster

The sweep (budgets, hyperparameters, cells, algorithms, seeds) is data: ``scripts/memory_sweep.yaml``
(``--sweep FILE`` for another). Each finished run is written at once to
``OUT/runs/<env>/<algo>-<cell>-s<seed>.json`` (``<algo>-s<seed>.json`` for the baselines, which have no
cell); a re-run skips the runs whose record is there with status ok and the same configuration, so an
interrupted sweep resumes where it stopped. Then the report is written from the records:
``OUT/memory.md`` (a table per environment), ``OUT/memory.json`` and ``OUT/memory_<env>.png`` (learning
curves). A run that fails is retried ``--retries`` times, then recorded as failed; the sweep goes on.

Exit status: 0 when every run is ok, 1 when some run failed (its record and the report are still
written), 2 on bad arguments or a bad sweep file, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import shlex
import signal
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from _sweep_backends import (  # noqa: E402
    FAIL_ENV,
    LocalBackend,
    RayBackend,
    RunTask,
    run_all,
)

DEFAULT_SWEEP = Path(__file__).with_name("memory_sweep.yaml")
RECURRENT_ALGOS = ("ppo", "a2c")  # the algorithms whose memory is a registry cell
BASELINE_LABELS = {"ppo-mlp": "no memory (MLP)", "sb3-ppo-lstm": "sb3-contrib nn.LSTM"}
# Rough cost of a step relative to ppo with the lstm cell. It only orders the queue, longest runs
# first, so that two workers finish close together; a wrong guess costs time, never results.
RELATIVE_COST = {"ppo-mlp": 0.3, "sb3-ppo-lstm": 3.0, "slow": 1.6, "ln": 1.4}


class SweepError(ValueError):
    """A bad argument or sweep file; the message names the value and the choices."""


# ----------------------------------------------------------------------------------------------
# The sweep as data


def _check_keys(where: str, data: dict[str, Any], cls: type) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SweepError(f"{where}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(sorted(names))}")


@dataclass
class EnvSpec:
    """Budget and hyperparameters of one environment."""

    total_timesteps: int
    """Environment steps per run."""
    n_envs: int = 8
    eval_episodes: int = 20
    hidden_size: int = 64
    dropout: float = 0.1
    """Dropout (zoneout) probability of the cells that have one; the others get 0."""
    normalize: bool = False
    """Normalise observations (VecNormalize)."""
    hyperparams: dict[str, Any] = field(default_factory=dict)
    """Algorithm arguments for every algorithm that takes them (e.g. ppo-mlp has no seq_len)."""
    algo_hyperparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-algorithm arguments, applied after ``hyperparams`` (e.g. ``ppo: {seq_len: 16}``)."""
    max_seeds: dict[str, int] = field(default_factory=dict)
    """Per-algorithm cap on the number of seeds (for the slow stock baseline)."""

    @classmethod
    def from_dict(cls, where: str, data: Any) -> EnvSpec:
        if not isinstance(data, dict) or "total_timesteps" not in data:
            raise SweepError(f"{where}: expected a mapping with at least total_timesteps")
        _check_keys(where, data, cls)
        return cls(**data)


@dataclass
class Sweep:
    """Which runs to make: the cross product of cells x algos x seeds (plus baselines x seeds) per env."""

    envs: dict[str, EnvSpec]
    cells: list[str] | None = None
    """Registry names; None (``all`` in the file) for every registry entry."""
    algos: list[str] = field(default_factory=lambda: ["ppo"])
    baselines: list[str] = field(default_factory=lambda: ["ppo-mlp", "sb3-ppo-lstm"])
    seeds: int = 3
    quick: Sweep | None = None
    """The small sweep of ``--quick``, same schema."""

    @classmethod
    def from_dict(cls, where: str, data: Any) -> Sweep:
        if not isinstance(data, dict) or not isinstance(data.get("envs"), dict) or not data["envs"]:
            raise SweepError(f"{where}: expected a mapping with a non-empty mapping 'envs'")
        _check_keys(where, data, cls)
        data = dict(data)
        data["envs"] = {env: EnvSpec.from_dict(f"{where}: envs.{env}", spec) for env, spec in data["envs"].items()}
        if data.get("cells") == "all":
            data["cells"] = None
        if data.get("quick") is not None:
            data["quick"] = cls.from_dict(f"{where}: quick", data["quick"])
        return cls(**data)


def load_sweep(path: Path) -> Sweep:
    import yaml

    if not path.is_file():
        raise SweepError(f"--sweep {str(path)!r}: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SweepError(f"--sweep {str(path)!r}: not valid YAML ({e})") from None
    return Sweep.from_dict(str(path), data)


def _names(values: list[str] | None) -> list[str] | None:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``: lists may be given space- or comma-separated."""
    if values is None:
        return None
    return [name for value in values for name in value.split(",") if name]


def _choose(flag: str, given: list[str] | None, default: list[str], choices: list[str]) -> list[str]:
    if given is None:
        return default
    for name in given:
        if name not in choices:
            raise SweepError(f"{flag} {name!r}: unknown; choices: {', '.join(choices)}")
    return list(dict.fromkeys(given))


def _algo_hyperparams(algo: str, spec: EnvSpec) -> dict[str, Any]:
    """The common hyperparameters the algorithm takes, then its own."""
    import inspect

    from agents.training import ALGOS

    accepted = set(inspect.signature(ALGOS[algo].__init__).parameters)
    common = {k: v for k, v in spec.hyperparams.items() if k in accepted}
    return {**common, **spec.algo_hyperparams.get(algo, {})}


def plan(sweep: Sweep, args: argparse.Namespace, out: Path) -> list[RunTask]:
    """The runs of the sweep, restricted by the flags, as tasks; validates every configuration."""
    import inspect

    from agents.training import ALGOS, ConfigError, TrainConfig, check_config
    from envs import ENV_INFO
    from rl_lstm import CELLS, make_cell

    envs = _choose("--envs", _names(args.envs), list(sweep.envs), list(sweep.envs))
    cells = _choose("--cells", _names(args.cells), sweep.cells or list(CELLS), list(CELLS))
    algos = _choose("--algos", _names(args.algos), [*sweep.algos, *sweep.baselines], list(ALGOS))
    seeds = args.seeds if args.seeds is not None else sweep.seeds
    if args.first_seed >= seeds:
        raise SweepError(f"--first-seed {args.first_seed}: expected less than the number of seeds ({seeds})")
    for key, names, choices in (
        ("cells", sweep.cells or [], CELLS),
        ("algos", sweep.algos, RECURRENT_ALGOS),
        ("baselines", sweep.baselines, [a for a in ALGOS if a not in RECURRENT_ALGOS]),
    ):
        for name in names:
            if name not in choices:
                raise SweepError(f"sweep file: {key} {name!r}: unknown; choices: {', '.join(choices)}")
    accepted_anywhere = set().union(*(inspect.signature(c.__init__).parameters for c in ALGOS.values()))
    tasks: list[RunTask] = []
    for env in envs:
        spec = sweep.envs[env]
        if env not in ENV_INFO:
            raise SweepError(f"sweep env {env!r}: not one of envs.ENV_INFO ({', '.join(ENV_INFO)})")
        unknown = sorted(set(spec.hyperparams) - accepted_anywhere)
        if unknown:
            raise SweepError(f"envs.{env}.hyperparams {', '.join(unknown)}: an argument of no algorithm")
        for algo in algos:
            n_seeds = min(seeds, spec.max_seeds.get(algo, seeds))
            for cell in cells if algo in RECURRENT_ALGOS else [None]:
                has_dropout = cell is not None and make_cell(cell, 1, 1).dropout_method != "pytorch"
                for seed in range(args.first_seed, n_seeds):
                    config = TrainConfig(
                        env=env, algo=algo, cell=cell or TrainConfig.cell, dropout=spec.dropout if has_dropout else 0.0,
                        hidden_size=spec.hidden_size, n_envs=spec.n_envs, total_timesteps=spec.total_timesteps,
                        seed=seed, eval_episodes=spec.eval_episodes, hyperparams=_algo_hyperparams(algo, spec),
                        normalize=spec.normalize,
                        checkpoint_freq=spec.total_timesteps, tensorboard=False,
                    )  # fmt: skip
                    try:
                        check_config(config)
                    except ConfigError as e:
                        raise SweepError(f"envs.{env} ({algo}): {e}") from None
                    as_dict = {k: v for k, v in dataclasses.asdict(config).items() if k != "threads"}
                    name = f"{algo}-{cell}-s{seed}" if cell else f"{algo}-s{seed}"
                    tasks.append(
                        RunTask(
                            env=env, algo=algo, cell=cell, seed=seed, config=as_dict,
                            threshold=ENV_INFO[env].threshold, work_dir=str((out / "work" / env / name).resolve()),
                            keep_work=args.keep_work,
                        )
                    )  # fmt: skip
    return tasks


def _cost(task: RunTask) -> float:
    key = task.algo if task.cell is None else ("ln" if task.cell.startswith("ln") else task.cell)
    return task.config["total_timesteps"] * RELATIVE_COST.get(key, 1.0)


def order(tasks: list[RunTask]) -> list[RunTask]:
    """The queue: first seed 0 of every row, then the other seeds environment by environment, the cheapest
    environment first; the longest runs first within each group, so that the workers finish close together.

    A sweep cut short (by time or by an interruption) then has every row, and as many environments as
    possible with all their seeds, rather than many rows without any run.
    """
    env_cost: dict[str, float] = {}
    for task in tasks:
        env_cost[task.env] = env_cost.get(task.env, 0.0) + _cost(task)
    return sorted(tasks, key=lambda t: (t.seed > 0, env_cost[t.env] if t.seed else 0.0, t.env, t.seed, -_cost(t)))


# ----------------------------------------------------------------------------------------------
# Records


def record_path(out: Path, task: RunTask) -> Path:
    return out / "runs" / task.env / f"{task.name}.json"


def write_json_atomically(path: Path, data: Any) -> None:
    """Write beside the target, then rename: a reader (or a resumed sweep) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False, default=str) + "\n")
    os.replace(tmp, path)


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # missing or unreadable: the run is made again


def is_done(out: Path, task: RunTask) -> bool:
    """A run is done when its record is ok and was made with the configuration planned now. A field that
    TrainConfig gained after the record was written counts as equal where it has its default value."""
    record = read_record(record_path(out, task))
    if record is None or record.get("status") != "ok" or not isinstance(record.get("config"), dict):
        return False
    planned = _jsonable(task.config)
    defaults = _config_defaults()
    made = {k: record["config"].get(k, defaults.get(k)) for k in planned}
    return made == planned and set(record["config"]) <= set(planned)


def _config_defaults() -> dict[str, Any]:
    from agents.training import TrainConfig

    return _jsonable({k: v for k, v in dataclasses.asdict(TrainConfig()).items() if k != "threads"})


def _jsonable(data: Any) -> Any:
    return json.loads(json.dumps(data, default=str))


# ----------------------------------------------------------------------------------------------
# Report


def machine_info() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": cpu,
        "cores": cores,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
    }


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


def markdown(data: dict[str, Any], header: dict[str, Any]) -> str:
    machine = header["machine"]
    lines = [
        "# Memory benchmark",
        "",
        f"Command: `{header['command']}`  ",
        f"Machine: {machine['cpu_model']}, {machine['cores']} cores, torch {machine['torch_version']}, "
        f"Python {machine['python_version']}  ",
        f"Report written: {header['date']}",
        "",
        "Final return: the deterministic evaluation after training (mean over its episodes), then mean ± std "
        "over seeds. Normalised: 0 at the memoryless bound, 1 at the maximum return. Solved: seeds whose final "
        "return reaches the threshold. Steps to threshold: median over seeds of the first step at which the "
        "training curve (`rollout/ep_rew_mean`, stochastic policy, last 100 episodes) reaches the threshold; "
        "— when the median seed never did. Env-steps/s: median over seeds, training only.",
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
            memory = row["cell"] or BASELINE_LABELS.get(row["algo"], "—")
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
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def _strict_json(data: Any) -> Any:
    """NaN and infinities as null: memory.json is strict JSON."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: _strict_json(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_strict_json(v) for v in data]
    return data


def report(out: Path, tasks: list[RunTask], command: str) -> dict[str, Any]:
    data = aggregate(out, tasks)
    header = {
        "command": command,
        "machine": machine_info(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    write_json_atomically(out / "memory.json", _strict_json({**header, "envs": data}))
    tmp = out / ".memory.md.tmp"
    tmp.write_text(markdown(data, header))
    os.replace(tmp, out / "memory.md")
    for env, block in data.items():
        plot(env, block, out / f"memory_{env}.png")
    return data


# ----------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sweep", type=Path, default=DEFAULT_SWEEP, help="Sweep file (default: %(default)s).")
    p.add_argument("--quick", action="store_true", help="The sweep file's small 'quick' sweep (smoke test, CI).")
    p.add_argument("--envs", nargs="+", help="Only these environments of the sweep.")
    p.add_argument("--cells", nargs="+", help="Only these cells (registry names).")
    p.add_argument("--algos", nargs="+", help="Only these algorithms, baselines included (e.g. ppo ppo-mlp).")
    p.add_argument("--seeds", type=_positive, help="Seeds 0..N-1 (default: the sweep's; per-env caps still apply).")
    p.add_argument(
        "--first-seed", type=_non_negative, default=0, help="Leave out the seeds below this one (to split a sweep)."
    )
    p.add_argument("--workers", type=_positive, default=None, help="Runs in parallel (default: usable cores).")
    p.add_argument("--threads", type=_positive, default=1, help="Torch threads (Ray CPUs) per run (default: 1).")
    p.add_argument("--retries", type=_non_negative, default=2, help="Retries of a failed run (default: 2).")
    p.add_argument("--out", type=Path, default=Path("results/memory"), help="Output folder (default: %(default)s).")
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="local processes (default) or Ray.")
    p.add_argument("--address", help="Ray cluster to join (auto, HOST:PORT or ray://HOST:10001); default: a local one.")
    p.add_argument("--keep-work", action="store_true", help="Keep each run's training folder under OUT/work.")
    p.add_argument("--report-only", action="store_true", help="Write the report from the records; run nothing.")
    args = p.parse_args(argv)
    if args.address and args.backend != "ray":
        p.error("--address: only with --backend ray")
    return args


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a positive integer")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a non-negative integer")
    return value


LOCK_NAME = ".sweep.lock"


def _lock(out: Path) -> Any:
    """Hold an exclusive lock on OUT for the life of this process, or return False if another sweep holds it.

    Two sweeps on one folder would train the same run in the same work folder, each wiping the other's
    progress.csv, and race on the records."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    handle = (out / LOCK_NAME).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return False
    return handle  # kept open (and so locked) until the process ends


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _check_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        raise SweepError(
            "--backend ray: Ray is not installed; install the project's ray extra: pip install -e '.[ray]'"
        ) from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The command that makes these records: --report-only only rewrites their report.
    given = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--report-only"]
    command = shlex.join(["python", "scripts/bench_memory.py", *given])
    try:
        if args.backend == "ray":
            _check_ray()
        sweep = load_sweep(args.sweep)
        if args.quick:
            if sweep.quick is None:
                raise SweepError(f"--quick: the sweep file {str(args.sweep)!r} has no 'quick' section")
            sweep = sweep.quick
        out = args.out
        tasks = plan(sweep, args, out)
    except SweepError as e:
        print(f"bench_memory.py: error: {e}", file=sys.stderr)
        return 2
    if os.environ.get(FAIL_ENV):
        print(f"{FAIL_ENV}={os.environ[FAIL_ENV]}: forcing failures (testing hook)")
    todo = [t for t in tasks if not is_done(out, t)]
    for task in tasks:
        if task not in todo:
            print(f"skipped {task.run_id} (record ok)")
    status = 0
    lock = None if args.report_only else _lock(out)
    if lock is False:
        print(f"bench_memory.py: error: another sweep is writing {out} (lock {out / LOCK_NAME})", file=sys.stderr)
        return 2
    if todo and not args.report_only:
        todo = order(todo)
        workers = args.workers or max(1, (os.cpu_count() or 1) // args.threads)
        print(f"{len(todo)} run(s) to make, {len(tasks) - len(todo)} done; {args.backend} backend, {workers} workers")
        done = 0

        def on_record(record: dict[str, Any]) -> None:
            nonlocal done, status
            done += 1
            task = next(t for t in todo if t.env == record["env"] and t.name == record["name"])
            write_json_atomically(record_path(out, task), _strict_json(record))
            if record["status"] == "ok":
                print(
                    f"[{done}/{len(todo)}] ok      {task.run_id}: return {record['final_return_mean']:.3f}, "
                    f"{record['wall_time_s']:.0f} s",
                    flush=True,
                )
            else:
                status = 1
                last = (record["error"] or "").strip().splitlines()[-1:] or ["?"]
                print(f"[{done}/{len(todo)}] FAILED  {task.run_id} after {record['attempts']} attempt(s): {last[0]}")

        backend = (
            RayBackend(workers, args.threads, args.address)
            if args.backend == "ray"
            else LocalBackend(workers, args.threads)
        )
        # SIGTERM stops the sweep like Ctrl-C: the workers go, the records written so far stay.
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            run_all(backend, todo, args.retries, on_record, log=lambda m: print(m, flush=True))
        except KeyboardInterrupt:
            print("interrupted: finished runs are recorded; run the same command again to resume", file=sys.stderr)
            backend.close(abort=True)
            return 130
        backend.close()
    report(out, tasks, command)
    print(f"report: {out / 'memory.md'}")
    if any(read_record(record_path(out, t)) is None for t in tasks) and not args.report_only:
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
