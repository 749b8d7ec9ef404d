"""Hyperparameters per algorithm and environment, in rl-baselines3-zoo's way: one YAML file per
algorithm (``agents/training/hyperparams/<algo>.yml``, shipped with the package), keyed by Gymnasium
id, by a family pattern (``TMaze-*``) or ``default``. The command line and the memory sweep read this
one source."""

from __future__ import annotations

import fnmatch
import functools
from pathlib import Path
from typing import Any

import yaml

HYPERPARAMS_DIR = Path(__file__).with_name("hyperparams")

#: Keys of an entry that are settings of the run rather than arguments of the algorithm.
RUN_KEYS = ("normalize", "n_timesteps")


@functools.cache
def load_file(algo: str) -> dict[str, dict[str, Any]]:
    """The entries of ``<algo>.yml``; a ValueError naming the file when it is missing or malformed."""
    path = HYPERPARAMS_DIR / f"{algo}.yml"
    if not path.is_file():
        raise ValueError(f"algo={algo!r}: no hyperparameter file {path}")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or "default" not in data:
        raise ValueError(f"{path}: expected a mapping of env ids to entries, with a 'default' entry")
    for key, entry in data.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: entry {key!r}: expected a mapping of argument names to values")
    return data


def entry_for(algo: str, env_id: str) -> tuple[str, dict[str, Any]]:
    """``(name, entry)``: the entry for ``env_id`` itself, else the first family pattern matching it,
    else ``default``. Returns a copy."""
    entries = load_file(algo)
    if env_id in entries:
        return env_id, dict(entries[env_id])
    for key, entry in entries.items():
        if any(c in key for c in "*?[") and fnmatch.fnmatchcase(env_id, key):
            return key, dict(entry)
    return "default", dict(entries["default"])
