"""``openjij``: OpenJij's simulated annealing (``openjij.SASampler``), as a benchmark peer.

A thin dimod front end: openjij is called one read at a time on a model built once, so
that ``time_limit`` and Ctrl-C stop between reads (openjij has neither) and seeded reads
differ (openjij starts every read of a seeded call from the same state with the same
random stream, so its ``num_reads`` copies of one read).
"""

from __future__ import annotations

from typing import Any

import dimod
import numpy as np
import openjij

from ising_qubo.solvers._common import (
    SEED_LIMIT,
    Stop,
    check_bqm,
    check_seed,
    check_states_memory,
    optional_positive,
    optional_time_limit,
    positive_int,
    sampleset_from_states,
    wall_timer,
)
from ising_qubo.solvers.capabilities import Capability as C

# Peak memory per read and variable (an estimate, not measured): the int8 row kept per
# read, their stacked copy and the SampleSet's.
_STATE_BYTES = 4
_DEFAULT_SWEEPS = 1000  # openjij's own default


class OpenJijSASampler(dimod.Sampler):
    """``openjij.SASampler`` with dimod's conventions and ``time_limit`` (seconds).

    Parameters: ``num_reads`` (default 1), ``num_sweeps`` (default 1000), ``seed`` (the
    seeds of the reads are drawn from it), ``beta_min``/``beta_max`` (openjij fits them to
    the problem when not given; the fitted range of the first read is used for all and
    reported as ``info["beta_range"]``) and ``time_limit``, counted from the call and
    checked between reads: at least one read completes, and the reads done come back with
    ``info["num_reads"]``. Ctrl-C stops between reads, with ``info["interrupted"] =
    True``. Energies are recomputed by dimod on the caller's model.
    """

    solver_name = "openjij"
    capabilities = frozenset({C.TIME_LIMIT, C.INTERRUPT})

    def __init__(self) -> None:
        self._sampler = openjij.SASampler()

    @property
    def parameters(self) -> dict[str, list]:
        return {
            "num_reads": [],
            "num_sweeps": [],
            "seed": [],
            "beta_min": [],
            "beta_max": [],
            "time_limit": [],
        }

    @property
    def properties(self) -> dict[str, Any]:
        return {"package": "openjij", "sampler": "SASampler"}

    def sample(
        self,
        bqm: dimod.BinaryQuadraticModel,
        num_reads: int = 1,
        num_sweeps: int = _DEFAULT_SWEEPS,
        seed: int | None = None,
        beta_min: float | None = None,
        beta_max: float | None = None,
        time_limit: float | None = None,
        **unknown: Any,
    ) -> dimod.SampleSet:
        name = self.solver_name
        stop = Stop(optional_time_limit(time_limit, name))
        self.remove_unknown_kwargs(**unknown)  # dimod's warning, then ignored
        check_bqm(bqm, name)
        reads = positive_int(num_reads, "num_reads", name)
        sweeps = positive_int(num_sweeps, "num_sweeps", name)
        rng = np.random.default_rng(check_seed(seed, name))
        betas = {
            "beta_min": optional_positive(beta_min, "beta_min", name, refuse_bool=True),
            "beta_max": optional_positive(beta_max, "beta_max", name, refuse_bool=True),
        }
        check_states_memory(reads, bqm.num_variables, _STATE_BYTES, name)

        labels = list(bqm.variables)
        n = len(labels)
        info: dict[str, Any] = {}
        rows: list[np.ndarray] = []
        with stop, wall_timer(info):
            model = _openjij_model(bqm, labels) if n else None
            while len(rows) < reads and not (rows and stop()):
                if model is None:  # openjij needs a variable; nothing to anneal anyway
                    rows.append(np.zeros(0, np.int8))
                    continue
                try:
                    response = self._sampler.sample(
                        model,
                        num_reads=1,
                        num_sweeps=sweeps,
                        seed=int(rng.integers(SEED_LIMIT)),
                        **betas,
                    )
                except KeyboardInterrupt:
                    if not stop.interrupt() or not rows:
                        raise
                    break
                row = np.empty(n, np.int8)
                columns = np.asarray(list(response.variables), dtype=np.int64)
                row[columns] = response.record.sample[0]
                rows.append(row)
                if betas["beta_min"] is None or betas["beta_max"] is None:
                    schedule = response.info["schedule"]
                    betas = {
                        "beta_min": float(schedule["beta_min"]),
                        "beta_max": float(schedule["beta_max"]),
                    }
        info["num_reads"] = len(rows)
        info["num_sweeps"] = sweeps
        if betas["beta_min"] is not None:
            info["beta_range"] = [betas["beta_min"], betas["beta_max"]]
        stop.report(info)
        states = np.stack(rows) if n else np.zeros((len(rows), 0), np.int8)
        return sampleset_from_states(states, bqm.vartype, bqm, info)


def _openjij_model(bqm: dimod.BinaryQuadraticModel, labels: list) -> Any:
    """``bqm`` as an openjij model on the integers 0..n-1 (``labels`` order), built once per
    call: openjij sorts labels (mixed types fail) and converting takes longer than a short
    read on large problems."""
    vectors = bqm.to_numpy_vectors(variable_order=labels)
    rows, cols, values = vectors.quadratic
    linear = {i: float(b) for i, b in enumerate(vectors.linear_biases)}
    quadratic = {(int(i), int(j)): float(b) for i, j, b in zip(rows, cols, values)}
    return openjij.model.model.BinaryQuadraticModel(
        linear, quadratic, float(vectors.offset), bqm.vartype, sparse=True
    )
