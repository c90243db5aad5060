"""Default inverse-temperature range for annealers, from the problem's coefficients.

The rule is dwave-samplers' (``_default_ising_beta_range``): hot enough that every spin
flips with probability >= 1/2, cold enough that the most easily excited spins flip with
total probability ~1%. Their implementation loops over a Python dict of couplings, which
takes seconds on dense problems of a few thousand variables; this is the same rule on
numpy arrays.
"""

from __future__ import annotations

import math

import numpy as np


def default_beta_range(
    h: np.ndarray, rows: np.ndarray, cols: np.ndarray, couplings: np.ndarray,
    excitation_rate: float = 0.01,
) -> tuple[float, float]:
    """(hot, cold) beta for the Ising model ``h.s + sum couplings s[rows] s[cols]``."""
    n = len(h)
    abs_h = np.abs(np.asarray(h, float))
    abs_j = np.abs(np.asarray(couplings, float))
    total = abs_h + np.bincount(rows, abs_j, n) + np.bincount(cols, abs_j, n)
    smallest = np.where(abs_h > 0, abs_h, np.inf)
    nonzero = abs_j > 0
    np.minimum.at(smallest, rows[nonzero], abs_j[nonzero])
    np.minimum.at(smallest, cols[nonzero], abs_j[nonzero])
    finite = smallest[np.isfinite(smallest)]
    if n == 0 or finite.size == 0:
        return 0.1, 1.0  # all biases zero: every state has the same energy
    max_field = float(total.max())
    hot = math.log(2) / (2 * max_field)
    min_field = float(finite.min())
    count = int(np.sum(finite == min_field))
    cold = math.log(count / excitation_rate) / (2 * min_field)
    return hot, max(cold, hot)


def beta_schedule(hot: float, cold: float, num_sweeps: int, kind: str = "geometric") -> np.ndarray:
    if kind == "geometric":
        return np.geomspace(hot, cold, num_sweeps)
    if kind == "linear":
        return np.linspace(hot, cold, num_sweeps)
    raise ValueError(f"beta_schedule_type must be 'geometric' or 'linear', got {kind!r}")
