"""The study: its storage, sampler and pruner, and the loop that asks Optuna for trials, runs them as
tasks on a sweep backend (local processes or Ray) and tells Optuna how each ended."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from agents.sweep.backends import Backend
from agents.sweep.worker import Outcome
from agents.tuning.space import SearchSpace, Settings
from agents.tuning.storage import open_storage
from agents.tuning.trial import TrialTask

SAMPLERS = {
    "tpe": "Optuna's TPESampler (tree-structured Parzen estimator), random for the first --startup-trials",
    "random": "Optuna's RandomSampler",
}
PRUNERS = {
    "median": "MedianPruner: stop a trial whose evaluation is below the median of earlier trials at that step",
    "halving": "SuccessiveHalvingPruner (asynchronous successive halving)",
    "none": "no pruning: every trial runs its whole budget",
}


def make_sampler(name: str, seed: int | None, startup_trials: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(n_startup_trials=startup_trials, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"sampler={name!r}: expected one of {', '.join(SAMPLERS)}")


@dataclass(frozen=True)
class PrunerSpec:
    """A pruner as a task carries it: Optuna does not store the pruner with the study, so the process
    that runs a trial builds the same one from this."""

    name: str = "median"
    startup_trials: int = 5
    """Trials run to their end before any is pruned (median)."""
    warmup_steps: int = 0
    """Steps (of the trial's report axis) before a trial may be pruned (median)."""
    min_resource: int = 1
    """Steps before the first halving (halving)."""

    def build(self) -> optuna.pruners.BasePruner:
        if self.name == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=self.startup_trials, n_warmup_steps=self.warmup_steps)
        if self.name == "halving":
            return optuna.pruners.SuccessiveHalvingPruner(min_resource=self.min_resource)
        if self.name == "none":
            return optuna.pruners.NopPruner()
        raise ValueError(f"pruner={self.name!r}: expected one of {', '.join(PRUNERS)}")


def open_study(name: str, storage: str, sampler: optuna.samplers.BaseSampler, pruner: PrunerSpec) -> optuna.Study:
    """The study ``name`` in ``storage``, created if it is not there (maximising the mean return)."""
    return optuna.create_study(
        study_name=name, storage=open_storage(storage), sampler=sampler, pruner=pruner.build(),
        direction="maximize", load_if_exists=True,
    )  # fmt: skip


def driver_id() -> str:
    """``host:pid`` of this process, recorded on each trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_orphans(study: optuna.Study) -> list[int]:
    """Record as failed the trials left running by a study process of this machine that has ended (killed
    before it could record them); returns their numbers. Trials of live processes, here or elsewhere,
    are left alone."""
    host = socket.gethostname()
    orphans = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = str(t.user_attrs.get("driver", ""))
        name, _, pid = owner.rpartition(":")
        if name != host or not pid.isdigit() or _alive(int(pid)):
            continue
        trial = optuna.Trial(study, t._trial_id)  # noqa: SLF001 - Optuna has no public name for the id
        trial.set_user_attr("error", f"its study process ({owner}) ended")
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        orphans.append(t.number)
    return orphans


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tell(study: optuna.Study, trial: optuna.Trial, outcome: Outcome) -> optuna.trial.TrialState:
    """Record how a trial ended: its value, pruned (Optuna keeps its last report), or failed with the error."""
    record = outcome.record
    if record is None:
        trial.set_user_attr("error", (outcome.error or "unknown error")[-4000:])
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return optuna.trial.TrialState.FAIL
    trial.set_user_attr("seeds", record["seeds"])
    if record["state"] == "pruned":
        trial.set_user_attr("pruned_at", record["pruned_at"])
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return optuna.trial.TrialState.PRUNED
    study.tell(trial, record["value"])
    return optuna.trial.TrialState.COMPLETE


def run_trials(
    study: optuna.Study,
    space: SearchSpace,
    cells: list[str],
    make_task: Callable[[optuna.Trial, Settings], TrialTask],
    backend: Backend,
    n_trials: int,
    n_jobs: int,
    log: Callable[[str], None] = print,
) -> None:
    """Run ``n_trials`` new trials, ``n_jobs`` at a time: each drawn here, trained as a task on
    ``backend`` (which reports its evaluations to the storage), and told here when it ends. Each ended
    trial is in the storage at once, so an interrupted study keeps every finished trial; on an
    interruption the trials still running are recorded as failed."""
    running: dict[int, optuna.Trial] = {}
    asked = 0

    def ask() -> None:
        nonlocal asked
        trial = study.ask()
        trial.set_user_attr("driver", driver_id())
        settings = space.sample(trial, cells)
        backend.submit(make_task(trial, settings), 0)
        running[trial.number] = trial
        asked += 1
        log(f"trial {trial.number} started: {describe_params(trial.params)}")

    try:
        while asked < n_trials and len(running) < n_jobs:
            ask()
        while running:
            for task, _, outcome in backend.results():
                trial = running.pop(task.number)
                state = tell(study, trial, outcome)
                log(f"trial {trial.number} {describe_end(state, outcome)}")
                if asked < n_trials:
                    ask()
    except BaseException:
        for trial in running.values():
            trial.set_user_attr("error", "interrupted")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise


def describe_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def describe_end(state: optuna.trial.TrialState, outcome: Outcome) -> str:
    if state == optuna.trial.TrialState.FAIL:
        return f"failed: {(outcome.error or '').strip().splitlines()[-1:] or ['unknown error']}"
    record = outcome.record or {}
    if state == optuna.trial.TrialState.PRUNED:
        return f"pruned at {record['pruned_at']} steps"
    finals = ", ".join(f"{s['final']:.1f}" for s in record["seeds"])
    return f"complete: value {record['value']:.2f} (final return per seed: {finals})"
