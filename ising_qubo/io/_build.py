"""Turn parsed index/bias lists into a BQM without one Python dict insert per entry."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import dimod
import numpy as np


def bqm_from_lists(
    linear: np.ndarray,
    rows: Sequence[int],
    cols: Sequence[int],
    biases: Sequence[float],
    offset: float,
    vartype: dimod.Vartype,
    labels: Sequence[Hashable] | None = None,
) -> dimod.BinaryQuadraticModel:
    """``linear[k]`` is the bias of position ``k``; ``labels[k]`` (default ``k``) its label.

    Callers have already rejected duplicate pairs, so dimod's summing of repeats never
    changes the problem.
    """
    quadratic = (
        np.asarray(rows, dtype=np.int64),
        np.asarray(cols, dtype=np.int64),
        np.asarray(biases, dtype=np.float64),
    )
    order = None if labels is None else list(labels)
    return dimod.BinaryQuadraticModel.from_numpy_vectors(
        np.asarray(linear, dtype=np.float64),
        quadratic,
        float(offset),
        vartype,
        variable_order=order,  # type: ignore[arg-type]  # dimod: None is its default
    )
