"""``torch-sa``: simulated annealing in PyTorch, many replicas at once, on CPU or CUDA.

The kernel (:func:`anneal`) works on tensors only: spins ``s`` in {-1,+1} of shape
(replicas, n), fields ``F = h + s J`` kept up to date after each update. Variables are
updated one colour class at a time: variables of one class share no coupling, so their
Metropolis moves are independent and updating them together is exact single-spin-flip
annealing. Sparse problems get few classes from a greedy graph colouring; dense problems
fall back to one variable per class (a sequential sweep, like neal's).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import dimod
import networkx as nx
import numpy as np
import torch

from ising_qubo.solvers._common import (
    ArrayModel,
    Deadline,
    check_bqm,
    optional_time_limit,
    positive_int,
    sampleset_from_states,
    wall_timer,
)
from ising_qubo.solvers.schedule import beta_schedule, default_beta_range

# Above this fraction of non-zero couplings a dense matrix is cheaper than CSR.
_DENSE_FRACTION = 0.3


def cuda_status() -> str:
    if torch.cuda.is_available():
        return f"yes (CPU; CUDA: {torch.cuda.get_device_name(0)})"
    return "yes (CPU; CUDA: not visible)"


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"torch-sa: device must be 'auto', 'cpu' or 'cuda[:k]', "
                         f"got {device!r}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("torch-sa: device='cuda' asked for, but CUDA is not available "
                         "to torch here; use device='cpu' or 'auto'")
    return resolved


@dataclass
class IsingTensors:
    """Spin-form problem on a device: ``E = h.s + 1/2 s^T J s + offset`` (J symmetric).

    Variables are stored in colour order (``order[k]`` is the original index of stored
    variable k), so each colour class is a contiguous slice and updates work on views.
    """

    h: torch.Tensor
    J: torch.Tensor  # dense (n, n) or sparse CSR (n, n), zero diagonal
    classes: list[slice]
    class_rows: list[torch.Tensor]  # dense J[class, :], or CSR J[class, :]^T
    order: np.ndarray
    offset: float

    @property
    def dense(self) -> bool:
        return self.J.layout == torch.strided

    def to(self, dtype: torch.dtype) -> IsingTensors:
        return IsingTensors(self.h.to(dtype), self.J.to(dtype), self.classes,
                            [rows.to(dtype) for rows in self.class_rows], self.order,
                            self.offset)

    def fields(self, s: torch.Tensor) -> torch.Tensor:
        if self.dense:
            return self.h + s @ self.J
        return self.h + (self.J @ s.T).T


def build_tensors(model: ArrayModel, device: torch.device, dtype: torch.dtype) -> IsingTensors:
    n = model.num_variables
    density = 2 * len(model.data) / max(1, n * n)
    if density >= _DENSE_FRACTION or n <= 64:
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


def _update_fields(problem: IsingTensors, fields: torch.Tensor, k: int,
                   delta: torch.Tensor) -> None:
    """fields += delta (R, |class k|) @ J[class k, :]."""
    if problem.dense:
        fields.addmm_(delta, problem.class_rows[k])
    else:
        fields.add_((problem.class_rows[k] @ delta.T).T)


def anneal(
    problem: IsingTensors,
    spins: torch.Tensor,
    betas: np.ndarray,
    generator: torch.Generator,
    deadline: Deadline,
) -> tuple[torch.Tensor, int]:
    """Metropolis sweeps at inverse temperatures ``betas``; returns (spins, sweeps done)."""
    fields = problem.fields(spins)
    sweeps = 0
    for sweeps, beta in enumerate(betas, start=1):
        # Metropolis accepts a flip when dE < -log(u) / beta, u uniform in (0, 1]:
        # drawing all thresholds of a sweep at once saves a kernel launch per class.
        uniform = torch.rand(spins.shape, generator=generator, device=spins.device,
                             dtype=spins.dtype)
        thresholds = torch.log1p(-uniform).neg_().div_(float(beta))
        for k, cls in enumerate(problem.classes):
            s = spins[:, cls]
            flip = (-2.0 * s * fields[:, cls]) < thresholds[:, cls]
            delta = flip * (-2.0 * s)
            s.add_(delta)
            _update_fields(problem, fields, k, delta)
        if sweeps % 64 == 0:
            fields = problem.fields(spins)  # drop rounding drift of the incremental updates
        if deadline.expired():
            break
    return spins, sweeps


def descend(problem: IsingTensors, spins: torch.Tensor, max_sweeps: int = 10_000) -> torch.Tensor:
    """Greedy single flips (dE < 0) until no flip lowers any replica's energy."""
    fields = problem.fields(spins)
    for _ in range(max_sweeps):
        flipped = False
        for k, cls in enumerate(problem.classes):
            s = spins[:, cls]
            improve = s * fields[:, cls] > 0  # flipping changes E by -2 s F
            if not bool(improve.any()):
                continue
            flipped = True
            delta = improve * (-2.0 * s)
            s.add_(delta)
            _update_fields(problem, fields, k, delta)
        if not flipped:
            break
        fields = problem.fields(spins)
    return spins


