"""Saving a run so that nothing is lost: atomic model files, periodic checkpoints, the signals that
stop a run with a save, and finding what to resume from."""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import threading
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from agents.training.config import ConfigError

#: The entry of a saved model's zip that holds the VecNormalize statistics saved with it: written into the
#: same file before its one rename, so that a model is never seen with another save's statistics.
STATS_ENTRY = "vecnormalize.pkl"


def _temporary(path: Path) -> Path:
    """A temporary name beside ``path``, unique to this process (two writers never share one)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")


#: The signals that stop a run with a save (Ctrl-C and SIGTERM, see :func:`raise_stop`).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_deferring = threading.local()


@contextmanager
def stop_signals_deferred() -> Iterator[None]:
    """Within this block Ctrl-C and SIGTERM wait: a save in progress finishes (an exception raised inside
    ``torch.save`` leaves its zip writer broken, and the run would end without its save), then the first
    such signal is handled as it would have been. Nested blocks defer to the outermost; off the main thread
    (where Python takes no signal handlers) the block does nothing."""
    if getattr(_deferring, "active", False) or threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous: dict[int, Any] = {}
    try:
        for sig in STOP_SIGNALS:
            if signal.getsignal(sig) is not None:  # None: a handler set outside Python, which cannot be restored
                previous[sig] = signal.signal(sig, lambda signum, frame: pending.append(signum))
        _deferring.active = True
        yield
    finally:
        _deferring.active = False
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pending:
            handler = previous[pending[0]]
            if callable(handler):
                handler(pending[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(pending[0])


def save_atomically(model: BaseAlgorithm, path: Path) -> None:
    """Save the model with its VecNormalize statistics inside the same zip (:data:`STATS_ENTRY`) and a copy
    of them beside it (``<stem>_vecnormalize.pkl``, for users and the exporter): each file is written under a
    temporary name, then renamed, so that a run killed while saving keeps its previous complete files, and
    a model file always holds its own statistics. Ctrl-C and SIGTERM wait for the save
    (:func:`stop_signals_deferred`)."""
    with stop_signals_deferred():
        _save_atomically(model, path)


def _save_atomically(model: BaseAlgorithm, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    model.save(tmp)
    env = model.get_vec_normalize_env()
    if env is not None:
        stats = pickle.dumps(env)  # what VecNormalize.save writes (the wrapped environments left out)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(STATS_ENTRY, stats)
        beside = vecnormalize_path(path)
        tmp_stats = _temporary(beside)
        tmp_stats.write_bytes(stats)
        os.replace(tmp_stats, beside)
    os.replace(tmp, path)


def load_statistics(model: Path, venv: VecEnv) -> VecNormalize | None:
    """The VecNormalize statistics saved with ``model`` around ``venv``: those inside its zip, else (a model
    saved before they were kept there) the file beside it; None where it has none."""
    with zipfile.ZipFile(model) as archive:
        if STATS_ENTRY in archive.namelist():
            stats = pickle.loads(archive.read(STATS_ENTRY))
            stats.set_venv(venv)
            return stats
    beside = vecnormalize_path(model)
    return VecNormalize.load(str(beside), venv) if beside.is_file() else None


def has_statistics(model: Path) -> bool:
    """Whether ``model`` was saved with VecNormalize statistics (inside it, or beside it)."""
    with zipfile.ZipFile(model) as archive:
        return STATS_ENTRY in archive.namelist() or vecnormalize_path(model).is_file()


def save_checkpoint(model: BaseAlgorithm, run_dir: Path) -> Path:
    """``checkpoints/last.zip`` and a numbered copy, and the timesteps in ``checkpoints/last.json``; Ctrl-C and
    SIGTERM wait for all three (:func:`stop_signals_deferred`)."""
    ckpt = run_dir / "checkpoints"
    with stop_signals_deferred():
        save_atomically(model, ckpt / "last.zip")
        save_atomically(model, ckpt / f"model_{model.num_timesteps}_steps.zip")
        tmp = _temporary(ckpt / "last.json")
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


def _check_torch_archive(name: str, data: bytes) -> None:
    """A ValueError naming ``name`` unless ``data`` is a complete ``torch.save`` file: SB3 writes each
    ``.pth`` entry with its own CRC, so an entry cut short before it was stored passes the outer zip's test."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            bad = inner.testzip()
    except zipfile.BadZipFile as e:
        raise ValueError(f"entry {name!r} is not a complete torch file ({e})") from None
    if bad is not None:
        raise ValueError(f"entry {name!r} is damaged (its part {bad!r})")


