"""The benchmark scripts run end to end in their quick settings and write complete reports.

Contract tests only: the figures are not checked (timings are never asserted).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rl_lstm import CELLS

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
NAMES = list(CELLS)


def _run(script: str, out: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / script), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,  # a generous ceiling against a hang, not a speed check
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _assert_markdown(path: Path) -> str:
    text = path.read_text()
    assert "| cell |" in text and "|---|" in text, "no Markdown table header"
    for name in NAMES:
        assert f"| {name} |" in text, f"{name} missing from {path.name}"
    return text


@pytest.fixture(scope="module")
def speed(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("speed")
    _run("bench_speed.py", out)
    data = json.loads((out / "speed.json").read_text())
    return data, _assert_markdown(out / "speed.md")


@pytest.fixture(scope="module")
def capacity(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("capacity")
    _run("bench_capacity.py", out)
    data = json.loads((out / "capacity.json").read_text())
    return data, _assert_markdown(out / "capacity.md")


def test_speed_records_machine_and_settings(speed):
    data, _ = speed
    machine = data["machine"]
    for key in ("cpu_model", "cores_usable", "torch_threads", "torch_version", "date_utc"):
        assert key in machine, key
    assert machine["torch_threads"] == 1
    assert data["settings"]["cells"] == NAMES


def test_speed_step_mode_has_every_cell_in_every_setting(speed):
    data, _ = speed
    s = data["settings"]
    step = data["step"]
    assert {(r["mode"], r["hidden"], r["batch"]) for r in step} == {
        (m, h, b) for m in s["modes"] for h in s["sizes"] for b in s["batches"]
    }
    for row in step:
        assert list(row["cells"]) == NAMES
        assert set(row["references"]) == {"nn_lstm", "lstm_cell"}
        for ref in row["references"].values():
            assert ref["us_per_step"]["n"] == s["repeats"] and ref["us_per_step"]["median"] > 0
        for cell in row["cells"].values():
            assert cell["us_per_step"]["min"] <= cell["us_per_step"]["median"] <= cell["us_per_step"]["max"]
            assert cell["ratio_lstm_cell"]["median"] > 0 and cell["speedup_nn_lstm"]["median"] > 0
            assert all(isinstance(t["pass"], bool) for t in cell["targets"])


def test_speed_sequence_mode_has_every_cell_and_memory(speed):
    data, text = speed
    assert [r["setting"] for r in data["sequence"]] == ["no episode starts", "episode starts"]
    for row in data["sequence"]:
        assert list(row["cells"]) == NAMES
        for cell in row["cells"].values():
            assert cell["ms_per_call"]["median"] > 0 and cell["saved_bytes"] > 0
    assert "Sequence mode" in text and "The seed's table" in text


def test_capacity_has_every_cell_for_every_task(capacity):
    data, text = capacity
    tasks = data["settings"]["tasks"]
    assert tasks == ["seq10", "seq50", "seed-no-head"]
    for task in tasks:
        rows = [r for r in data["results"] if r["task"] == task]
        assert [r["cell"] for r in rows] == NAMES
        for r in rows:
            assert len(r["per_seed"]) == data["settings"]["seeds"]
            assert r["error"]["n"] + r["error"]["non_finite"] == data["settings"]["seeds"]
            assert len(r["per_seed"][0]["train_curve"]) == data["settings"]["epochs"]
        assert f"`{task}`" in text
    published = {r["cell"]: r["seed_published"] for r in data["results"] if r["task"] == "seq10"}
    assert published["gal"] == 3.517 and published["zoneout"] is None
