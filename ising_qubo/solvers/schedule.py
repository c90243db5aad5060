"""Inverse-temperature ranges for annealers, derived from the problem.

Two rules:

- :func:`default_beta_range` is dwave-samplers' (``_default_ising_beta_range``): hot
  enough that every spin flips with probability >= 1/2 even in the worst case (all of
  its couplings aligned), cold enough that the smallest coupling freezes. Their
  implementation loops over a Python dict of couplings, which takes seconds on dense
  problems of a few thousand variables; this is the same rule on numpy arrays.
- :func:`fitted_beta_range` (``torch-sa``'s default) measures the flips themselves.
  Neal's rule uses extremes of the coefficients, which are far from the flips an anneal
  meets when couplings are continuous: on an SK problem (n = 1024, Gaussian couplings)
  it gives (3.9e-4, 6.5e5), so that about 80 % of a geometric schedule runs outside
  beta 0.01-1, where nearly every flip, or none, is accepted. The fitted range there is
  (0.016, 0.65); measured on that problem (1000 sweeps, 48 reads, same seed) it lowered
  the mean energy from -24418 to -24568, better than neal's range reaches with 4000
  sweeps (-24547); on Gset G1, G14, G22 (+-1 couplings) ranges near the fitted ones
  were as good or slightly better. See docs/benchmarks.md.
"""

from __future__ import annotations

import math

import numpy as np

from ising_qubo.solvers._common import symmetric_csr, symmetric_dense


def default_beta_range(
    h: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    couplings: np.ndarray,
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


def fitted_beta_range(
    h: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    couplings: np.ndarray,
    samples: int | None = None,
    seed: int = 0,
    lowrank: tuple[np.ndarray, np.ndarray] | None = None,
    dense: np.ndarray | None = None,
    csr: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[float, float]:
    """(hot, cold) beta from the single-flip energy changes the problem actually has.

    hot: from random states, the median |energy change| of a flip is accepted with
    probability 1/2. cold: at local minima (greedy descents from those random states),
    the 1 % quantile of the positive excitation energies is accepted with probability
    1 %. Deterministic (``seed`` is internal, not the caller's), so a call's range
    depends on the problem only. Falls back to :func:`default_beta_range` where the
    measured changes are all zero. ``samples`` (random states) defaults to enough for
    4096 flips, at most 4: the descents dominate the cost on large dense problems.
    ``lowrank``: (u, v), arrays (rank, n) of the terms sum_r (u_r.s)(v_r.s) of a
    structured problem, counted in every flip as ``torch-sa``'s kernel counts them.
    ``dense`` (:func:`~ising_qubo.solvers._common.symmetric_dense`) or ``csr``
    (:func:`~ising_qubo.solvers._common.symmetric_csr`): the couplings already laid out
    for the kernels, which a solver builds anyway; otherwise they are built here.
    """
    h = np.asarray(h, dtype=np.float64)
    n = len(h)
    couplings = np.asarray(couplings, dtype=np.float64)
    if lowrank is not None and not np.asarray(lowrank[0]).size:
        lowrank = None
    if n == 0 or not (np.any(h) or np.any(couplings) or lowrank is not None):
        return 0.1, 1.0  # all biases zero: every state has the same energy
    if samples is None:
        samples = min(4, -(-4096 // n))
    if dense is None and csr is None:
        if lowrank is None and 2 * len(couplings) >= n * n * _DENSE_FRACTION:
            dense = symmetric_dense(n, rows, cols, couplings)
        else:
            csr = symmetric_csr(n, np.asarray(rows), np.asarray(cols), couplings)
    random_changes, excitations = _flip_energies(h, samples, seed, lowrank, dense, csr)
    moving = random_changes[random_changes > 0]
    excited = excitations[excitations > 0]
    if moving.size == 0 or excited.size == 0:
        return default_beta_range(h, rows, cols, couplings)
    hot = math.log(2) / float(np.median(moving))
    cold = math.log(100) / float(np.quantile(excited, 0.01))
    return hot, max(cold, hot)


#: Coupled fraction of all pairs from which couplings are laid out dense when the caller
#: gives no layout: building CSR costs more than the rest there (1.3 s of 1.5 s, n = 4096).
_DENSE_FRACTION = 1 / 8


#: Sweeps of the fit's greedy descents at most. A descent usually ends in a few sweeps, but
#: under a strong global (low-rank) term, as in the Lagrangian of a whole-network budget,
#: the flips of one sweep overshoot and the next undo part of them: ResNet-101's took 80
#: sweeps (1.7 s of a 3.5 s solve) to stop, while the 1 % quantile of its excitations after
#: 40 was within 10 % of the final one. The excitations the fit reads are those of the
#: state's stable spins, so a descent cut short still measures them.
_FIT_DESCENT_SWEEPS = 50


def _flip_energies(h, samples: int, seed: int, lowrank, dense, csr):
    """|Energy change| of every flip at random states, and every excitation energy at the
    greedy local minima reached from them (the compiled kernels, ``dense`` or ``csr``;
    descents of at most ``_FIT_DESCENT_SWEEPS`` sweeps)."""
    from ising_qubo.solvers import _sa_fronts

    spins = np.random.default_rng(seed).choice([-1.0, 1.0], size=(samples, len(h)))
    layout = {"dense": dense, "csr": csr, "lowrank": lowrank}
    random_changes = np.abs(_sa_fronts.flip_changes(spins, h, **layout)).ravel()
    _sa_fronts.descend(spins, h, max_sweeps=_FIT_DESCENT_SWEEPS, **layout)
    return random_changes, _sa_fronts.flip_changes(spins, h, **layout).ravel()


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

    def __init__(
        self, ranges: list[tuple[float, float]], num_sweeps: int, kind: str = "geometric"
    ) -> None:
        beta_schedule(1.0, 2.0, 2, kind)  # checks kind
        self.ranges = [(float(hot), float(cold)) for hot, cold in ranges]
        self.num_sweeps = int(num_sweeps)
        self.kind = kind
        self._whole = None
        if self.num_sweeps <= self._WHOLE:
            self._whole = np.stack(
                [beta_schedule(hot, cold, self.num_sweeps, kind) for hot, cold in self.ranges],
                axis=1,
            )

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
