"""One trial of a study as a worker runs it: the trial's settings trained on each of its seeds through the
training harness (:func:`agents.training.train`), with an evaluation every K steps reported to the trial
so that the study's pruner can stop it."""

from __future__ import annotations

import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.vec_env import VecEnv

from agents.sweep.worker import Outcome


@dataclass(frozen=True)
class TrialTask:
    """One trial, as sent to a worker (a local process or a Ray task).

    ``configs`` holds the keyword arguments of ``agents.training.TrainConfig`` for each seed. The worker
    opens ``storage`` to report the evaluations of trial ``trial_id`` (None: a run that reports to no
    trial, such as the verification of the best settings); with Ray across machines, ``storage`` must be
    a URL every node can reach.
    """

    number: int
    configs: tuple[dict[str, Any], ...]
    eval_every: int
    work_dir: str
    study_name: str = ""
    storage: str = ""
    trial_id: int | None = None
    pruner: Any = None
    """A :class:`agents.tuning.study.PrunerSpec` (Optuna stores no pruner with the study)."""
    keep_runs: bool = False

    @property
    def run_id(self) -> str:
        return f"{self.study_name}/trial-{self.number}"


class TrialEvalCallback(EvalCallback):
    """SB3's EvalCallback (deterministic, masks off, normalisation statistics synchronised) that reports
    each evaluation's mean return to an Optuna trial at ``step_offset + timesteps`` and raises
    ``optuna.TrialPruned`` when the trial's pruner says to stop. ``evaluations`` keeps
    ``[[timesteps, mean_return], ...]``."""

    def __init__(self, eval_env: VecEnv, trial: Any, eval_freq: int, n_eval_episodes: int, step_offset: int = 0):
        super().__init__(eval_env, n_eval_episodes=n_eval_episodes, eval_freq=eval_freq, deterministic=True,
                         verbose=0)  # fmt: skip
        self.trial = trial
        self.step_offset = step_offset
        self.evaluations: list[list[float]] = []

    def _on_step(self) -> bool:
        continue_training = super()._on_step()
        if self.eval_freq > 0 and self.n_calls % self.eval_freq == 0:
            self.evaluations.append([int(self.num_timesteps), float(self.last_mean_reward)])
            if self.trial is not None:
                import optuna

                self.trial.report(float(self.last_mean_reward), self.step_offset + self.num_timesteps)
                if self.trial.should_prune():
                    raise optuna.TrialPruned(
                        f"mean return {self.last_mean_reward:.2f} at {self.num_timesteps} steps"
                    )
        return continue_training


def _seed_record(config: Any, evaluations: list[list[float]], final: float | None, std: float | None) -> dict:
    returns = [m for _, m in evaluations] + ([final] if final is not None else [])
    return {
        "seed": config.seed,
        "final": final,
        "final_std": std,
        "best": max(returns) if returns else None,
        "evaluations": evaluations,
        "timesteps": config.total_timesteps,
    }


def run_trial(task: TrialTask, attempt: int = 0, threads: int = 1) -> Outcome:
    """Train the trial's settings on each of its seeds in turn; never raises (an error's traceback comes
    back instead). The record holds ``state`` (``complete`` or ``pruned``), ``value`` (the mean over the
    seeds of the final evaluation), and per seed the final, the best and every periodic evaluation."""
    try:
        import optuna

        from agents.training import TrainConfig, import_env_packages, resolve, train
        from agents.training.environments import make_eval_env
        from rl_lstm.tooling import pin_threads

        pin_threads(threads)
        trial = None
        if task.trial_id is not None:
            from agents.tuning.storage import open_storage

            study = optuna.load_study(study_name=task.study_name, storage=open_storage(task.storage),
                                      pruner=task.pruner.build())  # fmt: skip
            trial = optuna.Trial(study, task.trial_id)
        work = Path(task.work_dir)
        seeds: list[dict[str, Any]] = []
        try:
            for i, kwargs in enumerate(task.configs):
                config = TrainConfig(**{**kwargs, "threads": threads})
                import_env_packages(config.env_packages)
                run = resolve(config)
                callback = TrialEvalCallback(
                    make_eval_env(run, seed=config.seed + 20_000), trial,
                    eval_freq=max(task.eval_every // config.n_envs, 1), n_eval_episodes=config.eval_episodes,
                    step_offset=i * config.total_timesteps,
                )  # fmt: skip
                run_dir = work / f"seed{config.seed}"
                if run_dir.exists():
                    shutil.rmtree(run_dir)  # an earlier attempt's files would mix into this one's
                try:
                    evaluation = train(run, run_dir, callbacks=[callback], log=lambda message: None)
                except optuna.TrialPruned:
                    seeds.append(_seed_record(config, callback.evaluations, None, None))
                    pruned_at = i * config.total_timesteps + callback.num_timesteps
                    return Outcome(record={"state": "pruned", "pruned_at": pruned_at, "seeds": seeds})
                seeds.append(_seed_record(config, callback.evaluations, evaluation["mean_return"],
                                          evaluation["std_return"]))  # fmt: skip
        finally:
            if not task.keep_runs:
                shutil.rmtree(work, ignore_errors=True)
        value = float(np.mean([s["final"] for s in seeds]))
        return Outcome(record={"state": "complete", "value": value, "seeds": seeds})
    except Exception:  # noqa: BLE001 - any error of a trial is the trial's outcome, not the study's
        return Outcome(error=traceback.format_exc(limit=8).strip())
