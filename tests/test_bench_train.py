"""bench_train's rows and report (agents/training/speed.py), without running a benchmark."""

from __future__ import annotations

import dataclasses

import pytest

from agents.training import speed


def _results(rate: float) -> list[dict[str, float]]:
    return [{"steps_per_cpu_s": rate * f, "collect_s": 1.0, "train_s": 2.0, "steps_per_s": 0.0} for f in (0.9, 1, 1.2)]


def test_rows_per_chunk_length_and_block():
    rs = speed.rows(["lstm", "gal"], 0.1, 256, seq_lens=(32, 128), blocks=("ppo", "a2c"), a2c_n_steps=(5,))
    ppo = [r for r in rs if r.block == "ppo" and not r.reference]
    assert [r.kwargs["seq_len"] for r in ppo] == [32, 32, 128, 128]
    assert all(r.kwargs["n_steps"] == 128 and r.kwargs["batch_size"] == 256 for r in ppo)
    assert {r.block for r in rs} == {"ppo", "a2c n_steps=5"}
    assert sum(r.reference for r in rs) == 2


def test_rows_take_the_shape_of_a_memory_task():
    shape = speed.Shape("PassiveTMaze-L100-v0", n_envs=64, n_steps=1024, batch_size=128, n_epochs=4)
    rs = speed.rows(["lstm"], 0.1, 64, blocks=("ppo", "a2c"), a2c_n_steps=(5,), shape=shape)
    ppo = [r for r in rs if r.block == "ppo"]
    assert all(r.kwargs["n_steps"] == 1024 and r.kwargs["batch_size"] == 128 and r.kwargs["n_epochs"] == 4 for r in ppo)
    assert [r.kwargs["batch_size"] for r in rs if r.block.startswith("a2c") and r.reference] == [5 * 64]
    assert shape.round_steps == 64 * 1024
    for r in rs:
        r.results = _results(100.0)
    text = speed.report({1: rs}, {**_settings([1.0]), "shape": dataclasses.asdict(shape)})
    assert "PassiveTMaze-L100-v0, 64 envs, n_steps 1024, batch 128, 4 epochs." in text


def test_a_task_that_is_not_registered_is_refused_by_name(capsys):
    with pytest.raises(SystemExit) as stop:
        speed.main(["--env", "NoSuchTask-v0", "--quick", "--out", "/nonexistent/never"])
    assert stop.value.code == 2 and "--env 'NoSuchTask-v0': not a registered Gymnasium id" in capsys.readouterr().err


def _settings(loads):
    return {
        "budget": 15360, "repeats": 3, "repeats_done": 3, "gemm_path": "avx2", "command": "python x",
        "load_averages": loads, "machine": {"cpu_model": "AMD EPYC", "cores_usable": 2, "torch_version": "2",
                                            "torch_threads": 1, "date_utc": "now"},
    }  # fmt: skip


def test_report_states_budget_path_load_and_ranges():
    rs = speed.rows(["lstm"], 0.1, 256, blocks=("ppo",))
    rs[0].results, rs[1].results = _results(100.0), _results(800.0)
    text = speed.report({1: rs}, _settings([3.0, 4.0, 5.0]))
    assert "Budget 15360 env-steps" in text and "avx2" in text
    assert "median 4.0, min 3.0, max 5.0" in text and "Warning" in text
    assert "| 800 (720-960) |" in text and "| 8.00 |" in text
    quiet = speed.report({1: rs}, _settings([1.0, 1.1]))
    assert "Warning" not in quiet


def test_gradient_step_parts_of_a_small_model():
    """The parts of one gradient step are timed on a real rollout, and the report shows them per row."""
    from stable_baselines3.common.env_util import make_vec_env

    from agents import RecurrentPPO
    from agents.training.update_parts import PARTS, gradient_step_parts

    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    policy_kwargs = dict(cell="gal", lstm_hidden_size=8, net_arch=dict(pi=[8], vf=[8]))
    model = RecurrentPPO("CellLstmPolicy", env, n_steps=16, batch_size=16, seq_len=8, n_epochs=2, seed=0,
                         policy_kwargs=policy_kwargs)  # fmt: skip
    model.learn(32)
    parts = gradient_step_parts(model, repeats=3)
    assert parts["gradient steps per update"] == 2 * 2  # 32 rows in minibatches of 16, 2 epochs
    assert all(parts[k] >= 0 for k in PARTS) and parts["memories"] > 0 and parts["gradient step"] > 0
    rs = speed.rows(["lstm"], 0.1, 256, blocks=("ppo",))
    rs[0].results, rs[1].results = _results(100.0), _results(800.0)
    text = speed.report({1: rs}, {**_settings([1.0]), "parts": {rs[1].name: parts}})
    assert "## Where a gradient step's time goes" in text and f"| {rs[1].name} | " in text.split("time goes")[1]
