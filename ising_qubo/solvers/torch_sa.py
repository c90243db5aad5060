"""``torch-sa``: simulated annealing with many replicas (and problems) at once.

Two kernels behind one dimod front end: on the CPU the compiled loop of
:mod:`ising_qubo.solvers._sa_cpu` (one replica per task, as fast per replica as neal);
on CUDA, or with ``backend="torch"``, the PyTorch kernel below.

The torch kernel (:func:`anneal`) works on tensors only: spins ``s`` in {-1,+1} of shape
(replicas, n), fields ``F = h + s J`` kept up to date after each update. Variables are
updated one colour class at a time: variables of one class share no coupling, so their
Metropolis moves are independent and updating them together is exact single-spin-flip
annealing. Sparse problems get few classes from a greedy graph colouring; dense problems
fall back to one variable per class (a sequential sweep, like neal's).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import dimod
import networkx as nx
import numpy as np
import torch

from ising_qubo.solvers.capabilities import Capability as C
from ising_qubo.solvers._common import (
    ArrayModel,
    Stop,
    check_bqm,
    optional_time_limit,
    parse_initial_states,
    positive_int,
    sampleset_from_states,
    symmetric_csr,
    symmetric_dense,
    wall_timer,
)
from ising_qubo.solvers._torch_common import in_chunks, on_device, resolve_device, torch_seed
from ising_qubo.solvers.schedule import BetaSchedule, default_beta_range, fitted_beta_range

# Above this fraction of non-zero couplings a dense matrix is cheaper than CSR.
_DENSE_FRACTION = 0.3
# The CPU kernel recomputes the local fields every this many sweeps (bounds the rounding
# drift of the incremental updates); results depend on it, so it is fixed.
_REFRESH_SWEEPS = 100


@dataclass
class IsingTensors:
    """Spin-form problem on a device: ``E = h.s + 1/2 s^T J s + sum_r (u_r.s)(v_r.s)``.

    J is symmetric with a zero diagonal; the optional low-rank terms (``lowrank_u``,
    ``lowrank_v``: (rank, n)) are those of :class:`~ising_qubo.lowrank.LowRankIsing`.
    Variables are stored in colour order (``order[k]`` is the original index of stored
    variable k), so each colour class is a contiguous slice and updates work on views.
    """

    h: torch.Tensor
    J: torch.Tensor  # dense (n, n) or sparse CSR (n, n), zero diagonal
    classes: list[slice]
    class_rows: list[torch.Tensor]  # dense J[class, :], or CSR J[class, :]^T
    order: np.ndarray
    offset: float
    lowrank_u: torch.Tensor | None = None
    lowrank_v: torch.Tensor | None = None

    @property
    def dense(self) -> bool:
        return self.J.layout == torch.strided

    def to(self, dtype: torch.dtype) -> IsingTensors:
        low = [None if t is None else t.to(dtype) for t in (self.lowrank_u, self.lowrank_v)]
        return IsingTensors(self.h.to(dtype), self.J.to(dtype), self.classes,
                            [rows.to(dtype) for rows in self.class_rows], self.order,
                            self.offset, *low)

    def fields(self, s: torch.Tensor) -> torch.Tensor:
        if self.dense:
            return self.h + s @ self.J
        return self.h + (self.J @ s.T).T


def build_tensors(model: ArrayModel, device: torch.device, dtype: torch.dtype,
                  colours: np.ndarray | None = None) -> IsingTensors:
    """The model on ``device``, variables grouped by colour (computed unless given)."""
    n = model.num_variables
    density = 2 * len(model.data) / max(1, n * n)
    if colours is not None:
        order = np.argsort(colours, kind="stable")
        sizes = np.bincount(colours).tolist()
    elif density >= _DENSE_FRACTION or n <= 64:
        order = np.arange(n)
        sizes = [1] * n
    else:
        order, sizes = _colour_order(n, model.rows, model.cols)
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    rows, cols = position[model.rows], position[model.cols]
    index = torch.as_tensor(np.vstack([np.concatenate([rows, cols]), np.concatenate([cols, rows])]),
                            device=device)
    values = torch.as_tensor(np.concatenate([model.data, model.data]), dtype=dtype, device=device)
    h = torch.as_tensor(model.linear[order], dtype=dtype, device=device)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    classes = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    if sizes == [1] * n:
        J = torch.zeros((n, n), dtype=dtype, device=device)
        J.index_put_((index[0], index[1]), values, accumulate=True)
        class_rows = [J[c] for c in classes]
    else:
        warnings.filterwarnings("ignore", message="Sparse (CSR tensor support|invariant)")
        J = torch.sparse_coo_tensor(index, values, (n, n)).coalesce()
        # Transposed row blocks, so that a class's update is one sparse @ dense product.
        class_rows = [J.index_select(0, torch.arange(c.start, c.stop, device=device))
                      .t().coalesce().to_sparse_csr() for c in classes]
        J = J.to_sparse_csr()
    return IsingTensors(h, J, classes, class_rows, order, model.offset)


def _colour_order(n: int, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Variables sorted by greedy colour, and the size of each colour class."""
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(zip(rows.tolist(), cols.tolist()))
    colour = nx.greedy_color(graph, strategy="largest_first")
    colours = np.array([colour[v] for v in range(n)])
    order = np.argsort(colours, kind="stable")
    return order, np.bincount(colours).tolist()


