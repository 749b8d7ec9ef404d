"""scripts/tune.py --backend ray: trials as Ray tasks reporting to the study's storage.

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
pytest.importorskip("optuna")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_study_runs_its_trials_as_ray_tasks(tmp_path):
    space = tmp_path / "space.yml"
    space.write_text("memory:\n  hidden_size: {choices: [4, 8]}\n")
    environ = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a fresh local instance
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "tune.py"), "--backend", "ray", "--n-jobs", "2", "--trials", "2",
         "--env", "CartPole-v1", "--cell", "nn", "--n-timesteps", "64", "--eval-freq", "32", "--n-envs", "2",
         "--eval-episodes", "1", "--no-tensorboard", "--hyperparams", "n_steps=16", "batch_size=32", "n_epochs=1",
         "--space", str(space), "--out", str(tmp_path / "study")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=environ,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "study" / "summary.json").read_text())
    assert summary["counts"]["complete"] == 2
    assert all(len(t["seeds"][0]["evaluations"]) == 2 for t in summary["trials"])  # reported at 32 and 64 steps
