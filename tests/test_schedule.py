"""Annealing temperature ranges: neal's rule against dwave-samplers, the fitted rule
against flip energies recomputed here in plain numpy."""

from __future__ import annotations

import math

import dimod
import numpy as np
import pytest
from conftest import random_bqm

import ising_qubo
from ising_qubo.solvers import schedule
from ising_qubo.solvers._common import ArrayModel
from ising_qubo.solvers.schedule import default_beta_range, fitted_beta_range


def arrays(bqm: dimod.BinaryQuadraticModel):
    model = ArrayModel.from_bqm(bqm, dimod.SPIN)
    return model.linear, model.rows, model.cols, model.data


def sk(n: int, seed: int) -> dimod.BinaryQuadraticModel:
    rng = np.random.default_rng(seed)
    rows, cols = np.triu_indices(n, 1)
    return dimod.BinaryQuadraticModel.from_numpy_vectors(
        np.zeros(n), (rows, cols, rng.normal(size=len(rows))), 0.0, dimod.SPIN
    )


def dense_coupling_matrix(h, rows, cols, data) -> np.ndarray:
    J = np.zeros((len(h), len(h)))
    np.add.at(J, (rows, cols), data)
    return J + J.T


def numpy_descent(J: np.ndarray, h: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Strict single-flip descent, one spin at a time, in plain numpy."""
    s = s.copy()
    improved = True
    while improved:
        improved = False
        for i in range(len(s)):
            if -2.0 * s[i] * (h[i] + J[i] @ s) < -1e-12:
                s[i] = -s[i]
                improved = True
    return s


def test_neal_rule_matches_dwave_samplers():
    from dwave.samplers.sa.sampler import _default_ising_beta_range

    for seed in range(3):
        bqm = random_bqm(30, "SPIN", seed=seed, density=0.3)
        ours = default_beta_range(*arrays(bqm))
        theirs = _default_ising_beta_range(bqm.linear, bqm.quadratic)
        assert ours == pytest.approx(theirs, rel=1e-12)


def test_fitted_range_matches_the_flip_energies_it_describes():
    """hot: the median random-state flip accepted with probability 1/2; cold: the 1 %
    quantile of excitations at local minima accepted with probability 1 %. Recomputed
    from independent random states and an independent numpy descent."""
    bqm = sk(200, seed=3)
    h, rows, cols, data = arrays(bqm)
    hot, cold = fitted_beta_range(h, rows, cols, data)
    J = dense_coupling_matrix(h, rows, cols, data)
    rng = np.random.default_rng(99)
    starts = rng.choice([-1.0, 1.0], size=(8, len(h)))
    random_changes = np.abs(2 * (starts @ J + h)).ravel()
    assert math.exp(-hot * np.median(random_changes)) == pytest.approx(0.5, abs=0.05)
    minima = np.array([numpy_descent(J, h, s) for s in starts])
    excitations = (-2 * minima * (minima @ J + h)).ravel()
    assert excitations.min() >= -1e-9  # they are local minima
    accepted = math.exp(-cold * np.quantile(excitations[excitations > 0], 0.01))
    assert 0.002 < accepted < 0.05
    # neal's rule, for contrast: worst-case bounds, orders of magnitude outside
    neal_hot, neal_cold = default_beta_range(h, rows, cols, data)
    assert neal_hot < hot / 10 and neal_cold > 1000 * cold


def test_fitted_range_scales_inversely_with_the_energy():
    h, rows, cols, data = arrays(random_bqm(40, "SPIN", seed=4, density=0.5))
    hot, cold = fitted_beta_range(h, rows, cols, data)
    hot2, cold2 = fitted_beta_range(8 * h, rows, cols, 8 * data)
    assert (hot2, cold2) == pytest.approx((hot / 8, cold / 8), rel=1e-12)


def test_fitted_range_dense_and_sparse_paths_agree(monkeypatch):
    h, rows, cols, data = arrays(sk(64, seed=5))
    dense = fitted_beta_range(h, rows, cols, data)
    monkeypatch.setattr(schedule, "_DENSE_FRACTION", 2.0)  # never dense: CSR kernels
    assert fitted_beta_range(h, rows, cols, data) == pytest.approx(dense, rel=1e-12)


def test_fitted_range_degenerate_problems():
    assert fitted_beta_range(np.zeros(5), np.zeros(0, int), np.zeros(0, int), np.zeros(0)) == (
        0.1,
        1.0,
    )
    # fields only: every flip costs 2|h|, and cold >= hot
    hot, cold = fitted_beta_range(np.full(6, 0.5), np.zeros(0, int), np.zeros(0, int), np.zeros(0))
    assert math.exp(-hot * 1.0) == pytest.approx(0.5)
    assert math.exp(-cold * 1.0) == pytest.approx(0.01)


def test_fitted_range_anneals_sk_better_than_neals_rule():
    """Why it is the default: at equal sweeps on Gaussian couplings, neal's range spends
    most sweeps where every flip or none is accepted (docs/benchmarks.md, target 3)."""
    bqm = sk(256, seed=1)
    sampler = ising_qubo.get_solver("torch-sa")
    fitted = sampler.sample(bqm, num_reads=16, num_sweeps=300, seed=2)
    neal = sampler.sample(bqm, num_reads=16, num_sweeps=300, seed=2, beta_range="neal")
    assert neal.info["beta_range"] == [pytest.approx(default_beta_range(*arrays(bqm)))]
    assert fitted.info["beta_range"] == [pytest.approx(fitted_beta_range(*arrays(bqm)))]
    assert fitted.record.energy.mean() < neal.record.energy.mean()


def test_fitted_range_of_structured_problem_equals_its_dense_form():
    """Low-rank terms counted in every flip as the kernel counts them: the structured
    problem and its dense BQM (no low-rank terms) give the same range."""
    from ising_qubo.lowrank import LowRankIsing

    rng = np.random.default_rng(6)
    n, size = 24, 8
    blocks = [
        (np.arange(b * size, (b + 1) * size), rng.normal(size=(size, size)))
        for b in range(n // size)
    ]
    lowrank = [(rng.normal(size=n), rng.normal(size=n)) for _ in range(2)]
    problem = LowRankIsing.from_binary(rng.normal(size=n), blocks, lowrank, offset=0.0)
    indptr, indices, data = problem.csr()
    rows = np.repeat(np.arange(n), np.diff(indptr))
    upper = rows < indices
    structured = fitted_beta_range(
        problem.h,
        rows[upper],
        indices[upper],
        data[upper],
        lowrank=(problem.lowrank_u, problem.lowrank_v),
    )
    dense = fitted_beta_range(*arrays(problem.to_bqm()))
    assert structured == pytest.approx(dense, rel=1e-9)
    without = fitted_beta_range(problem.h, rows[upper], indices[upper], data[upper])
    assert without != pytest.approx(dense, rel=1e-3)  # the low-rank terms matter here


def test_beta_range_strings_are_checked_with_clear_errors():
    sampler = ising_qubo.get_solver("torch-sa")
    bqm = sk(8, seed=0)
    with pytest.raises(ValueError, match=r"two numbers \(hot, cold\) or 'neal', got 'hot'"):
        sampler.sample(bqm, num_sweeps=5, beta_range="hot")
    from ising_qubo.lowrank import LowRankIsing

    rng = np.random.default_rng(0)
    problem = LowRankIsing.from_binary(
        rng.normal(size=6), [(np.arange(6), rng.normal(size=(6, 6)))], [], 0.0
    )
    with pytest.raises(ValueError, match="'neal' is for spin flips"):
        sampler.sample_structured(
            problem,
            num_reads=2,
            num_sweeps=5,
            beta_range="neal",
            cardinalities=[(problem.labels, 3)],
        )
    result = sampler.sample_structured(problem, num_reads=2, num_sweeps=5, beta_range="neal")
    assert len(result) == 2
