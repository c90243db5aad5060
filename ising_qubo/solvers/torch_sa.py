"""``torch-sa``: simulated annealing with many replicas (and problems) at once.

The dimod front end: declared parameters and capabilities, argument checks, dispatch to
a backend, the SampleSet. The annealing runs on one of three kernels, driven on the CPU
by :mod:`ising_qubo.solvers._sa_cpu_driver`: the loop compiled in C when the package is
installed (:mod:`ising_qubo.solvers._sa_native`; one problem without low-rank terms,
sparse or dense), the same loop compiled by numba (:mod:`ising_qubo.solvers._sa_cpu`;
batches, low-rank terms, installs built without a C compiler), both giving the same
seeded results; and on CUDA, or with ``backend="torch"``, the PyTorch kernel of
:mod:`ising_qubo.solvers._sa_torch`. Under per-group cardinalities,
:meth:`TorchSASampler.sample_structured` hands over to the swap search of
:mod:`ising_qubo.solvers.budgeted`.

Threads on the CPU: each kernel call runs on one thread unless it has several replicas
and enough work to pay for a parallel section (:mod:`ising_qubo.solvers.kernel_threads`;
starting one costs 8-20 ms when other processes keep the cores busy), then on up to
numba's thread count (``NUMBA_NUM_THREADS``, or ``numba.set_num_threads`` before the
call; without numba loaded, ``NUMBA_NUM_THREADS`` or every core). The C kernel runs a
call's replicas as one block per thread for the whole call. The thread count never
changes a seeded result.

Memory on the CPU: the compiled paths never import torch (about 0.5 GiB just to import),
and the C kernel's path not numba either (its JIT: about 150 MiB): Gset G1 for 2 s
peaks at 69 MiB, as neal does (181 MiB on numba, 650 MiB with torch). The torch kernel
is imported only for CUDA or ``backend="torch"``, and ``device="auto"`` is decided
without torch unless a GPU may be visible (:mod:`ising_qubo.solvers.cpu_first_device`).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import dimod
import numpy as np

from ising_qubo.solvers import _sa_cpu_driver
from ising_qubo.solvers._common import (
    ArrayModel,
    Stop,
    check_bqm,
    check_initial_states_generator,
    check_seed,
    check_states_memory,
    optional_time_limit,
    parse_initial_states,
    positive_int,
    sampleset_from_states,
    symmetric_csr,
    wall_timer,
)
from ising_qubo.solvers._sa_problems import SpinProblem
from ising_qubo.solvers.capabilities import Capability as C
from ising_qubo.solvers.cpu_first_device import is_cuda, resolve_cpu_first
from ising_qubo.solvers.schedule import BetaSchedule, default_beta_range

# Peak memory per replica and variable on the CPU, measured (33 bytes): dimod's int64
# initial states, float64 spins for the kernel and its result, the int8 SampleSet.
_STATE_BYTES = 40

if TYPE_CHECKING:  # at run time, loaded with torch on first use (module __getattr__)
    from ising_qubo.solvers._sa_torch import IsingTensors, anneal, build_tensors, descend


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
    uses float64), ``backend`` ('auto': on CUDA the torch kernel; on the CPU the kernel
    compiled at install time ('native') for one problem without low-rank terms where it
    was built, else the numba kernel; or 'native' / 'numba' / 'torch'; the two CPU
    kernels give the same seeded results; ``info["backend"]`` says which ran).

    ``device='auto'`` is CUDA when torch sees a GPU, else the CPU, and the CPU path does
    not import torch: when torch is not imported yet, it is imported only if a GPU may
    be visible (a device node ``/dev/nvidia0``..., ``/dev/dxg`` or ``/dev/kfd`` exists,
    ``CUDA_VISIBLE_DEVICES`` is not ``""`` or ``"-1"``, torch is installed; always on
    Windows); when it is already imported, it is asked. ``device='cpu'`` never imports
    it; see :mod:`ising_qubo.solvers.cpu_first_device`.

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

    capabilities = frozenset(
        {
            C.BATCH,
            C.STRUCTURED,
            C.STRUCTURED_CARDINALITIES,
            C.INITIAL_STATES,
            C.TIME_LIMIT,
            C.INTERRUPT,
        }
    )
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
    properties = {
        "beta_schedule_options": ("geometric", "linear"),
        "backends": ("auto", "native", "numba", "torch"),
    }

    def sample(
        self,
        bqm: dimod.BinaryQuadraticModel,
        num_reads: int | None = None,
        initial_states: Any = None,
        initial_states_generator: str = "random",
        seed: int | None = None,
        beta_range: Any = None,
        **parameters: Any,
    ) -> dimod.SampleSet:
        stop = _stop_from(parameters)
        check_bqm(bqm, "torch-sa")
        if num_reads is not None:
            positive_int(num_reads, "num_reads", "torch-sa")
            check_states_memory(num_reads, bqm.num_variables, _STATE_BYTES, "torch-sa")
        check_seed(seed, "torch-sa")
        check_initial_states_generator(initial_states_generator, "torch-sa")
        initial = parse_initial_states(
            self,
            bqm,
            initial_states=initial_states,
            initial_states_generator=initial_states_generator,
            num_reads=num_reads,
            seed=seed,
        )
        model = ArrayModel.from_bqm(bqm, dimod.SPIN)
        start = _as_spins(initial, bqm.vartype)
        part = SpinProblem(model.linear, model.rows, model.cols, model.data, start, None)
        _resolve_beta_range(part, beta_range)
        [states], info = self._run([part], stop, seed=seed, **parameters)
        return sampleset_from_states(states, dimod.SPIN, bqm, info)

    def sample_batch(
        self,
        bqms: list[dimod.BinaryQuadraticModel],
        num_reads: int = 10,
        seed: int | None = None,
        beta_range: Any = None,
        initial_states: Sequence[Any] | None = None,
        **parameters: Any,
    ) -> list[dimod.SampleSet]:
        """Anneal independent problems together: one call, one kernel launch per sweep.

        Each problem keeps its own temperature schedule (from its own coefficients unless
        ``beta_range`` is given). ``initial_states``: one entry per problem, None or a
        (k, n) array in the problem's vartype and ``bqm.variables`` order; its rows start
        the first k reads, the others start at random. Returns one SampleSet per problem,
        in order; ``info`` is shared and its timing is that of the whole batch.
        """
        stop = _stop_from(parameters)
        check_seed(seed, "torch-sa")
        reads = positive_int(num_reads, "num_reads", "torch-sa")
        total = sum(len(b.variables) for b in bqms if isinstance(b, dimod.BinaryQuadraticModel))
        check_states_memory(reads, total, _STATE_BYTES, "torch-sa")
        rng = np.random.default_rng(seed)
        if initial_states is not None and len(initial_states) != len(bqms):
            raise ValueError(
                f"torch-sa: initial_states has {len(initial_states)} entries "
                f"for {len(bqms)} problems"
            )
        parts = []
        for k, bqm in enumerate(bqms):
            check_bqm(bqm, "torch-sa")
            model = ArrayModel.from_bqm(bqm, dimod.SPIN)
            start = rng.choice([-1.0, 1.0], size=(reads, model.num_variables))
            given = None if initial_states is None else initial_states[k]
            if given is not None:
                given = _as_spins(np.atleast_2d(np.asarray(given)), bqm.vartype)
                if given.shape[1] != model.num_variables or not np.all(np.abs(given) == 1):
                    raise ValueError(
                        f"torch-sa: initial_states[{k}] must be a (k, "
                        f"{model.num_variables}) array of {bqm.vartype.name} "
                        f"values"
                    )
                rows = min(len(given), reads)
                start[:rows] = given[:rows]
            parts.append(SpinProblem(model.linear, model.rows, model.cols, model.data, start, None))
            _resolve_beta_range(parts[-1], beta_range)
        states, info = self._run(parts, stop, seed=seed, **parameters)
        return [
            sampleset_from_states(x, dimod.SPIN, bqm, dict(info)) for x, bqm in zip(states, bqms)
        ]

    def sample_structured(
        self,
        problem: Any,
        num_reads: int = 10,
        seed: int | None = None,
        beta_range: Any = None,
        initial_states: np.ndarray | None = None,
        cardinalities: Sequence[tuple[Sequence[Any], int]] | None = None,
        **parameters: Any,
    ) -> dimod.SampleSet:
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
        check_seed(seed, "torch-sa")
        reads = positive_int(num_reads, "num_reads", "torch-sa")
        n = problem.num_variables
        check_states_memory(reads, n, _STATE_BYTES, "torch-sa")
        if initial_states is None:
            start = np.random.default_rng(seed).choice([-1.0, 1.0], size=(reads, n))
        else:
            start = np.asarray(initial_states, dtype=float)
            if start.shape != (reads, n) or not np.all(np.abs(start) == 1):
                raise ValueError(
                    f"torch-sa: initial_states must be a ({reads}, {n}) array of -1/+1 spins"
                )
        if cardinalities is not None:
            return self._sample_swaps(
                problem,
                cardinalities,
                reads,
                seed,
                beta_range,
                None if initial_states is None else start,
                stop,
                **parameters,
            )
        indptr, indices, data = problem.csr()
        rows, cols, values, kernel_csr = _kernel_layout(indptr, indices, data)
        part = SpinProblem(
            problem.h, rows, cols, values, start, None, problem.lowrank_u, problem.lowrank_v
        )
        part.__dict__["csr"] = kernel_csr  # the cached_property, filled from the cache
        if isinstance(beta_range, str) and beta_range == "neal":
            # Rank-1 terms couple every pair: count their largest field in the hot bound.
            abs_u, abs_v = np.abs(problem.lowrank_u), np.abs(problem.lowrank_v)
            reach = (abs_u * abs_v.sum(1, keepdims=True)).sum(0) + (
                abs_v * abs_u.sum(1, keepdims=True)
            ).sum(0)
            hot, cold = default_beta_range(problem.h, rows, cols, values)
            coupled = np.bincount(rows, np.abs(values), n) + np.bincount(cols, np.abs(values), n)
            max_field = (np.abs(problem.h) + coupled + reach).max()
            betas = (min(hot, math.log(2) / (2 * max_field)) if max_field > 0 else hot, cold)
            part.beta_range = (min(betas), max(betas))
        else:
            _resolve_beta_range(part, beta_range)
        [states], info = self._run([part], stop, seed=seed, **parameters)
        energies = problem.energies(states)
        return dimod.SampleSet.from_samples(
            (states.astype(np.int8), problem.labels), dimod.SPIN, energies, info=info
        )

    def _sample_swaps(
        self,
        problem: Any,
        cardinalities: Any,
        reads: int,
        seed: int | None,
        beta_range: Any,
        start: np.ndarray | None,
        stop: Stop,
        num_sweeps: int = 1000,
        device: str = "auto",
        **parameters: Any,
    ) -> dimod.SampleSet:
        from ising_qubo.solvers.budgeted import budgeted_anneal

        parameters.pop("dtype", None)  # the swap kernel always runs in float64
        parameters.pop("backend", None)
        parameters.pop("beta_schedule_type", None)
        self.remove_unknown_kwargs(**parameters)
        resolve_cpu_first(device, "torch-sa")  # checked; the swap kernel runs on the CPU
        sweeps = positive_int(num_sweeps, "num_sweeps", "torch-sa")
        groups, targets = _cardinality_groups(problem, cardinalities)
        if isinstance(beta_range, str) and beta_range == "neal":
            raise ValueError(
                "torch-sa: beta_range='neal' is for spin flips; annealing by swaps "
                "(cardinalities) takes (hot, cold) or derives its own range"
            )
        betas = None if beta_range is None else _check_beta_range(beta_range)
        info: dict[str, Any] = {"backend": "numba-swaps", "device": "cpu"}
        with stop, wall_timer(info):
            states, run_info = budgeted_anneal(
                problem,
                groups,
                targets,
                num_reads=reads,
                num_sweeps=sweeps,
                beta_range=betas,
                seed=seed,
                initial_states=start,
                stop=stop,
            )
        info.update(run_info)
        stop.report(info)
        return dimod.SampleSet.from_samples(
            (states.astype(np.int8), problem.labels),
            dimod.SPIN,
            problem.energies(states),
            info=info,
        )

    def _run(
        self,
        parts: list[SpinProblem],
        stop: Stop,
        num_sweeps: int = 1000,
        beta_schedule_type: str = "geometric",
        seed: int | None = None,
        device: str = "auto",
        dtype: str = "float32",
        backend: str = "auto",
        **parameters: Any,
    ) -> tuple[list[np.ndarray], dict]:
        self.remove_unknown_kwargs(**parameters)
        sweeps = positive_int(num_sweeps, "num_sweeps", "torch-sa")
        torch_device = resolve_cpu_first(device, "torch-sa")  # "cpu" needs no torch
        if str(dtype) not in ("float32", "float64"):
            raise ValueError(f"torch-sa: dtype must be 'float32' or 'float64', got {dtype!r}")
        if backend not in self.properties["backends"]:
            raise ValueError(
                f"torch-sa: backend must be 'auto', 'native', 'numba' or 'torch', got {backend!r}"
            )
        if backend in ("native", "numba") and is_cuda(torch_device):
            raise ValueError(f"torch-sa: backend={backend!r} runs on the CPU; use device='cpu'")
        if backend == "auto" and is_cuda(torch_device):
            backend = "torch"
        elif backend != "torch":
            backend = _sa_cpu_driver.choose_kernel(parts, backend)
        beta_ranges = []
        for part in parts:
            assert part.beta_range is not None, "the fronts resolve beta_range before _run"
            beta_ranges.append(part.beta_range)
        schedule = BetaSchedule(beta_ranges, sweeps, beta_schedule_type)
        info: dict[str, Any] = {
            "beta_range": [p.beta_range for p in parts],
            "backend": backend,
            "device": str(torch_device),
        }
        sizes = [part.n for part in parts]
        with stop, wall_timer(info):
            if sum(sizes) == 0:
                spins, done = np.concatenate([p.start for p in parts], axis=1), 0
            elif backend != "torch":
                spins, done = _sa_cpu_driver.run(parts, schedule, seed, stop, backend)
            else:
                spins, done = _run_torch(parts, schedule, seed, stop, torch_device, dtype, info)
        info["num_sweeps"] = done
        stop.report(info)
        bounds = np.cumsum([0] + sizes)
        return [spins[:, a:b] for a, b in zip(bounds[:-1], bounds[1:])], info


def _run_torch(
    parts: list[SpinProblem],
    schedule: BetaSchedule,
    seed: int | None,
    stop: Stop,
    device: Any,
    dtype: str,
    info: dict[str, Any],
) -> tuple[np.ndarray, int]:
    """The torch kernel, imported here: the CPU path must not load torch."""
    from ising_qubo.devices import resolve_device
    from ising_qubo.solvers import _sa_torch

    device = resolve_device(device, "torch-sa")  # "cpu" (a str) as a torch.device
    return _sa_torch.run(parts, schedule, seed, stop, device, dtype, info)


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
            raise ValueError(
                f"torch-sa: cardinalities[{g}] names variables not in the problem: {unknown[:5]!r}"
            )
        index = np.array([position[v] for v in labels], dtype=np.int64)
        if seen[index].any() or len(set(index.tolist())) != len(index):
            raise ValueError(
                f"torch-sa: cardinalities[{g}] overlaps another group; groups must be disjoint"
            )
        if isinstance(k, bool) or int(k) != k or not 0 <= k <= len(index):
            raise ValueError(
                f"torch-sa: cardinalities[{g}] asks for {k!r} of {len(index)} variables"
            )
        seen[index] = True
        groups.append(index)
        targets.append(int(k))
    if not seen.all():
        missing = [problem.labels[i] for i in np.flatnonzero(~seen)[:5]]
        raise ValueError(
            f"torch-sa: cardinalities must cover every variable (swap moves "
            f"never move the others); not covered: {missing!r}"
        )
    return groups, targets


def _stop_from(parameters: dict[str, Any]) -> Stop:
    """The call's Stop, its clock started now, from ``parameters.pop("time_limit")``."""
    return Stop(optional_time_limit(parameters.pop("time_limit", None), "torch-sa"))


