"""Saving a run so that nothing is lost: atomic model files, periodic checkpoints, the signals that
stop a run with a save, and finding what to resume from."""

from __future__ import annotations

import json
import os
import zipfile
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
        stats = vecnormalize_path(path)
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


def saved_timesteps(path: Path) -> int:
    """The timestep count stored in a saved model (SB3's zip holds it in its ``data`` entry)."""
    try:
        with zipfile.ZipFile(path) as z:
            return int(json.loads(z.read("data"))["num_timesteps"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ConfigError(f"--resume {str(path)!r}: not a readable saved model ({e})") from None


def resolve_resume(path: str | Path) -> Path:
    """A model .zip, or a run folder -> the newest of its last checkpoint and its final model (a finished
    run's model.zip is newer than its last periodic checkpoint)."""
    path = Path(path)
    if path.is_file() and path.suffix == ".zip":
        return path
    candidates = [p for p in (path / "checkpoints" / "last.zip", path / "model.zip") if p.is_file()]
    if not candidates:
        raise ConfigError(
            f"--resume {str(path)!r}: expected a run folder with checkpoints/last.zip or model.zip, or a model .zip"
        )
    return max(candidates, key=saved_timesteps)


def run_folder_of(model: Path) -> Path:
    """The run folder a saved model belongs to (``RUN/model.zip``, ``RUN/checkpoints/last.zip``)."""
    return model.parent.parent if model.parent.name == "checkpoints" else model.parent


def vecnormalize_path(model: Path) -> Path:
    """Where :func:`save_atomically` keeps a model's normalisation statistics."""
    return model.with_name(f"{model.stem}_vecnormalize.pkl")


class SaveVecNormalize(BaseCallback):
    """For ``EvalCallback(callback_on_new_best=...)``: the new best model's normalisation statistics
    beside it, so that ``best_model.zip`` can be evaluated as it was."""

    def __init__(self, best_model: Path) -> None:
        super().__init__()
        self.best_model = best_model

    def _on_step(self) -> bool:
        env = self.model.get_vec_normalize_env()
        if env is not None:
            target = vecnormalize_path(self.best_model)
            tmp = target.with_name(f".{target.name}.tmp")
            env.save(str(tmp))
            os.replace(tmp, target)
        return True
