"""Threads per compiled-kernel call (ising_qubo.solvers.kernel_threads): the rule, and
that the thread count never changes a seeded result."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from ising_qubo.lowrank import LowRankIsing
from ising_qubo.solvers import get_solver
from ising_qubo.solvers.kernel_threads import (
    PARALLEL_MIN_SECONDS,
    ThreadChooser,
    kernel_threads,
    threads_for,
)


def test_rule_one_thread_for_one_task_short_or_unknown_calls():
    long = 10 * PARALLEL_MIN_SECONDS
    assert threads_for(1, long, 8) == 1  # one replica: nothing to share
    assert threads_for(8, None, 8) == 1  # unknown cost (a run's first call)
    assert threads_for(8, PARALLEL_MIN_SECONDS / 2, 8) == 1  # too short to pay a section
    assert threads_for(3, long, 8) == 3  # never more threads than tasks
    assert threads_for(8, long, 2) == 2  # never more than the cap
    assert threads_for(8, long, 1) == 1


def test_chooser_learns_the_one_thread_cost_from_its_calls():
    chooser = ThreadChooser(cap=4)
    assert chooser.threads(8, 100) == 1  # nothing measured yet
    chooser.record(8 * 100, 0.8)  # 1 ms per task-sweep on one thread
    assert chooser.threads(8, 100) == 4  # 0.8 s estimated: parallel
    assert chooser.threads(8, 1) == 1  # 8 ms estimated: one thread
    chooser.threads(8, 100)  # a parallel call on 4 threads ...
    chooser.record(8 * 100, 0.2)  # ... taking 0.2 s costs 4 x 0.2 on one thread
    assert chooser.cost == pytest.approx(1e-3)


def test_kernel_threads_sets_and_restores_numba_threads():
    before = numba.get_num_threads()
    with kernel_threads(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    with kernel_threads(10 * before):  # never above the count it started with
        assert numba.get_num_threads() == before
    with pytest.raises(RuntimeError), kernel_threads(1):
        raise RuntimeError("restored on errors too")
    assert numba.get_num_threads() == before


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
def test_seeded_torch_sa_is_the_same_on_one_thread_and_on_two():
    """Each replica has its own random stream, so how many threads run the replicas does
    not change the states: a seeded run with every call forced parallel equals one with
    every call on one thread."""
    rng = np.random.default_rng(3)
    n = 60
    blocks = []
    for start in range(0, n, 20):
        J = rng.normal(size=(20, 20))
        J = np.triu(J, 1)
        blocks.append((np.arange(start, start + 20), J + J.T))
    model = LowRankIsing(
        rng.normal(size=n), blocks, rng.normal(size=(2, n)), rng.normal(size=(2, n))
    )
    sampler = get_solver("torch-sa")
    results = []
    for forced in (1, 2):
        original = ThreadChooser.threads

        def force(self, tasks, sweeps, forced=forced):
            self.used = min(forced, tasks)
            return self.used

        ThreadChooser.threads = force  # type: ignore[method-assign]
        try:
            results.append(sampler.sample_structured(model, num_reads=6, num_sweeps=300, seed=7))
        finally:
            ThreadChooser.threads = original  # type: ignore[method-assign]
    one, two = (np.asarray(r.record.sample) for r in results)
    assert np.array_equal(one, two)
    assert np.allclose(results[0].record.energy, model.energies(one))
