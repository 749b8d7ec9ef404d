"""scripts/bench_memory.py --backend ray: the same records as the local backend, retries, resume.

Needs the project's ray extra (``pip install -e ".[ray]"``); skipped without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

from agents.sweep.worker import FAIL_ENV

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench_memory.py"

# Fields that depend on the machine's load or on the attempt, not on the run.
VOLATILE = {"wall_time_s", "env_steps_per_s", "eval", "attempts", "errors"}


def bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # always a fresh local instance
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--envs", "TMaze-Easy-v0", "--workers", "2", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**environ, **(env or {})},
    )


def records(out: Path) -> dict[str, dict]:
    return {p.relative_to(out / "runs").as_posix(): json.loads(p.read_text()) for p in (out / "runs").glob("*/*.json")}


def test_ray_backend_makes_the_local_records_retries_and_resumes(tmp_path):
    local = bench("--out", str(tmp_path / "local"))
    assert local.returncode == 0, local.stdout + local.stderr
    expected = records(tmp_path / "local")

    # On Ray (a local instance of 2 CPUs): one run raises twice (retried, ok at the third attempt), one
    # loses its worker once (retried, ok), one raises more often than the retries allow (failed).
    hook = "TMaze-Easy-v0/ppo-gal:2,TMaze-Easy-v0/ppo-lstm:1:exit,TMaze-Easy-v0/ppo-mlp:3"
    out = tmp_path / "ray"
    proc = bench("--backend", "ray", "--retries", "2", "--out", str(out), env={FAIL_ENV: hook})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    got = records(out)
    assert set(got) == set(expected)
    failed = got.pop("TMaze-Easy-v0/ppo-mlp-s0.json")
    assert failed["status"] == "failed" and failed["attempts"] == 3 and "forced failure" in failed["error"]
    assert got["TMaze-Easy-v0/ppo-gal-s0.json"]["attempts"] == 3
    assert got["TMaze-Easy-v0/ppo-lstm-s0.json"]["attempts"] == 2
    for name, record in got.items():
        reference = expected[name]
        assert set(record) == set(reference), name
        assert record["status"] == "ok", name
        # Same seed, one thread, CPU: the runs are deterministic whichever process made them.
        assert {k: v for k, v in record.items() if k not in VOLATILE} == {
            k: v for k, v in reference.items() if k not in VOLATILE
        }, name
    assert "**1 FAILED**" in (out / "memory.md").read_text()

    # Resuming on Ray makes only the failed run, which now matches the local one.
    proc = bench("--backend", "ray", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 run(s) to make" in proc.stdout and proc.stdout.count("skipped ") == len(expected) - 1
    redone = records(out)["TMaze-Easy-v0/ppo-mlp-s0.json"]
    reference = expected["TMaze-Easy-v0/ppo-mlp-s0.json"]
    assert redone["status"] == "ok" and redone["final_return_mean"] == reference["final_return_mean"]
    assert redone["curve"] == reference["curve"]

    # The tables agree as well: the same rows and returns, whichever backend made the runs.
    local_md = (tmp_path / "local" / "memory.md").read_text().splitlines()
    ray_md = (out / "memory.md").read_text().splitlines()
    assert [line.split("|")[1:5] for line in local_md if line.startswith("| ppo")] == [
        line.split("|")[1:5] for line in ray_md if line.startswith("| ppo")
    ]


def test_ray_backend_without_ray_exits_2_naming_the_extra(tmp_path):
    # A module named ray that fails to import stands in for a missing installation.
    fake = tmp_path / "fake"
    (fake / "ray").mkdir(parents=True)
    (fake / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    env = {"PYTHONPATH": f"{fake}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = bench("--backend", "ray", "--out", str(tmp_path / "out"), env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "pip install -e '.[ray]'" in proc.stderr
