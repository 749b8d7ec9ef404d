"""Saving a run so that nothing is lost: atomic model files, periodic checkpoints, the signals that
stop a run with a save, and finding what to resume from."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from agents.training.config import ConfigError


def save_atomically(model: BaseAlgorithm, path: Path) -> None:
    """Save the model (and VecNormalize statistics beside it): write a temporary file, then
    rename, so that a run killed while saving keeps its previous complete file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.zip")
    model.save(tmp)
    os.replace(tmp, path)
    env = model.get_vec_normalize_env()
    if env is not None:
        stats = path.with_name(f"{path.stem}_vecnormalize.pkl")
        tmp_stats = stats.with_name(f".{stats.name}.tmp")
        env.save(str(tmp_stats))
        os.replace(tmp_stats, stats)


def save_checkpoint(model: BaseAlgorithm, run_dir: Path) -> Path:
    """``checkpoints/last.zip`` and a numbered copy, and the timesteps in ``checkpoints/last.json``."""
    ckpt = run_dir / "checkpoints"
    save_atomically(model, ckpt / "last.zip")
    save_atomically(model, ckpt / f"model_{model.num_timesteps}_steps.zip")
    tmp = ckpt / ".last.json.tmp"
    tmp.write_text(json.dumps({"timesteps": model.num_timesteps}))
    os.replace(tmp, ckpt / "last.json")
    return ckpt / "last.zip"


class CheckpointCallback(BaseCallback):
    """Every ``save_freq`` environment steps, :func:`save_checkpoint`."""

    def __init__(self, run_dir: Path, save_freq: int) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.save_freq = save_freq
        self._next = save_freq

    def _init_callback(self) -> None:
        self._next = (self.model.num_timesteps // self.save_freq + 1) * self.save_freq

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next += self.save_freq
            save_checkpoint(self.model, self.run_dir)
        return True


class Stop(Exception):
    """Raised in the main thread by SIGTERM so that the run saves and exits like on Ctrl-C."""


def raise_stop(signum: int, frame: Any) -> None:
    raise Stop(signum)


def resolve_resume(path: str | Path) -> Path:
    """A run folder (its last checkpoint, else its model) or a model .zip -> the .zip to load."""
    path = Path(path)
    for candidate in (path, path / "checkpoints" / "last.zip", path / "model.zip"):
        if candidate.is_file() and candidate.suffix == ".zip":
            return candidate
    raise ConfigError(f"--resume {str(path)!r}: expected a run folder with checkpoints/last.zip or a model .zip")
