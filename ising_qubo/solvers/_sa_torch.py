"""``torch-sa``'s PyTorch kernel: simulated annealing on tensors, CPU or CUDA.

The kernel (:func:`anneal`) works on tensors only: spins ``s`` in {-1,+1} of shape
(replicas, n), fields ``F = h + s J`` kept up to date after each update. Variables are
updated one colour class at a time: variables of one class share no coupling, so their
Metropolis moves are independent and updating them together is exact single-spin-flip
annealing. Sparse problems get few classes from a greedy graph colouring; dense problems
fall back to one variable per class (a sequential sweep, like neal's). :func:`run` drives
it for a call's problems: a batch of dense problems as one padded tensor, anything else
as one block-diagonal problem, replicas in chunks that halve on CUDA out-of-memory.
:func:`descend` (greedy single flips) is also ``torch-sb``'s final polish.

Why one long module: it is one kernel in two shapes (colour classes of one block-diagonal
problem; one padded tensor for a batch of dense problems) with the runs that feed them.
Both must keep the same Metropolis rule, refresh interval, float64 descent and
out-of-memory chunking, and the layout (:class:`IsingTensors`, colour classes) is read by
every loop, so they change together; split, one change would span several files.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
import torch

from ising_qubo.solvers._common import ArrayModel, Stop, symmetric_dense
from ising_qubo.solvers._sa_problems import (
    DENSE_FRACTION,
    SpinProblem,
    is_dense,
    lowrank_union,
    union,
)
from ising_qubo.solvers._torch_common import in_chunks, on_device, torch_seed
from ising_qubo.solvers.schedule import BetaSchedule


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

    @property
    def lowrank(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(lowrank_u, lowrank_v), or None for a problem without low-rank terms."""
        if self.lowrank_u is None:
            return None
        assert self.lowrank_v is not None, "lowrank_u and lowrank_v are set together"
        return self.lowrank_u, self.lowrank_v

    def to(self, dtype: torch.dtype) -> IsingTensors:
        low = [None if t is None else t.to(dtype) for t in (self.lowrank_u, self.lowrank_v)]
        return IsingTensors(
            self.h.to(dtype),
            self.J.to(dtype),
            self.classes,
            [rows.to(dtype) for rows in self.class_rows],
            self.order,
            self.offset,
            *low,
        )

    def fields(self, s: torch.Tensor) -> torch.Tensor:
        if self.dense:
            return self.h + s @ self.J
        return self.h + (self.J @ s.T).T


def build_tensors(
    model: ArrayModel, device: torch.device, dtype: torch.dtype, colours: np.ndarray | None = None
) -> IsingTensors:
    """The model on ``device``, variables grouped by colour (computed unless given)."""
    n = model.num_variables
    density = 2 * len(model.data) / max(1, n * n)
    if colours is not None:
        order = np.argsort(colours, kind="stable")
        sizes = np.bincount(colours).tolist()
    elif density >= DENSE_FRACTION or n <= 64:
        order = np.arange(n)
        sizes = [1] * n
    else:
        order, sizes = _colour_order(n, model.rows, model.cols)
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    rows, cols = position[model.rows], position[model.cols]
    if sizes == [1] * n:  # one class per variable: a dense J, summed in numpy
        couplings = symmetric_dense(n, rows, cols, model.data).reshape(n, n)
        return dense_tensors(model, couplings, device, dtype, order)
    index = torch.as_tensor(
        np.vstack([np.concatenate([rows, cols]), np.concatenate([cols, rows])]), device=device
    )
    values = torch.as_tensor(np.concatenate([model.data, model.data]), dtype=dtype, device=device)
    h = torch.as_tensor(model.linear[order], dtype=dtype, device=device)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    classes = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    warnings.filterwarnings("ignore", message="Sparse (CSR tensor support|invariant)")
    J = torch.sparse_coo_tensor(index, values, (n, n)).coalesce()
    # Transposed row blocks, so that a class's update is one sparse @ dense product.
    class_rows = [
        J.index_select(0, torch.arange(c.start, c.stop, device=device))
        .t()
        .coalesce()
        .to_sparse_csr()
        for c in classes
    ]
    J = J.to_sparse_csr()
    return IsingTensors(h, J, classes, class_rows, order, model.offset)