class _FieldState:
    """Local fields of all replicas, updated as colour classes flip.

    ``fields`` holds h + J s; the low-rank terms are kept as projections a = s u^T and
    b = s v^T (replicas x rank), and enter a class's energy change as
    -2 s_i (u_i . b + v_i . a) + 4 u_i . v_i.
    """

    def __init__(self, problem: IsingTensors, spins: torch.Tensor) -> None:
        self.problem = problem
        self.spins = spins
        self.refresh()

    def refresh(self) -> None:
        """Recompute from the spins (drops rounding drift of the incremental updates)."""
        problem, s = self.problem, self.spins
        self.fields = problem.fields(s)
        if problem.lowrank_u is not None:
            self.proj_u = s @ problem.lowrank_u.T
            self.proj_v = s @ problem.lowrank_v.T

    def delta_energy(self, cls: slice) -> torch.Tensor:
        problem, s = self.problem, self.spins[:, cls]
        field = self.fields[:, cls]
        if problem.lowrank_u is None:
            return -2.0 * s * field
        u, v = problem.lowrank_u[:, cls], problem.lowrank_v[:, cls]
        field = field + self.proj_v @ u + self.proj_u @ v
        return -2.0 * s * field + 4.0 * (u * v).sum(0)

    def flip(self, k: int, cls: slice, mask: torch.Tensor) -> None:
        s = self.spins[:, cls]
        delta = mask * (-2.0 * s)
        s.add_(delta)
        problem = self.problem
        if problem.dense:
            self.fields.addmm_(delta, problem.class_rows[k])
        else:
            self.fields.add_((problem.class_rows[k] @ delta.T).T)
        if problem.lowrank_u is not None:
            self.proj_u.add_(delta @ problem.lowrank_u[:, cls].T)
            self.proj_v.add_(delta @ problem.lowrank_v[:, cls].T)


def anneal(
    problem: IsingTensors,
    spins: torch.Tensor,
    betas: Iterable[float | torch.Tensor],
    generator: torch.Generator,
    stop: Stop,
) -> tuple[torch.Tensor, int]:
    """Metropolis sweeps at inverse temperatures ``betas``; returns (spins, sweeps done).

    ``betas`` gives one value per sweep, or one (n,) row of per-variable values per sweep
    (batched problems, each on its own schedule). ``stop`` is checked every 32 colour
    classes and after each sweep; a KeyboardInterrupt between updates ends the run as
    ``stop.interrupt()`` does (``spins`` stays a valid state).
    """
    state = _FieldState(problem, spins)
    sweeps = 0
    synchronize = spins.is_cuda and stop.deadline.end is not None
    try:
        for sweep, beta in enumerate(betas, start=1):
            # Metropolis accepts a flip when dE < -log(u) / beta, u uniform in (0, 1]:
            # drawing all thresholds of a sweep at once saves a kernel launch per class.
            uniform = torch.rand(spins.shape, generator=generator, device=spins.device,
                                 dtype=spins.dtype)
            thresholds = torch.log1p(-uniform).neg_().div_(
                beta if isinstance(beta, torch.Tensor) else float(beta))
            for k, cls in enumerate(problem.classes):
                state.flip(k, cls, state.delta_energy(cls) < thresholds[:, cls])
                if k % 32 == 31 and stop():
                    return spins, sweeps
            sweeps = sweep
            if sweeps % 64 == 0:
                state.refresh()
            if synchronize:  # the host must not run ahead of the GPU's work on the clock
                torch.cuda.synchronize(spins.device)
            if stop():
                break
    except KeyboardInterrupt:
        if not stop.interrupt():
            raise
    return spins, sweeps


def descend(problem: IsingTensors, spins: torch.Tensor, max_sweeps: int = 10_000) -> torch.Tensor:
    """Greedy single flips (dE < 0) until no flip lowers any replica's energy.

    Flips go class by class in the stored order. On the CPU (float64, no low-rank terms)
    the compiled kernel of the numba backend does the same sweeps: driving them from
    Python took up to seconds on dense problems (one class per variable), after a time
    limit had already stopped the run.
    """
    if (spins.device.type == "cpu" and spins.dtype == torch.float64
            and problem.h.dtype == torch.float64 and problem.lowrank_u is None):
        return _descend_compiled(problem, spins, max_sweeps)
    state = _FieldState(problem, spins)
    for _ in range(max_sweeps):
        flipped = False
        for k, cls in enumerate(problem.classes):
            improve = state.delta_energy(cls) < 0
            if bool(improve.any()):
                flipped = True
                state.flip(k, cls, improve)
        if not flipped:
            break
        state.refresh()
    return spins


def _descend_compiled(problem: IsingTensors, spins: torch.Tensor,
                      max_sweeps: int) -> torch.Tensor:
    """:func:`descend` with the numba kernels (sequential flips in the stored order)."""
    from ising_qubo.solvers import _sa_cpu

    states = np.ascontiguousarray(spins.numpy())
    h = np.ascontiguousarray(problem.h.numpy())
    if problem.dense:
        layout = {"dense": np.ascontiguousarray(problem.J.numpy()).ravel()}
    else:
        layout = {"csr": (problem.J.crow_indices().numpy().astype(np.int64),
                          problem.J.col_indices().numpy().astype(np.int32),
                          np.ascontiguousarray(problem.J.values().numpy()))}
    _sa_cpu.descend(states, h, max_sweeps=max_sweeps, **layout)
    spins.copy_(torch.from_numpy(states))
    return spins