def _as_spins(states: np.ndarray, vartype: dimod.Vartype) -> np.ndarray:
    states = np.asarray(states, dtype=np.float64)
    return 2 * states - 1 if vartype is dimod.BINARY else states


# A structured problem's couplings as the kernels take them (each coupling once, and the
# symmetric CSR with int32 indices), built once per block structure: the global budget's
# Lagrangian search anneals up to six models that share one CSR (ResNet-101: 10 M
# entries, 0.6 s to lay out each time). Keyed by the id of the shared indptr array and
# dropped when that array is (arrays are not hashable, so no WeakKeyDictionary).
_LAYOUTS: dict[int, tuple] = {}


def _kernel_layout(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray) -> tuple:
    """(rows, cols, values) of the upper triangle and the kernels' CSR of ``csr``."""
    cached = _LAYOUTS.get(id(indptr))
    if cached is not None and cached[0] is indices and cached[1] is data:
        return cached[2]
    n = len(indptr) - 1
    rows = np.repeat(np.arange(n), np.diff(indptr))
    upper = rows < indices  # each coupling once, as the BQM path stores it
    layout = (rows[upper], indices[upper], data[upper])
    result = (*layout, symmetric_csr(n, *layout))
    if id(indptr) not in _LAYOUTS:
        weakref.finalize(indptr, _LAYOUTS.pop, id(indptr), None)
    _LAYOUTS[id(indptr)] = (indices, data, result)
    return result


