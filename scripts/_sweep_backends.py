"""Execution of the memory benchmark's training runs: one attempt of one run, and the backends that
schedule attempts (local worker processes, or Ray tasks) with the same bounded retries.

The backends only move :class:`RunTask` objects to workers and :class:`Outcome` objects back; the
record of a run is built in the worker by :func:`run_attempt` and written by the driver, so that the
records do not depend on the backend that ran them.

This module stays free of torch and of the project's packages at import time: a local worker is
spawned from a fresh interpreter and a Ray worker may sit on another machine, and each of them pins
its threads before torch is loaded.
"""

from __future__ import annotations

import csv
import math
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Protocol

FAIL_ENV = "RL_LSTM_SWEEP_FAIL"
"""Testing hook: ``<substring>:<n>[:exit]`` (comma-separated for several). The first ``n`` attempts of
every run whose id (``<env>/<run name>``) contains ``substring`` raise an error, or with ``:exit`` end
their worker process abruptly, so that the tests can exercise retries and worker loss."""


@dataclass(frozen=True)
class RunTask:
    """One training run of the sweep, as sent to a worker.

    ``config`` holds the keyword arguments of ``agents.training.TrainConfig``; ``work_dir`` is where the
    run trains (a temporary folder is used where it cannot be created, e.g. on another machine).
    """

    env: str
    algo: str
    cell: str | None
    seed: int
    config: dict[str, Any]
    threshold: float
    work_dir: str
    keep_work: bool = False

    @property
    def name(self) -> str:
        """File stem of the record: ``<algo>-<cell>-s<seed>``, or ``<algo>-s<seed>`` for the baselines."""
        return f"{self.algo}-{self.cell}-s{self.seed}" if self.cell else f"{self.algo}-s{self.seed}"

    @property
    def run_id(self) -> str:
        return f"{self.env}/{self.name}"


@dataclass
class Outcome:
    """What came back from one attempt: the run's record, or the error that ended the attempt."""

    record: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class _Pending:
    task: RunTask
    attempt: int = 0
    errors: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# One attempt, in a worker


def _forced_failure(run_id: str, attempt: int) -> None:
    """The testing hook of :data:`FAIL_ENV`."""
    for item in filter(None, os.environ.get(FAIL_ENV, "").split(",")):
        parts = item.strip().split(":")
        if len(parts) not in (2, 3) or not parts[1].isdigit():
            raise ValueError(f"{FAIL_ENV}={item!r}: expected <run-id substring>:<attempts>[:exit]")
        if parts[0] in run_id and attempt < int(parts[1]):
            if len(parts) == 3 and parts[2] == "exit":
                os._exit(3)  # a worker lost mid-run: no exception, no reply
            raise RuntimeError(f"forced failure of attempt {attempt + 1} ({FAIL_ENV})")


def _pin_threads(threads: int) -> None:
    """Pin torch to ``threads`` threads, so that parallel runs do not oversubscribe the cores and a
    run's speed does not depend on its neighbours' load more than it must."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        pass  # only settable once per process, before the first parallel region


def _render_mode_fix(env_id: str) -> None:
    """Stable-Baselines3's ``make_vec_env`` first asks for ``render_mode="rgb_array"`` and falls back
    only on a TypeError; environments that reject the mode with a ValueError cannot be built by it.
    For those ids, ask for no rendering instead (nothing is rendered during training)."""
    import functools

    import gymnasium as gym
    from stable_baselines3.common.env_util import make_vec_env

    import agents.training as training

    try:
        gym.make(env_id, render_mode="rgb_array").close()
    except ValueError:
        training.make_vec_env = functools.partial(make_vec_env, env_kwargs={"render_mode": None})
    else:
        training.make_vec_env = make_vec_env


def learning_curve(progress_csv: Path) -> list[list[float]]:
    """``[[timesteps, ep_rew_mean], ...]`` from SB3's progress.csv (rows without episodes left out)."""
    curve: list[list[float]] = []
    if not progress_csv.is_file():
        return curve
    with progress_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            steps, reward = row.get("time/total_timesteps"), row.get("rollout/ep_rew_mean")
            if steps and reward and not math.isnan(float(reward)):
                curve.append([int(float(steps)), float(reward)])
    return curve


def steps_to_threshold(curve: list[list[float]], threshold: float) -> int | None:
    """First timesteps at which the training curve reaches ``threshold``; None if it never does."""
    return next((int(steps) for steps, reward in curve if reward >= threshold), None)


