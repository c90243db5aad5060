"""torch-sa beyond the common solver checks: backends, batches, structured problems."""

from __future__ import annotations

import os
import subprocess
import sys

import dimod
import numpy as np
import pytest
from conftest import assert_local_minima, brute_force_minimum, random_bqm

import ising_qubo
from ising_qubo.lowrank import LowRankIsing


@pytest.fixture(scope="module")
def sampler():
    return ising_qubo.get_solver("torch-sa")


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("density", [0.05, 1.0])  # CSR/colour path and dense path
def test_backends_reach_optimum_and_local_minima(sampler, backend, density):
    for seed in range(2):
        bqm = random_bqm(14, "SPIN", seed=seed, density=density)
        result = sampler.sample(bqm, backend=backend, num_reads=16, num_sweeps=300, seed=seed)
        assert result.info["backend"] == backend
        np.testing.assert_allclose(result.record.energy, bqm.energies(result), atol=1e-9)
        assert result.first.energy == pytest.approx(brute_force_minimum(bqm), abs=1e-9)
        assert_local_minima(bqm, result)


@pytest.mark.parametrize("n,density", [(300, 0.02), (120, 0.9)])
def test_numba_kernel_is_reproducible_across_threads(sampler, n, density):
    bqm = random_bqm(n, "BINARY", seed=3, density=density)
    a = sampler.sample(bqm, num_reads=8, num_sweeps=200, seed=11)
    b = sampler.sample(bqm, num_reads=8, num_sweeps=200, seed=11)
    np.testing.assert_array_equal(a.record.sample, b.record.sample)
    c = sampler.sample(bqm, num_reads=8, num_sweeps=200, seed=12)
    assert not np.array_equal(a.record.sample, c.record.sample)
    assert_local_minima(bqm, a)


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_batch_gives_each_problem_its_own_answer(sampler, backend):
    bqms = [
        random_bqm(n, vt, seed=n, density=d)
        for n, vt, d in [
            (6, "SPIN", 1.0),
            (12, "BINARY", 0.5),
            (1, "SPIN", 1.0),
            (14, "SPIN", 0.2),
            (9, "BINARY", 1.0),
        ]
    ]
    bqms[2] = dimod.BinaryQuadraticModel({"only": 3.0}, {}, 0.5, "BINARY")
    results = sampler.sample_batch(bqms, num_reads=16, num_sweeps=300, seed=0, backend=backend)
    assert len(results) == len(bqms)
    for bqm, result in zip(bqms, results):
        assert result.vartype is bqm.vartype and set(result.variables) == set(bqm.variables)
        np.testing.assert_allclose(result.record.energy, bqm.energies(result), atol=1e-9)
        assert result.first.energy == pytest.approx(brute_force_minimum(bqm), abs=1e-9)
        assert len(result) == 16


def test_batch_keeps_each_schedule():
    # Scales 1e-3 and 1e3 apart: a shared schedule would freeze one and boil the other.
    small = random_bqm(12, "SPIN", seed=1)
    large = random_bqm(12, "SPIN", seed=2)
    small.scale(1e-3)
    large.scale(1e3)
    results = ising_qubo.get_solver("torch-sa").sample_batch(
        [small, large], num_reads=8, num_sweeps=300, seed=0
    )
    ranges = results[0].info["beta_range"]
    assert ranges[0][0] > 100 * ranges[1][0]
    for bqm, result in zip([small, large], results):
        assert result.first.energy == pytest.approx(brute_force_minimum(bqm), rel=1e-9)


def random_structured(n_blocks=3, size=4, rank=2, seed=0) -> LowRankIsing:
    rng = np.random.default_rng(seed)
    n = n_blocks * size
    blocks = [
        (np.arange(b * size, (b + 1) * size), rng.normal(size=(size, size)))
        for b in range(n_blocks)
    ]
    lowrank = [
        (rng.normal(size=n) * (rng.random(n) < 0.6), rng.normal(size=n)) for _ in range(rank)
    ]
    return LowRankIsing.from_binary(
        rng.normal(size=n),
        blocks,
        lowrank,
        offset=0.7,
        labels=[f"layer{i // size}:{i % size}" for i in range(n)],
    )


def test_structured_binary_form_matches_direct_binary_energy():
    rng = np.random.default_rng(5)
    n = 8
    linear = rng.normal(size=n)
    Q = rng.normal(size=(4, 4))
    p, q = rng.normal(size=n), rng.normal(size=n)
    problem = LowRankIsing.from_binary(linear, [(np.array([1, 3, 5, 7]), Q)], [(p, q)], 0.3)
    x = rng.integers(0, 2, size=(50, n)).astype(float)
    block = x[:, [1, 3, 5, 7]]
    direct = x @ linear + np.einsum("ki,ij,kj->k", block, Q, block) + (x @ p) * (x @ q) + 0.3
    np.testing.assert_allclose(problem.energies(2 * x - 1), direct, atol=1e-12)


def test_structured_equals_its_dense_bqm():
    problem = random_structured()
    bqm = problem.to_bqm()
    spins = np.random.default_rng(1).choice([-1.0, 1.0], size=(64, problem.num_variables))
    np.testing.assert_allclose(
        problem.energies(spins), bqm.energies((spins, problem.labels)), atol=1e-10
    )


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_sample_structured_reaches_dense_optimum(sampler, backend):
    problem = random_structured(seed=3)
    bqm = problem.to_bqm()
    result = sampler.sample_structured(
        problem, num_reads=32, num_sweeps=500, seed=0, backend=backend
    )
    assert result.info["backend"] == backend
    assert list(result.variables) == problem.labels
    np.testing.assert_allclose(result.record.energy, bqm.energies(result), atol=1e-9)
    assert result.first.energy == pytest.approx(brute_force_minimum(bqm), abs=1e-9)
    assert_local_minima(bqm, result)


