"""Defaults that finish (issue 15): CP-SAT's time limit per group, the energy built once,
large groups solved on their structured block by swaps, and the threshold between the two
paths. References: brute force over every budget-meeting state, and energies recomputed
from each group's dense dimod BQM."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import ising_qubo.pruning.energies.redundancy as redundancy_module
import ising_qubo.pruning.problem as problem_module
from ising_qubo import prune_model
from ising_qubo.pruning.energies.redundancy import RedundancyEnergy
from ising_qubo.pruning.problem import PruningProblem, exact_group_seconds
from ising_qubo.solvers.cpsat import CPSATSampler


class TwoGroupNet(nn.Module):
    """Two prunable groups, of ``first`` and ``second`` units; the classifier is kept."""

    def __init__(self, first: int, second: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, first, 3, padding=1)
        self.conv2 = nn.Conv2d(first, second, 3, padding=1)
        self.fc = nn.Linear(second, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean(dim=(2, 3)))


def two_group_problem(first: int, second: int, seed: int = 0, keep: float = 0.5):
    torch.manual_seed(seed)
    model = TwoGroupNet(first, second)
    problem = PruningProblem.from_model(model, torch.randn(2, 3, 6, 6), keep=keep)
    assert [g.size for g in problem.groups] == [first, second]
    return problem


def dense_energy(problem: PruningProblem, masks) -> float:
    """The energy recomputed from every group's dense dimod BQM (no budget term)."""
    total = 0.0
    for group in problem.groups:
        bqm = problem.to_bqm(group.name, budget=False)
        sample = dict(zip(group.labels, masks[group.name].astype(int)))
        total += bqm.energy(sample)
    return total


def brute_force_group(problem: PruningProblem, group) -> tuple[float, np.ndarray]:
    """The least energy of ``group`` keeping exactly its count, over every such state."""
    bqm = problem.to_bqm(group.name, budget=False)
    k = problem.keep_counts[group.name]
    best = (np.inf, None)
    for kept in itertools.combinations(range(group.size), k):
        x = np.zeros(group.size, dtype=int)
        x[list(kept)] = 1
        value = bqm.energy(dict(zip(group.labels, x)))
        if value < best[0] - 1e-12:
            best = (value, x.astype(bool))
    return best


def test_exact_solver_gets_the_default_time_limit_per_group_and_reports_it(monkeypatch):
    problem = two_group_problem(8, 10)
    limits = []
    original = CPSATSampler.sample

    def spy(self, bqm, **params):
        limits.append(params.get("time_limit"))
        return original(self, bqm, **params)

    monkeypatch.setattr(CPSATSampler, "sample", spy)
    solution = problem.solve("cpsat")
    # one call per group, each with an even share of the default
    assert limits == [pytest.approx(problem_module.EXACT_SECONDS / 2)] * 2
    assert exact_group_seconds(2) == pytest.approx(problem_module.EXACT_SECONDS / 2)
    for group in problem.groups:
        report = solution.groups[group.name]
        assert report["path"] == "dense"
        assert report["time_limit"] == limits[0]
        assert report["status"] in ("OPTIMAL", "FEASIBLE")
    # groups this small are proven optimal; the brute force agrees
    assert solution.optimal is True
    for group in problem.groups:
        best, _ = brute_force_group(problem, group)
        bqm = problem.to_bqm(group.name, budget=False)
        got = bqm.energy(dict(zip(group.labels, solution.masks[group.name].astype(int))))
        assert got == pytest.approx(best, abs=1e-9)


def test_the_exact_default_is_shared_by_the_groups_with_a_floor():
    share = problem_module.EXACT_SECONDS
    floor = problem_module.EXACT_GROUP_MIN_SECONDS
    assert exact_group_seconds(1) == share
    assert exact_group_seconds(10) == pytest.approx(share / 10)
    assert exact_group_seconds(10_000) == floor
    assert exact_group_seconds(0) == share


def test_a_time_limit_given_replaces_the_default_and_an_unproven_group_says_so(monkeypatch):
    problem = two_group_problem(8, 10)
    limits = []
    original = CPSATSampler.sample

    def unproven(self, bqm, **params):
        limits.append(params.get("time_limit"))
        sampleset = original(self, bqm, **params)
        sampleset.info["status"] = "FEASIBLE"  # as if the limit had ended the search
        return sampleset

    monkeypatch.setattr(CPSATSampler, "sample", unproven)
    solution = problem.solve("cpsat", time_limit=2.5)
    assert limits == [2.5, 2.5]
    assert [r["time_limit"] for r in solution.groups.values()] == [2.5, 2.5]
    assert solution.optimal is False
    # a heuristic solver reports no status: optimality is unknown, not false
    assert problem.solve("torch-sa", seed=0).optimal is None


