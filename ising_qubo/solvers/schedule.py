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


class BetaSchedule:
    """Per-sweep inverse temperatures of one or more problems, a block of sweeps at a time.

    ``table(start, stop)`` is rows ``start:stop`` of the (num_sweeps, problems) table of
    :func:`beta_schedule` columns. Up to ``_WHOLE`` sweeps the table is computed once
    (exactly numpy's values); beyond, rows are computed on demand, so a huge
    ``num_sweeps`` under a time limit costs no memory (10^8 sweeps would be 800 MB a
    problem).
    """

    _WHOLE = 1 << 20

    def __init__(self, ranges: list[tuple[float, float]], num_sweeps: int,
                 kind: str = "geometric") -> None:
        beta_schedule(1.0, 2.0, 2, kind)  # checks kind
        self.ranges = [(float(hot), float(cold)) for hot, cold in ranges]
        self.num_sweeps = int(num_sweeps)
        self.kind = kind
        self._whole = None
        if self.num_sweeps <= self._WHOLE:
            self._whole = np.stack([beta_schedule(hot, cold, self.num_sweeps, kind)
                                    for hot, cold in self.ranges], axis=1)

    def __len__(self) -> int:
        return self.num_sweeps

    def table(self, start: int, stop: int) -> np.ndarray:
        stop = min(stop, self.num_sweeps)
        if self._whole is not None:
            return np.ascontiguousarray(self._whole[start:stop])
        fraction = np.arange(start, stop, dtype=np.float64) / max(self.num_sweeps - 1, 1)
        columns = []
        for hot, cold in self.ranges:
            if self.kind == "geometric":
                columns.append(np.exp(math.log(hot) + fraction * (math.log(cold) - math.log(hot))))
            else:
                columns.append(hot + fraction * (cold - hot))
        return np.ascontiguousarray(np.stack(columns, axis=1))
