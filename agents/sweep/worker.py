"""One attempt of one training run of the sweep, as a worker runs it.

A local worker is spawned from a fresh interpreter and a Ray worker may sit on another machine; each
pins its threads before the run does any torch work.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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
class RunRecord:
    """One run of the sweep as its record file holds it (``runs/<env>/<name>.json``): made by the worker
    for a finished run (:meth:`finished`) or by the backend for a run whose every attempt failed
    (:meth:`failed`); the report and resume read the JSON."""

    env: str
    algo: str
    cell: str | None
    seed: int
    name: str
    status: str
    """``"ok"`` or ``"failed"``."""
    config: dict[str, Any]
    threshold: float
    error: str | None = None
    errors: list[str] = field(default_factory=list)
    algo_kwargs: dict[str, Any] | None = None
    final_return_mean: float | None = None
    final_return_std: float | None = None
    final_success_rate: float | None = None
    """The memory ladder's tasks report ``info["is_success"]``: None elsewhere (as the two below)."""
    best_success_rate: float | None = None
    success_evaluations: list[Any] | None = None
    eval: dict[str, Any] | None = None
    steps_to_threshold: int | None = None
    curve: list[Any] = field(default_factory=list)
    wall_time_s: float | None = None
    env_steps_per_s: float | None = None
    attempts: int | None = None

    @classmethod
    def of(cls, task: RunTask, status: str, **fields: Any) -> RunRecord:
        return cls(
            env=task.env, algo=task.algo, cell=task.cell, seed=task.seed, name=task.name, status=status,
            config=task.config, threshold=task.threshold, **fields,
        )  # fmt: skip

    @classmethod
    def failed(cls, task: RunTask, attempts: int, errors: list[str]) -> RunRecord:
        """The record of a run whose every attempt failed."""
        return cls.of(task, "failed", error=errors[-1] if errors else "unknown error", errors=errors, attempts=attempts)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Outcome:
    """What came back from one attempt: the run's record, or the error that ended the attempt."""

    record: Any = None
    """A sweep run's :class:`RunRecord`; what another runner returns (a tuning trial's summary)."""
    error: str | None = None


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
        from agents.training import TrainConfig, import_env_packages, resolve, train
        from rl_lstm.tooling import pin_threads

        pin_threads(threads)
        _forced_failure(task.run_id, attempt)
        config = TrainConfig(**{**task.config, "threads": threads})
        import_env_packages(config.env_packages)
        run = resolve(config)
        work = _work_dir(task)
        started = time.perf_counter()
        evaluation = train(run, work, log=lambda message: None)
        elapsed = time.perf_counter() - started
        curve = learning_curve(work / "progress.csv")
        record = RunRecord.of(
            task,
            "ok",
            algo_kwargs=run.algo_kwargs,
            final_return_mean=evaluation["mean_return"],
            final_return_std=evaluation["std_return"],
            final_success_rate=evaluation.get("success_rate"),
            best_success_rate=evaluation.get("best_success_rate"),
            success_evaluations=evaluation.get("success_evaluations"),
            eval=evaluation,
            steps_to_threshold=steps_to_threshold(curve, task.threshold),
            curve=curve,
            wall_time_s=elapsed,
            env_steps_per_s=evaluation.get("env_steps_per_s"),
        )
        if not task.keep_work:
            shutil.rmtree(work, ignore_errors=True)
        return Outcome(record=record)
    except Exception:  # noqa: BLE001 - any error of a run is the run's outcome, not the sweep's
        return Outcome(error=traceback.format_exc(limit=6).strip())