def test_structured_input_errors(sampler):
    with pytest.raises(ValueError, match="block 0"):
        LowRankIsing(np.zeros(3), [(np.array([0, 1]), np.ones((2, 2)))])
    with pytest.raises(ValueError, match="rank"):
        LowRankIsing(np.zeros(3), lowrank_u=np.ones((1, 3)), lowrank_v=np.ones((2, 3)))
    with pytest.raises(TypeError, match="LowRankIsing"):
        sampler.sample_structured(random_bqm(3, "SPIN", 0))


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_structured_larger_problem_energies_and_local_minima(sampler, backend):
    # six dense blocks of 20: sparse enough for the colour-class path on torch
    problem = random_structured(n_blocks=6, size=20, rank=2, seed=4)
    bqm = problem.to_bqm()
    result = sampler.sample_structured(
        problem, num_reads=6, num_sweeps=200, seed=1, backend=backend
    )
    np.testing.assert_allclose(result.record.energy, bqm.energies(result), atol=1e-8)
    assert_local_minima(bqm, result)
    reference = ising_qubo.solve(bqm, "neal", num_reads=20, num_sweeps=2000, seed=0)
    assert result.first.energy <= reference.first.energy + 0.02 * abs(reference.first.energy)


def test_torch_batch_of_dense_problems_uses_padding_correctly(sampler):
    # all dense, sizes differ: the padded path; padding must never leak into answers
    bqms = [
        random_bqm(n, vt, seed=50 + n, density=1.0)
        for n, vt in [(5, "SPIN"), (13, "BINARY"), (9, "SPIN"), (14, "BINARY")]
    ]
    results = sampler.sample_batch(bqms, num_reads=16, num_sweeps=300, seed=3, backend="torch")
    for bqm, result in zip(bqms, results):
        assert set(result.variables) == set(bqm.variables)
        np.testing.assert_allclose(result.record.energy, bqm.energies(result), atol=1e-9)
        assert result.first.energy == pytest.approx(brute_force_minimum(bqm), abs=1e-9)
        assert_local_minima(bqm, result)


def test_sample_batch_warm_start_is_used_per_problem():
    # all-zero and all-one are both local minima; a cold one-sweep anneal keeps a warm start
    n = 10
    bqm = dimod.BinaryQuadraticModel(
        {i: 1.0 for i in range(n)},
        {(i, j): -2.0 for i in range(n) for j in range(i + 1, n)},
        0.0,
        dimod.BINARY,
    )
    sampler = ising_qubo.get_solver("torch-sa")
    zeros, ones = np.zeros((1, n), dtype=int), np.ones((1, n), dtype=int)
    results = sampler.sample_batch(
        [bqm, bqm],
        num_reads=1,
        num_sweeps=1,
        seed=0,
        beta_range=(1e3, 1e3),
        initial_states=[zeros, ones],
    )
    assert results[0].first.energy == 0.0
    assert results[1].first.energy == bqm.energy(dict(enumerate(ones[0])))
    with pytest.raises(ValueError, match="initial_states"):
        sampler.sample_batch([bqm], initial_states=[zeros, ones])
    with pytest.raises(ValueError, match=r"initial_states\[0\]"):
        sampler.sample_batch([bqm], initial_states=[np.full((1, n), 3)])


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to see a change")
def test_compiled_solves_keep_torchs_thread_count():
    """numba's OpenMP pool used to raise torch's thread count to all cores (ignoring
    OMP_NUM_THREADS=1), so training after a solve rounded differently from a resumed run
    that had not solved. Fresh process: the pool starts here, not in this test session."""
    script = """
import os, numba, numpy as np, torch
import ising_qubo
from ising_qubo.bench.instances import sk_instance
from ising_qubo.lowrank import LowRankIsing
assert torch.get_num_threads() == 1
rng = np.random.default_rng(0)
bqm = sk_instance(32, 0).bqm
ising_qubo.get_solver("torch-sa").sample(bqm, num_reads=4, num_sweeps=20, seed=0)
block = (np.arange(8), rng.normal(size=(8, 8)))
problem = LowRankIsing.from_binary(rng.normal(size=8), [block], [], 0.0)
ising_qubo.get_solver("torch-sa").sample_structured(problem, num_reads=2, num_sweeps=5, seed=0,
                                                   cardinalities=[(problem.labels, 4)])
print(torch.get_num_threads(), numba.get_num_threads())
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    torch_threads, numba_threads = map(int, result.stdout.split())
    assert torch_threads == 1  # as the user asked
    assert numba_threads == os.cpu_count()  # the solver still uses every core


def test_pacing_rule_sizes_calls_to_two_percent_of_the_limit():
    from ising_qubo.solvers.pacing import Pacer, call_seconds

    assert call_seconds(None) == 0.25  # no limit: Ctrl-C is still noticed within 0.25 s
    assert call_seconds(1.0) == pytest.approx(0.02)
    assert call_seconds(0.01) == 0.002 and call_seconds(1000.0) == 0.25
    pacer = Pacer(1.0, threads=4)
    assert pacer.block(10, 100) == (4, 1)  # cost unknown: one sweep, a replica per thread
    assert pacer.sweeps(4, 100) == 1
    pacer.record(4, 0.0004)  # 1e-4 s per replica-sweep: 200 replica-sweeps per 0.02 s
    assert pacer.sweeps(4, 100) == 50
    assert pacer.block(10, 100) == (4, 50)
    assert pacer.block(10, 5) == (10, 5)  # all that is left fits in one call
    assert pacer.sweeps(4, 7) == 7
