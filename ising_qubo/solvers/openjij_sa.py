"""``openjij``: OpenJij's simulated annealing (``openjij.SASampler``), as a benchmark peer.

A thin dimod front end: openjij is called one read at a time on a model built once, so
that ``time_limit`` and Ctrl-C stop between reads (openjij has neither) and seeded reads
differ (openjij starts every read of a seeded call from the same state with the same
random stream, so its ``num_reads`` copies of one read).
"""

from __future__ import annotations

import time
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
    corner_bqm,
    optional_positive,
    optional_time_limit,
    positive_int,
    sampleset_from_states,
    wall_timer,
)
from ising_qubo.solvers._dwave import descent_fallback
from ising_qubo.solvers.capabilities import Capability as C

# Peak memory per read and variable (an estimate, not measured): the int8 row kept per
# read, their stacked copy and the SampleSet's.
_STATE_BYTES = 4
_DEFAULT_SWEEPS = 1000  # openjij's own default
# Under a time limit, reads whose sweeps do more than this much work (sweeps x (variables
# + 2 interactions)) are sized by two pilot reads on a corner of the model, this share of
# its variables (see _fit_sweeps): one 1,000-sweep read of a complete 4,096-variable model
# took 80 s.
_PILOT_WORK = 20_000_000
_PILOT_SECOND = 20
_CORNER_SIDE = 0.35
# A whole model's read costs more per entry than its corner's (a 134 MB matrix converted
# misses the caches a 16 MB one hits): on 4,096 dense variables beside two busy
# processes, 4.8 s against 1.9 s scaled from the corner; quiet, 1.2 s against 0.8 s.
_FIXED_MARGIN = 2.5
# One read may take at most this share of the time left (openjij cannot stop a read).
_READ_SHARE = 0.8


