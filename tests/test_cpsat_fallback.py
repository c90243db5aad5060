"""CP-SAT's ``initial_states``: the solution hint, and the fallback answer when CP-SAT ends
without a solution of its own.

A run that ends before CP-SAT finds anything cannot be produced reliably by a time limit,
so the fallback tests wrap the solve (``cpsat._solve``): CP-SAT runs with no time at all,
and whatever it found is dropped, so the call ends with UNKNOWN and no solution.
Feasibility and energies are recomputed here by brute force, independently of the sampler.
"""

from __future__ import annotations

import itertools

import dimod
import numpy as np
import pytest
import torch
from conftest import random_bqm
from ortools.sat.python import cp_model

from ising_qubo.nets.models import build
from ising_qubo.pruning.problem import PruningProblem
from ising_qubo.solvers import cpsat
from ising_qubo.solvers.cpsat import CPSATSampler

N = 8
LABELS = list(range(N))
BINARY = np.array(list(itertools.product((0, 1), repeat=N)), dtype=np.int8)  # x, LABELS order

COUNT_BUDGET = {
    "groups": [[0, 1, 2], [3, 4, 5], [6, 7]],
    "constant": 1,
    "linear": [2, 3, 1],
    "pairs": [(0, 1, 1), (1, 2, 2), (2, 2, 1)],
    "limit": 14,
    "floors": [1, 0, 1],
}
BUDGET_COSTS = {v: 0.5 + 0.37 * v for v in LABELS}


def counts_of(x: np.ndarray) -> list[np.ndarray]:
    return [x[:, group].sum(axis=1) for group in COUNT_BUDGET["groups"]]


def count_budget_cost(x: np.ndarray) -> np.ndarray:
    counts = counts_of(x)
    cost = COUNT_BUDGET["constant"] + sum(a * k for a, k in zip(COUNT_BUDGET["linear"], counts))
    return cost + sum(b * counts[g] * counts[h] for g, h, b in COUNT_BUDGET["pairs"])


def count_budget_feasible(x: np.ndarray) -> np.ndarray:
    floors = np.all([k >= f for k, f in zip(counts_of(x), COUNT_BUDGET["floors"])], axis=0)
    return floors & (count_budget_cost(x) <= COUNT_BUDGET["limit"])


# each constraint: (sampler parameters, which binary rows meet it)
CONSTRAINTS = {
    "cardinality": (
        dict(cardinality=3, cardinality_sense="<="),
        lambda x: x.sum(axis=1) <= 3,
    ),
    "cardinalities": (
        dict(cardinalities=[([0, 2, 4, 6], 2), ([1, 3], 1)]),
        lambda x: (x[:, [0, 2, 4, 6]].sum(axis=1) == 2) & (x[:, [1, 3]].sum(axis=1) == 1),
    ),
    "budget": (
        dict(budget_costs=BUDGET_COSTS, budget=4.0),
        # well inside the real budget: the sampler rounds it conservatively
        lambda x: x @ np.array([BUDGET_COSTS[v] for v in LABELS]) <= 4.0 - 1e-3,
    ),
    "count_budget": (dict(count_budget=COUNT_BUDGET), count_budget_feasible),
}


def without_solution(monkeypatch, bound: float | None = None) -> None:
    """CP-SAT ends as when its time runs out before any solution: UNKNOWN, none reported
    (and ``bound``, if given, reported as its proven bound)."""
    solve = cpsat._solve

    def solve_without_time(solver, model, collector, stop):
        solver.parameters.max_time_in_seconds = 0.0
        solve(solver, model, collector, stop)
        collector.solutions.clear()
        if bound is not None:
            solver.best_bound_callback(bound)
        return cp_model.UNKNOWN

    monkeypatch.setattr(cpsat, "_solve", solve_without_time)


@pytest.fixture
def no_solution(monkeypatch):
    without_solution(monkeypatch)


def in_vartype(x: np.ndarray, vartype: str) -> np.ndarray:
    return 2 * x - 1 if vartype == "SPIN" else x


def energies(bqm: dimod.BinaryQuadraticModel, x: np.ndarray) -> np.ndarray:
    return bqm.energies((in_vartype(x, bqm.vartype.name), LABELS))