def _resolve_beta_range(part: SpinProblem, beta_range: Any) -> None:
    """Sets ``part.beta_range``: fitted (None), neal's rule ('neal') or as given."""
    if beta_range is None:
        part.beta_range = _sa_cpu_driver.fitted_range(part)
    elif isinstance(beta_range, str) and beta_range == "neal":
        part.beta_range = default_beta_range(part.h, part.rows, part.cols, part.data)
    else:
        part.beta_range = _check_beta_range(beta_range)


def _check_beta_range(beta_range: Any) -> tuple[float, float]:
    try:
        hot, cold = (float(b) for b in beta_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"torch-sa: beta_range must be two numbers (hot, cold) or 'neal', got {beta_range!r}"
        ) from None
    if not (0 < hot <= cold and math.isfinite(cold)):
        raise ValueError(f"torch-sa: beta_range must satisfy 0 < hot <= cold, got {beta_range!r}")
    return hot, cold


# The torch kernel's names stay importable from here, loaded (with torch) on first use.
_TORCH_KERNEL_NAMES = ("IsingTensors", "anneal", "build_tensors", "descend")


def __getattr__(name: str) -> Any:
    if name in _TORCH_KERNEL_NAMES:
        from ising_qubo.solvers import _sa_torch

        return getattr(_sa_torch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["IsingTensors", "TorchSASampler", "anneal", "build_tensors", "descend"]
