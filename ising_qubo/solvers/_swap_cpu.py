"""CPU kernels for structured Ising models under "keep exactly k_g units of group g".

Single-flip annealing leaves such a constraint to a penalty, and a state that meets it can
then only reach another one through a barrier of the penalty's height. These kernels move
by swaps inside a group (one kept unit out, one dropped unit in), so every state they
visit meets the budget and no penalty is needed: Metropolis swaps at a temperature
(annealing), or strict-descent swaps (the final polish), plus the greedy single flips
that bring an arbitrary state onto the budget in the first place.

Model (spin form, see :mod:`ising_qubo.lowrank`): E(s) = h.s + sum_b 1/2 s_b^T J_b s_b
+ sum_q (u_q.s)(v_q.s). Block couplings are kept as per-variable block fields, updated
in O(block) when a spin flips; the low-rank factors are stored by column (CSC) because
in pruning energies each rank-1 term touches one or two layers, so a spin meets only the
few terms that involve it. Written by hand (numba) because no library anneals a
structured model under per-group cardinality constraints; one task per replica, each with
its own counter-based random stream, so results do not depend on thread scheduling.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ising_qubo.solvers._sa_cpu import _accept, _uniform
from ising_qubo.solvers._threads import start_numba_pool


@njit(cache=True, parallel=True)
def block_fields(spins, h, bvars, bvar_start, jflat, j_start):
    """h + sum_b J_b s_b for every replica (the low-rank part is computed on demand)."""
    reps, n = spins.shape
    fields = np.empty((reps, n), dtype=np.float64)
    for r in prange(reps):
        for i in range(n):
            fields[r, i] = h[i]
        for b in range(len(bvar_start) - 1):
            a = bvar_start[b]
            m = bvar_start[b + 1] - a
            base = j_start[b]
            for p in range(m):
                acc = 0.0
                row = base + p * m
                for q in range(m):
                    acc += jflat[row + q] * spins[r, bvars[a + q]]
                fields[r, bvars[a + p]] += acc
    return fields


@njit(cache=True, parallel=True)
def projections(spins, lr_ptr, lr_q, lr_u, lr_v, rank):
    """(u_q.s, v_q.s) for every replica, from the column-stored factors."""
    reps, n = spins.shape
    pu = np.zeros((reps, rank), dtype=np.float64)
    pv = np.zeros((reps, rank), dtype=np.float64)
    for r in prange(reps):
        for i in range(n):
            for k in range(lr_ptr[i], lr_ptr[i + 1]):
                pu[r, lr_q[k]] += lr_u[k] * spins[r, i]
                pv[r, lr_q[k]] += lr_v[k] * spins[r, i]
    return pu, pv


@njit(inline="always")
def _flip_delta(s, f, pu, pv, i, lr_ptr, lr_q, lr_u, lr_v):
    """Energy change of flipping spin i alone."""
    field = f[i]
    own = 0.0
    for k in range(lr_ptr[i], lr_ptr[i + 1]):
        q = lr_q[k]
        field += lr_u[k] * pv[q] + lr_v[k] * pu[q]
        own += lr_u[k] * lr_v[k]
    return -2.0 * s[i] * field + 4.0 * own


@njit(inline="always")
def _coupling(i, j, vb_ptr, vb_block, vb_pos, bvar_start, jflat, j_start, lr_ptr, lr_q, lr_u, lr_v):
    """The coefficient of s_i s_j in the energy (blocks plus low-rank terms)."""
    c = 0.0
    for x in range(vb_ptr[i], vb_ptr[i + 1]):
        b = vb_block[x]
        for y in range(vb_ptr[j], vb_ptr[j + 1]):
            if vb_block[y] == b:
                m = bvar_start[b + 1] - bvar_start[b]
                c += jflat[j_start[b] + vb_pos[x] * m + vb_pos[y]]
    # both columns are sorted by term index: merge them
    x, y = lr_ptr[i], lr_ptr[j]
    while x < lr_ptr[i + 1] and y < lr_ptr[j + 1]:
        if lr_q[x] == lr_q[y]:
            c += lr_u[x] * lr_v[y] + lr_v[x] * lr_u[y]
            x += 1
            y += 1
        elif lr_q[x] < lr_q[y]:
            x += 1
        else:
            y += 1
    return c


@njit(inline="always")
def _flip(
    s,
    f,
    pu,
    pv,
    i,
    bvars,
    bvar_start,
    jflat,
    j_start,
    vb_ptr,
    vb_block,
    vb_pos,
    lr_ptr,
    lr_q,
    lr_u,
    lr_v,
):
    new = -s[i]
    s[i] = new
    step = 2.0 * new
    for x in range(vb_ptr[i], vb_ptr[i + 1]):
        b = vb_block[x]
        a = bvar_start[b]
        m = bvar_start[b + 1] - a
        row = j_start[b] + vb_pos[x] * m  # J_b is symmetric: row = column
        for p in range(m):
            f[bvars[a + p]] += step * jflat[row + p]
    for k in range(lr_ptr[i], lr_ptr[i + 1]):
        pu[lr_q[k]] += step * lr_u[k]
        pv[lr_q[k]] += step * lr_v[k]


@njit(cache=True, parallel=True)
def repair(
    spins,
    fields,
    pu,
    pv,
    g_ptr,
    g_vars,
    targets,
    bvars,
    bvar_start,
    jflat,
    j_start,
    vb_ptr,
    vb_block,
    vb_pos,
    lr_ptr,
    lr_q,
    lr_u,
    lr_v,
):
    """Greedy single flips until every group keeps exactly its target (s = +1 keeps):
    each time the flip of the right direction that raises the energy least."""
    reps = spins.shape[0]
    flips = np.zeros(reps, dtype=np.int64)
    for r in prange(reps):
        s, f, u_proj, v_proj = spins[r], fields[r], pu[r], pv[r]
        for g in range(len(g_ptr) - 1):
            while True:
                kept = 0
                for x in range(g_ptr[g], g_ptr[g + 1]):
                    if s[g_vars[x]] > 0:
                        kept += 1
                if kept == targets[g]:
                    break
                want = -1.0 if kept < targets[g] else 1.0  # the sign of the spins to flip
                best, best_de = -1, np.inf
                for x in range(g_ptr[g], g_ptr[g + 1]):
                    i = g_vars[x]
                    if s[i] == want:
                        de = _flip_delta(s, f, u_proj, v_proj, i, lr_ptr, lr_q, lr_u, lr_v)
                        if de < best_de:
                            best, best_de = i, de
                _flip(
                    s,
                    f,
                    u_proj,
                    v_proj,
                    best,
                    bvars,
                    bvar_start,
                    jflat,
                    j_start,
                    vb_ptr,
                    vb_block,
                    vb_pos,
                    lr_ptr,
                    lr_q,
                    lr_u,
                    lr_v,
                )
                flips[r] += 1
    return flips


@njit(cache=True, parallel=True)
def swap_sweeps(
    spins,
    fields,
    pu,
    pv,
    order,
    g_ptr,
    g_vars,
    kept_count,
    betas,
    rng_state,
    bvars,
    bvar_start,
    jflat,
    j_start,
    vb_ptr,
    vb_block,
    vb_pos,
    lr_ptr,
    lr_q,
    lr_u,
    lr_v,
):
    """Metropolis swap sweeps: per sweep, each group gets as many proposals as it has
    units, each a uniformly drawn (kept, dropped) pair.

    ``order[r, g_ptr[g]:g_ptr[g+1]]`` lists group g's variables with the kept ones first
    (``kept_count[g]`` of them); swaps keep that invariant. Returns accepted swaps.
    """
    reps = spins.shape[0]
    accepted = np.zeros(reps, dtype=np.int64)
    for r in prange(reps):
        s, f, u_proj, v_proj, slots = spins[r], fields[r], pu[r], pv[r], order[r]
        for t in range(len(betas)):
            beta = betas[t]
            for g in range(len(g_ptr) - 1):
                a = g_ptr[g]
                m = g_ptr[g + 1] - a
                k = kept_count[g]
                if k == 0 or k == m:
                    continue
                for _ in range(m):
                    x = a + int(_uniform(rng_state, r) * k)
                    y = a + k + int(_uniform(rng_state, r) * (m - k))
                    i, j = slots[x], slots[y]
                    de = (
                        _flip_delta(s, f, u_proj, v_proj, i, lr_ptr, lr_q, lr_u, lr_v)
                        + _flip_delta(s, f, u_proj, v_proj, j, lr_ptr, lr_q, lr_u, lr_v)
                        + 4.0
                        * s[i]
                        * s[j]
                        * _coupling(
                            i,
                            j,
                            vb_ptr,
                            vb_block,
                            vb_pos,
                            bvar_start,
                            jflat,
                            j_start,
                            lr_ptr,
                            lr_q,
                            lr_u,
                            lr_v,
                        )
                    )
                    if _accept(de, beta, False, rng_state, r):
                        _flip(
                            s,
                            f,
                            u_proj,
                            v_proj,
                            i,
                            bvars,
                            bvar_start,
                            jflat,
                            j_start,
                            vb_ptr,
                            vb_block,
                            vb_pos,
                            lr_ptr,
                            lr_q,
                            lr_u,
                            lr_v,
                        )
                        _flip(
                            s,
                            f,
                            u_proj,
                            v_proj,
                            j,
                            bvars,
                            bvar_start,
                            jflat,
                            j_start,
                            vb_ptr,
                            vb_block,
                            vb_pos,
                            lr_ptr,
                            lr_q,
                            lr_u,
                            lr_v,
                        )
                        slots[x], slots[y] = j, i
                        accepted[r] += 1
    return accepted


@njit(cache=True, parallel=True)
def swap_descent(
    spins,
    fields,
    pu,
    pv,
    g_ptr,
    g_vars,
    max_swaps,
    tolerance,
    bvars,
    bvar_start,
    jflat,
    j_start,
    vb_ptr,
    vb_block,
    vb_pos,
    lr_ptr,
    lr_q,
    lr_u,
    lr_v,
):
    """First-improvement swap descent until a whole pass over all groups finds no swap
    lowering the energy by more than ``tolerance``, or ``max_swaps``.

    Returns the swaps made per replica. A swap in one group moves the other groups'
    fields only through shared terms, which the next pass picks up.
    """
    reps = spins.shape[0]
    swaps = np.zeros(reps, dtype=np.int64)
    for r in prange(reps):
        s, f, u_proj, v_proj = spins[r], fields[r], pu[r], pv[r]
        improved = True
        while improved and swaps[r] < max_swaps:
            improved = False
            for g in range(len(g_ptr) - 1):
                for x in range(g_ptr[g], g_ptr[g + 1]):
                    i = g_vars[x]
                    if s[i] < 0:
                        continue
                    for y in range(g_ptr[g], g_ptr[g + 1]):
                        j = g_vars[y]
                        if s[j] > 0:
                            continue
                        de = (
                            _flip_delta(s, f, u_proj, v_proj, i, lr_ptr, lr_q, lr_u, lr_v)
                            + _flip_delta(s, f, u_proj, v_proj, j, lr_ptr, lr_q, lr_u, lr_v)
                            - 4.0
                            * _coupling(
                                i,
                                j,
                                vb_ptr,
                                vb_block,
                                vb_pos,
                                bvar_start,
                                jflat,
                                j_start,
                                lr_ptr,
                                lr_q,
                                lr_u,
                                lr_v,
                            )
                        )
                        if de < -tolerance and swaps[r] < max_swaps:
                            _flip(
                                s,
                                f,
                                u_proj,
                                v_proj,
                                i,
                                bvars,
                                bvar_start,
                                jflat,
                                j_start,
                                vb_ptr,
                                vb_block,
                                vb_pos,
                                lr_ptr,
                                lr_q,
                                lr_u,
                                lr_v,
                            )
                            _flip(
                                s,
                                f,
                                u_proj,
                                v_proj,
                                j,
                                bvars,
                                bvar_start,
                                jflat,
                                j_start,
                                vb_ptr,
                                vb_block,
                                vb_pos,
                                lr_ptr,
                                lr_q,
                                lr_u,
                                lr_v,
                            )
                            swaps[r] += 1
                            improved = True
                            break  # i is dropped now: go on with the next kept unit
    return swaps


@njit(cache=True)
def swap_deltas(
    s,
    f,
    pu,
    pv,
    order,
    g_ptr,
    kept_count,
    samples,
    rng_state,
    vb_ptr,
    vb_block,
    vb_pos,
    bvar_start,
    jflat,
    j_start,
    lr_ptr,
    lr_q,
    lr_u,
    lr_v,
):
    """|energy change| of ``samples`` random swaps from one state (for the schedule)."""
    out = np.zeros(samples, dtype=np.float64)
    movable = np.zeros(len(g_ptr) - 1, dtype=np.int64)
    count = 0
    for g in range(len(g_ptr) - 1):
        if 0 < kept_count[g] < g_ptr[g + 1] - g_ptr[g]:
            movable[count] = g
            count += 1
    if count == 0:
        return out[:0]
    for t in range(samples):
        g = movable[int(_uniform(rng_state, 0) * count)]
        a = g_ptr[g]
        m = g_ptr[g + 1] - a
        k = kept_count[g]
        i = order[a + int(_uniform(rng_state, 0) * k)]
        j = order[a + k + int(_uniform(rng_state, 0) * (m - k))]
        out[t] = abs(
            _flip_delta(s, f, pu, pv, i, lr_ptr, lr_q, lr_u, lr_v)
            + _flip_delta(s, f, pu, pv, j, lr_ptr, lr_q, lr_u, lr_v)
            + 4.0
            * s[i]
            * s[j]
            * _coupling(
                i, j, vb_ptr, vb_block, vb_pos, bvar_start, jflat, j_start, lr_ptr, lr_q, lr_u, lr_v
            )
        )
    return out


# Before any parallel kernel runs: keeps torch's thread count as the user set it.
start_numba_pool()