@dataclass
class _Part:
    """One problem of a (possibly batched) call, in spin form, with its start states."""

    h: np.ndarray
    rows: np.ndarray  # each coupling once: E = h.s + sum data s[rows] s[cols] + ...
    cols: np.ndarray
    data: np.ndarray
    start: np.ndarray  # (reads, n) spins
    beta_range: tuple[float, float] | None  # None until resolved (see _resolve_beta_range)
    lowrank_u: np.ndarray | None = None
    lowrank_v: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.h)

    # The kernels' layouts, built once per call: the fitted temperature range and the
    # anneal both use them (rebuilding cost 0.3-0.4 s a call on a dense n = 4096 problem).
    @cached_property
    def dense_couplings(self) -> np.ndarray:
        return symmetric_dense(self.n, self.rows, self.cols, self.data)

    @cached_property
    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return symmetric_csr(self.n, self.rows, self.cols, self.data)


class TorchSASampler(dimod.Sampler, dimod.Initialized):
    """Simulated annealing with many replicas (and many problems) at once, CPU or CUDA.

    Parameters: ``num_reads`` (replicas), ``num_sweeps``, ``beta_range`` (hot, cold;
    default fitted to the problem's flip energies, see
    :func:`~ising_qubo.solvers.schedule.fitted_beta_range`; ``"neal"`` for neal's rule),
    ``beta_schedule_type`` ('geometric' or 'linear'),
    ``seed`` (reproducible on the CPU), ``initial_states`` (warm starts), ``time_limit``
    (seconds from the call, set-up included; checked between kernel calls of about 2% of
    it), ``device`` ('auto', 'cpu', 'cuda'), ``dtype``
    ('float32' or 'float64': the precision of the torch backend; the CPU kernel always
    uses float64), ``backend`` ('auto': the compiled numba kernel on the CPU and the
    torch kernel on CUDA; or 'numba' / 'torch').
    Every returned state is a local minimum: a final greedy descent in float64 removes
    any single flip that still lowers the energy.

    When ``time_limit`` or Ctrl-C stops a run, the replicas are descended as they are
    and returned (``info["interrupted"]`` is True after Ctrl-C); replicas that had not
    started annealing are left out, so fewer than ``num_reads`` may come back.
    ``info["num_sweeps"]`` is the number of sweeps every returned replica completed. A
    CUDA out-of-memory error is retried with the replicas split into chunks, halving
    until one fits (``info["replica_chunk"]``), else a ValueError gives the memory asked
    and free.

    :meth:`sample_batch` anneals several independent problems in one call, each on its
    own temperature schedule; :meth:`sample_structured` takes a
    :class:`~ising_qubo.lowrank.LowRankIsing` (dense blocks + low-rank terms).
    """

    capabilities = frozenset({C.BATCH, C.STRUCTURED, C.STRUCTURED_CARDINALITIES, C.INITIAL_STATES, C.TIME_LIMIT, C.INTERRUPT})
    parameters = {
        "num_reads": [],
        "num_sweeps": [],
        "beta_range": [],
        "beta_schedule_type": ["beta_schedule_options"],
        "seed": [],
        "initial_states": [],
        "initial_states_generator": [],
        "time_limit": [],
        "device": [],
        "dtype": [],
        "backend": ["backends"],
    }
    properties = {"beta_schedule_options": ("geometric", "linear"),
                  "backends": ("auto", "numba", "torch")}

    def sample(self, bqm: dimod.BinaryQuadraticModel, num_reads: int | None = None,
               initial_states: Any = None, initial_states_generator: str = "random",
               seed: int | None = None, beta_range: Any = None,
               **parameters: Any) -> dimod.SampleSet:
        stop = _stop_from(parameters)
        check_bqm(bqm, "torch-sa")
        if num_reads is not None:
            positive_int(num_reads, "num_reads", "torch-sa")
        initial = parse_initial_states(
            self, bqm, initial_states=initial_states,
            initial_states_generator=initial_states_generator, num_reads=num_reads, seed=seed)
        model = ArrayModel.from_bqm(bqm, dimod.SPIN)
        start = _as_spins(initial, bqm.vartype)
        part = _Part(model.linear, model.rows, model.cols, model.data, start, None)
        _resolve_beta_range(part, beta_range)
        [states], info = self._run([part], stop, seed=seed, **parameters)
        return sampleset_from_states(states, dimod.SPIN, bqm, info)

    def sample_batch(self, bqms: list[dimod.BinaryQuadraticModel], num_reads: int = 10,
                     seed: int | None = None, beta_range: Any = None,
                     initial_states: Sequence[Any] | None = None,
                     **parameters: Any) -> list[dimod.SampleSet]:
        """Anneal independent problems together: one call, one kernel launch per sweep.

        Each problem keeps its own temperature schedule (from its own coefficients unless
        ``beta_range`` is given). ``initial_states``: one entry per problem, None or a
        (k, n) array in the problem's vartype and ``bqm.variables`` order; its rows start
        the first k reads, the others start at random. Returns one SampleSet per problem,
        in order; ``info`` is shared and its timing is that of the whole batch.
        """
        stop = _stop_from(parameters)
        reads = positive_int(num_reads, "num_reads", "torch-sa")
        rng = np.random.default_rng(seed)
        if initial_states is not None and len(initial_states) != len(bqms):
            raise ValueError(f"torch-sa: initial_states has {len(initial_states)} entries "
                             f"for {len(bqms)} problems")
        parts = []
        for k, bqm in enumerate(bqms):
            check_bqm(bqm, "torch-sa")
            model = ArrayModel.from_bqm(bqm, dimod.SPIN)
            start = rng.choice([-1.0, 1.0], size=(reads, model.num_variables))
            given = None if initial_states is None else initial_states[k]
            if given is not None:
                given = _as_spins(np.atleast_2d(np.asarray(given)), bqm.vartype)
                if given.shape[1] != model.num_variables or not np.all(np.abs(given) == 1):
                    raise ValueError(f"torch-sa: initial_states[{k}] must be a (k, "
                                     f"{model.num_variables}) array of {bqm.vartype.name} "
                                     f"values")
                rows = min(len(given), reads)
                start[:rows] = given[:rows]
            parts.append(_Part(model.linear, model.rows, model.cols, model.data, start, None))
            _resolve_beta_range(parts[-1], beta_range)
        states, info = self._run(parts, stop, seed=seed, **parameters)
        return [sampleset_from_states(x, dimod.SPIN, bqm, dict(info))
                for x, bqm in zip(states, bqms)]

    def sample_structured(self, problem: Any, num_reads: int = 10, seed: int | None = None,
                          beta_range: Any = None, initial_states: np.ndarray | None = None,
                          cardinalities: Sequence[tuple[Sequence[Any], int]] | None = None,
                          **parameters: Any) -> dimod.SampleSet:
        """Anneal a :class:`~ising_qubo.lowrank.LowRankIsing` without a dense matrix.

        ``cardinalities``: ``[(labels, k), ...]``, disjoint groups covering every
        variable, each to have exactly k spins up (+1). The annealer then moves by swaps
        inside groups from budget-meeting states (:func:`ising_qubo.solvers.budgeted.
        budgeted_anneal`, compiled for the CPU whatever ``device`` says), so every
        returned state meets them exactly, with no penalty; a sweep proposes as many swaps
        as there are variables, and ``beta_range`` defaults to one derived from the energy
        changes of random swaps.

        Returns a SPIN SampleSet labelled like the problem, energies from
        ``problem.energies`` (block and low-rank terms, no dense matrix either).
        """
        from ising_qubo.lowrank import LowRankIsing

        stop = _stop_from(parameters)
        if not isinstance(problem, LowRankIsing):
            raise TypeError(f"torch-sa: expected a LowRankIsing, got {type(problem).__name__}")
        reads = positive_int(num_reads, "num_reads", "torch-sa")
        n = problem.num_variables
        if initial_states is None:
            start = np.random.default_rng(seed).choice([-1.0, 1.0], size=(reads, n))
        else:
            start = np.asarray(initial_states, dtype=float)
            if start.shape != (reads, n) or not np.all(np.abs(start) == 1):
                raise ValueError(f"torch-sa: initial_states must be a ({reads}, {n}) array "
                                 "of -1/+1 spins")
        if cardinalities is not None:
            return self._sample_swaps(problem, cardinalities, reads, seed, beta_range,
                                      None if initial_states is None else start, stop,
                                      **parameters)
        indptr, indices, data = problem.csr()
        rows = np.repeat(np.arange(n), np.diff(indptr))
        upper = rows < indices  # each coupling once, as the BQM path stores it
        part = _Part(problem.h, rows[upper], indices[upper], data[upper], start, None,
                     problem.lowrank_u, problem.lowrank_v)
        if isinstance(beta_range, str) and beta_range == "neal":
            # Rank-1 terms couple every pair: count their largest field in the hot bound.
            abs_u, abs_v = np.abs(problem.lowrank_u), np.abs(problem.lowrank_v)
            reach = ((abs_u * abs_v.sum(1, keepdims=True)).sum(0)
                     + (abs_v * abs_u.sum(1, keepdims=True)).sum(0))
            hot, cold = default_beta_range(problem.h, rows[upper], indices[upper], data[upper])
            max_field = (np.abs(problem.h) + np.bincount(rows, np.abs(data), n) + reach).max()
            betas = (min(hot, math.log(2) / (2 * max_field)) if max_field > 0 else hot, cold)
            part.beta_range = (min(betas), max(betas))
        else:
            _resolve_beta_range(part, beta_range)
        [states], info = self._run([part], stop, seed=seed, **parameters)
        energies = problem.energies(states)
        return dimod.SampleSet.from_samples((states.astype(np.int8), problem.labels),
                                            dimod.SPIN, energies, info=info)

    def _sample_swaps(self, problem: Any, cardinalities: Any, reads: int, seed: int | None,
                      beta_range: Any, start: np.ndarray | None, stop: Stop,
                      num_sweeps: int = 1000, device: str = "auto", **parameters: Any
                      ) -> dimod.SampleSet:
        from ising_qubo.solvers.budgeted import budgeted_anneal

        parameters.pop("dtype", None)  # the swap kernel always runs in float64
        parameters.pop("backend", None)
        parameters.pop("beta_schedule_type", None)
        self.remove_unknown_kwargs(**parameters)
        resolve_device(device, "torch-sa")
        sweeps = positive_int(num_sweeps, "num_sweeps", "torch-sa")
        groups, targets = _cardinality_groups(problem, cardinalities)
        if isinstance(beta_range, str) and beta_range == "neal":
            raise ValueError("torch-sa: beta_range='neal' is for spin flips; annealing by swaps "
                             "(cardinalities) takes (hot, cold) or derives its own range")
        betas = None if beta_range is None else _check_beta_range(beta_range)
        info: dict[str, Any] = {"backend": "numba-swaps", "device": "cpu"}
        with stop, wall_timer(info):
            states, run_info = budgeted_anneal(problem, groups, targets, num_reads=reads,
                                               num_sweeps=sweeps, beta_range=betas,
                                               seed=seed, initial_states=start, stop=stop)
        info.update(run_info)
        stop.report(info)
        return dimod.SampleSet.from_samples((states.astype(np.int8), problem.labels),
                                            dimod.SPIN, problem.energies(states), info=info)

    def _run(self, parts: list[_Part], stop: Stop, num_sweeps: int = 1000,
             beta_schedule_type: str = "geometric", seed: int | None = None,
             device: str = "auto", dtype: str = "float32", backend: str = "auto",
             **parameters: Any) -> tuple[list[np.ndarray], dict]:
        self.remove_unknown_kwargs(**parameters)
        sweeps = positive_int(num_sweeps, "num_sweeps", "torch-sa")
        torch_device = resolve_device(device, "torch-sa")
        if str(dtype) not in ("float32", "float64"):
            raise ValueError(f"torch-sa: dtype must be 'float32' or 'float64', got {dtype!r}")
        if backend not in ("auto", "numba", "torch"):
            raise ValueError(f"torch-sa: backend must be 'auto', 'numba' or 'torch', "
                             f"got {backend!r}")
        if backend == "auto":
            backend = "torch" if torch_device.type == "cuda" else "numba"
        if backend == "numba" and torch_device.type == "cuda":
            raise ValueError("torch-sa: backend='numba' runs on the CPU; use device='cpu'")
        schedule = BetaSchedule([p.beta_range for p in parts], sweeps, beta_schedule_type)
        info: dict[str, Any] = {"beta_range": [p.beta_range for p in parts],
                                "backend": backend, "device": str(torch_device)}
        sizes = [part.n for part in parts]
        with stop, wall_timer(info):
            if sum(sizes) == 0:
                spins, done = np.concatenate([p.start for p in parts], axis=1), 0
            elif backend == "numba":
                spins, done = _run_numba(parts, schedule, seed, stop)
            else:
                spins, done = _run_torch(parts, schedule, seed, stop, torch_device,
                                         getattr(torch, dtype), info)
        info["num_sweeps"] = done
        stop.report(info)
        bounds = np.cumsum([0] + sizes)
        return [spins[:, a:b] for a, b in zip(bounds[:-1], bounds[1:])], info


