"""Argument types shared by the command lines: each rejects a bad value with argparse's
``PROG: error: argument --flag: invalid value ...: expected ...`` before anything runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def expected_integer(minimum: int | None) -> str:
    """What an integer option with this minimum expects, in words."""
    if minimum is None:
        return "an integer"
    return "a positive integer" if minimum == 1 else f"an integer >= {minimum}"


def integer_arg(minimum: int | None) -> Callable[[str], int]:
    """An argparse type: an integer, at least ``minimum`` when one is given."""

    def parse(text: str) -> int:
        expected = expected_integer(minimum)
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected {expected}") from None
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected {expected}")
        return value

    return parse


def probability(text: str) -> float:
    """An argparse type: a number in [0, 1) (a dropout probability)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number in [0, 1)") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a number in [0, 1)")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a positive number")
    return value


POSITIVE = integer_arg(1)
NON_NEGATIVE = integer_arg(0)
