"""Swap annealing and swap descent under per-group cardinalities (ising_qubo.solvers.budgeted),
checked against brute force over every budget-meeting state and a dense recomputation."""

from __future__ import annotations

import itertools
import signal

import numpy as np
import pytest
from timing import timed

import ising_qubo
from ising_qubo.lowrank import LowRankIsing
from ising_qubo.solvers import _swap_cpu
from ising_qubo.solvers.budgeted import budgeted_anneal, budgeted_descent


def random_structured(seed: int, n: int = 12, rank: int = 3) -> LowRankIsing:
    """Overlapping blocks (variable 5 sits in two) plus dense and sparse low-rank terms."""
    rng = np.random.default_rng(seed)
    blocks = []
    for index in (np.arange(0, 6), np.arange(5, 9), np.array([9, 2, 11, 10])):
        q = rng.normal(size=(len(index), len(index)))
        blocks.append((index, q))
    lowrank = [(rng.normal(size=n), rng.normal(size=n)) for _ in range(rank)]
    sparse = np.zeros(n)
    sparse[[1, 7]] = [2.0, -1.5]
    lowrank.append((sparse, rng.normal(size=n) * (rng.random(n) < 0.5)))
    return LowRankIsing.from_binary(rng.normal(size=n), blocks, lowrank, 1.5)


GROUPS = [np.array([0, 3, 6, 9]), np.array([1, 4, 7, 10, 2]), np.array([5, 8, 11])]
TARGETS = [2, 3, 1]


def feasible_states(n: int, groups, targets) -> np.ndarray:
    choices = [list(itertools.combinations(index.tolist(), k)) for index, k in zip(groups, targets)]
    states = []
    for picks in itertools.product(*choices):
        s = -np.ones(n)
        for pick in picks:
            s[list(pick)] = 1.0
        states.append(s)
    return np.array(states)


def dense_energy(model: LowRankIsing, spins: np.ndarray) -> np.ndarray:
    """From the equivalent dense BQM: independent of the structured bookkeeping."""
    bqm = model.to_bqm()
    return bqm.energies((np.atleast_2d(spins).astype(int), model.labels))


def assert_swap_local_minimum(model, spins, groups, tolerance=1e-9):
    base = dense_energy(model, spins)[0]
    neighbours = []
    for index in groups:
        on = index[spins[index] > 0]
        off = index[spins[index] < 0]
        for i, j in itertools.product(on, off):
            t = spins.copy()
            t[i], t[j] = -1.0, 1.0
            neighbours.append(t)
    assert neighbours
    assert dense_energy(model, np.array(neighbours)).min() >= base - tolerance


@pytest.mark.parametrize("seed", range(4))
def test_anneal_reaches_the_brute_force_constrained_optimum(seed):
    model = random_structured(seed)
    states = feasible_states(model.num_variables, GROUPS, TARGETS)
    optimum = dense_energy(model, states).min()
    spins, info = budgeted_anneal(model, GROUPS, TARGETS, num_reads=4, num_sweeps=200, seed=seed)
    energies = model.energies(spins)
    for s in spins:
        assert [int((s[index] > 0).sum()) for index in GROUPS] == TARGETS
    np.testing.assert_allclose(dense_energy(model, spins), energies, atol=1e-9)
    assert energies.min() == pytest.approx(optimum, abs=1e-9)
    assert info["num_sweeps"] == 200 and len(info["accepted_swaps"]) == 4


@pytest.mark.parametrize("seed", range(6))
def test_descent_meets_the_budget_and_is_swap_local_minimum(seed):
    model = random_structured(seed + 10)
    rng = np.random.default_rng(seed)
    start = rng.choice([-1.0, 1.0], size=model.num_variables)
    spins, repairs, swaps = budgeted_descent(model, start, GROUPS, TARGETS)
    assert [int((spins[index] > 0).sum()) for index in GROUPS] == TARGETS
    assert repairs == sum(
        abs(int((start[index] > 0).sum()) - k) for index, k in zip(GROUPS, TARGETS)
    )
    assert_swap_local_minimum(model, spins, GROUPS)
    # the repair flips are greedy: each the cheapest flip in the needed direction
    assert np.array_equal(spins, budgeted_descent(model, spins, GROUPS, TARGETS)[0])


def test_kernel_fields_stay_exact_after_many_moves():
    """Block fields and projections updated flip by flip equal a fresh computation."""
    from ising_qubo.solvers.budgeted import SwapModel

    model = random_structured(3)
    layout = SwapModel(model, GROUPS)
    start = feasible_states(model.num_variables, GROUPS, TARGETS)[:3]
    state = layout.state(start)
    order, kept = layout.slots(state[0])
    rng_state = np.arange(1, 4, dtype=np.uint64)
    accepted = _swap_cpu.swap_sweeps(
        *state,
        order,
        layout.g_ptr,
        layout.g_vars,
        kept,
        np.full(50, 0.3),
        rng_state,
        *layout._blocks,
        *layout._lowrank,
    )
    assert accepted.min() > 0
    fresh = layout.state(state[0])
    for moved, recomputed in zip(state[1:], fresh[1:]):
        np.testing.assert_allclose(moved, recomputed, atol=1e-9)
    for r in range(3):  # the slot lists still hold each group's kept variables first
        for g, index in enumerate(GROUPS):
            a, b = layout.g_ptr[g], layout.g_ptr[g + 1]
            assert sorted(order[r, a:b].tolist()) == sorted(index.tolist())
            assert np.all(state[0][r, order[r, a : a + kept[g]]] > 0)