def _cardinality_groups(problem: Any, cardinalities: Any) -> tuple[list[np.ndarray], list[int]]:
    """``[(labels, k), ...]`` -> variable index arrays and targets, checked: disjoint,
    covering every variable, 0 <= k <= group size."""
    position = {label: i for i, label in enumerate(problem.labels)}
    groups, targets = [], []
    seen = np.zeros(problem.num_variables, dtype=bool)
    try:
        entries = [(list(labels), k) for labels, k in cardinalities]
    except (TypeError, ValueError):
        raise ValueError("torch-sa: cardinalities must be a list of (labels, k) pairs") from None
    for g, (labels, k) in enumerate(entries):
        unknown = [v for v in labels if v not in position]
        if unknown:
            raise ValueError(f"torch-sa: cardinalities[{g}] names variables not in the "
                             f"problem: {unknown[:5]!r}")
        index = np.array([position[v] for v in labels], dtype=np.int64)
        if seen[index].any() or len(set(index.tolist())) != len(index):
            raise ValueError(f"torch-sa: cardinalities[{g}] overlaps another group; groups "
                             "must be disjoint")
        if isinstance(k, bool) or int(k) != k or not 0 <= k <= len(index):
            raise ValueError(f"torch-sa: cardinalities[{g}] asks for {k!r} of {len(index)} "
                             "variables")
        seen[index] = True
        groups.append(index)
        targets.append(int(k))
    if not seen.all():
        missing = [problem.labels[i] for i in np.flatnonzero(~seen)[:5]]
        raise ValueError(f"torch-sa: cardinalities must cover every variable (swap moves "
                         f"never move the others); not covered: {missing!r}")
    return groups, targets


