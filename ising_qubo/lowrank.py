"""Structured Ising problems: dense blocks plus low-rank couplings, never a dense n x n.

The paper's whole-network energy is block-diagonal redundancy (one dense block per layer)
plus rank-1 activity couplings between consecutive layers and an all-ones shift. Stored
this way a ResNet-101 problem (D ~ 30,000 units) takes megabytes instead of the ~7 GB
of a dense matrix, and an annealer updates a flipped spin's fields in O(block + rank).

Energy over spins s in {-1,+1}^n:

    E(s) = h.s + sum_b 1/2 s_b^T J_b s_b + sum_r (u_r.s)(v_r.s) + offset

with each J_b symmetric with zero diagonal, acting on the variables ``blocks[b]``.
:meth:`LowRankIsing.from_binary` builds the same from the binary (x in {0,1}) form
that pruning energies are written in.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import dimod
import numpy as np

#: Variables above which :meth:`LowRankIsing.to_bqm` refuses to build a dense BQM.
DENSE_BQM_LIMIT = 8192


@dataclass(init=False)
class LowRankIsing:
    # The constructor takes None for "no low-rank terms" and "labels 0..n-1"; once built,
    # every field holds its array or list.
    h: np.ndarray
    blocks: list[tuple[np.ndarray, np.ndarray]]
    lowrank_u: np.ndarray  # (rank, n)
    lowrank_v: np.ndarray  # (rank, n)
    offset: float
    labels: list[Hashable]

    def __init__(
        self,
        h: np.ndarray,
        blocks: Sequence[tuple[np.ndarray, np.ndarray]] = (),
        lowrank_u: np.ndarray | None = None,
        lowrank_v: np.ndarray | None = None,
        offset: float = 0.0,
        labels: list[Hashable] | None = None,
    ) -> None:
        self.h = np.asarray(h, dtype=float)
        n = len(self.h)
        checked = []
        for b, (index, J) in enumerate(blocks):
            index = np.asarray(index, dtype=np.int64)
            J = np.asarray(J, dtype=float)
            if J.shape != (len(index), len(index)):
                raise ValueError(f"block {b}: J has shape {J.shape} for {len(index)} variables")
            if len(index) and (index.min() < 0 or index.max() >= n):
                raise ValueError(f"block {b}: variable index out of range [0, {n})")
            if not _symmetric(J) or np.any(np.diag(J) != 0):
                raise ValueError(f"block {b}: J must be symmetric with a zero diagonal")
            checked.append((index, J))
        self.blocks = checked
        if lowrank_u is None and lowrank_v is None:
            lowrank_u, lowrank_v = np.zeros((0, n)), np.zeros((0, n))
        elif lowrank_u is None or lowrank_v is None:
            raise ValueError("lowrank_u and lowrank_v must be given together")
        self.lowrank_u = np.atleast_2d(np.asarray(lowrank_u, dtype=float))
        self.lowrank_v = np.atleast_2d(np.asarray(lowrank_v, dtype=float))
        if self.lowrank_u.shape != self.lowrank_v.shape or self.lowrank_u.shape[1] != n:
            raise ValueError(
                f"lowrank_u and lowrank_v must both have shape (rank, {n}), got "
                f"{self.lowrank_u.shape} and {self.lowrank_v.shape}"
            )
        self.offset = offset
        arrays = [self.h, self.lowrank_u, self.lowrank_v, *(J for _, J in self.blocks)]
        if not all(np.all(np.isfinite(a)) for a in arrays) or not np.isfinite(self.offset):
            raise ValueError("structured problem coefficients must be finite")
        if labels is None:
            labels = list(range(n))
        elif len(labels) != n or len(set(labels)) != n:
            raise ValueError(f"labels must be {n} unique names")
        self.labels = labels

    @property
    def num_variables(self) -> int:
        return len(self.h)

    @classmethod
    def from_binary(
        cls,
        linear: np.ndarray,
        blocks: Sequence[tuple[np.ndarray, np.ndarray]] = (),
        lowrank: Sequence[tuple[np.ndarray, np.ndarray]] = (),
        offset: float = 0.0,
        labels: Sequence[Hashable] | None = None,
    ) -> LowRankIsing:
        """From E(x) = a.x + sum_b x_b^T Q_b x_b + sum_r (p_r.x)(q_r.x) + offset, x in {0,1}.

        Q_b may be any square matrix (its diagonal is linear, as x_i^2 = x_i).
        """
        a = np.asarray(linear, dtype=float).copy()
        n = len(a)
        h = a / 2
        const = float(offset) + a.sum() / 2
        spin_blocks = []
        for index, Q in blocks:
            index = np.asarray(index, dtype=np.int64)
            Q = np.asarray(Q, dtype=float)
            diag = np.diag(Q).copy()
            # x^T Q x = sum_i Q_ii x_i + 1/2 sum_{i != j} S_ij x_i x_j, S = Q + Q^T;
            # x = (s + 1) / 2 turns the pair term into S_ij/8 (s_i s_j + s_i + s_j + 1).
            # (one n x n array, worked on in place: a group of 4,096 units is 134 MB)
            off = Q + Q.T
            np.fill_diagonal(off, 0.0)
            rows = off.sum(axis=1)
            off *= 0.25
            spin_blocks.append((index, off))
            np.add.at(h, index, diag / 2 + rows / 4)
            const += diag.sum() / 2 + rows.sum() / 8
        us, vs = [], []
        for p, q in lowrank:
            p = np.asarray(p, dtype=float)
            q = np.asarray(q, dtype=float)
            # (p.x)(q.x) = 1/4 (p.s + P)(q.s + Q), P = sum p, Q = sum q
            us.append(p / 2)
            vs.append(q / 2)
            h += (q.sum() * p + p.sum() * q) / 4
            const += p.sum() * q.sum() / 4
        lowrank_u = np.array(us).reshape(len(us), n) if us else None
        lowrank_v = np.array(vs).reshape(len(vs), n) if vs else None
        return cls(
            h, spin_blocks, lowrank_u, lowrank_v, const, None if labels is None else list(labels)
        )

    def energies(self, spins: np.ndarray) -> np.ndarray:
        """Energies of a (k, n) array of spins, computed without any dense n x n matrix."""
        spins = np.atleast_2d(np.asarray(spins, dtype=float))
        energy = spins @ self.h + self.offset
        for index, J in self.blocks:
            part = spins[:, index]
            energy += 0.5 * np.einsum("ki,ij,kj->k", part, J, part)
        energy += np.sum((spins @ self.lowrank_u.T) * (spins @ self.lowrank_v.T), axis=1)
        return energy

    def to_bqm(self) -> dimod.BinaryQuadraticModel:
        """The equivalent dense SPIN BQM (for checks and for solvers that need one).

        Refused (ValueError) above :data:`DENSE_BQM_LIMIT` variables: the low-rank terms
        couple every pair, so the BQM holds n (n - 1) / 2 couplings.
        """
        n = self.num_variables
        if n > DENSE_BQM_LIMIT:
            pairs = n * (n - 1) // 2
            raise ValueError(
                f"a dense BQM of this structured problem ({n} variables) would hold {pairs:,} "
                f"couplings (~{3 * 8 * n * n / 2**30:.0f} GiB to build); above "
                f"{DENSE_BQM_LIMIT} variables use the structured form (torch-sa's "
                f"sample_structured) or per-group problems"
            )
        J = np.zeros((n, n))
        for index, block in self.blocks:
            J[np.ix_(index, index)] += block / 2
        low = self.lowrank_u.T @ self.lowrank_v  # sum_r u_r v_r^T
        J += low
        offset = self.offset + float(np.trace(low))
        np.fill_diagonal(J, 0.0)
        upper = np.triu(J + J.T, 1)
        rows, cols = np.nonzero(upper)
        bqm = dimod.BinaryQuadraticModel.from_numpy_vectors(
            self.h, (rows, cols, upper[rows, cols]), offset, dimod.SPIN
        )
        bqm.relabel_variables(dict(enumerate(self.labels)), inplace=True)
        return bqm

    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indptr, indices, data) of the symmetric block couplings, built once per
        ``blocks`` list (ResNet-101's 10 M entries take 0.9 s; the global budget's search
        asks for them in several places). Treat the returned arrays as read-only."""
        cached = self.__dict__.get("_csr_cache")
        if cached is not None and cached[0] is self.blocks:
            return cached[1]
        layout = self._build_csr()
        self.__dict__["_csr_cache"] = (self.blocks, layout)
        return layout

    def _build_csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = self.num_variables
        rows, cols, data = [], [], []
        for index, J in self.blocks:
            r, c = np.nonzero(J)
            rows.append(index[r])
            cols.append(index[c])
            data.append(J[r, c])
        return csr_from_coo(
            n,
            *(
                np.concatenate(a) if a else np.zeros(0, dtype=dtype)
                for a, dtype in ((rows, np.int64), (cols, np.int64), (data, float))
            ),
        )


def _symmetric(J: np.ndarray) -> bool:
    """J == J^T up to np.allclose's tolerance; exact equality (what from_binary builds)
    is checked first, without allclose's n x n temporaries."""
    return bool(np.array_equal(J, J.T) or np.allclose(J, J.T))


def csr_from_coo(
    n: int, rows: np.ndarray, cols: np.ndarray, data: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR arrays of an n x n matrix from (row, col, value) triples (duplicates add up).

    Columns within a row keep their input order; the kernels do not need them sorted.
    """
    # The same stable order from 16-bit keys where they fit: numpy radix-sorts them,
    # 4x faster than its merge sort of int64 keys (0.16 against 0.69 ms for Gset's G1).
    keys = rows.astype(np.uint16) if n <= 1 << 16 else rows
    order = np.argsort(keys, kind="stable")
    indptr = np.zeros(n + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(np.bincount(rows, minlength=n))
    return indptr, cols[order].astype(np.int64), data[order].astype(float)
