"""Structured Ising models under "keep exactly k_g units of group g".

A penalty makes the budget part of the energy, but a state that meets it can only move
to another such state by a swap (one unit out, one in), which single-flip annealing must
do through an energy barrier of the penalty's height. This module searches the budget's
states directly, with the compiled kernels of :mod:`ising_qubo.solvers._swap_cpu`:

* :func:`budgeted_descent` (the pruning problem's final polish after any solver): greedy
  single flips that meet the budget at the least energy cost, then swaps inside groups
  until none lowers the energy. Every returned state meets the budget and is a
  swap-local minimum of the energy.
* :func:`budgeted_anneal`: simulated annealing by Metropolis swaps from budget-meeting
  states, then the same descent. No penalty, no dense n x n matrix: fields are kept
  from the blocks and the low-rank terms in O(block + terms touching the spin) per flip.

Groups must be disjoint; variables outside every group keep their values.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ising_qubo.lowrank import LowRankIsing
from ising_qubo.solvers.kernel_threads import ThreadChooser, kernel_threads, threads_by_entries
from ising_qubo.solvers.pacing import Pacer

_DELTA_SAMPLES = 4096

# The kernels' replica state: (spins, block fields, u projections, v projections).
SwapState = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
# The kernels' block layout: bvars, bvar_start, jflat, j_start, vb_ptr, vb_block, vb_pos.
_BlockArrays = tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray
]


class SwapModel:
    """A :class:`LowRankIsing` plus groups, laid out as flat arrays for the kernels."""

    def __init__(self, model: LowRankIsing, groups: Sequence[np.ndarray]) -> None:
        n = model.num_variables
        self.model = model
        self.n = n
        self.h = np.ascontiguousarray(model.h, dtype=np.float64)
        sizes = [len(index) for index, _ in model.blocks]
        self.bvars = (
            np.concatenate([index for index, _ in model.blocks]).astype(np.int64)
            if model.blocks
            else np.zeros(0, dtype=np.int64)
        )
        self.bvar_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.j_start = np.concatenate([[0], np.cumsum([m * m for m in sizes])]).astype(np.int64)
        flat = [np.ascontiguousarray(J, dtype=np.float64).ravel() for _, J in model.blocks]
        # one block (a large group solved alone) is used as it is: no copy of its n x n
        self.jflat = flat[0] if len(flat) == 1 else np.concatenate(flat) if flat else np.zeros(0)
        # variable -> (block, position) for every block holding it
        block_of = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
        position = (
            np.concatenate([np.arange(m) for m in sizes]).astype(np.int64)
            if sizes
            else np.zeros(0, dtype=np.int64)
        )
        order = np.argsort(self.bvars, kind="stable")
        self.vb_ptr = np.concatenate([[0], np.cumsum(np.bincount(self.bvars, minlength=n))]).astype(
            np.int64
        )
        self.vb_block = block_of[order]
        self.vb_pos = position[order]
        # low-rank factors by column, term indices ascending within a column
        u, v = model.lowrank_u, model.lowrank_v
        self.rank = u.shape[0]
        cols, terms = np.nonzero(((u != 0) | (v != 0)).T)
        self.lr_ptr = np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=n))]).astype(
            np.int64
        )
        self.lr_q = terms.astype(np.int64)
        self.lr_u = np.ascontiguousarray(u[terms, cols], dtype=np.float64)
        self.lr_v = np.ascontiguousarray(v[terms, cols], dtype=np.float64)
        groups = [np.asarray(index, dtype=np.int64) for index in groups]
        self.g_vars = np.concatenate(groups) if groups else np.zeros(0, dtype=np.int64)
        self.g_ptr = np.concatenate([[0], np.cumsum([len(g) for g in groups])]).astype(np.int64)
        if len(self.g_vars) and (self.g_vars.min() < 0 or self.g_vars.max() >= n):
            raise ValueError(f"group variable index out of range [0, {n})")
        if len(np.unique(self.g_vars)) != len(self.g_vars):
            raise ValueError("groups must be disjoint and list each variable once")
        self.num_groups = len(groups)

    @property
    def _blocks(self) -> _BlockArrays:
        return (
            self.bvars,
            self.bvar_start,
            self.jflat,
            self.j_start,
            self.vb_ptr,
            self.vb_block,
            self.vb_pos,
        )

    @property
    def _lowrank(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.lr_ptr, self.lr_q, self.lr_u, self.lr_v

    def state(self, spins: np.ndarray) -> SwapState:
        """(spins, block fields, u projections, v projections) for the kernels."""
        from ising_qubo.solvers import _swap_cpu

        spins = np.ascontiguousarray(np.atleast_2d(spins), dtype=np.float64).copy()
        with self._threads(len(spins), passes=1):
            fields = _swap_cpu.block_fields(
                spins, self.h, self.bvars, self.bvar_start, self.jflat, self.j_start
            )
            pu, pv = _swap_cpu.projections(spins, *self._lowrank, self.rank)
        return spins, fields, pu, pv

    def _threads(self, reads: int, passes: float) -> Any:
        """The threads of a call over ``reads`` replicas reading every entry ``passes``
        times (:mod:`ising_qubo.solvers.kernel_threads`)."""
        entries = len(self.jflat) + 2 * self.rank * len(self.h)
        return kernel_threads(threads_by_entries(reads, entries, passes))

    def repair(self, state: SwapState, targets: Sequence[int]) -> np.ndarray:
        from ising_qubo.solvers import _swap_cpu

        sizes = np.diff(self.g_ptr)
        keep = np.asarray(targets, dtype=np.int64)
        bad = np.flatnonzero((keep < 0) | (keep > sizes))
        if len(bad):
            g = int(bad[0])
            raise ValueError(f"group {g}: cannot keep {int(keep[g])} of {int(sizes[g])} units")
        with self._threads(len(state[0]), passes=1):
            return _swap_cpu.repair(
                *state,
                self.g_ptr,
                self.g_vars,
                keep,
                *self._blocks,
                *self._lowrank,
            )

    def descend(self, state: SwapState, max_swaps: int) -> np.ndarray:
        from ising_qubo.solvers import _swap_cpu

        with self._threads(len(state[0]), passes=10):  # a descent: a few passes
            return _swap_cpu.swap_descent(
                *state,
                self.g_ptr,
                self.g_vars,
                int(max_swaps),
                self.tolerance(),
                *self._blocks,
                *self._lowrank,
            )

    def tolerance(self) -> float:
        """Improvements below this are float noise: 1e-9 of the largest field scale
        (computed once per layout: the blocks of a large network hold 10^8 entries)."""
        cached = self.__dict__.get("_tolerance")
        if cached is None:
            scale = (
                _largest_magnitude(self.h)
                + _largest_magnitude(self.jflat)
                + float(np.abs(self.lr_u).sum() * _largest_magnitude(self.lr_v))
            )
            cached = self.__dict__["_tolerance"] = 1e-9 * max(scale, 1.0)
        return cached

    def slots(self, spins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per replica, each group's variables with the kept ones first; kept counts."""
        reads = spins.shape[0]
        order = np.empty((reads, len(self.g_vars)), dtype=np.int64)
        kept = np.zeros(self.num_groups, dtype=np.int64)
        for g in range(self.num_groups):
            a, b = self.g_ptr[g], self.g_ptr[g + 1]
            index = self.g_vars[a:b]
            on = spins[:, index] > 0
            kept[g] = int(on[0].sum())
            # kept first, stable: a permutation of the group per replica
            order[:, a:b] = index[np.argsort(~on, axis=1, kind="stable")]
        return order, kept


