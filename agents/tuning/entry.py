"""The best trial as hyperparameters: an entry in the layout of ``agents/training/hyperparams/<algo>.yml``
(a file of its own by default, or merged into the algorithm's file), a flat file for ``--hyperparams``,
and the command line that trains with them."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from agents.training.config import TrainConfig, policy_kwargs_dict
from agents.tuning.space import Settings


def merged_hyperparams(fixed: dict[str, Any], found: dict[str, Any]) -> dict[str, Any]:
    """``found`` on top of ``fixed`` (``policy_kwargs`` merged key by key)."""
    out = {**fixed, **found}
    if "policy_kwargs" in fixed or "policy_kwargs" in found:
        out["policy_kwargs"] = {**policy_kwargs_dict(fixed.get("policy_kwargs")),
                                **policy_kwargs_dict(found.get("policy_kwargs"))}  # fmt: skip
    return out


def overrides(base: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """What ``--hyperparams`` takes on top of the environment's entry: the command's own overrides and the
    trial's settings."""
    return merged_hyperparams(base.get("hyperparams", {}), settings.hyperparams)


def entry(base: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The complete entry for the environment: its entry in the algorithm's file, the command's overrides
    and the trial's settings (and ``normalize`` when the command set it)."""
    config = TrainConfig(**{**base, **settings.config})
    _, current = config.hyperparams_entry()
    out = merged_hyperparams(current, overrides(base, settings))
    if "normalize" in base:
        out["normalize"] = config.normalization
    return out


def memory_flags(base: dict[str, Any], settings: Settings) -> str:
    """The command line's memory flags of the settings (the entry cannot carry them: the flags set them)."""
    config = TrainConfig(**{**base, **settings.config})
    return f"--cell {config.cell} --hidden-size {config.hidden_size} --dropout {config.cell_dropout:.4g}"


def train_command(base: dict[str, Any], settings: Settings, hyperparams_file: Path, timesteps: int) -> str:
    config = TrainConfig(**{**base, **settings.config})
    normalize = f" --normalize {base['normalize']}" if "normalize" in base else ""
    return (f"python scripts/train.py --algo {config.algo} --env {config.env} {memory_flags(base, settings)}"
            f"{normalize} --total-timesteps {timesteps} --hyperparams {hyperparams_file}")  # fmt: skip


def entry_text(env: str, values: dict[str, Any], comment: list[str]) -> str:
    """One top-level block of an ``<algo>.yml`` file: the comment lines, then ``env: {...}`` in block style."""
    body = yaml.safe_dump({env: values}, sort_keys=False, default_flow_style=None, width=110)
    return "".join(f"# {line}\n" if line else "#\n" for line in comment) + body


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _block_span(lines: list[str], env: str) -> tuple[int, int] | None:
    """Lines ``[start, end)`` of the top-level block for ``env`` with the comment lines just above it."""
    key = re.compile(rf"^(['\"]?){re.escape(env)}\1\s*:")
    for i, line in enumerate(lines):
        if key.match(line):
            start = i
            while start > 0 and lines[start - 1].startswith("#"):
                start -= 1
            end = i + 1
            while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t"):
                end += 1
            while end > i + 1 and not lines[end - 1].strip():
                end -= 1  # the blank lines after the block separate it from the next one: keep them
            return start, end
    return None


def merge_entry(path: Path, env: str, values: dict[str, Any], comment: list[str]) -> None:
    """Put the entry for ``env`` into the hyperparameter file at ``path``: its block (with the comment
    above it) is replaced, or the entry is appended; the other entries and comments stay as they were.
    Raises ValueError naming the file when the result would change another entry (an anchor defined in
    the replaced block and used elsewhere) or not load back as written."""
    text = path.read_text()
    before = yaml.safe_load(text) or {}
    if not isinstance(before, dict):
        raise ValueError(f"{path}: expected a mapping of env ids to entries")
    lines = text.splitlines(keepends=True)
    block = entry_text(env, values, comment)
    span = _block_span(lines, env)
    if span is None:
        new_text = text.rstrip("\n") + "\n\n" + block
    else:
        new_text = "".join(lines[: span[0]]) + block + "".join(lines[span[1] :])
    try:
        after = yaml.safe_load(new_text)
    except yaml.YAMLError as e:
        problem = str(e).splitlines()[0]
        raise ValueError(
            f"{path}: replacing the entry for {env} would leave the file unreadable ({problem}: a YAML anchor "
            "defined in its block is used by another entry); not written: merge it by hand from the separate file"
        ) from None
    changed = sorted(k for k in before if k != env and after.get(k) != before[k])
    if changed:
        raise ValueError(
            f"{path}: replacing the entry for {env} would change {', '.join(changed)} (YAML anchors defined in "
            "its block); not written: merge it by hand from the separate file"
        )
    if after.get(env) != values:
        raise ValueError(f"{path}: the entry for {env} does not load back as written; not written")
    write_text(path, new_text)
