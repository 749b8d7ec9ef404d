"""The record of each run, written as soon as it finishes, and what makes a record count as done; the
lock that keeps two sweeps off one folder."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from agents.sweep.worker import RunTask


def record_path(out: Path, task: RunTask) -> Path:
    return out / "runs" / task.env / f"{task.name}.json"


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # missing or unreadable: the run is made again


def done_record(path: Path, task: RunTask) -> dict[str, Any] | None:
    """The record at ``path`` when it is ok and was made with the configuration planned now and with the
    algorithm's arguments that configuration resolves to today (an edited hyperparameter entry makes the
    records made before it stale); else None. A field that TrainConfig gained after the record was written
    counts as equal where it has its default value."""
    from agents.training import TrainConfig

    record = read_record(path)
    if record is None or record.get("status") != "ok" or not isinstance(record.get("config"), dict):
        return None
    planned = _jsonable(task.config)
    defaults = _config_defaults()
    made = {k: record["config"].get(k, defaults.get(k)) for k in planned}
    if made != planned or not set(record["config"]) <= set(planned):
        return None
    if record.get("algo_kwargs") != _jsonable(TrainConfig(**task.config).algo_kwargs()):
        return None
    return record


def is_done(out: Path, task: RunTask) -> bool:
    """Whether the sweep's run ``task`` has a :func:`done_record` in ``out``."""
    return done_record(record_path(out, task), task) is not None


def _config_defaults() -> dict[str, Any]:
    from agents.training import TrainConfig

    return _jsonable({k: v for k, v in dataclasses.asdict(TrainConfig()).items() if k != "threads"})


def _jsonable(data: Any) -> Any:
    return json.loads(json.dumps(data, default=str))


def strict_json(data: Any) -> Any:
    """NaN and infinities as null: memory.json is strict JSON."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: strict_json(v) for k, v in data.items()}
    if isinstance(data, list):
        return [strict_json(v) for v in data]
    return data


LOCK_NAME = ".sweep.lock"


def lock_folder(out: Path) -> Any:
    """Hold an exclusive lock on OUT for the life of this process, or return False if another sweep holds it.

    Two sweeps on one folder would train the same run in the same work folder, each wiping the other's
    progress.csv, and race on the records."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    handle = (out / LOCK_NAME).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return False
    return handle  # kept open (and so locked) until the process ends