def _work_dir(task: RunTask) -> Path:
    path = Path(task.work_dir)
    try:
        if path.exists():
            shutil.rmtree(path)  # a previous attempt's leftovers would mix into progress.csv
        path.mkdir(parents=True)
    except OSError:
        path = Path(tempfile.mkdtemp(prefix=f"{task.algo}-s{task.seed}-"))
    return path


def run_attempt(task: RunTask, attempt: int, threads: int = 1) -> Outcome:
    """Train and evaluate one run; never raises (the error's traceback comes back instead)."""
    try:
        _pin_threads(threads)
        _forced_failure(task.run_id, attempt)
        from agents.training import TrainConfig, import_env_packages, train

        config = TrainConfig(**{**task.config, "threads": threads})
        import_env_packages(config.env_packages)
        _render_mode_fix(config.env)
        work = _work_dir(task)
        started = time.perf_counter()
        evaluation = train(config, work, log=lambda message: None)
        elapsed = time.perf_counter() - started
        curve = learning_curve(work / "progress.csv")
        record = {
            "env": task.env,
            "algo": task.algo,
            "cell": task.cell,
            "seed": task.seed,
            "name": task.name,
            "status": "ok",
            "error": None,
            "config": task.config,
            "algo_kwargs": config.algo_kwargs(),
            "final_return_mean": evaluation["mean_return"],
            "final_return_std": evaluation["std_return"],
            "eval": evaluation,
            "threshold": task.threshold,
            "steps_to_threshold": steps_to_threshold(curve, task.threshold),
            "curve": curve,
            "wall_time_s": elapsed,
            "env_steps_per_s": evaluation.get("env_steps_per_s"),
        }
        if not task.keep_work:
            shutil.rmtree(work, ignore_errors=True)
        return Outcome(record=record)
    except Exception:  # noqa: BLE001 - any error of a run is the run's outcome, not the sweep's
        return Outcome(error=traceback.format_exc(limit=6).strip())


# ----------------------------------------------------------------------------------------------
# Backends


class Backend(Protocol):
    """Runs attempts somewhere; :meth:`results` yields each finished attempt once."""

    def submit(self, task: RunTask, attempt: int) -> None: ...

    def results(self) -> Iterator[tuple[RunTask, int, Outcome]]: ...

    def close(self, abort: bool = False) -> None: ...


def _exit_with_parent(parent: int) -> None:
    """End this worker when the sweep that started it is gone (killed without a chance to stop its workers):
    an orphan would go on training a run that nobody will record."""
    while os.getppid() == parent:
        time.sleep(2)
    os._exit(1)


def _worker_main(conn: Connection, threads: int) -> None:
    """Loop of a local worker process: receive (task, attempt), send back the Outcome; None stops it."""
    _pin_threads(threads)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    while True:
        try:
            message = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if message is None:
            return
        task, attempt = message
        conn.send(run_attempt(task, attempt, threads))


@dataclass
class _Slot:
    process: mp.process.BaseProcess
    conn: Connection
    job: tuple[RunTask, int] | None = None


class LocalBackend:
    """``workers`` spawned processes, each running one attempt at a time pinned to ``threads`` threads.

    Each process is watched on its own, so a process that dies takes only its own attempt with it:
    that attempt comes back as an error and the process is replaced.
    """

    def __init__(self, workers: int, threads: int = 1) -> None:
        self.threads = threads
        self.context = mp.get_context("spawn")  # no fork: torch's thread pools do not survive it
        self.slots = [self._start() for _ in range(workers)]
        self.queue: list[tuple[RunTask, int]] = []

    def _start(self) -> _Slot:
        parent, child = self.context.Pipe()
        process = self.context.Process(target=_worker_main, args=(child, self.threads), daemon=True)
        process.start()
        child.close()
        return _Slot(process, parent)

    def submit(self, task: RunTask, attempt: int) -> None:
        self.queue.append((task, attempt))

    def _dispatch(self) -> None:
        for slot in self.slots:
            if slot.job is None and self.queue:
                slot.job = self.queue.pop(0)
                slot.conn.send(slot.job)

    def results(self) -> Iterator[tuple[RunTask, int, Outcome]]:
        while True:
            self._dispatch()
            busy = [slot for slot in self.slots if slot.job is not None]
            if not busy:
                return
            ready = wait([s.conn for s in busy] + [s.process.sentinel for s in busy])
            for i, slot in enumerate(self.slots):
                if slot.job is None or (slot.conn not in ready and slot.process.sentinel not in ready):
                    continue
                task, attempt = slot.job
                try:
                    outcome = slot.conn.recv()
                except (EOFError, OSError):
                    slot.process.join(timeout=5)
                    outcome = Outcome(error=f"worker process died (exit code {slot.process.exitcode})")
                    slot.conn.close()
                    self.slots[i] = slot = self._start()
                slot.job = None
                yield task, attempt, outcome

    def close(self, abort: bool = False) -> None:
        """Stop the workers: after their current attempt, or at once when ``abort``."""
        for slot in self.slots:
            try:
                slot.conn.send(None)
            except OSError:
                pass
        for slot in self.slots:
            slot.process.join(timeout=0 if abort else 10)
            if slot.process.is_alive():
                slot.process.terminate()
                slot.process.join()


