"""``torch-sb``: simulated bifurcation (ballistic or discrete) in PyTorch, on CPU or CUDA.

Simulated bifurcation (SB; Goto et al., Sci. Adv. 2019 and 2021) follows many "agents" at
once, each a vector of positions ``x`` in [-1, 1] with momenta ``y``. SB minimises
``H(s) = -1/2 s^T M s`` over spins by integrating, with a symplectic Euler step ``dt``,

    y += dt * (-(a0 - a(t)) x + xi0 * M f(x));   x += dt * a0 * y
    where |x_i| > 1:  x_i = sign(x_i), y_i = 0     (inelastic walls)

with ``a0 = 1``, ``f(x) = x`` (ballistic, bSB) or ``sign(x)`` (discrete, dSB), the
pressure ``a(t)`` rising linearly from 0 to ``a0`` over the run, and
``xi0 = 0.5 sqrt(N - 1) / ||M||_F`` (the papers' ``0.5 / (sqrt(N) * std(J))``). Each
agent's spins are the signs of its final positions.

The kernel (:func:`bifurcate`) works on tensors only, positions as (N, agents). The front
end (:class:`TorchSBSampler`) turns a BQM in Ising form ``E = h.s + sum J_ij s_i s_j``
into ``M = -J``; a linear field becomes couplings ``-h_i`` to an ancilla spin (the
model is then symmetric under a global flip, and each agent is flipped so that its
ancilla is +1, as the simulated-bifurcation package does). A final greedy single-flip
descent (``_sa_torch.descend``) makes every returned state a local minimum.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dimod
import numpy as np
import torch

from ising_qubo.solvers import _sa_native
from ising_qubo.solvers._common import (
    ArrayModel,
    Stop,
    check_bqm,
    check_initial_states_generator,
    check_seed,
    check_states_memory,
    optional_positive,
    optional_time_limit,
    parse_initial_states,
    positive_int,
    sampleset_from_states,
    symmetric_dense,
    wall_timer,
)
from ising_qubo.solvers._sa_torch import IsingTensors, build_tensors, descend, prepare_descend
from ising_qubo.solvers._torch_common import (
    in_chunks,
    on_device,
    resolve_device,
    resolve_dtype,
    torch_seed,
)
from ising_qubo.solvers.capabilities import Capability as C

MODES = ("ballistic", "discrete")

# The papers' time step (Goto et al. 2021 use 1.25 for bSB and dSB), used when stable.
_DT_PAPER = 1.25
# dt=None takes min(_DT_PAPER, _DT_STABLE[mode] / sqrt(1 + xi0 * rho(M))): symplectic Euler
# on x'' = -k x is stable for dt < 2 / sqrt(k), and the stiffest mode has k <= 1 + xi0 rho(M).
# Without the cap, bSB at dt = 1.25 sends every agent on G1 (positive weights, one large
# negative eigenvalue) to the all-equal state. The factors were tuned on G1 and a dense SK
# instance (n = 1024): dSB loses much more than bSB on G1 as dt nears the limit.
_DT_STABLE = {"ballistic": 1.4, "discrete": 1.0}
# Below this fraction of non-zero entries of M, M is stored as sparse CSR. Measured on one
# CPU thread (n = 1000, 128 agents), CSR @ dense beats dense GEMM up to about 15%; GPUs
# favour dense GEMM more, so CUDA switches earlier.
_SPARSE_FRACTION = {"cpu": 0.15, "cuda": 0.05}
_SMALL = 64  # problems up to this size always use a dense matrix
# Peak memory per agent and variable on the CPU, measured (30 bytes in float32, 42 in
# float64): float64 starts, positions, momenta and signs, the descent's float64 copies.
_STATE_BYTES = 48
# Under a time limit, SB's loop ends when the time of this many of its steps is left:
# the descent that follows costs about as much as 10-20 steps (a sweep of every agent is
# a product with the coupling matrix, like a step), and scoring the states after it is
# one such product in float64. A fixed share (80% of the time left) left 0.2 s to the
# descent of 4,096 dense variables beside two busy processes, too little for one block.
_RESERVED_STEPS = 20
# ... and its ramp is shortened, at this step, to the steps that fit (see bifurcate).
_REPLAN_STEP = 10
# ... and the descent stops when the time of this many steps is left, for the scoring
# (one float64 product: about two float32 steps).
_SCORING_STEPS = 5


# ... and never less than this share of the limit (fixed costs of the calls after SB).
_RESERVED_SHARE = 0.2
# The compiled descent is loaded under a time limit only while this share of it is left.
_DESCENT_LOAD_SHARE = 0.5


class _StepReserveStop(Stop):
    """True at the parent's Ctrl-C or limit, or once less than ``steps`` times the last
    step's duration (a step is the time between two calls), or ``_RESERVED_SHARE`` of
    the limit, is left."""

    def __init__(self, parent: Stop, steps: int) -> None:
        super().__init__(None)
        self.parent, self.steps = parent, steps
        self.step_seconds = 0.0
        self._last: float | None = None
        end = parent.deadline.end
        self.floor = 0.0 if end is None else _RESERVED_SHARE * (end - parent.deadline.start)

    def __call__(self) -> bool:
        now = time.perf_counter()
        if self._last is not None:
            self.step_seconds = now - self._last
        self._last = now
        left = self.parent.deadline.remaining()
        reserve = max(self.floor, self.steps * self.step_seconds)
        return self.parent() or (left is not None and left < reserve)

    def interrupt(self) -> bool:
        return self.parent.interrupt()

    def __enter__(self) -> Stop:
        return self

    def steps_that_fit(self) -> int | None:
        """Steps of the last measured length that fit before this stop is true (None
        without a limit or a timed step)."""
        left = self.parent.deadline.remaining()
        if left is None or self.step_seconds <= 0:
            return None
        reserve = max(self.floor, self.steps * self.step_seconds)
        return max(0, int((left - reserve) / self.step_seconds))


def _build(
    model: ArrayModel, device: torch.device, dtype: torch.dtype, sparse: bool | None
) -> tuple[SBProblem, IsingTensors]:
    """SB's problem and the descent's tensors; a dense model's float64 J is built once
    for both."""
    ising = build_tensors(model, device, torch.float64)
    in_order = np.array_equal(ising.order, np.arange(model.num_variables))
    shared = ising.J.numpy() if ising.dense and in_order and device.type == "cpu" else None
    return build_sb_problem(model, device, dtype, sparse, shared), ising


def choose_sparse(size: int, pairs: int, device: torch.device, sparse: bool | None) -> bool:
    """Whether M (``size`` spins, at most ``pairs`` coupled pairs) is stored as CSR."""
    if sparse is not None:
        return sparse
    return size > _SMALL and 2 * pairs / max(1, size * size) < _SPARSE_FRACTION.get(
        device.type, 0.05
    )


def _matrix_bytes(bqm: dimod.BinaryQuadraticModel, dtype: torch.dtype, sparse: bool) -> int:
    """Peak bytes of the coupling matrices, measured on the CPU: SB's dense M (summed in
    float64, then in ``dtype``) beside the descent's float64 J; or the sparse forms, 16
    bytes an entry in both triangles, three copies while converting."""
    size = bqm.num_variables + 1
    if sparse:
        return 2 * (bqm.num_interactions + size) * 16 * 3
    return size * size * (8 + torch.finfo(dtype).bits // 8 + 8)


def check_mode(mode: Any, solver: str = "torch-sb") -> str:
    if mode not in MODES:
        raise ValueError(f"{solver}: mode must be 'ballistic' or 'discrete', got {mode!r}")
    return mode


def check_bool(value: Any, name: str, solver: str = "torch-sb") -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{solver}: {name} must be True or False, got {value!r}")
    return bool(value)


@dataclass
class SBProblem:
    """``H(x) = -1/2 x^T M x``: ``M`` symmetric with zero diagonal, dense or sparse CSR.

    With ``ancilla``, the last of the N = n + 1 spins carries the linear field.
    """

    M: torch.Tensor
    ancilla: bool
    xi0: float

    @property
    def dense(self) -> bool:
        return self.M.layout == torch.strided

    @property
    def size(self) -> int:
        return self.M.shape[0]

    def spectral_radius(self, iterations: int = 30) -> float:
        """Power-iteration estimate of max |eigenvalue| of M (deterministic start)."""
        generator = torch.Generator(device="cpu").manual_seed(0)
        v = torch.rand((self.size, 1), generator=generator, dtype=torch.float64) + 0.5
        v = v.to(device=self.M.device, dtype=self.M.dtype)
        radius = 0.0
        for _ in range(iterations):
            v = v / torch.linalg.vector_norm(v)
            w = self.M @ v
            radius = float(torch.linalg.vector_norm(w))
            if radius == 0.0:
                break
            v = w
        return radius

    def default_dt(self, mode: str) -> float:
        stiffness = 1.0 + self.xi0 * self.spectral_radius()
        return min(_DT_PAPER, _DT_STABLE[mode] / math.sqrt(stiffness))


def build_sb_problem(
    model: ArrayModel,
    device: torch.device,
    dtype: torch.dtype,
    sparse: bool | None = None,
    couplings: np.ndarray | None = None,
) -> SBProblem:
    """``M = -J`` (both triangles) plus, when ``h != 0``, ancilla couplings ``-h``.

    A dense M is made from the symmetric float64 ``couplings`` J of the model (summed in
    numpy by :func:`symmetric_dense` unless given: the descent's J is shared this way):
    building it through a sparse tensor's ``coalesce`` took 2.8 s on a complete
    4,096-variable model, more than half of a 5 s limit.
    """
    n = model.num_variables
    fielded = np.flatnonzero(model.linear)
    ancilla = fielded.size > 0
    size = n + ancilla
    if not choose_sparse(size, len(model.data) + fielded.size, device, sparse):
        if couplings is None:
            couplings = symmetric_dense(n, model.rows, model.cols, model.data).reshape(n, n)
        M = torch.empty((size, size), dtype=dtype, device=device)
        M[:n, :n] = torch.from_numpy(couplings).to(device=device, dtype=dtype)
        M[:n, :n].neg_()
        if ancilla:
            field = torch.as_tensor(-model.linear, dtype=dtype, device=device)
            M[n, :n] = field
            M[:n, n] = field
            M[n, n] = 0.0
        norm = math.sqrt(float(np.dot(couplings.ravel(), couplings.ravel())))
        norm = math.hypot(norm, math.sqrt(2.0) * float(np.linalg.norm(model.linear)))
        xi0 = 0.5 * math.sqrt(size - 1) / norm if norm > 0 else 0.0
        return SBProblem(M, ancilla, xi0)
    rows = np.concatenate([model.rows, fielded])
    cols = np.concatenate([model.cols, np.full(fielded.size, n, dtype=np.int64)])
    data = -np.concatenate([model.data, model.linear[fielded]])
    index = torch.as_tensor(
        np.vstack([np.concatenate([rows, cols]), np.concatenate([cols, rows])]), device=device
    )
    values = torch.as_tensor(np.concatenate([data, data]), dtype=torch.float64, device=device)
    coo = torch.sparse_coo_tensor(index, values, (size, size), check_invariants=False)
    coo = coo.coalesce()
    norm = float(torch.linalg.vector_norm(coo.values()))
    xi0 = 0.5 * math.sqrt(size - 1) / norm if norm > 0 else 0.0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
        M = coo.to(dtype).to_sparse_csr()
    return SBProblem(M, ancilla, xi0)


def bifurcate(
    problem: SBProblem,
    x: torch.Tensor,
    y: torch.Tensor,
    num_steps: int,
    dt: float,
    mode: str,
    stop: Stop,
    early_stopping: bool = True,
    sampling_period: int = 50,
    convergence_threshold: int = 50,
    steps_that_fit: Callable[[], int | None] | None = None,
) -> tuple[torch.Tensor, int]:
    """Integrate SB for (N, agents) positions ``x`` and momenta ``y`` (both updated in place).

    Returns (spins, steps run): spins (N, agents) in {-1, +1}, the signs of the final
    positions. With ``early_stopping``, signs are sampled every ``sampling_period`` steps;
    an agent whose signs were identical at ``convergence_threshold`` consecutive samplings
    is frozen with those signs and no longer integrated, and the run ends when all are.
    ``stop`` is checked every step; a KeyboardInterrupt between steps ends the run as
    ``stop.interrupt()`` does.
    """
    M, discrete = problem.M, mode == "discrete"
    coupling = dt * problem.xi0
    spins = torch.empty_like(x)
    active = torch.arange(x.shape[1], device=x.device)
    previous: torch.Tensor | None = None
    stable = torch.zeros(x.shape[1], dtype=torch.int64, device=x.device)
    ramp = max(num_steps - 1, 1)
    # Under a time limit, the ramp is shortened to the steps that fit, once a few steps
    # are timed: a ramp cut short leaves the pressure below a0 and the agents unbifurcated.
    replan_at = _REPLAN_STEP if steps_that_fit is not None else 0
    step = done = 0
    synchronize = x.is_cuda and stop.deadline.end is not None
    try:
        step = 0
        while step < num_steps:
            step += 1
            if step == replan_at and steps_that_fit is not None:
                fit = steps_that_fit()
                if fit is not None and step + fit < num_steps:
                    num_steps = step + fit
                    ramp = max(num_steps - 1, 1)
            pressure = min(1.0, (step - 1) / ramp)  # a(t) / a0, from 0 to 1
            y.addmm_(M, torch.sign(x) if discrete else x, alpha=coupling)
            y.add_(x, alpha=dt * (pressure - 1.0))
            x.add_(y, alpha=dt)
            y.masked_fill_(x.abs() > 1.0, 0.0)
            x.clamp_(-1.0, 1.0)
            done = step
            if early_stopping and step % sampling_period == 0:
                signs = x >= 0
                if previous is not None:
                    same = (signs == previous).all(dim=0)
                    stable = torch.where(same, stable + 1, 0)
                previous = signs
                converged = stable >= convergence_threshold - 1
                if bool(converged.any()):
                    spins[:, active[converged]] = _signs(x[:, converged])
                    keep = ~converged
                    # one statement: the arrays stay consistent if interrupted around it
                    x, y, previous, stable, active = (
                        x[:, keep],
                        y[:, keep],
                        previous[:, keep],
                        stable[keep],
                        active[keep],
                    )
                    if active.numel() == 0:
                        break
            if synchronize:  # the host must not run ahead of the GPU's work on the clock
                torch.cuda.synchronize(x.device)
            if stop():
                break
    except KeyboardInterrupt:
        if not stop.interrupt():
            raise
    if active.numel():
        spins[:, active] = _signs(x)
    return spins, done


def _signs(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def initial_positions(
    start: np.ndarray,
    ancilla: bool,
    generator: torch.Generator,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, agents) positions ``x = s * u``, ``u ~ U(0, 1)``, and momenta ``y ~ U(-1, 1)``.

    For uniformly random spins ``s`` this is the simulated-bifurcation package's
    ``x, y ~ U(-1, 1)``; a warm start fixes only the signs of the initial positions (the
    ancilla's is +1). SB starts at pressure 0, where positions oscillate about 0, so a
    warm start is a weak bias, not a local refinement.
    """
    signs = torch.as_tensor(start.T, dtype=dtype, device=device)
    if ancilla:
        signs = torch.cat([signs, torch.ones((1, signs.shape[1]), dtype=dtype, device=device)])
    x = signs * torch.rand(signs.shape, generator=generator, dtype=dtype, device=device)
    y = 2 * torch.rand(signs.shape, generator=generator, dtype=dtype, device=device) - 1
    return x, y


class TorchSBSampler(dimod.Sampler, dimod.Initialized):
    """Simulated bifurcation with all agents in one tensor, on CPU or CUDA.

    A GPU-first solver: every step is a product of the coupling matrix with all agents,
    which a GPU does at once; on a 2-core CPU it took 5-9x neal's time to 99.5 % of
    Gset's best known (docs/benchmarks.md), where ``torch-sa`` and ``neal`` are the
    choice.

    Parameters:

    * ``num_reads``: agents (default 128, or the number of ``initial_states``); one
      sample per agent.
    * ``num_steps``: steps (default 1000); the pressure ramps from 0 to 1 over them.
    * ``mode``: 'ballistic' (bSB, default) or 'discrete' (dSB).
    * ``dt``: time step. Default: the papers' 1.25, lowered to
      ``c / sqrt(1 + xi0 rho(M))`` (c = 1.4 for bSB, 1.0 for dSB) where 1.25 would be
      unstable or too coarse: 0.66 (bSB) and 0.47 (dSB) on G1, 1.0 and 0.71 on SK.
    * ``early_stopping`` (default True), ``sampling_period`` (50) and
      ``convergence_threshold`` (50), as in the simulated-bifurcation package: an agent
      stops once its signs are identical at that many consecutive samplings.
    * ``time_limit``: seconds from the call (set-up included), checked every step. At
      step 10 the ramp is shortened to the steps that fit (timed on the last step), so
      that the pressure still reaches a0: a ramp cut short left G1 at a cut of 10,000 of
      11,624 under 2 s, the shortened one at 11,450-11,470. Ctrl-C also ends the run
      between steps: the agents' current signs are descended and returned, with
      ``info["interrupted"] = True``.
    * ``seed``: reproducible on CPU.
    * ``initial_states``, ``initial_states_generator``: warm starts set the signs of the
      initial positions (see :func:`initial_positions`).
    * ``device`` ('auto', 'cpu', 'cuda'), ``dtype`` ('float32' or 'float64').
    * ``sparse``: None (default) stores M as CSR below a density threshold; True/False
      force it.

    Every returned state is a local minimum: a float64 greedy single-flip descent
    (``_sa_torch.descend``) follows SB. Under a time limit, SB's loop ends when the time of
    25 of its steps is left, and the descent when that of 5 is (for scoring the states);
    ``info["descent_complete"]`` is False when it had to (the states are then SB's,
    partly descended). A CUDA
    out-of-memory error is retried with the agents split into chunks run one after
    another, halving until one fits
    (``info["agent_chunk"]``; a chunk is not started once the time limit has passed), else
    a ValueError gives the memory asked and free. ``info`` has ``timing``, ``num_steps`` (steps
    run), ``mode``, ``device``, ``dt`` and ``matrix`` ('dense' or 'csr').
    """

    capabilities = frozenset({C.INITIAL_STATES, C.TIME_LIMIT, C.INTERRUPT})
    parameters = {
        "num_reads": [],
        "num_steps": [],
        "mode": ["mode_options"],
        "dt": [],
        "early_stopping": [],
        "sampling_period": [],
        "convergence_threshold": [],
        "time_limit": [],
        "seed": [],
        "initial_states": [],
        "initial_states_generator": [],
        "device": [],
        "dtype": [],
        "sparse": [],
    }
    properties = {"mode_options": MODES}

    def sample(
        self,
        bqm: dimod.BinaryQuadraticModel,
        num_reads: int | None = None,
        num_steps: int = 1000,
        mode: str = "ballistic",
        dt: float | None = None,
        early_stopping: bool = True,
        sampling_period: int = 50,
        convergence_threshold: int = 50,
        time_limit: float | None = None,
        seed: int | None = None,
        initial_states: Any = None,
        initial_states_generator: str = "random",
        device: str = "auto",
        dtype: str = "float32",
        sparse: bool | None = None,
        **parameters: Any,
    ) -> dimod.SampleSet:
        stop = Stop(optional_time_limit(time_limit, "torch-sb"))
        check_bqm(bqm, "torch-sb")
        self.remove_unknown_kwargs(**parameters)
        if num_reads is None and initial_states is None:
            num_reads = 128
        if num_reads is not None:
            num_reads = positive_int(num_reads, "num_reads", "torch-sb")
        torch_dtype = resolve_dtype(dtype, "torch-sb")
        check_seed(seed, "torch-sb")
        check_initial_states_generator(initial_states_generator, "torch-sb")
        steps = positive_int(num_steps, "num_steps", "torch-sb")
        mode = check_mode(mode)
        step_size = optional_positive(
            dt, "dt", "torch-sb", "a positive number (or None for the default)", refuse_bool=True
        )
        early_stopping = check_bool(early_stopping, "early_stopping")
        period = positive_int(sampling_period, "sampling_period", "torch-sb")
        threshold = positive_int(convergence_threshold, "convergence_threshold", "torch-sb")
        if sparse is not None:
            sparse = check_bool(sparse, "sparse")
        torch_device = resolve_device(device, "torch-sb")
        size = bqm.num_variables + 1
        matrix_bytes = _matrix_bytes(
            bqm,
            torch_dtype,
            choose_sparse(size, bqm.num_interactions + bqm.num_variables, torch_device, sparse),
        )
        check_states_memory(
            1 if num_reads is None else num_reads,  # given initial states exist already
            bqm.num_variables,
            _STATE_BYTES,
            "torch-sb",
            fixed_bytes=matrix_bytes,
            fixed_for="its coupling matrices",
        )
        start = parse_initial_states(
            self,
            bqm,
            initial_states=initial_states,
            initial_states_generator=initial_states_generator,
            num_reads=num_reads,
            seed=seed,
        ).astype(np.float64)
        model = ArrayModel.from_bqm(bqm, dimod.SPIN)
        n = model.num_variables

        info: dict[str, Any] = {"mode": mode, "device": str(torch_device)}
        with stop, wall_timer(info):
            if bqm.vartype is dimod.BINARY:
                start = 2 * start - 1
            done = 0
            energies: np.ndarray | None = None  # dimod scores the empty model's states
            if n == 0:
                states = np.empty((len(start), 0), dtype=np.int8)
            else:
                itemsize = torch.finfo(torch_dtype).bits // 8
                problem, ising = on_device(
                    lambda: _build(model, torch_device, torch_dtype, sparse),
                    "torch-sb",
                    torch_device,
                    f"the {n}x{n} coupling matrices",
                    matrix_bytes,
                )
                # Loading the descent (the compiled extension: milliseconds; numba: 1.1 s
                # beside two busy processes) only if it is quick or loaded already or half
                # of the limit is left: after a set-up that used up the limit, the states
                # are SB's.
                left = stop.deadline.remaining()
                lowrank = ising.lowrank_u is not None
                descent = (
                    left is None
                    or (_sa_native.available() and not lowrank)
                    or "ising_qubo.solvers._sa_cpu" in sys.modules
                    or left > _DESCENT_LOAD_SHARE * (time_limit or 0.0)
                )
                if descent:  # inside the limit, see prepare_descend
                    prepare_descend(torch_device, lowrank)
                if step_size is None:
                    step_size = problem.default_dt(mode)
                info["matrix"] = "dense" if problem.dense else "csr"
                generator = torch.Generator(device=torch_device)
                generator.manual_seed(torch_seed(seed))
                order = torch.as_tensor(ising.order, device=torch_device)
                back = torch.as_tensor(np.argsort(ising.order), device=torch_device)
                steps_run = []
                complete = []
                scored: list[torch.Tensor] = []
                # SB's loop leaves time for the descent and the scoring (see _RESERVED_STEPS)
                integrate_stop = _StepReserveStop(stop, _RESERVED_STEPS + _SCORING_STEPS)

                def run(a: int, b: int) -> np.ndarray:
                    x, y = initial_positions(
                        start[a:b], problem.ancilla, generator, torch_device, torch_dtype
                    )
                    spins, count = bifurcate(
                        problem,
                        x,
                        y,
                        steps,
                        step_size,
                        mode,
                        integrate_stop,
                        early_stopping,
                        period,
                        threshold,
                        integrate_stop.steps_that_fit,
                    )
                    steps_run.append(count)
                    if problem.ancilla:
                        spins = spins[:n] * spins[n]
                    spins = spins.T.to(torch.float64)[:, order]
                    # A Ctrl-C ended SB; only the limit ends the descent, with time kept
                    # for scoring the states (a product like an SB step's, in float64).
                    reserve = _SCORING_STEPS * integrate_stop.step_seconds
                    limited = stop.limit_only(reserve * (b - a) / len(start))
                    complete.append(descent and descend(ising, spins, stop=limited))
                    # E = offset + s.h + 1/2 s.J s, from the descent's float64 tensors
                    scored.append(
                        ising.offset + 0.5 * (spins * (ising.h + ising.fields(spins))).sum(1)
                    )
                    return spins[:, back].cpu().numpy().astype(np.int8)

                # per agent: x, y, signs, spins in dtype; spins, fields, deltas in float64
                per_agent = (n + 1) * (6 * itemsize + 4 * 8)
                chunks, size = in_chunks(
                    run,
                    len(start),
                    stop,
                    "torch-sb",
                    torch_device,
                    lambda k: matrix_bytes + k * per_agent,
                )
                if size < len(start):
                    info["agent_chunk"] = size
                states = np.concatenate(chunks)
                energies = torch.cat(scored).cpu().numpy()
                done = max(steps_run)
                info["descent_complete"] = all(complete)
        info["num_steps"] = done
        info["dt"] = step_size
        stop.report(info)
        return sampleset_from_states(states, dimod.SPIN, bqm, info, model, energies)