class TorchSASampler(dimod.Sampler, dimod.Initialized):
    """Simulated annealing with replicas in one tensor, on CPU or CUDA.

    Parameters: ``num_reads`` (replicas), ``num_sweeps``, ``beta_range`` (default from
    the coefficients, as neal), ``beta_schedule_type`` ('geometric' or 'linear'),
    ``seed`` (reproducible on CPU), ``initial_states`` (warm starts), ``time_limit``
    (seconds, checked between sweeps), ``device`` ('auto', 'cpu', 'cuda'), ``dtype``
    ('float32' or 'float64'). Every returned state is a local minimum: a final greedy
    descent in float64 removes any single flip that still lowers the energy.
    """

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
    }
    properties = {"beta_schedule_options": ("geometric", "linear")}

    def sample(
        self,
        bqm: dimod.BinaryQuadraticModel,
        num_reads: int | None = None,
        num_sweeps: int = 1000,
        beta_range: tuple[float, float] | None = None,
        beta_schedule_type: str = "geometric",
        seed: int | None = None,
        initial_states: Any = None,
        initial_states_generator: str = "random",
        time_limit: float | None = None,
        device: str = "auto",
        dtype: str = "float32",
        **parameters: Any,
    ) -> dimod.SampleSet:
        check_bqm(bqm, "torch-sa")
        self.remove_unknown_kwargs(**parameters)
        sweeps = positive_int(num_sweeps, "num_sweeps", "torch-sa")
        deadline = Deadline(optional_time_limit(time_limit, "torch-sa"))
        torch_device = resolve_device(device)
        torch_dtype = {"float32": torch.float32, "float64": torch.float64}.get(str(dtype))
        if torch_dtype is None:
            raise ValueError(f"torch-sa: dtype must be 'float32' or 'float64', got {dtype!r}")
        parsed = self.parse_initial_states(
            bqm, initial_states=initial_states,
            initial_states_generator=initial_states_generator,
            num_reads=num_reads, seed=seed)
        reads = len(parsed.initial_states)
        model = ArrayModel.from_bqm(bqm, dimod.SPIN)
        if beta_range is None:
            hot, cold = default_beta_range(model.linear, model.rows, model.cols, model.data)
        else:
            hot, cold = _check_beta_range(beta_range)
        betas = beta_schedule(hot, cold, sweeps, beta_schedule_type)

        info: dict[str, Any] = {"beta_range": (hot, cold), "device": str(torch_device)}
        with wall_timer(info):
            start = np.asarray(parsed.initial_states.record.sample, dtype=np.float64)
            if bqm.vartype is dimod.BINARY:
                start = 2 * start - 1
            generator = torch.Generator(device=torch_device)
            generator.manual_seed(_torch_seed(seed))
            if model.num_variables == 0:
                spins = torch.empty((reads, 0), dtype=torch.float64)
                done = 0
            else:
                problem = build_tensors(model, torch_device, torch_dtype)
                spins = torch.as_tensor(start[:, problem.order], dtype=torch_dtype,
                                        device=torch_device)
                spins, done = anneal(problem, spins, betas, generator, deadline)
                spins = descend(problem.to(torch.float64), spins.to(torch.float64))
                spins = spins[:, torch.as_tensor(np.argsort(problem.order), device=torch_device)]
        info["num_sweeps"] = done
        states = spins.cpu().numpy().astype(np.int8)
        return sampleset_from_states(states, dimod.SPIN, bqm, info)


def _check_beta_range(beta_range: Any) -> tuple[float, float]:
    try:
        hot, cold = (float(b) for b in beta_range)
    except (TypeError, ValueError):
        raise ValueError(f"torch-sa: beta_range must be two numbers, got {beta_range!r}") from None
    if not (0 < hot <= cold and math.isfinite(cold)):
        raise ValueError(f"torch-sa: beta_range must satisfy 0 < hot <= cold, got {beta_range!r}")
    return hot, cold


def _torch_seed(seed: int | None) -> int:
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    return int(seed) % (2**63)
