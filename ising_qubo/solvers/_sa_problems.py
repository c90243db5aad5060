"""The problems of one ``torch-sa`` call, as its front builds them and both backends read
them: each in spin form with its start states (:class:`SpinProblem`), and a batch of them
as one block-diagonal model (:func:`union`, :func:`lowrank_union`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import dimod
import numpy as np

from ising_qubo.solvers._common import ArrayModel, symmetric_csr, symmetric_dense

# Above this fraction of non-zero couplings a dense matrix is cheaper than CSR.
DENSE_FRACTION = 0.3


@dataclass
class SpinProblem:
    """One problem of a (possibly batched) call, in spin form, with its start states."""

    h: np.ndarray
    rows: np.ndarray  # each coupling once: E = h.s + sum data s[rows] s[cols] + ...
    cols: np.ndarray
    data: np.ndarray
    start: np.ndarray  # (reads, n) spins
    beta_range: tuple[float, float] | None  # None until the front resolves it
    lowrank_u: np.ndarray | None = None
    lowrank_v: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.h)

    @property
    def lowrank(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(lowrank_u, lowrank_v), or None for a problem without low-rank terms."""
        if self.lowrank_u is None:
            return None
        assert self.lowrank_v is not None, "lowrank_u and lowrank_v are set together"
        return self.lowrank_u, self.lowrank_v

    # The kernels' layouts, built once per call: the fitted temperature range and the
    # anneal both use them (rebuilding cost 0.3-0.4 s a call on a dense n = 4096 problem).
    @cached_property
    def dense_couplings(self) -> np.ndarray:
        return symmetric_dense(self.n, self.rows, self.cols, self.data)

    @cached_property
    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return symmetric_csr(self.n, self.rows, self.cols, self.data)


def is_dense(problem: SpinProblem) -> bool:
    """Whether the kernels should hold the couplings as a dense matrix."""
    return problem.lowrank_u is None and 2 * len(problem.data) >= DENSE_FRACTION * problem.n**2


def union(problems: list[SpinProblem]) -> tuple[ArrayModel, np.ndarray]:
    """All problems as one block-diagonal model, and each variable's problem index."""
    offsets = np.cumsum([0] + [p.n for p in problems])
    model = ArrayModel(
        labels=list(range(offsets[-1])),
        linear=np.concatenate([p.h for p in problems]),
        rows=np.concatenate([p.rows + o for p, o in zip(problems, offsets)]).astype(np.int64),
        cols=np.concatenate([p.cols + o for p, o in zip(problems, offsets)]).astype(np.int64),
        data=np.concatenate([p.data for p in problems]).astype(float),
        offset=0.0,
        vartype=dimod.SPIN,
    )
    problem_of = np.repeat(np.arange(len(problems)), [p.n for p in problems])
    return model, problem_of


def lowrank_union(problems: list[SpinProblem]) -> tuple[np.ndarray, np.ndarray]:
    """(rank, n) low-rank factors of the union; problems without any get zeros."""
    n = sum(p.n for p in problems)
    rank = max((0 if p.lowrank_u is None else len(p.lowrank_u)) for p in problems)
    lr_u, lr_v = np.zeros((rank, n)), np.zeros((rank, n))
    offset = 0
    for p in problems:
        if p.lowrank is not None and len(p.lowrank[0]):
            u, v = p.lowrank
            lr_u[: len(u), offset : offset + p.n] = u
            lr_v[: len(v), offset : offset + p.n] = v
        offset += p.n
    return lr_u, lr_v