def saved_timesteps(path: Path) -> int:
    """The timestep count stored in a saved model (SB3's zip holds it in its ``data`` entry); a ConfigError
    where the file is not a complete saved model (truncated, corrupt, or without its parameters)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()  # the CRC of every entry: a damaged file is refused here, not half-loaded
            if bad is not None:
                raise ValueError(f"entry {bad!r} is damaged")
            if "policy.pth" not in archive.namelist():
                raise ValueError("it holds no policy.pth")
            for name in archive.namelist():
                if name.endswith(".pth"):
                    _check_torch_archive(name, archive.read(name))
            return int(json.loads(archive.read("data"))["num_timesteps"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ConfigError(f"--resume {str(path)!r}: not a readable saved model ({e})") from None


def resolve_resume(path: str | Path, log: Callable[[str], None] | None = None) -> Path:
    """A model .zip, or a run folder -> the newest readable one of its final model, its last checkpoint and
    its numbered checkpoints (a finished run's model.zip is newer than its last periodic checkpoint). An
    unreadable candidate is passed over, and ``log`` says so."""
    path = Path(path)
    if path.is_file() and path.suffix == ".zip":
        saved_timesteps(path)  # refuse a damaged file by name
        return path
    ckpt = path / "checkpoints"
    named = [path / "model.zip", ckpt / "last.zip"]
    numbered = sorted(ckpt.glob("model_*_steps.zip")) if ckpt.is_dir() else []
    candidates = [p for p in [*named, *numbered] if p.is_file()]
    if not candidates:
        raise ConfigError(
            f"--resume {str(path)!r}: expected a run folder with checkpoints/last.zip or model.zip, or a model .zip"
        )
    readable: dict[Path, int] = {}
    for candidate in candidates:
        try:
            readable[candidate] = saved_timesteps(candidate)
        except ConfigError as e:
            if log is not None:
                log(f"skipping {candidate}: {str(e).split(': ', 1)[1]}")
    if not readable:
        names = ", ".join(map(str, candidates))
        raise ConfigError(f"--resume {str(path)!r}: none of {names} is a readable saved model")
    newest = max(readable.values())
    chosen = next(p for p in readable if readable[p] == newest)  # model.zip (the final save) first
    if log is not None and len(readable) < len(candidates):
        log(f"resuming from {chosen} ({newest} steps), the newest readable model")
    return chosen


def run_folder_of(model: Path) -> Path:
    """The run folder a saved model belongs to (``RUN/model.zip``, ``RUN/checkpoints/last.zip``)."""
    return model.parent.parent if model.parent.name == "checkpoints" else model.parent


def vecnormalize_path(model: Path) -> Path:
    """Where :func:`save_atomically` keeps a model's normalisation statistics."""
    return model.with_name(f"{model.stem}_vecnormalize.pkl")


class SaveBestModel(BaseCallback):
    """For ``EvalCallback(callback_on_new_best=...)``, without its own ``best_model_save_path``: the new best
    model saved as every save of a run is (:func:`save_atomically`: one rename, its normalisation statistics
    inside and beside it, Ctrl-C and SIGTERM waiting for the save), so that ``best_model.zip`` can be
    evaluated as it was and is never left half-written."""

    def __init__(self, best_model: Path) -> None:
        super().__init__()
        self.best_model = best_model

    def _on_step(self) -> bool:
        save_atomically(self.model, self.best_model)
        return True
