"""OR-Library Beasley binary quadratic programs, e.g. ``bqp50.txt`` (read only, multi-instance).

First line: number of instances M. Each instance: ``n nnz`` then ``nnz`` lines ``i j q``
(1-based, i <= j as shipped). The literature maximises
f(x) = sum_i q_ii x_i + 2 sum_{i<j} q_ij x_i x_j over x in {0,1}^n, so each instance becomes
the minimisation BQM (BINARY, variables 0..n-1) with linear -q_ii, quadratic -2 q_ij and
offset 0: objective = -energy.
"""

from __future__ import annotations

from pathlib import Path

import dimod
import numpy as np

from ising_qubo.io._build import bqm_from_lists
from ising_qubo.io._instance import Instance
from ising_qubo.io._text import TextFile, show

_EXPECTED = "an OR-Library bqp file (instance count, then per instance 'n nnz' and 'i j q' lines)"


def read(path: Path) -> list[Instance]:
    """Read every instance; the whole file must be valid, not just the one asked for."""
    tf = TextFile(path, _EXPECTED)
    lines = tf.lines()
    mline, first = next(lines)  # TextFile guarantees one non-blank line
    tokens = first.split()
    if len(tokens) != 1:
        raise tf.error(f"first line must be the number of instances, got {show(first)}", mline)
    m = tf.count(tokens[0], mline, "instance count", minimum=1)
    tf.room_for(m, "instance count", mline)
    instances = []
    for k in range(1, m + 1):
        header = next(lines, None)
        if header is None:
            raise tf.error(
                f"truncated: {m} instances declared but the file ends after {k - 1}", mline
            )
        instances.append(_read_instance(tf, lines, header, k, path))
    extra = next(lines, None)
    if extra is not None:
        raise tf.error(f"extra data after the last of the {m} instances", extra[0])
    return instances


def _read_instance(tf: TextFile, lines, header: tuple[int, str], k: int, path: Path) -> Instance:
    hline, text = header
    tokens = text.split()
    if len(tokens) != 2:
        raise tf.error(f"instance {k}: header must be 'n nnz', got {show(text)}", hline)
    n = tf.variables(tokens[0], hline, f"instance {k}: variable count n", minimum=1)
    nnz = tf.count(tokens[1], hline, f"instance {k}: entry count nnz")
    if nnz > n * (n + 1) // 2:
        raise tf.error(
            f"instance {k}: nnz = {nnz} is more than the {n * (n + 1) // 2} distinct entries"
            f" of a {n}x{n} upper triangle",
            hline,
        )
    tf.room_for(nnz, f"instance {k}: entry count nnz", hline)
    diag: list[int] = []
    diag_val: list[float] = []
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    seen: dict[tuple[int, int], int] = {}
    for count in range(nnz):
        entry = next(lines, None)
        if entry is None:
            raise tf.error(
                f"truncated: instance {k} declares {nnz} entries but the file ends after {count}",
                hline,
            )
        number, line = entry
        t = line.split()
        if len(t) != 3:
            raise tf.error(f"instance {k}: entry must be 'i j q', got {show(line)}", number)
        i = tf.integer(t[0], number, "index")
        j = tf.integer(t[1], number, "index")
        q = tf.number(t[2], number, "coefficient")
        for index in (i, j):
            if not 1 <= index <= n:
                raise tf.error(f"instance {k}: index {index} out of range 1..{n}", number)
        key = (i, j) if i <= j else (j, i)
        if key in seen:
            raise tf.error(
                f"instance {k}: duplicate entry {key[0]} {key[1]} (first on line {seen[key]})",
                number,
            )
        seen[key] = number
        if i == j:
            diag.append(i - 1)
            diag_val.append(-q)
        else:
            rows.append(key[0] - 1)
            cols.append(key[1] - 1)
            vals.append(-2.0 * q)
    tf.isolated(n, len({*diag, *rows, *cols}), f"instance {k}: variable count n", hline)
    # n-sized only now that the entries are read (a corrupt header fails before this)
    linear = np.zeros(n)
    linear[diag] = diag_val
    bqm = bqm_from_lists(linear, rows, cols, vals, 0.0, dimod.BINARY)
    return Instance(bqm=bqm, name=f"{path.stem}-{k}", kind="bqp", path=path, index=k)
