"""The search space of a study: a YAML file per algorithm (``agents/tuning/spaces/<algo>.yml``, shipped
with the package, or any file given with ``--space``), checked when loaded, and the draw of one trial's
settings as the training harness takes them."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agents.training.algos import ALGOS
from agents.training.config import RESERVED, flag, yaml_value

SPACES_DIR = Path(__file__).with_name("spaces")

#: The memory's settings a space may search, each with where the run takes it.
MEMORY_PARAMS = {
    "hidden_size": flag("hidden_size"),
    "dropout": flag("dropout"),
    "n_lstm_layers": "policy_kwargs",
    "seq_len": "the algorithm's argument",
}
SECTIONS = ("memory", "algo", "policy")
RANGE_KEYS = {"choices", "low", "high", "log", "step"}
# Policy arguments the memory section or the command line sets.
POLICY_SET_ELSEWHERE = {"cell": flag("cell"), "dropout": "memory: dropout", "lstm_hidden_size": "memory: hidden_size",
                        "n_lstm_layers": "memory: n_lstm_layers"}  # fmt: skip


class SpaceError(ValueError):
    """A search space that cannot be used; the message names the file, the parameter and what was expected."""


@dataclass(frozen=True)
class Param:
    """One searched parameter: categorical (``choices``, labels standing for ``values``) or numeric."""

    name: str
    section: str
    choices: tuple[Any, ...] | None = None
    values: dict[str, Any] | None = None
    """For labelled choices: label -> the value it stands for."""
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False

    def suggest(self, trial: Any) -> Any:
        """Draw the parameter on an Optuna trial; returns the value the run takes."""
        if self.choices is not None:
            drawn = trial.suggest_categorical(self.name, list(self.choices))
            return self.values[drawn] if self.values is not None else drawn
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def value_of(self, drawn: Any) -> Any:
        """The value the run takes for a drawn parameter (a label's value for labelled choices)."""
        return self.values[drawn] if self.values is not None else drawn

    def candidates(self) -> list[Any]:
        """Every value the run may take (the bounds for a numeric range)."""
        if self.choices is not None:
            return [self.value_of(c) for c in self.choices]
        return [self.low, self.high]


@dataclass(frozen=True)
class Settings:
    """One trial's settings as the harness takes them: TrainConfig fields and algorithm overrides."""

    config: dict[str, Any]
    """``cell``, ``hidden_size``, ``dropout`` (those drawn)."""
    hyperparams: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the algorithm, ``policy_kwargs`` included (for ``--hyperparams``)."""


@dataclass(frozen=True)
class SearchSpace:
    """The parameters of a study's search, read from ``path``."""

    algo: str
    path: Path
    params: tuple[Param, ...]

    def names(self, section: str) -> list[str]:
        return [p.name for p in self.params if p.section == section]

    def sample(self, trial: Any, cells: list[str]) -> Settings:
        """Draw the cell among ``cells`` and every parameter of the space on ``trial``."""
        config: dict[str, Any] = {"cell": trial.suggest_categorical("cell", list(cells))}
        return self.settings(config, {p.name: p.suggest(trial) for p in self.params})

    def settings_of(self, params: dict[str, Any]) -> Settings:
        """The settings of a finished trial from its drawn parameters (``FrozenTrial.params``), floats
        rounded to 4 significant digits (as an entry is written and read)."""
        values = {p.name: _rounded(p.value_of(params[p.name])) for p in self.params if p.name in params}
        return self.settings({"cell": params["cell"]}, values)

    def settings(self, config: dict[str, Any], values: dict[str, Any]) -> Settings:
        hyperparams: dict[str, Any] = {}
        policy_kwargs: dict[str, Any] = {}
        for p in self.params:
            if p.name not in values:
                continue
            value = values[p.name]
            if p.section == "memory" and p.name in ("hidden_size", "dropout"):
                config[p.name] = value
            elif p.section == "policy" or p.name == "n_lstm_layers":
                policy_kwargs[p.name] = value
            else:
                hyperparams[p.name] = value
        if policy_kwargs:
            hyperparams["policy_kwargs"] = policy_kwargs
        return Settings(config, hyperparams)

    def largest(self, name: str) -> Any:
        """The largest value the space may give ``name`` (None when it is not searched)."""
        for p in self.params:
            if p.name == name:
                return max(v for v in p.candidates() if v is not None)
        return None


def _rounded(value: Any) -> Any:
    return float(f"{value:.4g}") if isinstance(value, float) else value


def default_space_path(algo: str) -> Path:
    return SPACES_DIR / f"{algo}.yml"


def algo_arguments(algo: str) -> set[str]:
    """The keyword arguments of the algorithm that a space may search."""
    cls = ALGOS[algo].cls
    return set(inspect.signature(cls.__init__).parameters) - {"self", "policy_kwargs", *RESERVED}


def policy_arguments(algo: str) -> set[str]:
    """The keyword arguments of the algorithm's policy (along its classes) that a space may search."""
    spec = ALGOS[algo]
    policy = spec.cls.policy_aliases[spec.policy]
    names: set[str] = set()
    for cls in policy.__mro__:
        if "__init__" in vars(cls):
            names |= {
                n for n, p in inspect.signature(cls.__init__).parameters.items()
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            }  # fmt: skip
    return names - {"self", "observation_space", "action_space", "lr_schedule", *POLICY_SET_ELSEWHERE}


def load_space(algo: str, path: str | Path | None = None) -> SearchSpace:
    """The space in ``path`` (default: the algorithm's shipped file), checked: every parameter known to
    its section, every range non-empty. Raises SpaceError naming the file, the parameter and the value."""
    path = Path(path) if path is not None else default_space_path(algo)
    if not path.is_file():
        raise SpaceError(f"space {str(path)!r}: no such file")
    try:
        data = yaml_value(path.read_text()) or {}  # numbers as numbers: 1e-4 too
    except yaml.YAMLError as e:
        raise SpaceError(f"space {str(path)!r}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise SpaceError(f"space {str(path)!r}: expected a mapping with sections {', '.join(SECTIONS)}")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise SpaceError(f"space {str(path)!r}: unknown section {unknown[0]!r}; expected {', '.join(SECTIONS)}")
    known = {
        "memory": {k for k in MEMORY_PARAMS if k != "seq_len" or "seq_len" in algo_arguments(algo)},
        "algo": algo_arguments(algo),
        "policy": policy_arguments(algo),
    }
    params: list[Param] = []
    seen: dict[str, str] = {}
    for section in SECTIONS:
        entries = data.get(section) or {}
        if not isinstance(entries, dict):
            raise SpaceError(f"space {str(path)!r}: section {section!r}: expected a mapping of parameters to ranges")
        for name, spec in entries.items():
            where = f"space {str(path)!r}: {section}: {name}"
            if name == "cell" and section == "memory":
                raise SpaceError(f"{where}: the cells are chosen with --cell (repeatable), not in the space")
            if name not in known[section]:
                hint = ""
                for other, names in known.items():
                    if other != section and name in names:
                        hint = f" (it belongs in section {other!r})"
                raise SpaceError(
                    f"{where}: not a parameter of this section for {algo}{hint}; "
                    f"expected some of {', '.join(sorted(known[section]))}"
                )
            if name in seen:
                raise SpaceError(f"{where}: also in section {seen[name]!r}")
            seen[name] = section
            params.append(_param(where, name, section, spec))
    return SearchSpace(algo, path, tuple(params))


def _param(where: str, name: str, section: str, spec: Any) -> Param:
    if not isinstance(spec, dict) or not spec:
        raise SpaceError(f"{where}={spec!r}: expected a range: {{choices: [...]}} or {{low: L, high: H}}")
    unknown = sorted(set(spec) - RANGE_KEYS)
    if unknown:
        raise SpaceError(f"{where}: unknown key {unknown[0]!r}; expected some of {', '.join(sorted(RANGE_KEYS))}")
    if "choices" in spec:
        if set(spec) != {"choices"}:
            raise SpaceError(f"{where}: choices and {sorted(set(spec) - {'choices'})[0]} together; expected one")
        choices = spec["choices"]
        if isinstance(choices, dict):
            if not choices:
                raise SpaceError(f"{where}: choices={{}}: empty; expected at least one label")
            return Param(name, section, choices=tuple(str(k) for k in choices),
                         values={str(k): v for k, v in choices.items()})  # fmt: skip
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{where}: choices={choices!r}: empty or not a list; expected at least one value")
        for c in choices:
            if not (c is None or isinstance(c, (bool, int, float, str))):
                raise SpaceError(
                    f"{where}: choice {c!r}: expected a number, string, boolean or null "
                    "(name lists and mappings with labels: {choices: {label: value}})"
                )
        if len(set(map(repr, choices))) != len(choices):
            raise SpaceError(f"{where}: choices={choices!r}: a value repeated")
        return Param(name, section, choices=tuple(choices))
    if "low" not in spec or "high" not in spec:
        raise SpaceError(f"{where}={spec!r}: expected both low and high (or choices)")
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    for key, value in (("low", low), ("high", high), ("step", step)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):  # fmt: skip
            raise SpaceError(f"{where}: {key}={value!r}: expected a finite number")
    if not isinstance(log, bool):
        raise SpaceError(f"{where}: log={log!r}: expected true or false")
    if not low < high:
        raise SpaceError(f"{where}: low={low!r}, high={high!r}: an empty range; expected low < high")
    if log and low <= 0:
        raise SpaceError(f"{where}: low={low!r} with log: true; expected low > 0")
    if step is not None and (step <= 0 or log):
        raise SpaceError(f"{where}: step={step!r}: expected a positive step, without log")
    integer = isinstance(low, int) and isinstance(high, int) and (step is None or isinstance(step, int))
    return Param(name, section, low=low, high=high, log=log, step=step, integer=integer)
