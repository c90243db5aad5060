"""``tabu``: dwave-samplers' multistart tabu search, with a total wall-clock limit."""

from __future__ import annotations

import time
from typing import Any

import dimod
import numpy as np
from dwave.samplers import TabuSampler

from ising_qubo.solvers._common import (
    Stop,
    optional_time_limit,
    parse_initial_states,
    wall_timer,
)
from ising_qubo.solvers._dwave import WallTimed
from ising_qubo.solvers.capabilities import Capability as C

# Reads run in batches of about this many milliseconds of tabu search (by ``timeout``),
# between which the time limit and Ctrl-C are checked.
_BATCH_MS = 250


class TabuSolver(WallTimed, TabuSampler):
    """dwave-samplers' ``TabuSampler``; ``time_limit`` (seconds) is shared by all reads.

    dwave's own ``timeout`` is in milliseconds per read; ``time_limit`` sets it so that
    the whole call respects the limit: before each batch of reads, to the time left over
    the reads left, less what each read was measured to overrun its ``timeout`` (tens of
    ms on a dense 300-variable problem), and at least 1 ms. The reads run in batches
    (seeds drawn from ``seed``); between batches the time limit is checked (reads that do
    not fit are not run) and Ctrl-C stops the run: the reads done come back with
    ``info["interrupted"] = True``. One read (a C++ call) cannot be interrupted.
    """

    solver_name = "tabu"
    capabilities = frozenset({C.TIME_LIMIT, C.INTERRUPT, C.INITIAL_STATES})

    def __init__(self) -> None:
        super().__init__()
        self.parameters["time_limit"] = []  # type: ignore[index]  # dwave declares it None

    def sample(  # type: ignore[override]  # dwave's named keywords pass via **parameters
        self, bqm: dimod.BinaryQuadraticModel, time_limit: float | None = None, **parameters: Any
    ) -> dimod.SampleSet:
        seconds = optional_time_limit(time_limit, self.solver_name)
        stop = Stop(seconds)
        parameters = self._checked(bqm, parameters)
        if not bqm.num_variables:
            return self._timed_sample(bqm, **parameters)
        seed = parameters.pop("seed", None)
        states = parse_initial_states(
            self,
            bqm.binary,
            initial_states=parameters.pop("initial_states", None),
            initial_states_generator=parameters.pop("initial_states_generator", "random"),
            num_reads=parameters.pop("num_reads", None),
            seed=seed,
        )
        reads = len(states)
        rng = np.random.default_rng(seed)
        labels = list(bqm.variables)
        info: dict[str, Any] = {}
        parts: list[dimod.SampleSet] = []
        overrun = 0.0  # seconds a read took beyond its timeout, last measured
        start = 0
        with stop, wall_timer(info):
            while start < reads:
                if parts and stop():
                    break
                remaining = stop.deadline.remaining()  # None exactly when seconds is None
                if remaining is not None:
                    share = remaining / (reads - start) - overrun
                    parameters["timeout"] = max(1, int(1000 * share))
                timeout = parameters.get("timeout", 20)
                size = max(1, _BATCH_MS // timeout) if timeout is not None and timeout > 0 else 1
                if seconds is not None:  # a batch is at most about 2% of the limit
                    size = max(1, min(size, int(20 * seconds / timeout)))
                batch = states[start : start + size]
                began = time.perf_counter()
                try:
                    parts.append(
                        super(WallTimed, self).sample(
                            bqm,
                            initial_states=(batch, labels),
                            seed=int(rng.integers(2**32)),
                            **parameters,
                        )
                    )
                except KeyboardInterrupt:
                    if not stop.interrupt() or not parts:
                        raise
                    break
                if seconds is not None:
                    took = (time.perf_counter() - began) / len(batch)
                    overrun = max(0.0, took - timeout / 1000)
                start += len(batch)
        sampleset = parts[0] if len(parts) == 1 else dimod.concatenate(parts)
        sampleset.info["timing"] = {"wall_s": info["timing"]["wall_s"]}
        stop.report(sampleset.info)
        return sampleset