def _largest_magnitude(values: np.ndarray) -> float:
    """max |values| (0 for none) without an |values| copy."""
    if values.size == 0:
        return 0.0
    return float(max(values.max(), -values.min()))


def budgeted_descent(
    model: LowRankIsing,
    spins: np.ndarray,
    groups: Sequence[np.ndarray],
    targets: Sequence[int],
    max_moves: int | None = None,
) -> tuple[np.ndarray, int, int]:
    """Meet ``sum(x[groups[g]]) == targets[g]`` (x = (s + 1) / 2) and descend by swaps.

    ``max_moves`` caps the swaps (default 20 n; 0: only meet the budget).
    Returns (spins, repair flips, improving swaps).
    """
    layout = SwapModel(model, groups)
    state = layout.state(np.asarray(spins, dtype=float)[None, :])
    repairs = int(layout.repair(state, targets)[0])
    limit = 20 * layout.n if max_moves is None else int(max_moves)
    swaps = int(layout.descend(state, limit)[0]) if limit > 0 else 0
    return state[0][0], repairs, swaps


def budgeted_anneal(
    model: LowRankIsing,
    groups: Sequence[np.ndarray],
    targets: Sequence[int],
    num_reads: int = 4,
    num_sweeps: int = 100,
    beta_range: tuple[float, float] | None = None,
    seed: int | None = None,
    initial_states: np.ndarray | None = None,
    stop: Any = None,
) -> tuple[np.ndarray, dict]:
    """Anneal by swaps inside groups, every state meeting the budget; then descend.

    Starts from ``initial_states`` ((num_reads, n) spins, brought onto the budget by
    greedy flips) or from random budget-meeting states. ``beta_range`` (hot, cold)
    defaults to one derived from the energy changes of random swaps at the start:
    the 90th percentile uphill swap is accepted with probability 1/2 at the hot end and
    the 1st percentile with 1/100 at the cold end; geometric in between. ``stop``
    (a :class:`~ising_qubo.solvers._common.Stop`) is checked between runs of sweeps.
    Returns ((num_reads, n) spins, info).
    """
    from ising_qubo.solvers import _swap_cpu

    layout = SwapModel(model, groups)
    n = layout.n
    rng = np.random.default_rng(seed)
    if initial_states is None:
        start = -np.ones((num_reads, n))
        for g, k in enumerate(targets):
            index = layout.g_vars[layout.g_ptr[g] : layout.g_ptr[g + 1]]
            for r in range(num_reads):
                start[r, rng.choice(index, size=int(k), replace=False)] = 1.0
    else:
        start = np.asarray(initial_states, dtype=float)
        if start.shape != (num_reads, n) or not np.all(np.abs(start) == 1):
            raise ValueError(f"initial_states must be a ({num_reads}, {n}) array of -1/+1 spins")
    state = layout.state(start)
    repairs = layout.repair(state, targets)
    order, kept = layout.slots(state[0])
    rng_state = rng.integers(0, 2**63, size=num_reads, dtype=np.int64).astype(np.uint64)
    info: dict[str, Any] = {"repair_flips": repairs.tolist()}
    if beta_range is None:
        deltas = _swap_cpu.swap_deltas(
            state[0][0],
            state[1][0],
            state[2][0],
            state[3][0],
            order[0],
            layout.g_ptr,
            kept,
            _DELTA_SAMPLES,
            rng_state[:1].copy(),
            layout.vb_ptr,
            layout.vb_block,
            layout.vb_pos,
            layout.bvar_start,
            layout.jflat,
            layout.j_start,
            *layout._lowrank,
        )
        beta_range = _default_betas(deltas, layout.tolerance())
    hot, cold = float(beta_range[0]), float(beta_range[1])
    if not (0 <= hot <= cold) or not math.isfinite(cold):
        raise ValueError(
            f"beta_range must be (hot, cold) with 0 <= hot <= cold, got {beta_range!r}"
        )

    def betas(first: int, count: int) -> np.ndarray:
        """Sweeps first..first+count of the geometric (linear from 0) schedule; computed
        per call, as a long run's whole table would not fit in memory."""
        t = np.arange(first, first + count) / max(num_sweeps - 1, 1)
        return hot * (cold / hot) ** t if hot > 0 else cold * t

    info["beta_range"] = [hot, cold]
    done = 0
    accepted = np.zeros(num_reads, dtype=np.int64)
    # stop is checked between kernel calls, each of all replicas, paced as in pacing.py
    pacer = Pacer(None if stop is None else stop.deadline.remaining())
    threads = ThreadChooser()  # threads per call from its measured work
    while done < num_sweeps and not (stop is not None and stop()):
        part = betas(done, pacer.sweeps(num_reads, num_sweeps - done))
        with threads.call(num_reads, len(part)):
            started = time.perf_counter()
            accepted += _swap_cpu.swap_sweeps(
                *state,
                order,
                layout.g_ptr,
                layout.g_vars,
                kept,
                part,
                rng_state,
                *layout._blocks,
                *layout._lowrank,
            )
            seconds = time.perf_counter() - started
        pacer.record(num_reads * len(part), seconds)
        threads.record(num_reads * len(part), seconds)
        done += len(part)
    info["num_sweeps"] = done
    info["accepted_swaps"] = accepted.tolist()
    info["descent_swaps"] = layout.descend(state, 20 * n).tolist()
    return state[0], info


def _default_betas(deltas: np.ndarray, tolerance: float) -> tuple[float, float]:
    moving = deltas[deltas > tolerance]
    if len(moving) == 0:
        return 0.0, 1.0
    hot = math.log(2) / float(np.percentile(moving, 90))
    cold = math.log(100) / float(np.percentile(moving, 1))
    return hot, max(hot, cold)
