"""Checks of numeric arguments shared by the optimisers, the loop and the metrics: a bad
value is a ValueError that names the argument."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check_int", "check_number"]


def check_number(
    what: str,
    value: Any,
    *,
    low: float,
    low_open: bool,
    high: float = math.inf,
    high_open: bool = True,
) -> float:
    """``value`` as a float inside the interval, else a ValueError naming it."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high
        )
    if not ok:
        lo = f"{'(' if low_open else '['}{low:g}"
        hi = f"{high:g}{')' if high_open else ']'}"
        raise ValueError(f"{what} must be a finite number in {lo}, {hi}, got {value!r}")
    return float(value)


def check_int(what: str, value: Any, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{what} must be an integer >= {low}, got {value!r}")
    return value