class RayBackend:
    """Each attempt is a Ray task declaring ``num_cpus=threads``, on the cluster at ``address`` or on a
    local instance of ``workers`` CPUs.

    Ray's own task retries are off (``max_retries=0``): a task whose worker dies comes back as an
    error and goes through the same retry loop as a run that raised, so that every run gets exactly
    ``1 + retries`` attempts on either backend.
    """

    def __init__(self, workers: int, threads: int = 1, address: str | None = None) -> None:
        import ray  # only here: the local backend must not need Ray

        self.ray = ray
        # Functions of this module travel by value, so cluster nodes need the project installed but not
        # this scripts folder on their path.
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        self.remote = ray.remote(num_cpus=threads, max_retries=0)(run_attempt)
        self.threads = threads
        self.in_flight: dict[Any, tuple[RunTask, int]] = {}

    def submit(self, task: RunTask, attempt: int) -> None:
        self.in_flight[self.remote.remote(task, attempt, self.threads)] = (task, attempt)

    def results(self) -> Iterator[tuple[RunTask, int, Outcome]]:
        while self.in_flight:
            done, _ = self.ray.wait(list(self.in_flight), num_returns=1)
            for ref in done:
                task, attempt = self.in_flight.pop(ref)
                try:
                    outcome = self.ray.get(ref)
                except Exception as e:  # noqa: BLE001 - worker or node lost: the attempt failed
                    outcome = Outcome(error=f"{type(e).__name__}: {e}".strip()[:4000])
                yield task, attempt, outcome

    def close(self, abort: bool = False) -> None:
        """Cancel what is still running (only left over on an abort) and leave the cluster."""
        for ref in self.in_flight:
            self.ray.cancel(ref, force=True)
        self.ray.shutdown()


def run_all(
    backend: Backend,
    tasks: list[RunTask],
    retries: int,
    on_record: Callable[[dict[str, Any]], None],
    log: Callable[[str], None] = print,
) -> None:
    """Run every task, retrying a failed attempt up to ``retries`` times; hand each finished run's record
    (status "ok", or "failed" with the errors of its attempts) to ``on_record`` as soon as it is known."""
    pending = {task.run_id: _Pending(task) for task in tasks}
    for task in tasks:
        backend.submit(task, 0)
    # Resubmissions enter the same stream: the generators read the backend's queue on every step.
    while pending:
        progressed = False
        for task, attempt, outcome in backend.results():
            progressed = True
            state = pending[task.run_id]
            if outcome.record is not None:
                record = {**outcome.record, "attempts": attempt + 1}
                del pending[task.run_id]
                on_record(record)
                continue
            state.errors.append(outcome.error or "unknown error")
            last_line = (outcome.error or "").strip().splitlines()[-1:] or ["unknown error"]
            if attempt < retries:
                log(f"retry   {task.run_id} (attempt {attempt + 1} failed: {last_line[0]})")
                backend.submit(task, attempt + 1)
            else:
                del pending[task.run_id]
                on_record(failed_record(task, attempt + 1, state.errors))
        if not progressed:
            break


def failed_record(task: RunTask, attempts: int, errors: list[str]) -> dict[str, Any]:
    """The record of a run whose every attempt failed."""
    return {
        "env": task.env,
        "algo": task.algo,
        "cell": task.cell,
        "seed": task.seed,
        "name": task.name,
        "status": "failed",
        "error": errors[-1] if errors else "unknown error",
        "errors": errors,
        "config": task.config,
        "final_return_mean": None,
        "final_return_std": None,
        "threshold": task.threshold,
        "steps_to_threshold": None,
        "curve": [],
        "wall_time_s": None,
        "env_steps_per_s": None,
        "attempts": attempts,
    }
