"""qbsolv's ``.qubo`` text format.

Layout (0-based indices)::

    c comment lines, anywhere
    p qubo 0 <maxNodes> <nNodes> <nCouplers>
    i i value      (nNodes diagonal lines)
    i j value      (nCouplers coupler lines, i < j)

qbsolv is a QUBO format, so a SPIN model is converted to BINARY before writing: loading
gives a BINARY BQM whose energy equals the original's on every corresponding state. The
offset is kept in a ``c offset=<value>`` comment and labels other than ``0..n-1`` in
``c label <position> <json>`` comments; both are read back, making BINARY round trips
exact. Every variable gets a diagonal line (zeros included) so isolated ones survive.
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

_EXPECTED = "a qbsolv .qubo file ('p qubo 0 maxNodes nNodes nCouplers' header, 'i j value' lines)"
_OFFSET = re.compile(r"c\s+offset\s*=\s*(\S+)\s*$")
_LABEL = re.compile(r"c\s+label\s+(\S+)\s+(.+)$")


def write(bqm: dimod.BinaryQuadraticModel, fp: IO[str]) -> None:
    """Write ``bqm`` (converted to BINARY if it is SPIN)."""
    variables = list(bqm.variables)
    out = ["c qbsolv QUBO written by ising_qubo.io"]
    if bqm.vartype is dimod.SPIN:
        bqm = bqm.change_vartype(dimod.BINARY, inplace=False)
        out.append("c converted from SPIN to BINARY; energies are unchanged")
    out.append(f"c offset={format_float(bqm.offset)}")
    if any(not _labels.is_int(v) or v != k for k, v in enumerate(variables)):
        out.extend(f"c label {k} {_labels.encode(v, 'qbsolv')}" for k, v in enumerate(variables))
    n = len(variables)
    # variable_order keeps positions as the caller's order (change_vartype may reorder).
    vectors = bqm.to_numpy_vectors(variable_order=variables)
    ldata, (irow, icol, qdata) = vectors.linear_biases, vectors.quadratic
    out.append(f"p qubo 0 {n} {n} {len(qdata)}")
    out.extend(f"{k} {k} {format_float(b)}" for k, b in enumerate(ldata.tolist()))
    for i, j, b in zip(irow.tolist(), icol.tolist(), qdata.tolist(), strict=True):
        if i > j:
            i, j = j, i
        out.append(f"{i} {j} {format_float(b)}")
    fp.write("\n".join(out) + "\n")


def read(path: Path) -> list[Instance]:
    """Strict qbsolv reader; gives a BINARY BQM with variables ``0..maxNodes-1``."""
    tf = TextFile(path, _EXPECTED)
    header = None  # (line, maxNodes, nNodes, nCouplers)
    offset, offset_line = 0.0, None
    labels = _labels.LabelTable()
    lin_pos: list[int] = []
    lin_val: list[float] = []
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    seen: dict[tuple[int, int], int] = {}
    for number, line in tf.lines():
        if line[0] == "c":
            if m := _LABEL.match(line):
                labels.add(tf, number, m.group(1), m.group(2))
            elif m := _OFFSET.match(line):
                if offset_line is not None:
                    raise tf.error(f"second offset line (first on line {offset_line})", number)
                offset, offset_line = tf.number(m.group(1), number, "offset"), number
            continue
        tokens = line.split()
        if tokens[0] == "p":
            if header is not None:
                raise tf.error(f"second 'p' header (first on line {header[0]})", number)
            header = _read_header(tf, number, tokens)
            continue
        if header is None:
            raise tf.error(f"data before the 'p qubo ...' header: {show(line)}", number)
        if len(tokens) != 3:
            raise tf.error(f"expected 'i j value' (3 fields), got {show(line)}", number)
        i = tf.integer(tokens[0], number, "index")
        j = tf.integer(tokens[1], number, "index")
        value = tf.number(tokens[2], number, "value")
        for index in (i, j):
            if not 0 <= index < header[1]:
                raise tf.error(
                    f"index {index} out of range 0..{header[1] - 1} (maxNodes={header[1]})",
                    number,
                )
        key = (i, j) if i <= j else (j, i)
        if key in seen:
            raise tf.error(f"duplicate entry {key[0]} {key[1]} (first on line {seen[key]})", number)
        seen[key] = number
        if i == j:
            lin_pos.append(i)
            lin_val.append(value)
        else:
            rows.append(i)
            cols.append(j)
            vals.append(value)
    if header is None:
        raise tf.error("no 'p qubo 0 maxNodes nNodes nCouplers' header line")
    hline, max_nodes, n_nodes, n_couplers = header
    if len(lin_pos) != n_nodes:
        raise tf.error(
            f"header declares nNodes={n_nodes} diagonal lines but the file has {len(lin_pos)}",
            hline,
        )
    if len(rows) != n_couplers:
        raise tf.error(
            f"header declares nCouplers={n_couplers} coupler lines but the file has {len(rows)}",
            hline,
        )
    mentioned = len({*lin_pos, *rows, *cols})
    tf.isolated(max_nodes, max(mentioned, len(labels)), "maxNodes", hline)
    order = labels.order(tf, max_nodes) if labels else None
    linear = np.zeros(max_nodes)
    linear[lin_pos] = lin_val
    bqm = bqm_from_lists(linear, rows, cols, vals, offset, dimod.BINARY, order)
    return [Instance(bqm=bqm, name=path.stem, path=path)]


def _read_header(tf: TextFile, number: int, tokens: list[str]) -> tuple[int, int, int, int]:
    if len(tokens) != 6 or tokens[1] != "qubo":
        raise tf.error(
            f"header must be 'p qubo <topology> <maxNodes> <nNodes> <nCouplers>',"
            f" got {show(' '.join(tokens))}",
            number,
        )
    max_nodes = tf.variables(tokens[3], number, "maxNodes")
    n_nodes = tf.count(tokens[4], number, "nNodes")
    n_couplers = tf.count(tokens[5], number, "nCouplers")
    if n_nodes > max_nodes:
        raise tf.error(f"nNodes={n_nodes} exceeds maxNodes={max_nodes}", number)
    if n_couplers > max_nodes * (max_nodes - 1) // 2:
        raise tf.error(
            f"nCouplers={n_couplers} exceeds the {max_nodes * (max_nodes - 1) // 2}"
            f" distinct pairs of {max_nodes} nodes",
            number,
        )
    tf.room_for(n_nodes + n_couplers, "nNodes + nCouplers", number)
    return number, max_nodes, n_nodes, n_couplers