def dense_tensors(
    model: ArrayModel,
    couplings: np.ndarray,
    device: torch.device,
    dtype: torch.dtype,
    order: np.ndarray | None = None,
) -> IsingTensors:
    """The model with its symmetric (n, n) ``couplings`` (in stored ``order``, default
    the model's) as a dense J, one class per variable. ``couplings`` is used as it is
    where it can be (float64 on the CPU): a caller that built it for itself shares it
    (torch-sb's SB matrix and descent). Filling J with ``index_put_`` took 1.2-1.5 s
    for 4,096 variables on a busy machine, inside the time limit."""
    n = model.num_variables
    J = torch.from_numpy(couplings).to(device=device, dtype=dtype)
    order = np.arange(n) if order is None else order
    h = torch.as_tensor(model.linear[order], dtype=dtype, device=device)
    classes = [slice(i, i + 1) for i in range(n)]
    return IsingTensors(h, J, classes, [J[c] for c in classes], order, model.offset)


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
        if (lowrank := problem.lowrank) is not None:
            self.proj_u = s @ lowrank[0].T
            self.proj_v = s @ lowrank[1].T

    def delta_energy(self, cls: slice) -> torch.Tensor:
        problem, s = self.problem, self.spins[:, cls]
        field = self.fields[:, cls]
        if (lowrank := problem.lowrank) is None:
            return -2.0 * s * field
        u, v = lowrank[0][:, cls], lowrank[1][:, cls]
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
        if (lowrank := problem.lowrank) is not None:
            self.proj_u.add_(delta @ lowrank[0][:, cls].T)
            self.proj_v.add_(delta @ lowrank[1][:, cls].T)


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
            uniform = torch.rand(
                spins.shape, generator=generator, device=spins.device, dtype=spins.dtype
            )
            thresholds = (
                torch.log1p(-uniform)
                .neg_()
                .div_(beta if isinstance(beta, torch.Tensor) else float(beta))
            )
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


def descend(
    problem: IsingTensors, spins: torch.Tensor, max_sweeps: int = 10_000, stop: Stop | None = None
) -> bool:
    """Greedy single flips (dE < 0), in place, until no flip lowers any replica's energy.

    Flips go class by class in the stored order. On the CPU (float64, no low-rank terms)
    the compiled kernel of the numba backend does the same sweeps: driving them from
    Python took up to seconds on dense problems (one class per variable), after a time
    limit had already stopped the run. With ``stop``, the descent ends when ``stop()``
    is true (checked between sweeps) and the states are left as they are. True when
    every state ends a local minimum.
    """
    if (
        spins.device.type == "cpu"
        and spins.dtype == torch.float64
        and problem.h.dtype == torch.float64
        and problem.lowrank_u is None
    ):
        return _descend_compiled(problem, spins, max_sweeps, stop)
    state = _FieldState(problem, spins)
    for _ in range(max_sweeps):
        if stop is not None and stop():
            return False
        flipped = False
        for k, cls in enumerate(problem.classes):
            improve = state.delta_energy(cls) < 0
            if bool(improve.any()):
                flipped = True
                state.flip(k, cls, improve)
        if not flipped:
            return True
        state.refresh()
    return False


def prepare_descend(device: torch.device, lowrank: bool = True) -> None:
    """Load :func:`descend`'s compiled kernel now when it will run on the CPU.

    Loading it (the compiled extension; without it numba's import, its cache, its thread
    pool: seconds on a busy machine) is paid once per process. A solver with a time limit
    calls this before its run, so the cost falls inside the limit and the run adapts to
    it, instead of coming after the limit has passed (torch-sb took 12.7 s under a 5 s
    limit that way). The descent runs its low-rank problems on numba: loaded too then.
    """
    if device.type == "cpu":
        from ising_qubo.solvers import _sa_native

        if not _sa_native.available() or lowrank:
            from ising_qubo.solvers import _sa_cpu  # noqa: F401  # the import is the point


def _descend_compiled(
    problem: IsingTensors, spins: torch.Tensor, max_sweeps: int, stop: Stop | None
) -> bool:
    """:func:`descend` with the compiled kernels (sequential flips in the stored order)."""
    from ising_qubo.solvers import _sa_fronts

    states = np.ascontiguousarray(spins.numpy())
    h = np.ascontiguousarray(problem.h.numpy())
    layout: dict[str, np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]]
    if problem.dense:
        layout = {"dense": np.ascontiguousarray(problem.J.numpy()).ravel()}
    else:
        layout = {
            "csr": (
                problem.J.crow_indices().numpy().astype(np.int64),
                problem.J.col_indices().numpy().astype(np.int32),
                np.ascontiguousarray(problem.J.values().numpy()),
            )
        }
    complete = _sa_fronts.descend(states, h, max_sweeps=max_sweeps, stop=stop, **layout)
    spins.copy_(torch.from_numpy(states))
    return complete


def _part_colours(part: SpinProblem) -> np.ndarray:
    """Colour classes of one problem: each variable alone when dense, else greedy."""
    if is_dense(part) or part.n <= 64:
        return np.arange(part.n)
    order, sizes = _colour_order(part.n, part.rows, part.cols)
    colours = np.empty(part.n, dtype=np.int64)
    colours[order] = np.repeat(np.arange(len(sizes)), sizes)
    return colours


def _beta_rows(
    schedule: BetaSchedule,
    columns: np.ndarray | None,
    device: torch.device,
    dtype: torch.dtype,
    block: int = 256,
) -> Iterator[torch.Tensor]:
    """The schedule's rows as tensors (``columns`` picks a column per variable), computed
    a block at a time: a (sweeps, n) table of a long run would not fit in memory."""
    for a in range(0, len(schedule), block):
        table = schedule.table(a, a + block)
        yield from torch.as_tensor(
            table if columns is None else table[:, columns], dtype=dtype, device=device
        )


