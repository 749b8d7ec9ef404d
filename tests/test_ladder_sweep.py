"""The memory ladder's driver (agents.sweep.ladder): its file, the climbing rule and the report."""

from __future__ import annotations

import json

import pytest

from agents.sweep.ladder import DEFAULT_LADDER, Ladder, climb, load_ladder, reach, record_path, report, rung_tasks
from agents.sweep.spec import SweepError
from agents.training import TrainConfig
from envs import LADDER_FAMILIES


def test_shipped_ladder_plans_every_row_on_every_family():
    ladder = load_ladder(DEFAULT_LADDER)
    assert set(ladder.families) == set(LADDER_FAMILIES) and ladder.rungs[0] == 10 and ladder.seeds == 3
    for row in ladder.rows:
        for family in ladder.families:
            tasks = rung_tasks(ladder, row, family, 100, DEFAULT_LADDER.parent)
            assert [t.config["eval_freq"] for t in tasks] == [10_000] * 3
            assert len({t.run_id for t in tasks}) == 3


def _ladder(**kwargs) -> Ladder:
    data = dict(rows={"a": {"algo": "ppo", "hidden_size": 4}, "b": {"algo": "ppo", "cell": "gru"}},
                families=["Recall", "PassiveTMaze"], rungs=[10, 20, 50], seeds=2,
                total_timesteps={10: 100, 20: 100, 50: 100}, **kwargs)  # fmt: skip
    return Ladder.from_dict("test", data)


def test_a_row_stops_climbing_after_a_rung_no_seed_solved(tmp_path):
    ladder = _ladder()
    # Row a solves Recall up to 20 with one seed of two; row b solves nothing on Recall, everything on the maze.
    success = {("a", "Recall"): {10: [1.0, 0.5], 20: [0.2, 0.96], 50: [0.0, 0.0]},
               ("b", "Recall"): {10: [0.3, 0.25]}, ("a", "PassiveTMaze"): {10: [0.5, 0.5]}}  # fmt: skip
    made = []

    def run(tasks):
        for t in tasks:
            made.append((t.row, t.env, t.seed))
            rate = success.get((t.row, t.env.split("-")[0]), {}).get(int(t.env.split("-L")[1][:-3]), [1.0, 1.0])
            path = record_path(tmp_path, t)
            path.parent.mkdir(parents=True, exist_ok=True)
            record = {"status": "ok", "config": t.config, "algo_kwargs": TrainConfig(**t.config).algo_kwargs(),
                      "final_success_rate": rate[t.seed], "best_success_rate": max(rate[t.seed], 0.9),
                      "wall_time_s": 1.0}  # fmt: skip
            path.write_text(json.dumps(record))

    climb(ladder, tmp_path, run, log=lambda m: None)
    climbed = {(row, env) for row, env, _ in made}
    assert climbed == {
        ("a", "Recall-L10-v0"), ("a", "Recall-L20-v0"), ("a", "Recall-L50-v0"), ("b", "Recall-L10-v0"),
        ("a", "PassiveTMaze-L10-v0"), ("b", "PassiveTMaze-L10-v0"), ("b", "PassiveTMaze-L20-v0"),
        ("b", "PassiveTMaze-L50-v0"),
    }  # fmt: skip
    made.clear()
    climb(ladder, tmp_path, run, log=lambda m: None)
    assert made == [], "a second invocation resumes from the records"

    data = report(ladder, tmp_path, "python scripts/bench_ladder.py")
    assert data["rows"]["a"]["Recall"]["20"]["solved"] == 1 and data["rows"]["a"]["Recall"]["20"]["collapsed"] == 1
    text = (tmp_path / "ladder.md").read_text()
    assert text.index("ladder.png") < text.index("## Recall"), "the ladder plot is the first figure"
    assert (tmp_path / "ladder.png").stat().st_size > 0
    # how far each row reaches: row a solves Recall at 10 on both seeds and at 20 on one; b the maze to 50
    assert reach(ladder, data)["Recall"] == {"a": {"all": None, "some": 20}, "b": {"all": None, "some": None}}
    assert reach(ladder, data)["PassiveTMaze"]["b"] == {"all": 50, "some": 50}
    assert "- PassiveTMaze: a — (—), b 50 (50); furthest: b." in text


