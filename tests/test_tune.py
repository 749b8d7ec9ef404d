"""The hyperparameter search command (scripts/tune.py): a study through the command, resumed from its
storage, its best entry loaded by the training command; bad input; pruning; optuna missing."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from agents.training import zoo
from agents.training.algos import RECURRENT_ALGOS
from agents.training.cli import main as train_main
from agents.training.config import TrainConfig
from agents.training.resolution import resolve
from agents.tuning.cli import main
from agents.tuning.entry import merge_entry
from agents.tuning.space import SpaceError, load_space

pytest.importorskip("optuna")

# A tiny study: two cells without the compiled kernel, two searched settings, trials of 64 steps.
SPACE = {"memory": {"hidden_size": {"choices": [4, 8]}}, "algo": {"learning_rate": {"low": 1e-4, "high": 1e-3}}}
TINY = ["--algo", "ppo", "--env", "CartPoleNoVel-v1", "--cell", "nn", "gru", "--n-timesteps", "64", "--eval-freq", "32",
        "--n-envs", "2", "--eval-episodes", "1", "--no-tensorboard", "--checkpoint-freq", "1000",
        "--hyperparams", "n_steps=16", "batch_size=32", "n_epochs=1", "--sampler-seed", "0"]  # fmt: skip


def space_file(tmp_path: Path, space: dict, name: str = "space.yml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(space))
    return path


def test_a_study_runs_resumes_and_its_best_entry_trains(tmp_path, monkeypatch, capsys):
    out = tmp_path / "study"
    hyperparams_dir = tmp_path / "hyperparams"
    shutil.copytree(zoo.HYPERPARAMS_DIR, hyperparams_dir)
    argv = [*TINY, "--space", str(space_file(tmp_path, SPACE)), "--out", str(out), "--study-name", "tiny"]
    assert main([*argv, "--trials", "3"]) == 0
    first = json.loads((out / "summary.json").read_text())
    assert first["counts"]["complete"] == 3 and first["trials_total"] == 3
    assert (out / "study.db").is_file() and (out / "summary.md").is_file() and (out / "study.png").is_file()

    # Resumed from its storage: the three finished trials are kept as they were, one more is added.
    capsys.readouterr()
    assert main([*argv, "--trials", "1", "--write", str(hyperparams_dir / "ppo.yml")]) == 0
    assert "3 trial(s) so far" in capsys.readouterr().out
    second = json.loads((out / "summary.json").read_text())
    assert second["trials_total"] == 4 and [t["number"] for t in second["trials"]] == [0, 1, 2, 3]
    assert [t["value"] for t in second["trials"][:3]] == [t["value"] for t in first["trials"]]

    # The entry in its own file, merged into a copy of ppo.yml, and the flat file for --hyperparams.
    best = second["best"]["params"]
    entry = yaml.safe_load((out / "best.yml").read_text())["CartPoleNoVel-v1"]
    assert entry["learning_rate"] == pytest.approx(best["learning_rate"], rel=1e-3)
    # The command's override, and the environment's entry (through its YAML alias).
    assert entry["n_steps"] == 16 and entry["gamma"] == 0.98 and entry["normalize"] is True
    monkeypatch.setattr(zoo, "HYPERPARAMS_DIR", hyperparams_dir)
    zoo.load_file.cache_clear()
    try:
        config = TrainConfig(env="CartPoleNoVel-v1", cell=best["cell"], hidden_size=best["hidden_size"])
        resolve(config)
        assert config.hyperparams_entry() == ("CartPoleNoVel-v1", entry)
        other = yaml.safe_load((zoo.HYPERPARAMS_DIR / "ppo.yml").read_text())
        assert other["CartPole-v1"]["n_steps"] == 32  # the other entries are untouched
    finally:
        monkeypatch.undo()
        zoo.load_file.cache_clear()
    capsys.readouterr()
    run = ["--env", "CartPoleNoVel-v1", "--cell", best["cell"], "--hidden-size", str(best["hidden_size"]),
           "--n-envs", "2", "--total-timesteps", "32", "--eval-episodes", "1", "--no-tensorboard",
           "--out", str(tmp_path / "run"), "--hyperparams", str(out / "best_hyperparams.yml")]  # fmt: skip
    assert train_main(run) == 0
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["algo_kwargs"]
    assert recorded["learning_rate"] == pytest.approx(best["learning_rate"], rel=1e-3)


@pytest.mark.parametrize(
    "space, expected",
    [
        ({"algo": {"learning_rat": {"low": 1e-4, "high": 1e-3}}}, "algo: learning_rat: not a parameter"),
        ({"algo": {"n_lstm_layers": {"choices": [1, 2]}}}, "it belongs in section 'memory'"),
        ({"memory": {"dropout": {"low": 0.3, "high": 0.3}}}, "low=0.3, high=0.3: an empty range"),
        ({"algo": {"n_epochs": {"choices": []}}}, "choices=[]: empty"),
        ({"algo": {"gamma": {"lo": 0.9, "high": 0.99}}}, "unknown key 'lo'"),
        ({"algo": {"learning_rate": {"low": 0, "high": 1e-3, "log": True}}}, "low=0 with log: true"),
        ({"optimizer": {}}, "unknown section 'optimizer'"),
    ],
)
def test_a_bad_search_space_is_named(tmp_path, space, expected):
    path = space_file(tmp_path, space)
    with pytest.raises(SpaceError, match="space .*space.yml"):
        load_space("ppo", path)
    with pytest.raises(SpaceError) as e:
        load_space("ppo", path)
    assert expected in str(e.value)


def bad_command(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


def test_bad_input_to_the_command_is_named(tmp_path, capsys):
    space = str(space_file(tmp_path, SPACE))
    argv = [*TINY, "--space", space, "--out", str(tmp_path / "s"), "--trials", "1"]
    err = bad_command(capsys, [*argv, "--n-timesteps", "20"])
    assert "--n-timesteps 20: smaller than one rollout (n_steps up to 16 x 2 environments = 32 steps)" in err
    with_n_steps = space_file(tmp_path, {"algo": {"n_steps": {"choices": [16, 128]}}}, "n_steps.yml")
    err = bad_command(capsys, [*TINY[:-8], "--space", str(with_n_steps), "--out", str(tmp_path / "s"),
                               "--n-timesteps", "100"])  # fmt: skip
    assert "--n-timesteps 100: smaller than one rollout (n_steps up to 128 x 2 environments = 256 steps)" in err
    err = bad_command(capsys, [*argv, "--storage", f"sqlite:///{tmp_path}/no/such/folder/study.db"])
    assert f"storage 'sqlite:///{tmp_path}/no/such/folder/study.db': cannot open it" in err
    err = bad_command(capsys, [*argv, "--storage", "nosuchdb://host/study"])
    assert "storage 'nosuchdb://host/study': cannot open it" in err
    err = bad_command(capsys, [*argv, "--hyperparams", "learning_rate=0.001"])
    assert "hyperparams learning_rate: both fixed by --hyperparams and searched" in err
    err = bad_command(capsys, [*argv, "--space", str(tmp_path / "missing.yml")])
    assert "missing.yml'" in err and "no such file" in err
    assert "expected a positive integer" in bad_command(capsys, [*argv, "--n-jobs", "0"])
    # Off-policy: no rollout; a budget that never reaches learning_starts would never learn.
    off_policy = ["--algo", "sac", "--env", "Pendulum-v1", "--out", str(tmp_path / "s"), "--trials", "1"]
    err = bad_command(capsys, [*off_policy, "--n-timesteps", "300"])
    assert "--n-timesteps 300: not more than learning_starts (up to 1000)" in err
    err = bad_command(capsys, [*off_policy, "--n-timesteps", "300", "--hyperparams", "learning_starts=300"])
    assert "learning_starts=300: at or above --total-timesteps 300" in err
    assert not (tmp_path / "s" / "summary.json").exists()


@pytest.mark.parametrize("algo", sorted(RECURRENT_ALGOS))
def test_every_algorithm_ships_a_search_space(algo):
    """``--algo X`` works without ``--space``: each recurrent algorithm has its space, and it loads."""
    space = load_space(algo)
    assert space.params and {p.section for p in space.params} <= {"memory", "algo", "policy"}


def test_without_optuna_the_command_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    err = bad_command(capsys, ["--env", "CartPole-v1", "--trials", "1"])
    assert 'optuna is not installed; the search needs the tune extra: pip install -e ".[tune]"' in err


def test_the_evaluation_callback_prunes_through_the_trial():
    import optuna
    from stable_baselines3.common.env_util import make_vec_env

    from agents import RecurrentPPO
    from agents.tuning.trial import TrialEvalCallback

    class Trial:  # the two methods of optuna.Trial that the callback uses
        reports: list[tuple[float, int]] = []

        def report(self, value: float, step: int) -> None:
            self.reports.append((value, step))

        def should_prune(self) -> bool:
            return len(self.reports) >= 2

    trial = Trial()
    model = RecurrentPPO("CellLstmPolicy", make_vec_env("CartPole-v1", n_envs=2), n_steps=16, batch_size=32,
                         n_epochs=1, policy_kwargs=dict(cell="nn", lstm_hidden_size=4))  # fmt: skip
    callback = TrialEvalCallback(make_vec_env("CartPole-v1", n_envs=1), trial, eval_freq=16, n_eval_episodes=1,
                                 step_offset=1000)  # fmt: skip
    with pytest.raises(optuna.TrialPruned):
        model.learn(320, callback=callback)
    assert [step for _, step in trial.reports] == [1032, 1064]
    assert model.num_timesteps == 64


def test_merging_an_entry_keeps_the_others_and_refuses_to_change_them(tmp_path):
    path = tmp_path / "ppo.yml"
    shutil.copy(zoo.HYPERPARAMS_DIR / "ppo.yml", path)
    before = yaml.safe_load(path.read_text())
    merge_entry(path, "CartPoleNoVel-v1", {"n_steps": 64, "normalize": True}, ["found by a study"])
    after = yaml.safe_load(path.read_text())
    assert after["CartPoleNoVel-v1"] == {"n_steps": 64, "normalize": True}
    assert {k: v for k, v in after.items() if k != "CartPoleNoVel-v1"} == {
        k: v for k, v in before.items() if k != "CartPoleNoVel-v1"
    }
    assert "# found by a study\nCartPoleNoVel-v1:" in path.read_text()
    merge_entry(path, "New-v0", {"gamma": 0.9}, [])
    assert yaml.safe_load(path.read_text())["New-v0"] == {"gamma": 0.9}
    text = path.read_text()
    with pytest.raises(ValueError, match="TMaze-\\*.*undefined alias 'tmaze'.*not written"):
        merge_entry(path, "TMaze-*", {"gamma": 0.5}, [])  # its anchor is used by the longer corridors
    assert path.read_text() == text


def test_an_interrupted_study_keeps_its_finished_trials_and_fails_the_running_ones(tmp_path):
    import os
    import socket
    import subprocess

    import optuna

    from agents.sweep.worker import Outcome
    from agents.tuning.study import PrunerSpec, fail_orphans, open_study, run_trials

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = open_study("s", storage, optuna.samplers.RandomSampler(seed=0), PrunerSpec("none"))
    space = load_space("ppo", space_file(tmp_path, SPACE))

    class Backend:  # the first trial ends, then Ctrl-C arrives while the second runs
        def __init__(self):
            self.tasks = []

        def submit(self, task, attempt):
            self.tasks.append(task)

        def results(self):
            yield self.tasks[0], 0, Outcome(record={"state": "complete", "value": 1.0, "seeds": []})
            raise KeyboardInterrupt

    def make_task(trial, settings):
        return type("Task", (), {"number": trial.number})()

    with pytest.raises(KeyboardInterrupt):
        run_trials(study, space, ["nn"], make_task, Backend(), n_trials=3, n_jobs=1, log=lambda m: None)
    study = open_study("s", storage, optuna.samplers.RandomSampler(seed=0), PrunerSpec("none"))
    assert [(t.state.name, t.value) for t in study.trials] == [("COMPLETE", 1.0), ("FAIL", None)]
    assert study.trials[1].user_attrs["error"] == "interrupted"

    # A trial left running by a study process killed outright is recorded as failed on the next start.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trial = study.ask()
    trial.set_user_attr("driver", f"{socket.gethostname()}:{dead.pid}")
    alive = study.ask()
    alive.set_user_attr("driver", f"{socket.gethostname()}:{os.getpid()}")
    assert fail_orphans(study) == [trial.number]
    assert [t.state.name for t in study.trials[2:]] == ["FAIL", "RUNNING"]