def _stop_from(parameters: dict[str, Any]) -> Stop:
    """The call's Stop, its clock started now, from ``parameters.pop("time_limit")``."""
    return Stop(optional_time_limit(parameters.pop("time_limit", None), "torch-sa"))


def _as_spins(states: np.ndarray, vartype: dimod.Vartype) -> np.ndarray:
    states = np.asarray(states, dtype=np.float64)
    return 2 * states - 1 if vartype is dimod.BINARY else states


def _resolve_beta_range(part: _Part, beta_range: Any) -> None:
    """Sets ``part.beta_range``: fitted (None), neal's rule ('neal') or as given."""
    if beta_range is None:
        lowrank = None if part.lowrank_u is None else (part.lowrank_u, part.lowrank_v)
        layout = ({"dense": part.dense_couplings} if _is_dense(part) else {"csr": part.csr})
        part.beta_range = fitted_beta_range(part.h, part.rows, part.cols, part.data,
                                            lowrank=lowrank, **layout)
    elif isinstance(beta_range, str) and beta_range == "neal":
        part.beta_range = default_beta_range(part.h, part.rows, part.cols, part.data)
    else:
        part.beta_range = _check_beta_range(beta_range)


def _union(parts: list[_Part]) -> tuple[ArrayModel, np.ndarray]:
    """All problems as one block-diagonal model, and each variable's problem index."""
    offsets = np.cumsum([0] + [p.n for p in parts])
    model = ArrayModel(
        labels=list(range(offsets[-1])),
        linear=np.concatenate([p.h for p in parts]),
        rows=np.concatenate([p.rows + o for p, o in zip(parts, offsets)]).astype(np.int64),
        cols=np.concatenate([p.cols + o for p, o in zip(parts, offsets)]).astype(np.int64),
        data=np.concatenate([p.data for p in parts]).astype(float),
        offset=0.0, vartype=dimod.SPIN)
    problem_of = np.repeat(np.arange(len(parts)), [p.n for p in parts])
    return model, problem_of