class OpenJijSASampler(dimod.Sampler):
    """``openjij.SASampler`` with dimod's conventions and ``time_limit`` (seconds).

    Parameters: ``num_reads`` (default 1), ``num_sweeps`` (default 1000), ``seed`` (the
    seeds of the reads are drawn from it), ``beta_min``/``beta_max`` (openjij fits them to
    the problem when not given; the fitted range of the first read is used for all and
    reported as ``info["beta_range"]``) and ``time_limit``, counted from the call and
    checked between reads: a read that would not fit is not started (when reads are
    long, two pilot reads on a corner of the model size ``num_sweeps`` to the time left,
    ``info["num_sweeps_asked"]``; when not even a one-sweep read fits, a steepest descent
    from a random state comes back with ``info["fallback"]``), at least one read
    completes otherwise, and the reads done come back with
    ``info["num_reads"]``; a read in flight is not stopped, so the limit can be overrun
    by up to ``info["slowest_read_s"]``, the longest read's seconds. Ctrl-C stops between
    reads, with ``info["interrupted"] = True``. Energies are recomputed by dimod on the
    caller's model.
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

    def _fit_sweeps(
        self, bqm: dimod.BinaryQuadraticModel, sweeps: int, stop: Stop, info: dict[str, Any]
    ) -> tuple[int, float]:
        """(sweeps of a read that takes at most ``_READ_SHARE`` of the time left, 0 if not
        even one sweep fits; its estimated seconds). Two reads of 1 and ``_PILOT_SECOND``
        sweeps on a corner of the model (its first variables, about an eighth of the
        entries), scaled by the entries, give a read's fixed part (openjij converts the
        model at every read: 1.2-5 s for 4,096 dense variables) and a sweep's cost; a
        pilot on the whole model would cost that fixed part again."""
        corner = corner_bqm(bqm, _CORNER_SIDE)
        model = _openjij_model(corner, list(range(corner.num_variables)))
        timings = []
        for count in (1, min(sweeps, _PILOT_SECOND)):
            began = time.perf_counter()
            self._sampler.sample(model, num_reads=1, num_sweeps=count, seed=0)
            timings.append((count, time.perf_counter() - began))
        (one, short), (many, longer) = timings
        entries = corner.num_variables + 2 * corner.num_interactions
        scale = (bqm.num_variables + 2 * bqm.num_interactions) / max(1, entries)
        fixed = _FIXED_MARGIN * short * scale
        per_sweep = scale * max(longer - short, 0.1 * longer) / max(1, many - one)
        left = stop.deadline.remaining() or 0.0
        fitted = max(0, min(sweeps, int((_READ_SHARE * left - fixed) / per_sweep)))
        info["num_sweeps_asked"] = sweeps
        return fitted, fixed + max(0, fitted - 1) * per_sweep

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

            def read(count: int) -> np.ndarray:
                nonlocal betas
                response = self._sampler.sample(
                    model,
                    num_reads=1,
                    num_sweeps=count,
                    seed=int(rng.integers(SEED_LIMIT)),
                    **betas,
                )
                row = np.empty(n, np.int8)
                columns = np.asarray(list(response.variables), dtype=np.int64)
                row[columns] = response.record.sample[0]
                if betas["beta_min"] is None or betas["beta_max"] is None:
                    schedule = response.info["schedule"]
                    betas = {
                        "beta_min": float(schedule["beta_min"]),
                        "beta_max": float(schedule["beta_max"]),
                    }
                return row

            per_read = 0.0  # seconds of a read: one that cannot fit is not started
            slowest = 0.0  # the longest read: what a time limit can be overrun by
            work = sweeps * (n + 2 * bqm.num_interactions)
            try:
                if model is not None and stop.deadline.end is not None and work > _PILOT_WORK:
                    sweeps, per_read = self._fit_sweeps(bqm, sweeps, stop, info)
                    if sweeps == 0:
                        spare = max(stop.deadline.remaining() or 0.0, 0.0)
                        return descent_fallback(
                            bqm,
                            None,
                            seed,
                            f"one openjij read of {n} variables needs about {per_read:.1f} s "
                            f"(openjij converts the model at every read), more than the "
                            f"{spare:.1f} s left of time_limit: returned a steepest descent "
                            "from a random state instead",
                            stop.deadline.remaining(),
                        )
                while len(rows) < reads and not (rows and stop()):
                    left = stop.deadline.remaining()
                    if rows and left is not None and per_read > left:
                        break
                    began = time.perf_counter()
                    rows.append(read(sweeps) if model is not None else np.zeros(0, np.int8))
                    per_read = time.perf_counter() - began
                    slowest = max(slowest, per_read)
            except KeyboardInterrupt:
                if not stop.interrupt() or not rows:
                    raise
        info["num_reads"] = len(rows)
        info["num_sweeps"] = sweeps
        info["slowest_read_s"] = slowest
        if betas["beta_min"] is not None:
            info["beta_range"] = [betas["beta_min"], betas["beta_max"]]
        stop.report(info)
        states = np.stack(rows) if n else np.zeros((len(rows), 0), np.int8)
        return sampleset_from_states(states, bqm.vartype, bqm, info)


def _openjij_model(bqm: dimod.BinaryQuadraticModel, labels: list) -> Any:
    """``bqm`` as an openjij model on the integers 0..n-1 (``labels`` order), built once per
    call: openjij sorts labels (mixed types fail) and converting takes longer than a short
    read on large problems. A dense model goes through a numpy matrix (``from_numpy_matrix``):
    the dictionaries took 16 s for a complete 2,048-variable model, the matrix 0.06 s."""
    vectors = bqm.to_numpy_vectors(variable_order=labels)
    rows, cols, values = vectors.quadratic
    n = len(labels)
    if n >= _DENSE_MIN and len(values) >= _DENSE_FRACTION * n * (n - 1) / 2:
        check_states_memory(n, n, 8, "openjij", count_text=f"a dense matrix of {n} rows")
        matrix = np.bincount(
            np.minimum(rows, cols) * n + np.maximum(rows, cols), values, n * n
        ).reshape(n, n)
        matrix[np.arange(n), np.arange(n)] = vectors.linear_biases
        return openjij.model.model.BinaryQuadraticModel.from_numpy_matrix(
            matrix, list(range(n)), float(vectors.offset), bqm.vartype.name, sparse=True
        )
    linear = {i: float(b) for i, b in enumerate(vectors.linear_biases)}
    quadratic = {(int(i), int(j)): float(b) for i, j, b in zip(rows, cols, values)}
    return openjij.model.model.BinaryQuadraticModel(
        linear, quadratic, float(vectors.offset), bqm.vartype, sparse=True
    )


# Models with at least this share of the pairs coupled (and this size) are built from a
# dense matrix (see _openjij_model).
_DENSE_FRACTION = 0.25
_DENSE_MIN = 256
