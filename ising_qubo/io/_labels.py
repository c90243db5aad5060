"""Variable labels for the index-based text formats (COO, qbsolv).

Those formats only know integer indices, so other labels are stored as JSON in comment
lines. JSON has no tuples; lists are turned back into tuples on reading, which is exact
because a hashable label can never be a list.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Hashable
from typing import Any, TypeGuard

import numpy as np


def is_int(label: Any) -> TypeGuard[numbers.Integral]:
    """True for integer labels; bools are excluded because ``True`` must come back as ``True``."""
    return isinstance(label, numbers.Integral) and not isinstance(label, (bool, np.bool_))


def _plain(label: Any, fmt: str) -> Any:
    if label is None or isinstance(label, (bool, str)):
        return label
    if isinstance(label, np.bool_):
        return bool(label)
    if is_int(label):
        return int(label)
    if isinstance(label, numbers.Real):
        return float(label)
    if isinstance(label, tuple):
        return [_plain(item, fmt) for item in label]
    raise ValueError(
        f"cannot store variable label {label!r} in a {fmt} file: labels must be ints,"
        " floats, strings, bools, None or tuples of those"
    )


def encode(label: Hashable, fmt: str) -> str:
    """One-line JSON text for ``label`` (``ensure_ascii`` keeps it on one line and ASCII)."""
    return json.dumps(_plain(label, fmt))


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    if isinstance(value, dict):
        raise ValueError("a JSON object is not a valid variable label")
    return value


class LabelError(ValueError):
    """A label dimod cannot take, with the reason (the readers put it in their message)."""


# dimod treats a label equal to an integer as a possible index into its variables and
# converts it to a C ssize_t: a larger one (2**63, 1e30) raises OverflowError deep inside
# BinaryQuadraticModel (a traceback), so the readers refuse it first.
_INDEX_LIMIT = 2**63


def _checked_number(value: Any) -> Any:
    if type(value) is float and not math.isfinite(value):
        raise LabelError(f"label {value!r} is not a finite number")
    if type(value) in (int, float) and float(value).is_integer():
        if not -_INDEX_LIMIT <= value < _INDEX_LIMIT:
            raise LabelError(f"label {value!r} is an integer beyond 64 bits")
    return value


def decode(text: str) -> Hashable:
    """Inverse of :func:`encode`; raises ValueError on anything else."""
    return _checked_number(_tuples(json.loads(text)))


def as_tuples(value: Any) -> Any:
    """Lists to tuples, recursively (for label lists decoded from any JSON document); a
    number dimod cannot take as a label raises :class:`LabelError`."""
    return _checked_number(_tuples(value))


class LabelTable:
    """Collects ``label <position> <json>`` comment lines while a text reader runs."""

    __slots__ = ("by_position", "line_of")

    def __init__(self) -> None:
        self.by_position: dict[int, Hashable] = {}
        self.line_of: dict[Hashable, int] = {}

    def __bool__(self) -> bool:
        return bool(self.by_position)

    def __len__(self) -> int:
        return len(self.by_position)

    def add(self, tf: Any, number: int, position: str, text: str) -> None:
        """Record one label line; ``tf`` is the reader's ``TextFile`` (for errors)."""
        pos = tf.integer(position, number, "label position")
        if pos in self.by_position:
            raise tf.error(f"second label for position {pos}", number)
        try:
            label = decode(text)
            hash(label)
        except (ValueError, TypeError, RecursionError) as exc:
            raise tf.error(f"label is not a JSON label: {exc}", number) from None
        if label in self.line_of:
            raise tf.error(f"label {label!r} already used on line {self.line_of[label]}", number)
        self.by_position[pos] = label
        self.line_of[label] = number

    def order(self, tf: Any, n: int) -> list[Hashable]:
        """Labels of positions ``0..n-1``; every position must be named exactly once."""
        expected = set(range(n))
        if set(self.by_position) != expected:
            bad = min(set(self.by_position) ^ expected)
            raise tf.error(
                f"label lines must name each of the {n} positions 0..{n - 1} exactly once"
                f" (position {bad} is missing or out of range)"
            )
        return [self.by_position[k] for k in range(n)]
