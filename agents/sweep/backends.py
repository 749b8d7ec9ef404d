"""Execution of the memory benchmark's training runs: one attempt of one run, and the backends that
schedule attempts (local worker processes, or Ray tasks) with the same bounded retries.

The backends only move :class:`RunTask` objects to workers and :class:`Outcome` objects back; the
record of a run is built in the worker by :func:`run_attempt` and written by the driver, so that the
records do not depend on the backend that ran them.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from agents.sweep.worker import Outcome, RunRecord, RunTask, run_attempt
from rl_lstm.tooling import pin_threads

Runner = Callable[[Any, int, int], Outcome]
"""What a worker runs for one attempt: ``runner(task, attempt, threads) -> Outcome``, never raising; a
module-level function, so that it reaches spawned processes and Ray workers by name."""


@dataclass
class _Pending:
    task: RunTask
    attempt: int = 0
    errors: list[str] = field(default_factory=list)


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


def _worker_main(conn: Connection, threads: int, runner: Runner = run_attempt) -> None:
    """Loop of a local worker process: receive (task, attempt), send back the Outcome of ``runner``; None
    stops it."""
    pin_threads(threads)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    while True:
        try:
            message = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if message is None:
            return
        task, attempt = message
        conn.send(runner(task, attempt, threads))


@dataclass
class _Slot:
    process: mp.process.BaseProcess
    conn: Connection
    job: tuple[RunTask, int] | None = None


class LocalBackend:
    """``workers`` spawned processes, each running one attempt at a time pinned to ``threads`` threads.

    Each process is watched on its own, so a process that dies takes only its own attempt with it:
    that attempt comes back as an error and the process is replaced. ``runner`` runs each attempt (the
    sweep's training run by default).
    """

    def __init__(self, workers: int, threads: int = 1, runner: Runner = run_attempt) -> None:
        self.threads = threads
        self.runner = runner
        self.context = mp.get_context("spawn")  # no fork: torch's thread pools do not survive it
        self.slots = [self._start() for _ in range(workers)]
        self.queue: list[tuple[RunTask, int]] = []

    def _start(self) -> _Slot:
        parent, child = self.context.Pipe()
        process = self.context.Process(target=_worker_main, args=(child, self.threads, self.runner), daemon=True)
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
    ``1 + retries`` attempts on either backend. ``runner`` runs each attempt, as on the local backend.
    """

    def __init__(self, workers: int, threads: int = 1, address: str | None = None,
                 runner: Runner = run_attempt) -> None:
        import ray  # only here: the local backend must not need Ray

        self.ray = ray
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        self.remote = ray.remote(num_cpus=threads, max_retries=0)(runner)
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
                record = dataclasses.replace(outcome.record, attempts=attempt + 1).to_json()
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
                on_record(RunRecord.failed(task, attempt + 1, state.errors).to_json())
        if not progressed:
            break
