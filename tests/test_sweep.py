"""scripts/bench_memory.py end to end on its --quick sweep: records, report, resume, retries, bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agents.sweep.spec import DEFAULT_SWEEP, cell_cost
from agents.sweep.worker import FAIL_ENV, learning_curve, steps_to_threshold

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench_memory.py"

RECORD_KEYS = {
    "env", "algo", "cell", "seed", "name", "status", "error", "config", "final_return_mean", "final_return_std",
    "curve", "threshold", "steps_to_threshold", "wall_time_s", "env_steps_per_s", "attempts",
}  # fmt: skip


def bench(*args: str, env: dict[str, str] | None = None, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def quick_runs() -> list[tuple[str, str]]:
    """(env, record stem) of every run the --quick sweep plans, read from the sweep file."""
    quick = yaml.safe_load(DEFAULT_SWEEP.read_text())["quick"]
    runs = []
    for env in quick["envs"]:
        for seed in range(quick["seeds"]):
            runs += [(env, f"{algo}-{cell}-s{seed}") for algo in quick["algos"] for cell in quick["cells"]]
            runs += [(env, f"{algo}-s{seed}") for algo in quick["baselines"]]
    return runs


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("memory")
    return out, bench("--quick", "--workers", "2", "--out", str(out))


def test_quick_sweep_writes_a_record_per_run_and_the_report(quick):
    out, proc = quick
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = quick_runs()
    assert len(runs) >= 4
    found = sorted(p.relative_to(out / "runs").as_posix() for p in (out / "runs").glob("*/*.json"))
    assert found == sorted(f"{env}/{stem}.json" for env, stem in runs)
    for env, stem in runs:
        record = json.loads((out / "runs" / env / f"{stem}.json").read_text())
        assert set(record) >= RECORD_KEYS, stem
        assert record["status"] == "ok" and record["error"] is None and record["attempts"] == 1
        assert record["env"] == env and record["name"] == stem and record["config"]["env"] == env
        assert math.isfinite(record["final_return_mean"]) and math.isfinite(record["final_return_std"])
        assert record["curve"] and all(len(point) == 2 for point in record["curve"])
        assert record["env_steps_per_s"] > 0 and record["wall_time_s"] > 0
        if record["cell"] is None:  # baselines do not take the recurrent update's chunk length
            assert "seq_len" not in record["config"]["hyperparams"]
    assert not (out / "work").exists(), "training folders, and the folders they leave empty, are removed"

    data = json.loads((out / "memory.json").read_text())
    assert set(data["envs"]) == {env for env, _ in runs}
    assert {"cpu_model", "cores_usable", "torch_version", "packages"} <= set(data["machine"])
    text = (out / "memory.md").read_text()
    for env, block in data["envs"].items():
        assert len(block["rows"]) == len({stem.rsplit("-s", 1)[0] for e, stem in runs if e == env})
        assert all(row["ok_runs"] == row["planned_runs"] for row in block["rows"])
        assert f"## {env}" in text and f"memory_{env}.png" in text
        assert (out / f"memory_{env}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| algo | memory | final return |" in text and "FAILED" not in text
    assert "A smoke run (`--quick`)" in text and data["smoke_run"] is True
    assert "Which memory should I use" not in text, "a smoke run's returns are not findings"


def test_a_second_run_skips_the_finished_runs(quick):
    out, _ = quick
    records = sorted((out / "runs").glob("*/*.json"))
    before = {p: p.stat().st_mtime_ns for p in records}
    proc = bench("--quick", "--workers", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("skipped ") == len(records)
    assert "run(s) to make" not in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in records} == before
    assert (out / "memory.md").is_file()


def test_failed_attempts_are_retried_then_recorded_as_failed(tmp_path):
    """One run loses its worker once (retried, then ok), another raises on every attempt (failed)."""
    hook = "TMaze-Easy-v0/ppo-lstm:1:exit,TMaze-Easy-v0/ppo-gal:9"
    args = ["--quick", "--envs", "TMaze-Easy-v0", "--algos", "ppo", "--retries", "1", "--workers", "2"]
    proc = bench(*args, "--out", str(tmp_path), env={FAIL_ENV: hook})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    runs = tmp_path / "runs" / "TMaze-Easy-v0"
    lost = json.loads((runs / "ppo-lstm-s0.json").read_text())
    assert lost["status"] == "ok" and lost["attempts"] == 2
    failed = json.loads((runs / "ppo-gal-s0.json").read_text())
    assert failed["status"] == "failed" and failed["attempts"] == 2
    assert "forced failure" in failed["error"] and len(failed["errors"]) == 2
    assert "FAILED" in proc.stdout and "retry   TMaze-Easy-v0/ppo-gal-s0" in proc.stdout
    text = (tmp_path / "memory.md").read_text()
    assert "**1 FAILED**" in text and "ppo gal seed 0 after 2 attempt(s)" in text

    # Resuming makes only the failed run again (the hook is gone now) and skips the finished one.
    proc = bench(*args, "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skipped TMaze-Easy-v0/ppo-lstm-s0" in proc.stdout and "1 run(s) to make" in proc.stdout
    assert json.loads((runs / "ppo-gal-s0.json").read_text())["status"] == "ok"
    assert "FAILED" not in (tmp_path / "memory.md").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cells", "mgu"], "--cells 'mgu': unknown; choices: nn, slow, lstm"),
        (["--envs", "TMaze-v9"], "--envs 'TMaze-v9': unknown; choices: "),
        (["--algos", "ppo,trpo"], "--algos 'trpo': unknown; choices: ppo, a2c, dqn, sac, dqn-mlp, sac-mlp, ppo-mlp"),
        (["--sweep", "/nonexistent.yaml"], "--sweep '/nonexistent.yaml': no such file"),
    ],
)
def test_bad_names_exit_2_with_the_choices(args, message, tmp_path):
    proc = bench("--quick", *args, "--out", str(tmp_path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_a_second_sweep_on_the_same_folder_is_refused(tmp_path):
    import fcntl

    tmp_path.mkdir(exist_ok=True)
    with (tmp_path / ".sweep.lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running sweep holds it
        proc = bench("--quick", "--out", str(tmp_path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"another sweep is writing {tmp_path}" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_a_bad_sweep_file_names_the_key(tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("envs:\n  TMaze-v0: {total_timesteps: 100, n_env: 2}\n")
    proc = bench("--sweep", str(sweep), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "envs.TMaze-v0: unknown key(s) n_env" in proc.stderr


def test_learning_curve_and_steps_to_threshold(tmp_path):
    csv = tmp_path / "progress.csv"
    csv.write_text(
        "time/total_timesteps,rollout/ep_rew_mean,train/loss\n256,,0.1\n512,0.25,0.1\n768,0.97,0.1\n1024,0.5,0.1\n"
    )
    curve = learning_curve(csv)
    assert curve == [[512, 0.25], [768, 0.97], [1024, 0.5]]
    assert steps_to_threshold(curve, 0.95) == 768
    assert steps_to_threshold(curve, 0.99) is None
    assert learning_curve(tmp_path / "missing.csv") == []


def test_which_memory_and_the_ladder(tmp_path):
    """The report's summary: the best rows per task, the ranking over tasks, and the T-maze ladder (table
    and plot) from the corridor lengths of the registered ids."""
    import envs  # noqa: F401  (registers the ladder's ids)
    from agents.sweep.summary import ladder, ladder_table, plot_ladder, which_memory

    def row(label, cell, score, solved):
        return dict(label=label, cell=cell, normalised_score=score, final_return_mean=0.5 + score / 2,
                    solved=solved, ok_runs=3)  # fmt: skip

    data = {
        env: dict(memoryless_bound=0.5, rows=[row("ppo ln-gal", "ln-gal", good, 3), row("ppo-mlp", None, 0.0, 0)])
        for env, good in (("TMaze-L5-v0", 1.0), ("TMaze-v0", 0.8), ("TMaze-L40-v0", 0.1))
    }
    assert ladder(data) == {5: "TMaze-L5-v0", 10: "TMaze-v0", 40: "TMaze-L40-v0"}
    summary = "\n".join(which_memory(data))
    assert "| TMaze-v0 | ppo ln-gal (0.80; 3/3); ppo-mlp (0.00; 0/3) |" in summary
    assert "| 1 | ppo ln-gal | 0.63 | 3/3 |" in summary
    table = "\n".join(ladder_table(data))
    assert "| row | L=5 | L=10 | L=40 |" in table and "| ppo ln-gal | 3/3 (1.00) | 3/3 (0.90) | 3/3 (0.55) |" in table
    assert plot_ladder(data, tmp_path / "ladder.png") and (tmp_path / "ladder.png").stat().st_size > 1000
    assert ladder({"TMaze-v0": data["TMaze-v0"]}) == {}, "one rung is no ladder"


def test_the_queue_hint_of_a_cell_is_its_nearest_listed_class():
    assert cell_cost("lstm") == cell_cost("gru") == 1.0
    assert cell_cost("ln") == cell_cost("ln-gal") == 1.4  # subclasses of LayerNormLSTM
    assert cell_cost("slow") == 1.6 and cell_cost("mingru") == cell_cost("minlstm") == 0.5
