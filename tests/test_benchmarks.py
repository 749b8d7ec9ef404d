"""The benchmark scripts run end to end in their quick settings and write complete reports.

Contract tests only: the figures are not checked (timings are never asserted).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

from rl_lstm import CELLS
from rl_lstm.bench.speed_spec import yardstick

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
NAMES = list(CELLS)

# Each cell is measured against the references of its yardstick (its torch_module, else nn.GRU): the keys
# of their figures in speed.json.
AGAINST = {
    nn.LSTM: {"nn": "nn_lstm", "kernel": "lstm_cell"},
    nn.GRU: {"nn": "nn_gru", "kernel": "gru_cell"},
    nn.RNN: {"nn": "nn_rnn", "kernel": "rnn_tanh_cell"},
}
LABELS = {
    nn.LSTM: ("nn.LSTM", "torch.lstm_cell"),
    nn.GRU: ("nn.GRU", "torch.gru_cell"),
    nn.RNN: ("nn.RNN", "torch.rnn_tanh_cell"),
}
# The per-step bound over the step kernel in training modes at batch 1 and 16 (None: no such target).
KERNEL_BOUND = {
    "nn": None,
    "nn-gru": None,
    "slow": None,
    "lstm": 1.1,
    "gru": 1.1,
    "rnn": 1.1,
    "gal": 1.3,
    "zoneout": 1.3,
    "gru-gal": 1.3,
    "gru-semeniuta": 1.3,
    "ln": 1.5,
    "ln-moon": 1.5,
    "ln-gru": 1.5,
    "ln-gru-zoneout": 1.5,
}
ADAPTERS = ("nn", "nn-gru")  # nn.LSTM / nn.GRU behind the cells' interface: yardsticks, no targets


def _run(script: str, out: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / script), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,  # a generous ceiling against a hang, not a speed check
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _table_after(text: str, heading: str) -> list[str]:
    """The first column of the first Markdown table after ``heading`` (a line of its own)."""
    lines = text.split("\n")
    start = lines.index(heading)
    rows = []
    for line in lines[start + 1 :]:
        if rows and not line.startswith("|"):
            break
        if line.startswith("| ") and not line.startswith("| cell |"):
            rows.append(line.split(" | ")[0][2:])
        elif line.startswith("#"):
            break
    return rows


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
        assert set(row["references"]) == {k for refs in AGAINST.values() for k in refs.values()}
        for ref in row["references"].values():
            assert ref["us_per_step"]["n"] == s["repeats"] and ref["us_per_step"]["median"] > 0
        for name, cell in row["cells"].items():
            against = AGAINST[yardstick(name)]
            assert cell["against"] == against, name
            t = cell["us_per_step"]
            assert t["min"] <= t["median"] <= t["max"]
            # Ratios are taken round by round against the cell's own references: within the bounds their
            # extreme times allow.
            kernel, module = (row["references"][against[k]]["us_per_step"] for k in ("kernel", "nn"))
            ratio, speedup = cell["ratio_step_kernel"], cell["speedup_nn_step"]
            assert t["min"] / kernel["max"] * (1 - 1e-9) <= ratio["min"] <= ratio["max"]
            assert ratio["max"] <= t["max"] / kernel["min"] * (1 + 1e-9), name
            assert module["min"] / t["max"] * (1 - 1e-9) <= speedup["min"] <= speedup["max"]
            assert speedup["max"] <= module["max"] / t["min"] * (1 + 1e-9), name
            assert all(isinstance(t["pass"], bool) for t in cell["targets"])


def test_speed_targets_follow_each_cells_family(speed):
    data, _ = speed
    for row in data["step"]:
        judged = row["mode"] != "eval" and row["batch"] in (1, 16)
        for name, cell in row["cells"].items():
            module, kernel = LABELS[yardstick(name)]
            targets = [t["target"] for t in cell["targets"]]
            assert (f"faster than {module}" in targets) == (name not in ADAPTERS), (name, targets)
            on_kernel = [t for t in targets if t.startswith("<= ")]
            assert all(t.endswith(f"x {kernel}") for t in on_kernel), (name, targets)
            if not judged or name in ADAPTERS:
                assert on_kernel == [], (name, row["mode"], row["batch"])
            if name in KERNEL_BOUND:
                bound = KERNEL_BOUND[name]
                assert on_kernel == ([f"<= {bound:.1f}x {kernel}"] if judged and bound else []), (name, row["mode"])
    for row in data["sequence"]:
        for name, cell in row["cells"].items():
            module, _ = LABELS[yardstick(name)]
            plain = name in ("lstm", "gru", "rnn")
            assert [t["target"] for t in cell["targets"]] == ([f"<= 1.3x {module} fused"] if plain else []), name


def test_speed_report_names_each_cells_references(speed):
    _, text = speed
    for module, (nn_label, kernel_label) in LABELS.items():
        cells = [n for n in NAMES if yardstick(n) is module]
        assert _table_after(text, f"### cell / {kernel_label}") == cells
        assert _table_after(text, f"### speedup over {nn_label} with seq_len 1 (> 1 is faster)") == cells
        assert _table_after(text, f"### against {nn_label} fused and a {kernel_label} loop") == [
            f"{nn_label} (fused)",
            f"{kernel_label} loop",
            *cells,
        ]
        assert f"| cell / {kernel_label} | {nn_label} / cell (speedup) |" in text
    # lstms.pth published LSTMs only: its table holds the LSTM family and nothing else.
    seed_rows = _table_after(text, "## lstms.pth's table: inference, batch 1, seconds per sequence of 1000 steps")
    assert set(seed_rows) == {n for n in NAMES if CELLS[n].torch_module is nn.LSTM}


def test_speed_sequence_mode_has_every_cell_and_memory(speed):
    data, text = speed
    assert [r["setting"] for r in data["sequence"]] == ["no episode starts", "episode starts"]
    for row in data["sequence"]:
        assert list(row["cells"]) == NAMES
        for name, cell in row["cells"].items():
            assert cell["against"] == AGAINST[yardstick(name)], name
            assert cell["ms_per_call"]["median"] > 0 and cell["saved_bytes"] > 0
            assert cell["ratio_nn_fused"]["median"] > 0 and cell["ratio_kernel_loop"]["median"] > 0
        for ref in row["references"].values():
            assert ref["ms_per_call"]["median"] > 0 and ref["saved_bytes"] > 0
    assert "Sequence mode" in text and "lstms.pth's table" in text


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
    assert published["gal"] == 3.517 and published["zoneout"] is None and published["gru"] is None


def test_capacity_builds_each_cell_from_its_torch_module(capacity):
    data, _ = capacity
    for r in data["results"]:
        assert r["torch_module"] == f"nn.{yardstick(r['cell']).__name__}"
        if r["cell"] in ADAPTERS:
            # No dropout: training mode computes what eval mode does.
            assert r["error_train_mode"]["mean"] == pytest.approx(r["error"]["mean"], rel=1e-6), r
        elif r["cell"] == "gru-gal":
            assert r["error_train_mode"]["mean"] != pytest.approx(r["error"]["mean"], rel=1e-6), r


def test_scan_benchmark_quick(tmp_path):
    """bench_scan: every linear-recurrence memory against lstm (update) and torch.gru_cell (collection)."""
    _run("bench_scan.py", tmp_path)
    data = json.loads((tmp_path / "scan_speed.json").read_text())
    assert data["machine"]["cpu_model"] and data["settings"]["seq_len"] == 16
    for key, ref in (("update", "lstm"), ("update_starts", "lstm"), ("collection", "gru_cell")):
        assert set(data[key]) == {ref, "mingru", "minlstm", "lru", "ffm"}
        for row in data[key].values():
            assert row["ms"]["median"] > 0 and row[f"speedup_vs_{ref}"]["n"] == 3
    text = (tmp_path / "scan_speed.md").read_text()
    assert "speed-up vs lstm" in text and "speed-up vs gru_cell" in text