def test_a_record_made_under_other_algorithm_arguments_is_made_again(tmp_path, monkeypatch):
    """An edited hyperparameter entry (the default one the rows build on) makes the records made before it
    stale, though the rows' configurations are unchanged."""
    from agents.sweep import ladder as ladder_module

    ladder = _ladder()
    (task,) = rung_tasks(ladder, "a", "Recall", 10, tmp_path)[:1]
    path = record_path(tmp_path, task)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"status": "ok", "config": task.config, "algo_kwargs": TrainConfig(**task.config).algo_kwargs(),
              "final_success_rate": 1.0}  # fmt: skip
    path.write_text(json.dumps(record))
    assert ladder_module.done_record(tmp_path, task) is not None
    path.write_text(json.dumps({**record, "algo_kwargs": {**record["algo_kwargs"], "ent_coef": 0.0}}))
    assert ladder_module.done_record(tmp_path, task) is None


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(families=["TMaze"]), "family 'TMaze': unknown"),
        (dict(rungs=[10, 30]), "rung 30: expected one of 10, 20"),
        (dict(rungs=[10, 100]), "rung 100: .* with a budget in total_timesteps"),
        (dict(speed=1), r"unknown key\(s\) speed"),
        (dict(rows={"x": {"cell": "lstm"}}), "rows.x: expected a mapping with at least algo"),
        (dict(rows={"x": {"algo": "ppo", "units": 3}}), r"rows.x: unknown key\(s\) units"),
        (dict(rows={"x": {"algo": "ppo", "seed": 3}}), r"rows.x: seed: set by the ladder \(seeds\), not by a row"),
        (dict(rows={"x": {"algo": "ppo", "env": "CartPole-v1"}}), r"rows.x: env: set by the ladder \(the rung\)"),
    ],
)
def test_bad_ladder_files_are_named(change, message):
    data = dict(rows={"a": {"algo": "ppo"}}, rungs=[10], total_timesteps={10: 100})
    with pytest.raises(SweepError, match=message):
        Ladder.from_dict("test", {**data, **change})


def test_a_row_takes_any_option_of_a_run_and_the_ladder_sets_the_rest(tmp_path):
    """A row is a partial TrainConfig: what it leaves out has the command line's default, what it gives (here
    the previous action and reward as inputs) reaches every run; the task, budget and seed are the ladder's."""
    from agents.training import TrainConfig

    ladder = Ladder.from_dict("t", dict(rows={"a": {"algo": "ppo", "prev_inputs": "action-reward"}}, rungs=[10],
                                        total_timesteps={10: 100}, seeds=2))  # fmt: skip
    tasks = rung_tasks(ladder, "a", "Recall", 10, tmp_path)
    assert [t.config["seed"] for t in tasks] == [0, 1]
    for t in tasks:
        assert t.config["prev_inputs"] == "action-reward" and t.config["env"] == "Recall-L10-v0"
        assert t.config["total_timesteps"] == 100 and t.config["tensorboard"] is False
        assert t.config["hidden_size"] == TrainConfig.hidden_size and t.config["n_envs"] == TrainConfig.n_envs


def test_bad_row_settings_are_named(tmp_path):
    ladder = Ladder.from_dict("t", dict(rows={"a": {"algo": "ppo", "hyperparams": {"n_step": 8}}}, rungs=[10],
                                        total_timesteps={10: 100}))  # fmt: skip
    with pytest.raises(SweepError, match="rows.a on PassiveTMaze-L10-v0: hyperparams n_step"):
        rung_tasks(ladder, "a", "PassiveTMaze", 10, tmp_path)
