"""rudy / Gset max-cut graphs (read only).

First line ``N E``, then ``E`` lines ``i j w`` with 1-based node ids. The BQM is the Ising
form of max-cut: SPIN variables ``0..N-1`` (node k is label k-1, isolated nodes included),
``J_ij = w_ij``, no fields, offset 0. So energy = sum w_ij s_i s_j and
cut = (W - energy) / 2 with W the total edge weight (kept in ``Instance.total_weight``).
"""

from __future__ import annotations

import math
from pathlib import Path

import dimod
import numpy as np

from ising_qubo.io._build import bqm_from_lists
from ising_qubo.io._instance import Instance
from ising_qubo.io._text import TextFile, show

_EXPECTED = "a rudy/Gset graph (first line 'N E', then E lines 'i j w', 1-based)"


def read(path: Path) -> list[Instance]:
    """Read a rudy graph; every structural problem is a ValueError with its line."""
    tf = TextFile(path, _EXPECTED)
    lines = tf.lines()
    hline, header = next(lines)  # TextFile guarantees one non-blank line
    tokens = header.split()
    if len(tokens) != 2:
        raise tf.error(f"header must be 'N E' (nodes, edges), got {show(header)}", hline)
    n = tf.variables(tokens[0], hline, "node count N", minimum=1)
    e = tf.count(tokens[1], hline, "edge count E")
    if e > n * (n - 1) // 2:
        raise tf.error(f"E = {e} edges is more than a simple graph on {n} nodes can have", hline)
    tf.room_for(e, "edge count E", hline)
    rows: list[int] = []
    cols: list[int] = []
    weights: list[float] = []
    seen: dict[tuple[int, int], int] = {}
    for number, line in lines:
        if len(rows) == e:
            raise tf.error(f"extra data after the {e} edges the header declares", number)
        t = line.split()
        if len(t) != 3:
            raise tf.error(f"edge line must be 'i j w', got {show(line)}", number)
        i = tf.integer(t[0], number, "node id")
        j = tf.integer(t[1], number, "node id")
        w = tf.number(t[2], number, "edge weight")
        for node in (i, j):
            if not 1 <= node <= n:
                raise tf.error(f"node id {node} out of range 1..{n}", number)
        if i == j:
            raise tf.error(f"self-loop on node {i}", number)
        key = (i, j) if i < j else (j, i)
        if key in seen:
            raise tf.error(f"duplicate edge {i} {j} (first on line {seen[key]})", number)
        seen[key] = number
        rows.append(i - 1)
        cols.append(j - 1)
        weights.append(w)
    if len(rows) != e:
        raise tf.error(
            f"truncated: the header declares {e} edges but the file has {len(rows)}", hline
        )
    tf.isolated(n, len({*rows, *cols}), "node count N", hline)
    bqm = bqm_from_lists(np.zeros(n), rows, cols, weights, 0.0, dimod.SPIN)
    return [
        Instance(bqm=bqm, name=path.stem, kind="maxcut", path=path, total_weight=math.fsum(weights))
    ]