def binary_rows(sampleset: dimod.SampleSet) -> np.ndarray:
    states = sampleset.record.sample[:, [sampleset.variables.index(v) for v in LABELS]]
    return (states + 1) // 2 if sampleset.vartype is dimod.SPIN else states


def starts_around_the_constraint(bqm, feasible):
    """The lowest-energy infeasible state first (what a careless fallback would return),
    then two feasible ones that are not the optimum."""
    order = np.argsort(energies(bqm, BINARY), kind="stable")
    infeasible = [i for i in order if not feasible[i]]
    good = [i for i in order if feasible[i]]
    assert infeasible and len(good) >= 6
    return BINARY[[infeasible[0], good[5], good[2]]]


@pytest.mark.parametrize("vartype", ["BINARY", "SPIN"])
@pytest.mark.parametrize("kind", sorted(CONSTRAINTS))
def test_fallback_returns_the_best_initial_state_meeting_the_constraints(
    no_solution, kind, vartype
):
    bqm = random_bqm(N, vartype, seed=3)
    params, meets = CONSTRAINTS[kind]
    starts = starts_around_the_constraint(bqm, meets(BINARY))
    # given as dicts in the problem's vartype, in another variable order than the model's
    given = [dict(zip(LABELS[::-1], row[::-1])) for row in in_vartype(starts, vartype)]
    result = CPSATSampler().sample(bqm, initial_states=given, time_limit=5, **params)
    assert len(result) == 1
    np.testing.assert_array_equal(binary_rows(result)[0], starts[2])  # good[2] beats good[5]
    assert result.first.energy == pytest.approx(energies(bqm, starts[2:])[0], abs=1e-12)
    assert result.info["status"] == "UNKNOWN"
    assert result.info["fallback"] == "initial_state"
    assert result.info["bound"] == -np.inf  # CP-SAT never proved one
    if kind == "count_budget":
        assert result.info["count_budget"]["costs"] == [count_budget_cost(starts[2:])[0]]


@pytest.mark.parametrize("kind", sorted(CONSTRAINTS))
def test_fallback_never_returns_a_state_breaking_a_constraint(no_solution, kind):
    bqm = random_bqm(N, "BINARY", seed=3)
    params, meets = CONSTRAINTS[kind]
    bad = starts_around_the_constraint(bqm, meets(BINARY))[:1]
    with pytest.raises(RuntimeError, match="none of the 1 initial_states meets the constraints"):
        CPSATSampler().sample(bqm, initial_states=(bad, LABELS), **params)
    with pytest.raises(RuntimeError, match="raise time_limit or pass initial_states"):
        CPSATSampler().sample(bqm, **params)


def test_without_constraints_the_fallback_is_the_best_of_the_starts_and_zeros(no_solution):
    bqm = random_bqm(N, "SPIN", seed=4)
    values = energies(bqm, BINARY)
    zeros = values[0]  # BINARY[0] is the all-zeros state
    worse, better = BINARY[np.flatnonzero(values > zeros)[:2]], BINARY[[np.argmin(values)]]
    assert len(worse) == 2 and values.min() < zeros

    result = CPSATSampler().sample(bqm, initial_states=(2 * worse - 1, LABELS))
    assert result.info["fallback"] == "zeros"
    np.testing.assert_array_equal(binary_rows(result)[0], np.zeros(N))
    assert result.first.energy == pytest.approx(zeros)

    both = np.concatenate([worse, better])
    result = CPSATSampler().sample(bqm, initial_states=(2 * both - 1, LABELS))
    assert result.info["fallback"] == "initial_state"
    np.testing.assert_array_equal(binary_rows(result)[0], better[0])
    assert result.first.energy == pytest.approx(values.min())

    assert CPSATSampler().sample(bqm).info["fallback"] == "zeros"  # any state is feasible


def test_a_bound_cp_sat_proved_is_reported_with_the_fallback(monkeypatch):
    bqm = random_bqm(N, "BINARY", seed=3)  # real biases: CP-SAT works in units of resolution
    without_solution(monkeypatch, bound=-1234.0)
    result = CPSATSampler().sample(bqm)  # no constraint: all zeros is the fallback
    resolution = result.info["resolution"]
    assert result.info["bound"] == pytest.approx(-1234.0 * resolution + bqm.offset)
    assert result.info["fallback"] == "zeros" and result.info["status"] == "UNKNOWN"


