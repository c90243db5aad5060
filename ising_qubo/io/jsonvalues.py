"""Result files as JSON: one conversion of computed values, one rule for non-finite numbers.

Every JSON file the package writes about a result (``ising-qubo solve --json``, a pruning
run's ``report.json``, a benchmark's ``results.json``) goes through :func:`to_json`:

- numpy scalars and arrays become Python numbers and lists, tuples become lists, mapping
  keys become strings;
- a non-finite float is written as the **string** ``"inf"``, ``"-inf"`` or ``"nan"``
  (what ``str()`` gives and ``float()`` reads back). JSON has no literal for these
  (Python's default ``Infinity``/``NaN`` is not JSON, and other readers reject it), and
  ``null`` would lose the difference between "infinite", "not a number" and "absent".

A reader gets the number back with :func:`read_float`, which also takes ``null`` (files
written before this rule used it for "never reached" and for non-finite values).

It lives in ``io``, the bottom layer, so the command line, the pruning run and the
benchmark harness can all use it.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from ising_qubo.io._atomic import atomic_write

#: How each non-finite float is written, and read back.
NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def to_plain(value: Any) -> Any:
    """``value`` with numpy scalars/arrays as Python numbers/lists, tuples as lists and
    mapping keys as strings; floats are kept as they are (non-finite ones too), so the
    result also suits a checkpoint. Containers are copied, other objects returned as-is."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def to_json(value: Any) -> Any:
    """:func:`to_plain`, with every non-finite float as ``"inf"``, ``"-inf"`` or ``"nan"``."""
    return _finite_or_named(to_plain(value))


def _finite_or_named(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k: _finite_or_named(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_named(v) for v in value]
    return value


def dumps(value: Any, indent: int | None = 1) -> str:
    """``value`` as JSON text under the rule above (never ``Infinity``/``NaN`` literals)."""
    return json.dumps(to_json(value), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike[str], value: Any, indent: int | None = 1) -> None:
    """Write :func:`dumps` of ``value`` plus a newline to ``path``, atomically: an error
    while converting or writing leaves the previous file as it was."""
    text = dumps(value, indent=indent) + "\n"
    with atomic_write(path, binary=False) as handle:
        handle.write(text)


def read_float(value: Any, missing: float | None = None) -> float | None:
    """A number read from such a file: ``"inf"``, ``"-inf"``, ``"nan"`` and numbers as
    floats; ``null`` (None) as ``missing``. Anything else is a ValueError naming it."""
    if value is None:
        return missing
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in NON_FINITE:
        return NON_FINITE[value.strip().lower()]
    raise ValueError(f"expected a number, 'inf', '-inf', 'nan' or null, got {value!r}")


__all__ = ["NON_FINITE", "dumps", "read_float", "to_json", "to_plain", "write_json"]
