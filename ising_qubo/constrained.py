"""Local search on a structured Ising model under "keep exactly k_g units of group g".

A penalty makes the budget part of the energy, but a state that meets it can only move
to another such state by a swap (one unit out, one in), which single-flip annealing must
do through an energy barrier of the penalty's height. So after any solver, the pruning
problem finishes with this exact search: first single flips that meet the budget at the
least energy cost, then best-improvement swaps inside each group until none improves.
Every returned state therefore meets the budget and is a swap-local minimum of the
budget-free energy. Fields are updated from the structured form (blocks plus low-rank
terms) in O(block + rank) per move, never from a dense n x n matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ising_qubo.structured import StructuredIsing


class _Fields:
    """g_i = dE/ds_i of a structured model, kept current under spin flips."""

    def __init__(self, model: StructuredIsing, spins: np.ndarray) -> None:
        self.model = model
        self.spins = spins.astype(float).copy()
        self.block_of = [index for index, _ in model.blocks]
        self.u = model.lowrank_u
        self.v = model.lowrank_v
        self.us = self.u @ self.spins
        self.vs = self.v @ self.spins
        self.block_field = np.zeros_like(self.spins)
        for index, J in model.blocks:
            self.block_field[index] += J @ self.spins[index]
        self.self_term = 4.0 * np.sum(self.u * self.v, axis=0)
        self.where: list[list[tuple[int, int]]] = [[] for _ in range(len(spins))]
        for b, (index, _) in enumerate(model.blocks):
            for position, variable in enumerate(index.tolist()):
                self.where[variable].append((b, position))

    def field(self, index: np.ndarray | None = None) -> np.ndarray:
        if index is None:
            index = slice(None)
        return (self.model.h[index] + self.block_field[index] + self.u[:, index].T @ self.vs
                + self.v[:, index].T @ self.us)

    def flip_delta(self, index: np.ndarray | None = None) -> np.ndarray:
        """Energy change of flipping each spin (of ``index``) alone."""
        spins = self.spins if index is None else self.spins[index]
        own = self.self_term if index is None else self.self_term[index]
        return -2.0 * spins * self.field(index) + own

    def coupling(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """C[a, b]: the coefficient of s_a s_b in the energy."""
        c = self.u[:, a].T @ self.v[:, b] + self.v[:, a].T @ self.u[:, b]
        for index, J in self.model.blocks:
            position = {v: p for p, v in enumerate(index.tolist())}
            pa = np.array([position.get(i, -1) for i in a.tolist()])
            pb = np.array([position.get(i, -1) for i in b.tolist()])
            ra, rb = pa >= 0, pb >= 0
            if ra.any() and rb.any():
                c[np.ix_(ra, rb)] += J[np.ix_(pa[ra], pb[rb])]
        return c

    def flip(self, i: int) -> None:
        old = self.spins[i]
        step = -2.0 * old
        self.spins[i] = -old
        self.us += self.u[:, i] * step
        self.vs += self.v[:, i] * step
        for b, position in self.where[i]:
            index, J = self.model.blocks[b]
            self.block_field[index] += J[:, position] * step


def budgeted_descent(model: StructuredIsing, spins: np.ndarray,
                     groups: Sequence[np.ndarray], targets: Sequence[int],
                     max_moves: int | None = None) -> tuple[np.ndarray, int, int]:
    """Meet ``sum(x[groups[g]]) == targets[g]`` (x = (s + 1) / 2) and descend by swaps.

    Returns (spins, repair flips, improving swaps).
    """
    state = _Fields(model, np.asarray(spins, dtype=float))
    repairs = 0
    for index, target in zip(groups, targets):
        while True:
            kept = int((state.spins[index] > 0).sum())
            if kept == target:
                break
            adding = kept < target
            candidates = index[(state.spins[index] < 0) if adding else (state.spins[index] > 0)]
            delta = state.flip_delta(candidates)
            state.flip(int(candidates[np.argmin(delta)]))
            repairs += 1
    swaps = 0
    limit = max_moves if max_moves is not None else 20 * len(state.spins)
    # Group by group until a whole pass finds nothing: a swap moves the fields of the
    # other groups only through the low-rank terms, which the next pass picks up.
    improved = True
    while improved and swaps < limit:
        improved = False
        for index in groups:
            coupling = state.coupling(index, index)  # state-independent: once per pass
            while swaps < limit:
                on = state.spins[index] > 0
                if on.all() or not on.any():
                    break
                delta = state.flip_delta(index)
                out_pos, in_pos = np.flatnonzero(on), np.flatnonzero(~on)
                # s_out = +1, s_in = -1: the pair's own term moves by 4 s_i s_j C = -4 C
                gain = (delta[out_pos][:, None] + delta[in_pos][None, :]
                        - 4.0 * coupling[np.ix_(out_pos, in_pos)])
                k = int(np.argmin(gain))
                if gain.flat[k] >= -1e-9 * max(1.0, abs(float(gain.flat[k]))):
                    break
                r, c = divmod(k, len(in_pos))
                state.flip(int(index[out_pos[r]]))
                state.flip(int(index[in_pos[c]]))
                swaps += 1
                improved = True
    return state.spins, repairs, swaps
