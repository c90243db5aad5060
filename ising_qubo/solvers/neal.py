"""``neal``: D-Wave's simulated annealing (dwave-samplers), with a wall-clock limit."""

from __future__ import annotations

import time
from typing import Any

import dimod
import numpy as np
from dwave.samplers import SimulatedAnnealingSampler
from dwave.samplers.sa.sampler import default_beta_range as dwave_beta_range

from ising_qubo.solvers._common import Stop, corner_bqm, optional_time_limit, wall_timer
from ising_qubo.solvers._dwave import STATE_BYTES, WallTimed
from ising_qubo.solvers.capabilities import Capability as C

# With a time limit, reads run in batches of about this many numbers of set-up work
# (dimod scores every initial state before the first read: 10^4 reads of a dense
# 300-variable problem took a second, all of it before the limit could be checked).
_BATCH_WORK = 2_000_000
# Peak memory per read and variable in batches (measured 4.5 bytes): each batch's int8
# SampleSet, then their concatenation; one call draws all initial states first
# (STATE_BYTES).
_BATCHED_STATE_BYTES = 5
# dwave-samplers' default number of sweeps per read.
_DEFAULT_SWEEPS = 1000
# Under a time limit, a read whose work (sweeps x (variables + 2 x interactions)) is above
# this may be too long to fit (tens of ms or more): one short pilot read measures the cost
# of a sweep first.
_PILOT_WORK = 20_000_000
# A fast single-flip rate (dwave's kernel on one idle core: about 10^8 flips tried per
# second); it only sizes the pilot read, whose time is then measured.
_FAST_UPDATES_PER_SECOND = 1e8
# One read may take at most this fraction of the time left (a read cannot be stopped).
_READ_SHARE = 0.8
# The corner that measures a call's fixed cost spans this share of the variables (so
# about its square of the entries).
_CORNER_SIDE = 0.35


