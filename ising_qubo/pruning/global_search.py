"""Any state onto a whole-network budget, exactly, and then downhill without leaving it.

The budget (:class:`~ising_qubo.pruning.budget.GlobalBudget`) limits a quadratic cost of
the kept counts k_g and keeps every group at or above its floor; the energy is the pruning
problem's :class:`~ising_qubo.lowrank.LowRankIsing` over spins s = 2x - 1 (x = 1 keeps a
unit). Two steps, both exact on the real cost:

* :func:`repair`: groups under their floor take their cheapest units (least energy
  increase); while the cost is over the limit, the unit with the least energy increase
  per cost saved is dropped (never below a floor; far over the limit, the best of them
  in batches of up to half the drops still due); then units that lower the energy are
  added, best first, while the limit allows. The result always meets the budget: the cost
  grows with every count, and the floors alone are within the limit (checked when the
  budget is built).
* :func:`meet_and_descend`: after the repair, swaps inside groups (the compiled swap
  descent of :func:`ising_qubo.solvers.budgeted.budgeted_descent`: the counts, so the
  cost, stay), alternated with :func:`cross_moves`: drop one unit, add one, or drop one
  and add one in another group, each accepted only if the cost stays within the limit,
  the floors hold and the energy strictly drops; where none does, :func:`kick` tries the
  best few of them followed by a few swaps inside the groups they touched, and keeps one
  only if the whole lowers the energy. Bounded work: at most ``max_moves`` cross-group
  moves and ``rounds`` alternations.

Energies of moves come from local fields (numpy): the field of every spin is kept from the
blocks and the low-rank projections, so a flip costs O(block + rank x n) and the energy of
every single flip is one vector; the pair moves are scored exactly (their interaction
included) among each group's ``candidates`` best drops and adds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ising_qubo.lowrank import LowRankIsing
from ising_qubo.pruning.budget import GlobalBudget
from ising_qubo.solvers.budgeted import budgeted_descent


@dataclass
class SearchCounts:
    """What the search did: flips to meet the budget, in-group swaps, cross-group moves."""

    repair_flips: int = 0
    swaps: int = 0
    moves: int = 0


class FieldState:
    """Spins of a :class:`LowRankIsing` with the local fields kept up to date.

    E(s) = h.s + 1/2 s^T J s + sum_r (u_r.s)(v_r.s) + offset. Flipping spin i
    (d = -2 s_i) changes E by d f_i + 4 sum_r u_ri v_ri, with
    f = h + J s + U^T (V s) + V^T (U s); flipping i and j together adds
    d_i d_j C_ij, C_ij = J_ij + sum_r (u_ri v_rj + u_rj v_ri).
    """

    def __init__(
        self,
        model: LowRankIsing,
        spins: np.ndarray,
        csr: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.model = model
        self.n = model.num_variables
        self.spins = np.asarray(spins, dtype=float).reshape(self.n).copy()
        if not np.all(np.abs(self.spins) == 1):
            raise ValueError("spins must be -1 or +1")
        # the block couplings by row (model.csr(), passed in when already built)
        self.indptr, self.indices, self.data = model.csr() if csr is None else csr
        self.u, self.v = model.lowrank_u, model.lowrank_v
        self.self_term = 4.0 * (self.u * self.v).sum(axis=0)
        rows = np.repeat(np.arange(self.n), np.diff(self.indptr))
        self.block_field = np.bincount(
            rows, self.data * self.spins[self.indices], minlength=self.n
        ).astype(float)
        self.pu = self.u @ self.spins
        self.pv = self.v @ self.spins
        scale = (
            np.abs(model.h).max(initial=0.0)
            + np.abs(self.data).max(initial=0.0)
            + float(np.abs(self.u).sum() * np.abs(self.v).max(initial=0.0))
        )
        #: improvements below this are float noise
        self.tolerance = 1e-9 * max(scale, 1.0)

    @property
    def kept(self) -> np.ndarray:
        return self.spins > 0

    def flip_deltas(self) -> np.ndarray:
        """The energy change of flipping each spin alone."""
        field = self.model.h + self.block_field + self.u.T @ self.pv + self.v.T @ self.pu
        return -2.0 * self.spins * field + self.self_term

    def deltas_of(self, index: np.ndarray) -> np.ndarray:
        """The energy change of flipping each spin of ``index`` alone."""
        field = (
            self.model.h[index]
            + self.block_field[index]
            + self.u[:, index].T @ self.pv
            + self.v[:, index].T @ self.pu
        )
        return -2.0 * self.spins[index] * field + self.self_term[index]

    def flip_delta(self, i: int) -> float:
        return float(self.deltas_of(np.array([i]))[0])

    def flip(self, i: int) -> None:
        d = -2.0 * self.spins[i]
        self.spins[i] = -self.spins[i]
        a, b = self.indptr[i], self.indptr[i + 1]
        np.add.at(self.block_field, self.indices[a:b], d * self.data[a:b])  # J is symmetric
        self.pu += d * self.u[:, i]
        self.pv += d * self.v[:, i]

    def couplings(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """C_ij for i in ``first``, j in ``second`` (the pair term of a double flip)."""
        out = self.u[:, first].T @ self.v[:, second] + self.v[:, first].T @ self.u[:, second]
        position = np.full(self.n, -1, dtype=np.int64)
        position[second] = np.arange(len(second))
        for row, i in enumerate(first):
            a, b = self.indptr[i], self.indptr[i + 1]
            where = position[self.indices[a:b]]
            hit = where >= 0
            np.add.at(out[row], where[hit], self.data[a:b][hit])
        return out

    def energy(self) -> float:
        return float(self.model.energies(self.spins[None, :])[0])


class GroupIndex:
    """Group membership of the variables, and each group's best candidates."""

    def __init__(self, index: Sequence[np.ndarray], n: int) -> None:
        self.index = [np.asarray(g, dtype=np.int64) for g in index]
        self.of = np.full(n, -1, dtype=np.int64)
        for g, members in enumerate(self.index):
            self.of[members] = g
        if np.any(self.of < 0):
            raise ValueError("every variable must belong to a group")
        self.sizes = np.array([len(g) for g in self.index], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])

    def counts(self, kept: np.ndarray) -> np.ndarray:
        return np.bincount(self.of[kept], minlength=len(self.index)).astype(np.int64)

    def _sorted(self, values: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The variables by group, then by value (disallowed ones last, as inf); group
        g's run starts at ``starts[g]``."""
        masked = np.where(allowed, values, np.inf)
        return np.lexsort((masked, self.of)), masked

    def best(self, values: np.ndarray, allowed: np.ndarray, per_group: int) -> np.ndarray:
        """Up to ``per_group`` allowed variables of each group with the lowest values."""
        order, masked = self._sorted(values, allowed)
        rank = np.arange(per_group)
        take = (self.starts[:, None] + rank[None, :])[rank[None, :] < self.sizes[:, None]]
        chosen = order[take]
        return chosen[np.isfinite(masked[chosen])]

    def least(self, values: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per group: the lowest allowed value (inf if none) and its variable (-1 if none)."""
        order, masked = self._sorted(values, allowed)
        first = order[self.starts]
        value = masked[first]
        return value, np.where(np.isfinite(value), first, -1)


def repair(
    state: FieldState, groups: GroupIndex, budget: GlobalBudget, counts: SearchCounts
) -> np.ndarray:
    """Bring ``state`` onto the floors and under the limit, then add improving units while
    the limit allows (module docstring). Returns the kept counts."""
    k = groups.counts(state.kept)
    for _ in range(state.n):  # floors first: they may cost, the drop phase pays for it
        under = k < budget.floors
        if not under.any():
            break
        value, where = groups.least(state.flip_deltas(), ~state.kept & under[groups.of])
        g = int(np.argmin(value))
        state.flip(int(where[g]))
        k[g] += 1
        counts.repair_flips += 1
    for _ in range(state.n):  # over the limit: drop the cheapest energy per cost saved
        excess = budget.cost(k) - budget.limit
        if excess <= budget.tolerance:
            break
        droppable = (k > budget.floors)[groups.of] & state.kept
        saving = budget.drop_savings(k)
        ratio = np.where(
            droppable & (saving > 0)[groups.of],
            state.flip_deltas() / np.maximum(saving, 1e-300)[groups.of],
            np.inf,
        )
        if not np.isfinite(ratio).any():
            # only free drops left (no saving): cannot happen while the floors fit
            raise RuntimeError("the budget cannot be met above the floors")
        for i in _batch(ratio, groups.of, k - budget.floors, excess / saving.max()):
            state.flip(int(i))
            k[groups.of[i]] -= 1
            counts.repair_flips += 1
    for _ in range(state.n):  # room left: add units that lower the energy
        cost = budget.cost(k)
        room = np.array([budget.within_limit(cost + c) for c in budget.add_costs(k)])
        value, where = groups.least(state.flip_deltas(), ~state.kept & room[groups.of])
        g = int(np.argmin(value))
        if not value[g] < -state.tolerance:
            break
        state.flip(int(where[g]))
        k[g] += 1
        counts.repair_flips += 1
    return k


def budget_moves(
    state: FieldState,
    groups: GroupIndex,
    budget: GlobalBudget,
    k: np.ndarray,
    candidates: int = 4,
    limit: int = 8,
) -> list[tuple[float, tuple[int, ...]]]:
    """The ``limit`` best moves that keep the budget and change some count, scored
    exactly, best first: (energy change, variables to flip). Among each group's
    ``candidates`` best drops and adds: a drop (never below a floor; it always keeps the
    limit), an add where the limit allows, and one unit out of group g with one into
    another group h where the limit allows."""
    delta = state.flip_deltas()
    kept = state.kept
    cost = budget.cost(k)
    saving, adding = budget.drop_savings(k), budget.add_costs(k)
    can_drop = (k > budget.floors)[groups.of] & kept
    can_add = ((k < groups.sizes) & (cost + adding <= budget.limit + budget.tolerance))[groups.of]
    outs = groups.best(delta, can_drop, candidates)
    ins = groups.best(delta, ~kept, candidates)
    adds = ins[can_add[ins]]
    none = np.full(len(outs) + len(adds), -1, dtype=np.int64)
    gains = [delta[outs], delta[adds]]
    firsts, seconds = [outs, adds], [none]
    if len(outs) and len(ins):
        g, h = groups.of[outs], groups.of[ins]
        symmetric = budget.quadratic + budget.quadratic.T
        # cost(k - e_g + e_h) = cost + adding_h - saving_g - S_gh
        new_cost = cost - saving[g][:, None] + adding[h][None, :] - symmetric[g][:, h]
        allowed = (new_cost <= budget.limit + budget.tolerance) & (g[:, None] != h[None, :])
        allowed &= (k[h] < groups.sizes[h])[None, :]
        d_out, d_in = -2.0 * state.spins[outs], -2.0 * state.spins[ins]
        pair = (
            delta[outs][:, None]
            + delta[ins][None, :]
            + d_out[:, None] * d_in[None, :] * state.couplings(outs, ins)
        )
        flat = np.flatnonzero(allowed)
        gains.append(pair.ravel()[flat])
        firsts.append(outs[flat // len(ins)])
        seconds.append(ins[flat % len(ins)])
    gain, first, second = (np.concatenate(a) for a in (gains, firsts, seconds))
    best = np.argsort(gain, kind="stable")[:limit]
    return [
        (float(gain[m]), (int(first[m]),) if second[m] < 0 else (int(first[m]), int(second[m])))
        for m in best
    ]


def group_swaps(
    state: FieldState, members: np.ndarray, max_swaps: int, candidates: int = 16
) -> tuple[float, list[int]]:
    """Best-improvement swaps of a kept and a dropped unit inside one group, among its
    ``candidates`` best drops and adds (numpy; the count stays). Returns (energy change,
    variables flipped, in order)."""
    total, flipped = 0.0, []
    for _ in range(max_swaps):
        on = state.spins[members] > 0
        if on.all() or not on.any():
            break
        delta = state.deltas_of(members)
        outs = members[on][np.argsort(delta[on], kind="stable")[:candidates]]
        ins = members[~on][np.argsort(delta[~on], kind="stable")[:candidates]]
        pair = (
            state.deltas_of(outs)[:, None]
            + state.deltas_of(ins)[None, :]
            - 4.0 * state.couplings(outs, ins)  # d_out d_in = (-2)(+2)
        )
        a, b = np.unravel_index(int(np.argmin(pair)), pair.shape)
        if not pair[a, b] < -state.tolerance:
            break
        for i in (int(outs[a]), int(ins[b])):
            state.flip(i)
            flipped.append(i)
        total += float(pair[a, b])
    return total, flipped


def kick(
    state: FieldState,
    groups: GroupIndex,
    k: np.ndarray,
    moves: list[tuple[float, tuple[int, ...]]],
    trials: int,
    swaps: int = 8,
) -> bool:
    """Try the ``trials`` best count-changing moves even uphill, each followed by up to
    ``swaps`` swaps inside each group it touched; keep the first whose total lowers the
    energy (``k`` updated), undo the others. Whether one was kept."""
    for _gain, move in moves[:trials]:
        total, flipped = 0.0, []
        for i in move:
            total += state.flip_delta(i)
            state.flip(i)
            flipped.append(i)
        for g in sorted({int(groups.of[i]) for i in move}):
            members = groups.index[g]
            gain, more = group_swaps(state, members, swaps)
            total += gain
            flipped += more
        if total < -state.tolerance:
            for i in move:
                k[groups.of[i]] += 1 if state.spins[i] > 0 else -1
            return True
        for i in reversed(flipped):
            state.flip(i)
    return False


def _batch(
    ratio: np.ndarray, group_of: np.ndarray, allowance: np.ndarray, needed: float
) -> np.ndarray:
    """The units to drop next: the one of lowest ``ratio``, or, far over the limit (at
    least ``needed`` drops are due, counted at the largest saving), the lowest half of
    that many at once, at most ``allowance[g]`` from group g (the fields go stale within
    a batch, so batches stop well short of the limit and the last drops go one by one)."""
    size = int(needed // 2)
    if size <= 1:
        return np.array([int(np.argmin(ratio))])
    order = np.argsort(ratio, kind="stable")
    order = order[np.isfinite(ratio[order])]
    taken = np.zeros(len(allowance), dtype=np.int64)
    chosen = []
    for i in order:
        g = group_of[i]
        if taken[g] < allowance[g]:
            taken[g] += 1
            chosen.append(i)
            if len(chosen) == size:
                break
    return np.array(chosen, dtype=np.int64)


def cross_moves(
    state: FieldState,
    groups: GroupIndex,
    budget: GlobalBudget,
    k: np.ndarray,
    max_moves: int,
    candidates: int = 4,
    trials: int = 8,
) -> int:
    """Best-improvement descent by the count-changing moves of :func:`budget_moves`;
    where none improves, :func:`kick` tries the ``trials`` best ones followed by swaps.
    Returns the number of moves made (``k`` is updated in place)."""
    moves = 0
    while moves < max_moves:
        ranked = budget_moves(state, groups, budget, k, candidates, max(trials, 1))
        if ranked and ranked[0][0] < -state.tolerance:
            for i in ranked[0][1]:
                k[groups.of[i]] += 1 if state.spins[i] < 0 else -1
                state.flip(i)
        elif not kick(state, groups, k, ranked, trials):
            break
        moves += 1
    return moves


def multiplier_estimate(
    model: LowRankIsing, index: Sequence[np.ndarray], budget: GlobalBudget
) -> float:
    """A first Lagrange multiplier lam for E + lam * cost / dense cost: :func:`repair`
    the all-kept state onto the budget, then take the lam at which as many of its kept
    units would rather leave (energy increase of dropping per dense fraction saved below
    lam) as dropped units would rather come back (energy decrease of adding per
    fraction it costs above lam); where no positive lam balances them, the median ratio
    of the kept units; 1 if there is none. A starting point: the search brackets it."""
    groups = GroupIndex(index, model.num_variables)
    state = FieldState(model, np.ones(model.num_variables))
    k = repair(state, groups, budget, SearchCounts())
    delta = state.flip_deltas()
    kept = state.kept
    stay = delta[kept] / (budget.drop_savings(k)[groups.of[kept]] / budget.dense)
    come = -delta[~kept] / (budget.add_costs(k)[groups.of[~kept]] / budget.dense)
    values = np.sort(np.concatenate([stay, come]))
    values = values[values > 0]
    if not len(values):
        return 1.0
    leaving = np.searchsorted(np.sort(stay), values, side="left")  # stay < lam
    coming = len(come) - np.searchsorted(np.sort(come), values, side="right")  # come > lam
    balanced = float(values[int(np.argmin(np.abs(leaving - coming)))])
    if np.any(leaving >= coming) and np.any(leaving <= coming):
        return balanced
    positive = stay[stay > 0]
    return float(np.median(positive)) if len(positive) else balanced


def meet_and_descend(
    model: LowRankIsing,
    spins: np.ndarray,
    index: Sequence[np.ndarray],
    budget: GlobalBudget,
    max_moves: int | None = None,
    rounds: int = 10,
    csr: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, SearchCounts]:
    """:func:`repair`, then alternate in-group swap descent and :func:`cross_moves` until
    neither moves (at most ``rounds`` times; ``max_moves`` cross moves in all, default
    min(n + 100, 1000)); ``csr``: ``model.csr()`` if already built. Returns (spins
    meeting the budget, what was done)."""
    groups = GroupIndex(index, model.num_variables)
    state = FieldState(model, spins, csr)
    counts = SearchCounts()
    k = repair(state, groups, budget, counts)
    left = min(state.n + 100, 1000) if max_moves is None else int(max_moves)
    for _ in range(rounds):
        spins_now, _flips, swaps = budgeted_descent(model, state.spins, groups.index, k.tolist())
        counts.swaps += swaps
        for i in np.flatnonzero(spins_now != state.spins):  # the swaps made
            state.flip(int(i))
        if left <= 0:
            break
        moved = cross_moves(state, groups, budget, k, left)
        counts.moves += moved
        left -= moved
        if moved == 0:
            break
    k = groups.counts(state.kept)
    if not budget.meets(k):  # a bug, never the caller's input
        raise RuntimeError(f"the search left the budget: cost {budget.cost(k)} > {budget.limit}")
    return state.spins.copy(), counts


__all__ = [
    "FieldState",
    "GroupIndex",
    "SearchCounts",
    "budget_moves",
    "cross_moves",
    "group_swaps",
    "kick",
    "meet_and_descend",
    "multiplier_estimate",
    "repair",
]
