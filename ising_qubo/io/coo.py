"""COO text (``.coo``): ``i j bias`` lines, compatible with ``dimod.serialization.coo``.

We write it ourselves because dimod's writer rounds biases to 6 decimals and drops the
offset, and its reader silently skips lines it does not understand. Our files stay
readable by dimod (integer labels): metadata lives in ``#`` comments dimod ignores.

Layout::

    # vartype=BINARY
    # offset=1.5
    # label 0 "a"          (only when the labels are not all non-negative ints)
    0 0 -1                  (one line per variable, zeros included: isolated ones survive)
    0 1 0.25                (one line per interaction, i < j)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import IO

import dimod
import numpy as np

from ising_qubo.io import _labels
from ising_qubo.io._build import bqm_from_lists
from ising_qubo.io._instance import Instance
from ising_qubo.io._text import TextFile, format_float, show

_EXPECTED = "a COO file ('# vartype=SPIN|BINARY' header, then 'i j bias' lines)"
_VARTYPE = re.compile(r"#\s*vartype\s*[:=]\s*(\S+)\s*$", re.IGNORECASE)
_OFFSET = re.compile(r"#\s*offset\s*=\s*(\S+)\s*$")
_LABEL = re.compile(r"#\s*label\s+(\S+)\s+(.+)$")


def write(bqm: dimod.BinaryQuadraticModel, fp: IO[str]) -> None:
    """Write ``bqm`` exactly (shortest round-tripping decimals, offset, labels)."""
    variables = list(bqm.variables)
    # dimod's own COO reader only takes non-negative integer labels, so only those are
    # written directly; everything else goes through positions plus '# label' lines.
    indices = [int(v) for v in variables if _labels.is_int(v)]
    direct = len(indices) == len(variables) and min(indices, default=0) >= 0
    names = indices if direct else list(range(len(variables)))
    out = [f"# vartype={bqm.vartype.name}", f"# offset={format_float(bqm.offset)}"]
    if not direct:
        out.extend(f"# label {k} {_labels.encode(v, 'COO')}" for k, v in enumerate(variables))
    vectors = bqm.to_numpy_vectors(variable_order=variables)
    ldata, (irow, icol, qdata) = vectors.linear_biases, vectors.quadratic
    out.extend(f"{u} {u} {format_float(b)}" for u, b in zip(names, ldata.tolist(), strict=True))
    for r, c, b in zip(irow.tolist(), icol.tolist(), qdata.tolist(), strict=True):
        u, v = names[r], names[c]
        if u > v:
            u, v = v, u
        out.append(f"{u} {v} {format_float(b)}")
    fp.write("\n".join(out) + "\n")


# Integer labels dimod can hold (its compiled variable tables use a C ssize_t).
_INDEX_LIMIT = 2**63


def read(path: Path) -> list[Instance]:
    """Strict COO reader: every non-comment line must be ``int int float``."""
    tf = TextFile(path, _EXPECTED)
    vartype = None
    offset = 0.0
    offset_line = None
    labels = _labels.LabelTable()
    data: list[tuple[int, str]] = []
    for number, line in tf.lines():
        if not line.startswith("#"):
            data.append((number, line))
            continue
        if m := _LABEL.match(line):
            labels.add(tf, number, m.group(1), m.group(2))
        elif m := _VARTYPE.match(line):
            name = m.group(1).upper()
            if name not in ("SPIN", "BINARY"):
                raise tf.error(f"vartype must be SPIN or BINARY, got {show(m.group(1))}", number)
            if vartype is not None and vartype != name:
                raise tf.error(f"vartype {name} contradicts the earlier {vartype}", number)
            vartype = name
        elif m := _OFFSET.match(line):
            if offset_line is not None:
                raise tf.error(f"second offset line (first on line {offset_line})", number)
            offset, offset_line = tf.number(m.group(1), number, "offset"), number
    if vartype is None:
        raise tf.error("no '# vartype=SPIN' or '# vartype=BINARY' header line")
    order = labels.order(tf, len(labels)) if labels else None

    # With label lines, indices are positions 0..n-1; without, they are the labels
    # themselves, numbered in order of first appearance (as dimod's reader does).
    position: dict[int, int] = {} if not labels else {k: k for k in range(len(labels))}
    lin_pos: list[int] = []
    lin_val: list[float] = []
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    seen: dict[tuple[int, int], int] = {}
    for number, line in data:
        tokens = line.split()
        if len(tokens) != 3:
            raise tf.error(f"expected 'i j bias' (3 fields), got {show(line)}", number)
        i = tf.integer(tokens[0], number, "variable index")
        j = tf.integer(tokens[1], number, "variable index")
        bias = tf.number(tokens[2], number, "bias")
        for index in (i, j):
            if not -_INDEX_LIMIT <= index < _INDEX_LIMIT:  # dimod keeps int labels in C
                raise tf.error(f"variable index {index} out of range (|index| < 2**63)", number)
        key = (i, j) if i <= j else (j, i)
        if key in seen:
            raise tf.error(f"duplicate entry {key[0]} {key[1]} (first on line {seen[key]})", number)
        seen[key] = number
        for index in (i, j):
            if index not in position:
                if labels:
                    raise tf.error(
                        f"index {index} out of range 0..{len(labels) - 1} (the '# label' lines)",
                        number,
                    )
                position[index] = len(position)
        if i == j:
            lin_pos.append(position[i])
            lin_val.append(bias)
        else:
            rows.append(position[i])
            cols.append(position[j])
            vals.append(bias)
    linear = np.zeros(len(position))
    linear[lin_pos] = lin_val
    if order is None:
        order = list(position)
    bqm = bqm_from_lists(linear, rows, cols, vals, offset, dimod.Vartype[vartype], order)
    return [Instance(bqm=bqm, name=path.stem, path=path)]
