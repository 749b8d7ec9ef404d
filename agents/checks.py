"""Checks of the algorithms' arguments, shared by every agent: each raises a ValueError that names the
argument, the value and what was expected, before anything is built from it."""

from __future__ import annotations

import math
from typing import Any

_SCHEDULE_HINT = (
    "a schedule of the remaining progress (e.g. stable_baselines3.common.utils.LinearSchedule; lin_X in the "
    "hyperparameters)"
)


def is_number(value: Any) -> bool:
    """A real number (an int or a float, not a bool, not a string)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and not math.isnan(value)


def _range(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    assert high is not None
    return f"{'<' if high_open else '<='} {high:g}"


def _inside(value: float, low: float | None, high: float | None, low_open: bool, high_open: bool) -> bool:
    if low is not None and (value < low or (low_open and value == low)):
        return False
    return not (high is not None and (value > high or (high_open and value == high)))


def check_number(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a float, or a ValueError naming ``name`` unless it is a number within the bounds."""
    expected = f"expected a number {_range(low, high, low_open, high_open)}" if (low, high) != (None, None) else ""
    if not is_number(value):
        raise ValueError(f"{name}={value!r}: {expected or 'expected a number'}")
    if not _inside(float(value), low, high, low_open, high_open):
        raise ValueError(f"{name}={value!r}: {expected}")
    return float(value)


def check_schedule(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """A number within the bounds, or a schedule (a callable of the remaining progress) within them at both
    ends of training (SB3's schedules are monotone in the progress; the last value may reach an open bound,
    as a linear schedule's 0); else a ValueError naming ``name``."""
    bounds = _range(low, high, low_open, high_open) if (low, high) != (None, None) else ""
    if callable(value):
        # The value at the end of training may reach a bound (a linear schedule decays to 0).
        start, end = value(1.0), value(0.0)
        fine = is_number(start) and _inside(float(start), low, high, low_open, high_open)
        fine = fine and is_number(end) and _inside(float(end), low, high, False, False)
        if not fine:
            raise ValueError(
                f"{name}={value!r}: expected a number {bounds} or a schedule within those bounds (this one goes "
                f"from {start} to {end})"
            )
        return
    if not is_number(value):
        raise ValueError(f"{name}={value!r}: expected a number {bounds} or {_SCHEDULE_HINT}".replace("  ", " "))
    if not _inside(float(value), low, high, low_open, high_open):
        raise ValueError(f"{name}={value!r}: expected a number {bounds} (or a schedule)")


def check_integer(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int, or a ValueError naming ``name`` unless it is an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name}={value!r}: expected {what}")
    return int(value)