def _is_dense(part: _Part) -> bool:
    return part.lowrank_u is None and 2 * len(part.data) >= _DENSE_FRACTION * part.n ** 2


def _lowrank_union(parts: list[_Part]) -> tuple[np.ndarray, np.ndarray]:
    """(rank, n) low-rank factors of the union; problems without any get zeros."""
    n = sum(p.n for p in parts)
    rank = max((0 if p.lowrank_u is None else len(p.lowrank_u)) for p in parts)
    lr_u, lr_v = np.zeros((rank, n)), np.zeros((rank, n))
    offset = 0
    for p in parts:
        if p.lowrank_u is not None and len(p.lowrank_u):
            lr_u[:len(p.lowrank_u), offset:offset + p.n] = p.lowrank_u
            lr_v[:len(p.lowrank_v), offset:offset + p.n] = p.lowrank_v
        offset += p.n
    return lr_u, lr_v


def _run_numba(parts, schedule, seed, stop) -> tuple[np.ndarray, int]:
    """Anneal on the CPU with the compiled kernels; returns (spins, sweeps done).

    The kernels work in float64 whatever ``dtype`` says: mixing float32 couplings into
    float64 fields measured 3x slower (the conversion blocks vectorisation), and float64
    costs nothing extra at CPU problem sizes.

    Three layouts: every problem dense (one task per replica and problem, rows read
    contiguously), or CSR with optional low-rank terms for everything else.

    Each replica has its own random stream and its fields are recomputed every
    ``_REFRESH_SWEEPS`` sweeps, so how the work is cut into kernel calls (blocks of
    replicas, runs of sweeps) does not change the result; :class:`_Pacer` cuts it into
    calls of about 2% of the time limit (0.25 s at most), between which ``stop`` is
    checked and Ctrl-C is noticed.
    """
    import numba

    from ising_qubo.solvers import _sa_cpu

    model, problem_of = _union(parts)
    n = model.num_variables
    problems = len(parts)
    spins = np.ascontiguousarray(np.concatenate([p.start for p in parts], axis=1))
    reads = spins.shape[0]
    fields = np.empty_like(spins)
    h = model.linear
    offsets = np.cumsum([0] + [p.n for p in parts])
    if all(_is_dense(p) for p in parts):
        blocks = [p.dense_couplings for p in parts]
        j_start = np.cumsum([0] + [len(b) for b in blocks]).astype(np.int64)
        jflat = np.concatenate(blocks)
        var_start = offsets.astype(np.int64)
        # one stream per (replica, problem) task, replica-major as the kernel counts them
        seeds = np.random.SeedSequence(seed).generate_state(reads * problems, np.uint64)

        def refresh(a, b):
            fields[a:b] = _sa_cpu.fields_blocks(spins[a:b], h, jflat, var_start, j_start)

        def sweep(a, b, table, greedy):
            _sa_cpu.sweeps_blocks(spins[a:b], fields[a:b], jflat, var_start, j_start, table,
                                  seeds[a * problems:b * problems], greedy)
    else:
        lr_u, lr_v = _lowrank_union(parts)
        lr_diag = (lr_u * lr_v).sum(axis=0)
        proj_u = np.zeros((reads, lr_u.shape[0]))
        proj_v = np.zeros((reads, lr_u.shape[0]))
        indptr, indices, values = (parts[0].csr if problems == 1 else
                                   symmetric_csr(n, model.rows, model.cols, model.data))
        seeds = np.random.SeedSequence(seed).generate_state(reads, np.uint64)

        def refresh(a, b):
            fields[a:b], proj_u[a:b], proj_v[a:b] = _sa_cpu.fields_csr(
                spins[a:b], h, indptr, indices, values, lr_u, lr_v)

        def sweep(a, b, table, greedy):
            _sa_cpu.sweeps_csr(spins[a:b], fields[a:b], proj_u[a:b], proj_v[a:b], indptr,
                               indices, values, lr_u, lr_v, lr_diag, table, problem_of,
                               seeds[a:b], greedy)

    limit = None if stop.deadline.end is None else stop.deadline.end - stop.deadline.start
    pacer = _Pacer(0.25 if limit is None else min(0.25, max(0.002, 0.02 * limit)),
                   numba.get_num_threads())
    swept = np.zeros(reads, dtype=np.int64)  # sweeps done, per replica

    def anneal_all() -> None:
        """Segments of _REFRESH_SWEEPS sweeps; in each, blocks of replicas in order."""
        first = True
        for begin in range(0, len(schedule), _REFRESH_SWEEPS):
            table = schedule.table(begin, begin + _REFRESH_SWEEPS)
            a = 0
            while a < reads:
                width, step = pacer.block(reads - a, len(table))
                b = a + width
                refresh(a, b)
                done = 0
                while done < len(table):
                    if not first and stop():
                        return
                    first = False
                    chunk = table[done:done + step]
                    started = time.perf_counter()
                    sweep(a, b, chunk, False)
                    pacer.record(width * len(chunk), time.perf_counter() - started)
                    swept[a:b] += len(chunk)
                    done += len(chunk)
                    step = pacer.sweeps(width, len(table) - done)
                a = b

    try:
        anneal_all()
    except KeyboardInterrupt:
        if not stop.interrupt():
            raise
    # Replicas never reached (the run stopped in its first segment) are left out: they
    # would only be random states, and descending them all could overrun the limit.
    kept = int(np.count_nonzero(swept)) if swept[-1] == 0 else reads
    refresh(0, kept)
    sweep(0, kept, np.zeros((10_000, problems)), True)
    return spins[:kept], int(swept[:kept].min())