def _run_padded(parts, schedule, seed, stop, device, dtype, info) -> tuple[np.ndarray, int]:
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
        J[k, : p.n, : p.n] = torch.from_numpy(block + block.T)
        h[k, 0, : p.n] = torch.from_numpy(p.h)
        start[k, :, : p.n] = torch.from_numpy(p.start)
        padding[k, 0, : p.n] = False
    itemsize = torch.finfo(dtype).bits // 8
    J, h, padding = on_device(
        lambda: (J.to(device), h.to(device), padding.to(device)),
        "torch-sa",
        device,
        f"{count} padded {width}x{width} matrices",
        J.numel() * 8,
    )
    J_work = on_device(
        lambda: J.to(dtype), "torch-sa", device, f"the matrices in {dtype}", J.numel() * itemsize
    )
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
                uniform = torch.rand(
                    state.shape, generator=generator, device=device, dtype=state.dtype
                )
                bar = torch.log1p(-uniform).neg_().div_(beta[:, None, None])
                bar.masked_fill_(padding, -torch.inf)
            flips = 0
            for k in range(width):
                s = state[:, :, k]
                flip = -2.0 * s * fields[:, :, k] < bar[:, :, k]
                delta = flip * (-2.0 * s)
                s.add_(delta)
                fields.add_(delta[:, :, None] * coupling[:, k : k + 1, :])
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
    outs, size = in_chunks(
        chunk,
        reads,
        stop,
        "torch-sa",
        device,
        lambda k: J.numel() * (8 + itemsize) + k * per_replica,
    )
    if size < reads:
        info["replica_chunk"] = size
    out = np.concatenate(outs, axis=1)
    return np.concatenate([out[k, :, :n] for k, n in enumerate(sizes)], axis=1), min(sweeps)


def run(
    parts: list[SpinProblem],
    schedule: BetaSchedule,
    seed: int | None,
    stop: Stop,
    device: torch.device,
    dtype: str,
    info: dict[str, Any],
) -> tuple[np.ndarray, int]:
    """Anneal ``parts`` with the torch kernel in ``dtype`` ('float32' or 'float64'), then
    descend in float64; returns (spins, sweeps every returned replica completed).

    Replicas run in chunks, all at once unless CUDA runs out of memory
    (``info["replica_chunk"]`` then records the chunk size that fitted).
    """
    dtype = getattr(torch, dtype)
    if len(parts) > 1 and all(is_dense(p) for p in parts):
        return _run_padded(parts, schedule, seed, stop, device, dtype, info)
    return _run_union(parts, schedule, seed, stop, device, dtype, info)


def _run_union(parts, schedule, seed, stop, device, dtype, info) -> tuple[np.ndarray, int]:
    """The problems as one block-diagonal problem, colour classes shared across them."""
    model, problem_of = union(parts)
    n = model.num_variables
    itemsize = torch.finfo(dtype).bits // 8
    # Problems share no couplings, so class k of every problem forms one class: a batch
    # costs as many steps per sweep as its largest problem, not the sum of all.
    colours = None if len(parts) == 1 else np.concatenate([_part_colours(p) for p in parts])
    # J (dense, or CSR plus its transposed class blocks), in dtype and a float64 copy
    dense = 2 * len(model.data) >= DENSE_FRACTION * n * n or n <= 64
    matrix_bytes = (n * n if dense else 8 * len(model.data)) * (itemsize + 8)
    problem = on_device(
        lambda: build_tensors(model, device, dtype, colours),
        "torch-sa",
        device,
        f"the {n}x{n} coupling matrix",
        matrix_bytes,
    )
    lr_u, lr_v = lowrank_union(parts)
    if lr_u.shape[0]:
        problem.lowrank_u = torch.as_tensor(lr_u[:, problem.order], dtype=dtype, device=device)
        problem.lowrank_v = torch.as_tensor(lr_v[:, problem.order], dtype=dtype, device=device)
    exact = on_device(
        lambda: problem.to(torch.float64),
        "torch-sa",
        device,
        f"the {n}x{n} coupling matrix in float64",
        matrix_bytes,
    )
    start = np.concatenate([p.start for p in parts], axis=1)[:, problem.order]
    generator = torch.Generator(device=device)
    generator.manual_seed(torch_seed(seed))
    # per-variable inverse temperatures, in the stored (colour) order
    columns = problem_of[problem.order]
    back = torch.as_tensor(np.argsort(problem.order), device=device)
    sweeps = []

    def chunk(a: int, b: int) -> np.ndarray:
        spins = torch.as_tensor(start[a:b], dtype=dtype, device=device)
        spins, done = anneal(
            problem, spins, _beta_rows(schedule, columns, device, dtype), generator, stop
        )
        sweeps.append(done)
        spins = spins.to(torch.float64)
        descend(exact, spins)
        return spins[:, back].cpu().numpy()

    outs, size = in_chunks(
        chunk,
        len(start),
        stop,
        "torch-sa",
        device,
        lambda k: matrix_bytes + k * n * (6 * itemsize + 3 * 8),
    )
    if size < len(start):
        info["replica_chunk"] = size
    return np.concatenate(outs), min(sweeps)
