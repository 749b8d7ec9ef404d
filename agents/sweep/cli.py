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
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from agents.sweep.backends import LocalBackend, RayBackend, run_all
from agents.sweep.records import LOCK_NAME, is_done, lock_folder, read_record, record_path, strict_json
from agents.sweep.report import report
from agents.sweep.spec import DEFAULT_SWEEP, SweepError, load_sweep, order, plan
from agents.sweep.worker import FAIL_ENV
from rl_lstm.tooling import NON_NEGATIVE, POSITIVE, pin_threads, write_json


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sweep", type=Path, default=DEFAULT_SWEEP, help="Sweep file (default: %(default)s).")
    p.add_argument("--quick", action="store_true", help="The sweep file's small 'quick' sweep (smoke test, CI).")
    p.add_argument("--envs", nargs="+", help="Only these environments of the sweep.")
    p.add_argument("--cells", nargs="+", help="Only these cells (registry names).")
    p.add_argument("--algos", nargs="+", help="Only these algorithms, baselines included (e.g. ppo ppo-mlp).")
    p.add_argument("--seeds", type=POSITIVE, help="Seeds 0..N-1 (default: the sweep's; per-env caps still apply).")
    p.add_argument(
        "--first-seed", type=NON_NEGATIVE, default=0, help="Leave out the seeds below this one (to split a sweep)."
    )
    p.add_argument("--workers", type=POSITIVE, default=None, help="Runs in parallel (default: usable cores).")
    p.add_argument("--threads", type=POSITIVE, default=1, help="Torch threads (Ray CPUs) per run (default: 1).")
    p.add_argument("--retries", type=NON_NEGATIVE, default=2, help="Retries of a failed run (default: 2).")
    p.add_argument("--out", type=Path, default=Path("results/memory"), help="Output folder (default: %(default)s).")
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="local processes (default) or Ray.")
    p.add_argument("--address", help="Ray cluster to join (auto, HOST:PORT or ray://HOST:10001); default: a local one.")
    p.add_argument("--keep-work", action="store_true", help="Keep each run's training folder under OUT/work.")
    p.add_argument("--report-only", action="store_true", help="Write the report from the records; run nothing.")
    args = p.parse_args(argv)
    if args.address and args.backend != "ray":
        p.error("--address: only with --backend ray")
    return args


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _check_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        raise SweepError(
            "--backend ray: Ray is not installed; install the project's ray extra: pip install -e '.[ray]'"
        ) from None


def remove_empty_folders(root: Path) -> None:
    """``root`` and the folders under it that the removed training folders left empty."""
    if not root.is_dir():
        return
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [root]:
        if not any(folder.iterdir()):
            folder.rmdir()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pin_threads(args.threads)  # the runs' thread count, as the report's machine description says
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
    lock = None if args.report_only else lock_folder(out)
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
            write_json(record_path(out, task), strict_json(record))
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
    if not args.keep_work:
        remove_empty_folders(out / "work")
    report(out, tasks, command, smoke=args.quick)
    print(f"report: {out / 'memory.md'}")
    if any(read_record(record_path(out, t)) is None for t in tasks) and not args.report_only:
        status = 1
    return status
