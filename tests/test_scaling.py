"""Integer scaling for CP-SAT: the rounded objective against brute force over every state
of small random problems; conservative budgets; documented edge cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ising_qubo.scaling import auto_resolution, is_integral, scale_budget, scale_objective

N = 8
PAIRS = list(itertools.combinations(range(N), 2))
STATES = np.array(list(itertools.product((0, 1), repeat=N)), dtype=np.int64)


def monomials(states: np.ndarray) -> np.ndarray:
    """Per state: x_i for every i, then x_i x_j for every pair (the order CP-SAT gets:
    linear coefficients, then coupling coefficients)."""
    pairs = np.stack([states[:, i] * states[:, j] for i, j in PAIRS], axis=1)
    return np.concatenate([states, pairs], axis=1)


def random_objective(seed: int, spread: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=N + len(PAIRS)) * spread
    values[rng.random(len(values)) < 0.3] = 0.0  # sparse, like real couplings
    return values


@pytest.mark.parametrize("seed", range(5))
def test_scaled_optimum_is_the_real_optimum(seed):
    values = random_objective(seed)
    scaled = scale_objective(values)
    real = monomials(STATES) @ values
    integer = monomials(STATES) @ scaled.integers  # exact: integer arithmetic
    assert integer.dtype.kind == "i"
    assert np.argmin(integer) == np.argmin(real)
    assert integer.min() * scaled.resolution == pytest.approx(
        real.min(), abs=scaled.energy_error_bound
    )


@pytest.mark.parametrize("seed, resolution", [(0, 0.25), (1, 0.5), (2, 0.1), (3, None)])
def test_error_bound_holds_for_every_state(seed, resolution):
    values = random_objective(seed, spread=3.0)
    scaled = scale_objective(values, resolution)
    errors = np.abs(scaled.integers * scaled.resolution - values)
    assert scaled.max_coefficient_error == pytest.approx(errors.max())
    assert scaled.max_coefficient_error <= scaled.resolution / 2 + 1e-12
    assert scaled.energy_error_bound == pytest.approx(errors.sum())
    real = monomials(STATES) @ values
    approx = monomials(STATES) @ scaled.integers * scaled.resolution
    assert np.max(np.abs(approx - real)) <= scaled.energy_error_bound + 1e-9
    # what the rounding can cost at most: the scaled optimum is within twice the bound
    assert real[np.argmin(approx)] <= real.min() + 2 * scaled.energy_error_bound + 1e-9


def test_coarse_resolution_really_rounds():
    scaled = scale_objective(np.array([0.26, -0.74, 1.0, 0.124]), resolution=0.25)
    assert scaled.integers.tolist() == [1, -3, 4, 0]
    assert scaled.resolution == 0.25
    assert scaled.max_coefficient_error == pytest.approx(0.124)
    assert scaled.energy_error_bound == pytest.approx(0.01 + 0.01 + 0 + 0.124)


def test_integer_objectives_are_exact():
    values = np.array([3.0, -2.0, 0.0, 17.0, -4.0])
    scaled = scale_objective(values)
    assert scaled.resolution == 1.0 and scaled.integers.tolist() == [3, -2, 0, 17, -4]
    assert scaled.max_coefficient_error == 0.0 and scaled.energy_error_bound == 0.0


@pytest.mark.parametrize("values", [np.zeros(6), np.zeros(0)])
def test_all_zero_or_empty_objective(values):
    scaled = scale_objective(values)
    assert scaled.resolution == 1.0
    assert scaled.integers.tolist() == [0] * len(values)
    assert scaled.max_coefficient_error == 0.0 and scaled.energy_error_bound == 0.0


def test_auto_resolution_is_a_power_of_ten_near_the_relative_precision():
    assert auto_resolution(np.array([0.5, -3.7])) == pytest.approx(1e-9)  # 3.7e-9 -> 1e-9
    assert auto_resolution(np.array([250.0, 0.1]), 1e-3) == pytest.approx(0.1)
    assert auto_resolution(np.array([4.0, -2.0])) == 1.0
    assert auto_resolution(np.zeros(0)) == 1.0
    # integers beyond 2**53 are not exact floats: they get a coarser resolution too
    assert auto_resolution(np.array([2.0**60, 1.0])) == pytest.approx(1e9)
    assert is_integral(np.array([1.0, -2.0])) and not is_integral(np.array([1.5]))
    assert not is_integral(np.array([np.inf]))


def test_huge_range_stays_in_range_and_within_the_bound():
    values = np.array([1e12, -3e11, 2.5e-3, -7e-4, 4.2])
    scaled = scale_objective(values)
    assert scaled.resolution == pytest.approx(1e3)
    assert np.max(np.abs(scaled.integers)) < 2**40
    assert scaled.integers[2:].tolist() == [0, 0, 0]  # far below the resolution: dropped
    assert scaled.energy_error_bound == pytest.approx(2.5e-3 + 7e-4 + 4.2)
    assert scaled.energy_error_bound <= len(values) * scaled.resolution / 2


def test_too_fine_resolution_is_refused():
    with pytest.raises(ValueError, match=r"too fine.*2\*\*40"):
        scale_objective(np.array([1e12, 1.0]), resolution=1e-3)


@pytest.mark.parametrize("resolution", [0.0, -1.0, float("nan"), float("inf")])
def test_invalid_resolution_is_refused(resolution):
    with pytest.raises(ValueError, match="resolution must be a positive finite number"):
        scale_objective(np.array([1.0, 2.5]), resolution)


@pytest.mark.parametrize("seed, resolution", [(0, None), (1, 0.3), (2, 1.0), (3, 0.05)])
def test_scaled_budget_is_conservative(seed, resolution):
    rng = np.random.default_rng(seed)
    costs = rng.uniform(0.1, 5.0, size=N)
    budget = float(costs.sum() * rng.uniform(0.3, 0.7))
    int_costs, int_budget, used = scale_budget(costs, budget, resolution)
    if resolution is not None:
        assert used == resolution
    integer_ok = STATES @ int_costs <= int_budget
    real_ok = STATES @ costs <= budget
    assert integer_ok.any(), "the rounded budget should not exclude everything here"
    assert not np.any(integer_ok & ~real_ok), "a state meets the integer budget only"
    # rounding is to the nearest multiple that keeps that: at most one resolution off
    assert np.all(int_costs * used >= costs) and np.all(int_costs * used < costs + used)
    assert int_budget * used <= budget < (int_budget + 1) * used


def test_integer_budget_is_exact():
    costs = np.array([3.0, 5.0, 2.0, 4.0])
    int_costs, int_budget, used = scale_budget(costs, 7.0)
    assert used == 1.0 and int_costs.tolist() == [3, 5, 2, 4] and int_budget == 7
    states = np.array(list(itertools.product((0, 1), repeat=4)), dtype=float)
    assert np.array_equal(states @ int_costs <= int_budget, states @ costs <= 7.0)


@pytest.mark.parametrize("costs, budget", [([1.0, np.nan], 3.0), ([1.0, 2.0], float("inf"))])
def test_non_finite_budget_is_refused(costs, budget):
    with pytest.raises(ValueError, match="finite"):
        scale_budget(np.array(costs), budget)