def test_torch_sa_cardinalities_meet_budget_and_match_brute_force():
    model = random_structured(7)
    labels = model.labels
    cards = [([labels[i] for i in index], k) for index, k in zip(GROUPS, TARGETS)]
    sampler = ising_qubo.get_solver("torch-sa")
    result = sampler.sample_structured(
        model, num_reads=3, num_sweeps=100, seed=5, cardinalities=cards
    )
    again = sampler.sample_structured(
        model, num_reads=3, num_sweeps=100, seed=5, cardinalities=cards
    )
    assert np.array_equal(result.record.sample, again.record.sample)  # seeded
    assert result.info["backend"] == "numba-swaps"
    optimum = dense_energy(model, feasible_states(model.num_variables, GROUPS, TARGETS)).min()
    assert result.first.energy == pytest.approx(optimum, abs=1e-9)
    for row in result.record.sample:
        assert [int((row[index] > 0).sum()) for index in GROUPS] == TARGETS


@pytest.mark.parametrize(
    "cards, message",
    [
        ([([0, 3, 6, 9], 2), ([1, 4, 7, 10, 2], 3)], "must cover every variable"),
        ([([0, 3, 6, 9], 2), ([0, 1, 4, 7, 10, 2, 5, 8, 11], 3)], "overlaps another group"),
        ([([0, 3, 6, 9], 5), ([1, 4, 7, 10, 2, 5, 8, 11], 3)], r"asks for 5 of 4"),
        ([([0, 3, 6, 99], 2)], r"names variables not in the problem: \[99\]"),
        ([3, 4], "list of \\(labels, k\\) pairs"),
    ],
)
def test_torch_sa_cardinalities_errors(cards, message):
    with pytest.raises(ValueError, match=message):
        ising_qubo.get_solver("torch-sa").sample_structured(
            random_structured(0), num_reads=1, num_sweeps=5, cardinalities=cards
        )


def test_swap_anneal_honours_time_limit_and_ctrl_c(monkeypatch):
    model = random_structured(1)
    cards = [(index.tolist(), k) for index, k in zip(GROUPS, TARGETS)]
    sampler = ising_qubo.get_solver("torch-sa")
    sampler.sample_structured(model, num_reads=2, num_sweeps=2, cardinalities=cards)  # JIT
    with timed() as run:
        result = sampler.sample_structured(
            model, num_reads=2, num_sweeps=10**8, seed=0, cardinalities=cards, time_limit=1.0
        )
    # within 10%, plus the same allowance as tests/test_interrupts.py (descent, SampleSet)
    # stretched by the machine's measured slowdown (tests/timing.py)
    run.assert_within(1.1 * 1.0, 0.1, "swap anneal, time_limit=1.0")
    assert result.info["num_sweeps"] < 10**8

    calls = []
    sweeps = _swap_cpu.swap_sweeps

    def ctrl_c_after_two(*args):
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)
        return sweeps(*args)

    monkeypatch.setattr(_swap_cpu, "swap_sweeps", ctrl_c_after_two)
    result = sampler.sample_structured(
        model, num_reads=2, num_sweeps=10**6, seed=0, cardinalities=cards
    )
    assert result.info["interrupted"] is True
    assert len(calls) == 2
    for row in result.record.sample:  # the interrupted states still meet the budget
        assert [int((row[index] > 0).sum()) for index in GROUPS] == TARGETS


def test_dense_bqm_of_a_huge_structured_problem_is_refused_with_its_size(monkeypatch):
    from ising_qubo import lowrank

    monkeypatch.setattr(lowrank, "DENSE_BQM_LIMIT", 10)
    with pytest.raises(
        ValueError,
        match=r"\(12 variables\) would hold 66 couplings .*"
        r"use the structured form",
    ):
        random_structured(0).to_bqm()
    monkeypatch.setattr(lowrank, "DENSE_BQM_LIMIT", 12)
    assert random_structured(0).to_bqm().num_interactions == 66  # at the limit: built


def test_problem_save_skips_a_too_large_network_file_with_a_warning(monkeypatch, tmp_path):
    import torch
    from torch import nn

    from ising_qubo.pruning import problem as problem_module
    from ising_qubo.pruning.problem import PruningProblem

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 5, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.LazyLinear(2),
    )
    batch = torch.randn(4, 3, 8, 8)
    model(batch)
    problem = PruningProblem.from_model(model, batch, energy="ipruning", keep=0.5)
    problem.save(tmp_path / "fits")
    assert (tmp_path / "fits" / "network.coo").exists()
    monkeypatch.setattr(problem_module, "DENSE_BQM_LIMIT", problem.num_variables - 1)
    with pytest.warns(
        UserWarning,
        match="network.coo not written: the whole-network BQM of "
        f"{problem.num_variables} variables would be dense",
    ):
        problem.save(tmp_path / "large")
    assert not (tmp_path / "large" / "network.coo").exists()
    assert (tmp_path / "large" / "manifest.json").exists()
