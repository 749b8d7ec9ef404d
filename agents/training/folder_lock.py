"""The lock that keeps two training processes off one run folder: both would write the same checkpoints,
logs and final model, each destroying the other's."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from agents.training.config import ConfigError

LOCK_NAME = ".train.lock"


class FolderLock:
    """An exclusive ``flock`` on ``RUN/.train.lock`` holding the owner's process id. The operating system
    drops the lock when its process ends however it ends, so a lock file left by a dead process (a
    SIGKILL) is stale by construction and the next run takes it over."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock, or raise ConfigError naming the process that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise ConfigError(
                f"run folder {str(self.path.parent)!r}: in use by process {owner} (lock {self.path}); wait for "
                "that run to end or stop it, or choose another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the file drops the flock
            self._handle = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