def test_the_hint_is_a_complete_solution(monkeypatch):
    """Every model variable is hinted, and fixing them all to the hint is a solution: the
    auxiliary products and counts agree with the state (a wrong y_ij or k_g would make the
    fixed model infeasible)."""
    solve = cpsat._solve
    hinted = {}

    def solve_fixed_to_the_hint(solver, model, collector, stop):
        hinted["vars"] = len(set(model.proto.solution_hint.vars))
        hinted["model"] = len(model.proto.variables)
        solver.parameters.fix_variables_to_their_hinted_value = True
        return solve(solver, model, collector, stop)

    monkeypatch.setattr(cpsat, "_solve", solve_fixed_to_the_hint)
    bqm = random_bqm(N, "SPIN", seed=7)
    feasible = count_budget_feasible(BINARY)
    start = BINARY[np.flatnonzero(feasible)[len(np.flatnonzero(feasible)) // 2]]
    result = CPSATSampler().sample(
        bqm, count_budget=COUNT_BUDGET, initial_states=(2 * start[None, :] - 1, LABELS)
    )
    assert hinted["vars"] == hinted["model"] > N  # products and counts hinted too
    assert result.info["status"] == "OPTIMAL" and "fallback" not in result.info
    np.testing.assert_array_equal(binary_rows(result)[0], start)


@pytest.mark.parametrize("kind", [None, *sorted(CONSTRAINTS)])
def test_the_hint_does_not_change_the_optimum(kind):
    bqm = random_bqm(N, "BINARY", seed=11)
    params, meets = CONSTRAINTS[kind] if kind else ({}, lambda x: np.ones(len(x), bool))
    feasible = meets(BINARY)
    optimum = energies(bqm, BINARY)[feasible].min()
    if kind is None:
        assert optimum == pytest.approx(dimod.ExactSolver().sample(bqm).first.energy)
        starts = BINARY[[5, 77]]
    else:
        starts = starts_around_the_constraint(bqm, feasible)  # an infeasible hint first
    for extra in ({}, {"initial_states": (starts, LABELS)}):
        result = CPSATSampler().sample(bqm, num_workers=1, **params, **extra)
        assert result.info["status"] == "OPTIMAL"
        assert result.first.energy == pytest.approx(optimum, abs=1e-9)
        assert meets(binary_rows(result)).all()


def test_initial_states_are_checked_by_dimods_parser():
    bqm = random_bqm(4, "BINARY", seed=1)
    with pytest.raises(ValueError):
        CPSATSampler().sample(bqm, initial_states=([[0, 1]], [0, 1]))  # not every variable


# ----- the pruning problem under a whole-network budget --------------------------------------


@pytest.fixture(scope="module")
def resnet_problem():
    torch.manual_seed(0)
    model, inputs = build("resnet20").eval(), torch.randn(8, 3, 32, 32)
    return PruningProblem.from_model(model, inputs, keep=0.5, budget="global")


def test_global_pruning_falls_back_to_a_start_meeting_the_budget(no_solution, resnet_problem):
    problem = resnet_problem
    solution = problem.solve("cpsat", time_limit=5, num_workers=1)
    assert problem.global_budget.meets(solution.kept)
    assert solution.budget["status"] == "UNKNOWN"
    assert solution.budget["fallback"] == "initial_state"
    # the start: the all-kept state brought onto the budget and descended
    spins, _ = problem._polish_global(np.ones(problem.num_variables, dtype=np.int8))
    start = problem.masks_from_state((spins > 0).astype(np.int8))
    assert solution.energy <= problem.energy(start) + 1e-9


@pytest.mark.slow
def test_global_pruning_with_cpsat_at_a_short_time_limit_meets_the_budget(resnet_problem):
    # building CP-SAT's model of ResNet-20 alone takes about the limit: without a start
    # this ended in "no solution found"
    problem = resnet_problem
    solution = problem.solve("cpsat", time_limit=0.2, num_workers=1)
    assert problem.global_budget.meets(solution.kept)
    assert solution.budget["status"] in ("UNKNOWN", "FEASIBLE", "OPTIMAL")