class _Pacer:
    """Sizes CPU kernel calls to about ``target`` seconds from the measured cost.

    A call runs ``width`` replicas (at least one per thread, when there are that many)
    for some sweeps; the cost of a replica-sweep is re-measured after every call, and the
    first call (cost unknown) is one sweep.
    """

    def __init__(self, target: float, threads: int) -> None:
        self.target = target
        self.threads = max(1, threads)
        self.cost: float | None = None  # seconds per replica-sweep

    def block(self, replicas: int, sweeps: int) -> tuple[int, int]:
        """(replicas, sweeps) of the next call, out of ``replicas`` and ``sweeps`` left."""
        width = min(replicas, self.threads)
        if self.cost is None:
            return width, 1
        budget = self.target / self.cost  # replica-sweeps in one call
        if budget >= width * sweeps:
            return min(replicas, max(width, int(budget // sweeps))), sweeps
        return width, self.sweeps(width, sweeps)

    def sweeps(self, width: int, sweeps: int) -> int:
        budget = self.target / self.cost
        return max(1, min(sweeps, int(budget // width)))

    def record(self, replica_sweeps: int, seconds: float) -> None:
        self.cost = max(seconds, 1e-9) / max(replica_sweeps, 1)


def _part_colours(part: _Part) -> np.ndarray:
    """Colour classes of one problem: each variable alone when dense, else greedy."""
    if _is_dense(part) or part.n <= 64:
        return np.arange(part.n)
    order, sizes = _colour_order(part.n, part.rows, part.cols)
    colours = np.empty(part.n, dtype=np.int64)
    colours[order] = np.repeat(np.arange(len(sizes)), sizes)
    return colours


def _beta_rows(schedule: BetaSchedule, columns: np.ndarray | None, device: torch.device,
               dtype: torch.dtype, block: int = 256) -> Iterator[torch.Tensor]:
    """The schedule's rows as tensors (``columns`` picks a column per variable), computed
    a block at a time: a (sweeps, n) table of a long run would not fit in memory."""
    for a in range(0, len(schedule), block):
        table = schedule.table(a, a + block)
        yield from torch.as_tensor(table if columns is None else table[:, columns],
                                   dtype=dtype, device=device)


def _run_torch_padded(parts, schedule, seed, stop, device, dtype,
                      info) -> tuple[np.ndarray, int]:
    """A batch of dense problems as one padded (problems, replicas, n_max) tensor.

    Step k updates variable k of every problem and replica in one set of tensor
    operations, so a sweep costs n_max steps instead of the sum of all sizes. Padding
    variables have no couplings and an infinitely high acceptance bar: they never flip.
    """
    sizes = [p.n for p in parts]
    count, width = len(parts), max(sizes)
    reads = parts[0].start.shape[0]
    J = torch.zeros((count, width, width), dtype=torch.float64)
    h = torch.zeros((count, 1, width), dtype=torch.float64)
    start = torch.ones((count, reads, width), dtype=torch.float64)
    padding = torch.ones((count, 1, width), dtype=torch.bool)
    for k, p in enumerate(parts):
        block = np.zeros((p.n, p.n))
        np.add.at(block, (p.rows, p.cols), p.data)
        J[k, :p.n, :p.n] = torch.from_numpy(block + block.T)
        h[k, 0, :p.n] = torch.from_numpy(p.h)
        start[k, :, :p.n] = torch.from_numpy(p.start)
        padding[k, 0, :p.n] = False
    itemsize = torch.finfo(dtype).bits // 8
    J, h, padding = on_device(lambda: (J.to(device), h.to(device), padding.to(device)),
                              "torch-sa", device, f"{count} padded {width}x{width} matrices",
                              J.numel() * 8)
    J_work = on_device(lambda: J.to(dtype), "torch-sa", device, f"the matrices in {dtype}",
                       J.numel() * itemsize)
    generator = torch.Generator(device=device)
    generator.manual_seed(torch_seed(seed))

    synchronize = device.type == "cuda" and stop.deadline.end is not None

    def run(table, coupling: torch.Tensor, state: torch.Tensor) -> int:
        if table is None:
            return sweep_all(table, coupling, state)
        try:
            return sweep_all(table, coupling, state)
        except KeyboardInterrupt:  # between updates: every state is still a valid one
            if not stop.interrupt():
                raise
            return progress[-1]

    progress = [0]

    def sweep_all(table, coupling: torch.Tensor, state: torch.Tensor) -> int:
        fields = h.to(state.dtype) + torch.bmm(state, coupling)
        done = progress[-1] = 0
        for step, beta in enumerate(table if table is not None else range(10_000), start=1):
            if table is None:  # greedy descent: accept strict improvements only
                bar = torch.zeros_like(state).masked_fill_(padding, -torch.inf)
            else:
                uniform = torch.rand(state.shape, generator=generator, device=device,
                                     dtype=state.dtype)
                bar = torch.log1p(-uniform).neg_().div_(beta[:, None, None])
                bar.masked_fill_(padding, -torch.inf)
            flips = 0
            for k in range(width):
                s = state[:, :, k]
                flip = -2.0 * s * fields[:, :, k] < bar[:, :, k]
                delta = flip * (-2.0 * s)
                s.add_(delta)
                fields.add_(delta[:, :, None] * coupling[:, k:k + 1, :])
                if table is None:
                    flips += int(flip.sum())
            done = step
            if table is None and flips == 0:
                break
            progress[-1] = done
            if table is not None and (done % 64 == 0):
                fields = h.to(state.dtype) + torch.bmm(state, coupling)
            if synchronize:
                torch.cuda.synchronize(device)
            if table is not None and stop():
                break
        return done

    sweeps = []

    def chunk(a: int, b: int) -> np.ndarray:
        work = start[:, a:b].to(device=device, dtype=dtype)
        sweeps.append(run(_beta_rows(schedule, None, device, dtype), J_work, work))
        exact = work.to(torch.float64)
        run(None, J, exact)
        return exact.cpu().numpy()

    per_replica = count * width * (6 * itemsize + 3 * 8)
    outs, size = in_chunks(chunk, reads, stop, "torch-sa", device,
                           lambda k: J.numel() * (8 + itemsize) + k * per_replica)
    if size < reads:
        info["replica_chunk"] = size
    out = np.concatenate(outs, axis=1)
    return np.concatenate([out[k, :, :n] for k, n in enumerate(sizes)], axis=1), min(sweeps)


def _run_torch(parts, schedule, seed, stop, device, dtype, info) -> tuple[np.ndarray, int]:
    if len(parts) > 1 and all(_is_dense(p) for p in parts):
        return _run_torch_padded(parts, schedule, seed, stop, device, dtype, info)
    model, problem_of = _union(parts)
    n = model.num_variables
    itemsize = torch.finfo(dtype).bits // 8
    # Problems share no couplings, so class k of every problem forms one class: a batch
    # costs as many steps per sweep as its largest problem, not the sum of all.
    colours = None if len(parts) == 1 else np.concatenate([_part_colours(p) for p in parts])
    # J (dense, or CSR plus its transposed class blocks), in dtype and a float64 copy
    dense = 2 * len(model.data) >= _DENSE_FRACTION * n * n or n <= 64
    matrix_bytes = (n * n if dense else 8 * len(model.data)) * (itemsize + 8)
    problem = on_device(lambda: build_tensors(model, device, dtype, colours), "torch-sa",
                        device, f"the {n}x{n} coupling matrix", matrix_bytes)
    lr_u, lr_v = _lowrank_union(parts)
    if lr_u.shape[0]:
        problem.lowrank_u = torch.as_tensor(lr_u[:, problem.order], dtype=dtype, device=device)
        problem.lowrank_v = torch.as_tensor(lr_v[:, problem.order], dtype=dtype, device=device)
    exact = on_device(lambda: problem.to(torch.float64), "torch-sa", device,
                      f"the {n}x{n} coupling matrix in float64", matrix_bytes)
    start = np.concatenate([p.start for p in parts], axis=1)[:, problem.order]
    generator = torch.Generator(device=device)
    generator.manual_seed(torch_seed(seed))
    # per-variable inverse temperatures, in the stored (colour) order
    columns = problem_of[problem.order]
    back = torch.as_tensor(np.argsort(problem.order), device=device)
    sweeps = []

    def chunk(a: int, b: int) -> np.ndarray:
        spins = torch.as_tensor(start[a:b], dtype=dtype, device=device)
        spins, done = anneal(problem, spins, _beta_rows(schedule, columns, device, dtype),
                             generator, stop)
        sweeps.append(done)
        spins = descend(exact, spins.to(torch.float64))
        return spins[:, back].cpu().numpy()

    outs, size = in_chunks(chunk, len(start), stop, "torch-sa", device,
                           lambda k: matrix_bytes + k * n * (6 * itemsize + 3 * 8))
    if size < len(start):
        info["replica_chunk"] = size
    return np.concatenate(outs), min(sweeps)


def _check_beta_range(beta_range: Any) -> tuple[float, float]:
    try:
        hot, cold = (float(b) for b in beta_range)
    except (TypeError, ValueError):
        raise ValueError(f"torch-sa: beta_range must be two numbers (hot, cold) or 'neal', "
                         f"got {beta_range!r}") from None
    if not (0 < hot <= cold and math.isfinite(cold)):
        raise ValueError(f"torch-sa: beta_range must satisfy 0 < hot <= cold, got {beta_range!r}")
    return hot, cold