def test_prune_model_builds_the_energy_once(monkeypatch):
    builds = []
    structured_builds = []
    original_build = RedundancyEnergy.build
    original_structured = PruningProblem._per_group_structured

    def count_build(self, inputs):
        builds.append(1)
        return original_build(self, inputs)

    def count_structured(self, budget):
        structured_builds.append(budget)
        return original_structured(self, budget)

    monkeypatch.setattr(RedundancyEnergy, "build", count_build)
    monkeypatch.setattr(PruningProblem, "_per_group_structured", count_structured)
    torch.manual_seed(0)
    model = TwoGroupNet(8, 12)
    pruned = prune_model(model, torch.randn(2, 3, 6, 6), keep=0.5, solver_params={"seed": 0})
    assert len(builds) == 1
    # the structured whole-network form (solve, polish, energy) is built once too
    assert structured_builds == [False]
    assert pruned.conv1.out_channels < 8 and pruned.conv2.out_channels < 12


@pytest.mark.parametrize("solver", ["torch-sa", "neal", "cpsat"])
def test_structured_groups_meet_the_budget_and_reach_the_brute_force_optimum(solver):
    problem = two_group_problem(9, 14, seed=1)
    problem.structured_group_above = 8  # both groups through the swap annealer
    solution = problem.solve(solver, seed=0)
    assert [r["path"] for r in solution.groups.values()] == ["structured", "structured"]
    # an exact solver proves nothing about a group it did not solve
    assert solution.optimal is (False if solver == "cpsat" else None)
    assert solution.kept == problem.keep_counts
    assert solution.energy == pytest.approx(dense_energy(problem, solution.masks), abs=1e-9)
    for group in problem.groups:
        best, mask = brute_force_group(problem, group)
        np.testing.assert_array_equal(solution.masks[group.name], mask)
    # the dense path on the same problem agrees
    problem.structured_group_above = None
    dense = problem.solve(solver, seed=0)
    assert [r["path"] for r in dense.groups.values()] == ["dense", "dense"]
    assert dense.energy == pytest.approx(solution.energy, abs=1e-9)


def test_structured_and_dense_paths_agree_on_a_mid_size_group():
    problem = two_group_problem(12, 160, seed=2)
    problem.structured_group_above = 100
    structured = problem.solve("torch-sa", seed=0)
    assert [r["path"] for r in structured.groups.values()] == ["dense", "structured"]
    assert structured.kept == problem.keep_counts  # exactly, in both groups
    reference = dense_energy(problem, structured.masks)
    assert structured.energy == pytest.approx(reference, rel=1e-12, abs=1e-9)
    problem.structured_group_above = None
    dense = problem.solve("torch-sa", seed=0)
    assert dense.kept == problem.keep_counts
    # both heuristics end in a swap-local minimum: within 1% of each other's energy
    assert structured.energy == pytest.approx(dense.energy, rel=1e-2)


def test_the_threshold_is_exclusive(monkeypatch):
    problem = two_group_problem(6, 10)
    paths = {}
    for above in (5, 6, 9, 10):
        problem.structured_group_above = above
        solution = problem.solve("torch-sa", seed=0, num_reads=2, num_sweeps=20)
        paths[above] = [r["path"] for r in solution.groups.values()]
        assert solution.kept == problem.keep_counts
    assert paths == {
        5: ["structured", "structured"],
        6: ["dense", "structured"],
        9: ["dense", "structured"],
        10: ["dense", "dense"],
    }
    # the module default is what a new problem starts from
    monkeypatch.setattr(problem_module, "STRUCTURED_GROUP_ABOVE", 7)
    assert two_group_problem(6, 10).structured_group_above == 7


def test_large_cosine_grams_in_float32_agree_with_float64(monkeypatch):
    rng = np.random.default_rng(0)
    features = rng.standard_normal((40, 300))
    features[3] = 0.0  # a zero row: similarity 0 either way
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    unit = features / np.where(norms > 0, norms, 1.0)
    reference = np.abs(unit @ unit.T)  # float64, computed here
    monkeypatch.setattr(redundancy_module, "FLOAT32_GRAM_ABOVE", 40 * 40 * 300)
    exact = redundancy_module.cosine_redundancy(features)  # at the limit: float64
    np.testing.assert_allclose(exact, reference, rtol=0, atol=1e-12)
    monkeypatch.setattr(redundancy_module, "FLOAT32_GRAM_ABOVE", 40 * 40 * 300 - 1)
    single = redundancy_module.cosine_redundancy(features)
    assert single.dtype == np.float64
    assert np.abs(single - reference).max() > 0  # really computed in float32
    np.testing.assert_allclose(single, reference, rtol=0, atol=1e-6)
    assert np.all(single[3] == 0)
