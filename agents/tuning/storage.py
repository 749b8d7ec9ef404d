"""The study's storage: any SQLAlchemy URL, opened the same way by the command and by each trial's
worker (which loads the study to report to the pruner)."""

from __future__ import annotations

import optuna


class StorageError(ValueError):
    """A storage URL that cannot be opened; the message names it."""


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The study storage at ``url`` (any SQLAlchemy URL: ``sqlite:///study.db``, ``postgresql://...``).
    SQLite waits up to a minute for a lock, so that several processes can share one file."""
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:") else None
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except Exception as e:  # noqa: BLE001 - SQLAlchemy's and the drivers' errors vary by backend
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageError(f"storage {url!r}: cannot open it ({reason})") from None
