"""``neal``: D-Wave's simulated annealing (dwave-samplers), with a wall-clock limit."""

from __future__ import annotations

from typing import Any

import dimod
import numpy as np
from dwave.samplers import SimulatedAnnealingSampler

from ising_qubo.solvers._common import Stop, optional_time_limit, wall_timer
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


class NealSampler(WallTimed, SimulatedAnnealingSampler):
    """dwave-samplers' ``SimulatedAnnealingSampler`` plus ``time_limit`` (seconds).

    dwave-samplers runs the reads in C++ and calls an interrupt function after each one;
    this front end always passes one, so the time limit (counted from the call) and
    Ctrl-C both stop the run between reads: the reads done come back, with
    ``info["interrupted"] = True`` after Ctrl-C. A read itself cannot be interrupted, so
    at least one completes, and one very long read (a huge ``num_sweeps``) can overrun the
    limit by its length. With a time limit and no ``initial_states``, the reads run in
    batches (seeds drawn from ``seed``), so that dimod's set-up of a huge ``num_reads``
    does not use up the limit.
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

        info: dict[str, Any] = {}
        parts: list[dimod.SampleSet] = []
        with stop, wall_timer(info):
            for batch in self._batches(bqm, stop, parameters):
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
        sampleset.info["timing"] = {**parts[0].info.get("timing", {}), **info["timing"]}
        stop.report(sampleset.info)
        return sampleset

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