class NealSampler(WallTimed, SimulatedAnnealingSampler):
    """dwave-samplers' ``SimulatedAnnealingSampler`` plus ``time_limit`` (seconds).

    dwave-samplers runs the reads in C++ and calls an interrupt function after each one;
    this front end always passes one, so the time limit (counted from the call) and
    Ctrl-C both stop the run between reads: the reads done come back, with
    ``info["interrupted"] = True`` after Ctrl-C. A read itself cannot be interrupted, so
    at least one completes. So that it fits, a time limit takes precedence over
    ``num_sweeps``: when one read could be long (large problem, many sweeps), a pilot read
    measures a sweep's cost, and ``num_sweeps`` is lowered so that a read
    takes at most 80% of the time left (``info["num_sweeps"]`` then says how many ran and
    ``info["num_sweeps_asked"]`` what was asked; a dense 1,120-variable problem took 7.2 s
    under a 5 s limit before). With a time limit and no ``initial_states``, the reads run
    in batches (seeds drawn from ``seed``), so that dimod's set-up of a huge ``num_reads``
    does not use up the limit.

    The default ``beta_range`` is dwave-samplers' own rule, computed here with numpy once
    per call (:func:`default_beta_range`) and passed to every batch: dwave computes it in a
    Python loop over the interactions at every call, 2.5 s for a dense 1,120-variable
    problem, which made each batch (and the pilot) that much slower.
    """

    solver_name = "neal"
    capabilities = frozenset({C.TIME_LIMIT, C.INTERRUPT, C.INITIAL_STATES})

    def __init__(self) -> None:
        super().__init__()
        self.parameters["time_limit"] = []  # type: ignore[index]  # dwave declares it None

    def sample(  # type: ignore[override]  # dwave's named keywords pass via **parameters
        self, bqm: dimod.BinaryQuadraticModel, time_limit: float | None = None, **parameters: Any
    ) -> dimod.SampleSet:
        stop = Stop(optional_time_limit(time_limit, self.solver_name))
        batched = stop.deadline.end is not None and parameters.get("initial_states") is None
        parameters = self._checked(
            bqm, parameters, _BATCHED_STATE_BYTES if batched else STATE_BYTES
        )
        sweeps = parameters.get("num_sweeps")
        if sweeps is not None and (
            isinstance(sweeps, bool) or not isinstance(sweeps, (int, np.integer)) or sweeps < 0
        ):
            raise ValueError(f"neal: num_sweeps must be a non-negative integer, got {sweeps!r}")
        user_interrupt = parameters.pop("interrupt_function", None)
        if user_interrupt is not None and not callable(user_interrupt):
            raise TypeError("neal: interrupt_function must be callable")

        aborted = []

        def interrupt() -> bool:
            try:
                return bool(user_interrupt and user_interrupt()) or stop()
            except KeyboardInterrupt:  # dwave-samplers would print it and go on
                if not stop.interrupt():
                    aborted.append(True)  # a second Ctrl-C: raised once the call returns
                return True

        if parameters.get("beta_range") is None and (
            parameters.get("beta_schedule_type", "geometric") != "custom"
        ):
            parameters = {**parameters, "beta_range": default_beta_range(bqm)}
        info: dict[str, Any] = {}
        parts: list[dimod.SampleSet] = []
        with stop, wall_timer(info):
            fitted, pilot = self._sweeps_that_fit(bqm, stop, parameters)
            if fitted is not None:
                info["num_sweeps_asked"] = parameters.get("num_sweeps") or _DEFAULT_SWEEPS
                info["num_sweeps"] = fitted
                parameters = {**parameters, "num_sweeps": fitted}
            if pilot is not None:  # no read fits after the pilot: its read is the answer
                info["pilot_only"] = True
                parts.append(pilot)
            for batch in [] if pilot is not None else self._batches(bqm, stop, parameters):
                if parts and stop():
                    break
                try:
                    parts.append(
                        super(WallTimed, self).sample(bqm, interrupt_function=interrupt, **batch)
                    )
                except KeyboardInterrupt:
                    if not stop.interrupt() or not parts:
                        raise
                    break
                if aborted:
                    raise KeyboardInterrupt
        sampleset = parts[0] if len(parts) == 1 else dimod.concatenate(parts)
        sampleset.info.update({k: v for k, v in parts[0].info.items() if k != "timing"})
        sampleset.info.update({k: v for k, v in info.items() if k != "timing"})
        sampleset.info["timing"] = {**parts[0].info.get("timing", {}), **info["timing"]}
        stop.report(sampleset.info)
        return sampleset

    def _sweeps_that_fit(
        self, bqm: dimod.BinaryQuadraticModel, stop: Stop, parameters: dict[str, Any]
    ) -> tuple[int | None, dimod.SampleSet | None]:
        """(lowered ``num_sweeps``, None) for a read that would not fit in the time left;
        (None, None) without a limit, for a short read, or when it fits; (the pilot's
        sweeps, the pilot's read) when not even one more call fits."""
        sweeps = parameters.get("num_sweeps")
        sweeps = _DEFAULT_SWEEPS if sweeps is None else int(sweeps)
        per_sweep_work = bqm.num_variables + 2 * bqm.num_interactions
        if stop.deadline.end is None or sweeps * per_sweep_work <= _PILOT_WORK:
            return None, None
        pilot = {k: v for k, v in parameters.items() if k not in ("num_reads", "initial_states")}
        pilot["num_reads"] = 1

        # A call costs a fixed part (dwave's kernel builds its adjacency lists: 1.3 s on a
        # complete 4,096-variable model, even without sweeps) plus its sweeps. A call
        # without sweeps on a corner of the model measures the first, scaled by the
        # entries; a pilot read with about as much sweeping measures the second.
        fixed = _fixed_call_seconds(super(WallTimed, self), bqm, pilot)  # type: ignore[arg-type]
        count = int(min(sweeps, max(1, fixed * _FAST_UPDATES_PER_SECOND / per_sweep_work)))
        began = time.perf_counter()
        read = super(WallTimed, self).sample(bqm, **{**pilot, "num_sweeps": count})
        total = time.perf_counter() - began
        per_sweep = max(total - fixed, 0.1 * total) / count
        remaining = stop.deadline.remaining() or 0.0
        fit = int((_READ_SHARE * remaining - fixed) / per_sweep)
        if fit < 1:
            return count, read
        return (fit if fit < sweeps else None), None

    @staticmethod
    def _batches(bqm: dimod.BinaryQuadraticModel, stop: Stop, parameters: dict[str, Any]):
        """Parameters of each call: one call, or with a time limit batches of reads."""
        reads = parameters.get("num_reads") or 1
        if stop.deadline.end is None or parameters.get("initial_states") is not None:
            yield parameters
            return
        size = max(1, _BATCH_WORK // max(1, bqm.num_variables + bqm.num_interactions))
        if size >= reads:
            yield parameters
            return
        rng = np.random.default_rng(parameters.get("seed"))
        for start in range(0, reads, size):
            yield {
                **parameters,
                "num_reads": min(size, reads - start),
                "seed": int(rng.integers(2**31)),
            }  # dwave: seed < 2^31


def default_beta_range(bqm: dimod.BinaryQuadraticModel) -> list[float]:
    """dwave-samplers' default ``[hot_beta, cold_beta]`` (``default_beta_range``), computed
    with numpy instead of a Python loop over the interactions.

    Hot: every spin flips with probability at least 1/2, ``log 2 / (2 max_i F_i)`` with
    ``F_i = |h_i| + sum_j |J_ij|``. Cold: ``log(m / 0.01) / (2 g)``, ``g`` the smallest
    non-zero bias touching any spin and ``m`` the number of spins whose smallest non-zero
    bias is ``g``. A model without any non-zero bias goes to dwave's function (it warns
    and returns its arbitrary range).
    """
    spin = bqm if bqm.vartype is dimod.SPIN else bqm.change_vartype(dimod.SPIN, inplace=False)
    vectors = spin.to_numpy_vectors()
    h, (rows, cols, couplings) = vectors[0], vectors[1]
    abs_h = np.abs(np.asarray(h, dtype=np.float64))
    abs_j = np.abs(np.asarray(couplings, dtype=np.float64))
    field = abs_h.copy()
    np.add.at(field, rows, abs_j)
    np.add.at(field, cols, abs_j)
    smallest = np.where(abs_h != 0, abs_h, np.inf)
    nonzero = abs_j != 0
    np.minimum.at(smallest, rows[nonzero], abs_j[nonzero])
    np.minimum.at(smallest, cols[nonzero], abs_j[nonzero])
    gaps = smallest[np.isfinite(smallest)]
    if gaps.size == 0:
        return list(dwave_beta_range(bqm))
    largest = float(field.max())
    hot = 1.0 if largest == 0 else float(np.log(2) / (2 * largest))
    gap = float(gaps.min())
    cold = float(np.log(np.count_nonzero(gaps == gap) / 0.01) / (2 * gap))
    return [hot, cold]


def _fixed_call_seconds(
    sampler: dimod.Sampler, bqm: dimod.BinaryQuadraticModel, parameters: dict[str, Any]
) -> float:
    """Seconds of one call to dwave's sampler without sweeps, measured on the corner of
    ``bqm`` spanned by its first variables (about an eighth of its entries) and scaled by
    variables plus interactions, the work of that fixed part."""
    corner = corner_bqm(bqm, _CORNER_SIDE)
    began = time.perf_counter()
    sampler.sample(corner, **{**parameters, "num_sweeps": 0})
    seconds = time.perf_counter() - began
    entries = corner.num_variables + corner.num_interactions
    return seconds * (bqm.num_variables + bqm.num_interactions) / max(1, entries)
