"""A search as the command runs it: its settings, the trials on a backend, then the summary, the best
entry and the verification of the best settings."""

from __future__ import annotations

import argparse
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from agents.sweep.backends import LocalBackend, RayBackend
from agents.tuning import entry as entries
from agents.tuning.report import summarize, write_summary
from agents.tuning.space import SearchSpace, Settings, load_space
from agents.tuning.study import PrunerSpec, fail_orphans, make_sampler, open_study, run_trials
from agents.tuning.trial import TrialTask, run_trial
from rl_lstm.tooling import machine_info


@dataclass(frozen=True)
class Search:
    """The settings of one invocation of the command."""

    algo: str
    env: str
    cells: list[str]
    base: dict[str, Any]
    """TrainConfig keyword arguments given on the command line (the trial's settings go on top)."""
    space: SearchSpace
    study_name: str
    storage: str
    out: Path
    trials: int
    n_jobs: int
    seeds_per_trial: int
    eval_every: int
    sampler: str
    sampler_seed: int | None
    startup_trials: int
    pruner: PrunerSpec
    backend: str
    address: str | None
    keep_runs: bool
    verify_seeds: int
    verify_timesteps: int

    @classmethod
    def from_args(cls, args: argparse.Namespace, base: dict[str, Any], cells: list[str]) -> Search:
        algo, env = base.get("algo", "ppo"), base.get("env", "CartPole-v1")
        budget = base["total_timesteps"]
        name = args.study_name or f"{algo}-{env}"
        out = args.out or Path("tuning") / name
        eval_every = args.eval_every or max(budget // 5, 1)
        seeds = args.seeds_per_trial
        pruner = PrunerSpec(args.pruner, startup_trials=args.startup_trials, warmup_steps=budget // 3,
                            min_resource=eval_every)  # fmt: skip
        space = load_space(algo, args.space)
        storage = args.storage
        if storage is None:
            storage = f"sqlite:///{(out / 'study.db').resolve()}"  # absolute: a Ray worker's folder is its own
        return cls(algo, env, cells, base, space, name, storage, out, args.trials, args.n_jobs, seeds, eval_every,
                   args.sampler, args.sampler_seed, args.startup_trials, pruner, args.backend, args.address,
                   args.keep_runs, args.verify_seeds, args.verify_timesteps or budget)  # fmt: skip

    def configs(self, settings: Settings, seeds: int, timesteps: int) -> tuple[dict[str, Any], ...]:
        """TrainConfig keyword arguments of the settings on each seed."""
        first = self.base.get("seed", 0)
        hyperparams = entries.overrides(self.base, settings)
        return tuple(
            {**self.base, **settings.config, "hyperparams": hyperparams, "seed": first + k,
             "total_timesteps": timesteps}
            for k in range(seeds)
        )  # fmt: skip

    def header(self, command: str) -> dict[str, Any]:
        return {
            "command": command, "algo": self.algo, "env": self.env, "cells": self.cells,
            "n_timesteps": self.base["total_timesteps"], "seeds_per_trial": self.seeds_per_trial,
            "first_seed": self.base.get("seed", 0), "eval_every": self.eval_every,
            "eval_episodes": self.base.get("eval_episodes", 20), "sampler": self.sampler, "pruner": self.pruner.name,
            "space": _shown(self.space.path),
            "storage": self.storage.replace(f"sqlite:///{Path.cwd()}/", "sqlite:///"), "training_options": self.base,
            "machine": machine_info(),
        }  # fmt: skip


def _shown(path: Path) -> str:
    """A path relative to the working folder where it lies inside it (the package's files included)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def make_backend(search: Search) -> Any:
    threads = search.base.get("threads", 1)
    if search.backend == "ray":
        return RayBackend(search.n_jobs, threads, search.address, runner=run_trial)
    return LocalBackend(search.n_jobs, threads, runner=run_trial)


def verify(search: Search, backend: Any, settings: Settings, trial: int, log: Any) -> dict[str, Any]:
    """Train the settings on ``verify_seeds`` seeds at ``verify_timesteps``, one task per seed."""
    import envs

    configs = search.configs(settings, search.verify_seeds, search.verify_timesteps)
    for number, config in enumerate(configs):
        work = search.out / "verify" / f"seed{config['seed']}"
        backend.submit(TrialTask(number, (config,), search.eval_every, str(work), keep_runs=search.keep_runs), 0)
    runs, errors = [], []
    for _, _, outcome in backend.results():
        if outcome.record is None:
            errors.append((outcome.error or "unknown error").strip().splitlines()[-1])
            log(f"verification run failed: {errors[-1]}")
            continue
        seed = outcome.record["seeds"][0]
        runs.append(seed)
        log(f"verification seed {seed['seed']}: final {seed['final']:.1f}, best evaluation {seed['best']:.1f}")
    runs.sort(key=lambda s: s["seed"])
    info = envs.ENV_INFO.get(search.env)
    threshold = info.threshold if info is not None else None
    return {
        "trial": trial, "timesteps": search.verify_timesteps, "seeds": [c["seed"] for c in configs], "runs": runs,
        "errors": errors, "threshold": threshold,
        "reached": None if threshold is None else sum(s["final"] >= threshold for s in runs),
        "reached_best": None if threshold is None else sum(s["best"] >= threshold for s in runs),
    }  # fmt: skip


def run(search: Search, command: str, write_to: Path | None = None, log: Any = print) -> int:
    """Run the search's new trials, then write the summary and the best entry (and verify it when asked)."""
    sampler = make_sampler(search.sampler, search.sampler_seed, search.startup_trials)
    search.out.mkdir(parents=True, exist_ok=True)  # the default storage lies in it
    study = open_study(search.study_name, search.storage, sampler, search.pruner)
    before = len(study.trials)
    orphans = fail_orphans(study)
    if orphans:
        log(f"trials {orphans} were left running by a study process that has ended: recorded as failed")
    log(f"study {search.study_name!r} in {search.storage}: {before} trial(s) so far; {search.trials} to run, "
        f"{search.n_jobs} at a time on the {search.backend} backend")  # fmt: skip
    header = search.header(command)
    backend = None
    code = 0
    # Ctrl-C (even where the process started with SIGINT ignored, as a background job) and SIGTERM stop
    # the study the same way: the running trials are recorded as failed and the summary is written.
    previous = signal.signal(signal.SIGTERM, _interrupt), signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if search.trials or search.verify_seeds:
            backend = make_backend(search)
        if search.trials:

            def make_task(trial: optuna.Trial, settings: Settings) -> TrialTask:
                work = search.out / "trials" / str(trial.number)
                return TrialTask(
                    trial.number, search.configs(settings, search.seeds_per_trial, search.base["total_timesteps"]),
                    search.eval_every, str(work), search.study_name, search.storage,
                    trial._trial_id,  # noqa: SLF001 - the id the worker's optuna.Trial needs; Optuna has no public name for it
                    search.pruner, search.keep_runs,
                )  # fmt: skip

            run_trials(study, search.space, search.cells, make_task, backend, search.trials, search.n_jobs, log)
        summary = summarize(study, header)
        best = summary["best"]
        if best is not None:
            settings = search.space.settings_of(best["params"])
            summary["best_files"] = write_best(search, settings, best, write_to, log)
            if search.verify_seeds:
                summary["verification"] = verify(search, backend, settings, best["number"], log)
                study.set_user_attr("verification", summary["verification"])  # later summaries show it
        else:
            log("no trial has completed: no best entry written")
    except KeyboardInterrupt:
        log("interrupted: the finished trials are in the storage; run the command again to resume")
        summary, code = summarize(study, header), 130
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
        if backend is not None:
            backend.close(abort=code != 0)
    write_summary(search.out, summary)
    c = summary["counts"]
    log(f"study {search.study_name!r}: {summary['trials_total']} trials ({c['complete']} complete, {c['pruned']} "
        f"pruned, {c['fail']} failed); summary in {search.out / 'summary.md'}")  # fmt: skip
    if summary["best"] is not None:
        b = summary["best"]
        log(f"best trial {b['number']}: value {b['value']:.2f}; {summary['best_files']['command']}")
    return code


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def write_best(search: Search, settings: Settings, best: dict[str, Any], write_to: Path | None, log: Any) -> dict:
    """``best.yml`` (an entry of ``<algo>.yml``), ``best_hyperparams.yml`` (for ``--hyperparams``), and the
    entry merged into ``write_to`` when given."""
    values = entries.entry(search.base, settings)
    flags = entries.memory_flags(search.base, settings)
    comment = [
        f"Found by `scripts/tune.py` (study {search.study_name}, trial {best['number']}: mean final return "
        f"{best['value']:.1f} over {search.seeds_per_trial} seed(s) at {search.base['total_timesteps']} steps).",
        f"Memory (command-line flags, not part of the entry): {flags}",
    ]
    entry_path = search.out / "best.yml"
    hyperparams_path = search.out / "best_hyperparams.yml"
    entries.write_text(entry_path, entries.entry_text(search.env, values, comment))
    flat = entries.overrides(search.base, settings)
    entries.write_text(hyperparams_path, "".join(f"# {line}\n" for line in comment)
                       + yaml.safe_dump(flat, sort_keys=False, default_flow_style=None))  # fmt: skip
    command = entries.train_command(search.base, settings, hyperparams_path, search.verify_timesteps)
    files = {"entry": str(entry_path), "hyperparams": str(hyperparams_path), "command": command}
    if write_to is not None:
        entries.merge_entry(write_to, search.env, values, comment)
        files["merged_into"] = str(write_to)
        log(f"merged the entry for {search.env} into {write_to} (train with: {flags})")
    return files

