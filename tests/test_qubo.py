"""Matrix builders and penalties, checked against energies computed directly."""

from __future__ import annotations

import itertools

import dimod
import numpy as np
import pytest
import torch

import ising_qubo
from ising_qubo import qubo


def all_states(n: int, values=(0, 1)) -> np.ndarray:
    return np.array(list(itertools.product(values, repeat=n)), dtype=float)


@pytest.mark.parametrize("kind", ["numpy", "list", "torch", "torch-sparse", "scipy"])
def test_from_qubo_matrix_energy_is_xQx(kind):
    rng = np.random.default_rng(0)
    Q = rng.normal(size=(5, 5)) * (rng.random((5, 5)) < 0.7)
    matrix = {
        "numpy": Q,
        "list": Q.tolist(),
        "torch": torch.tensor(Q),
        "torch-sparse": torch.tensor(Q).to_sparse(),
        "scipy": None,
    }[kind]
    if kind == "scipy":
        sparse = pytest.importorskip("scipy.sparse")
        matrix = sparse.csr_matrix(Q)
    bqm = ising_qubo.from_qubo_matrix(matrix, offset=0.25)
    assert bqm.vartype is dimod.BINARY
    X = all_states(5)
    expected = np.einsum("ki,ij,kj->k", X, Q, X) + 0.25
    np.testing.assert_allclose(bqm.energies((X, range(5))), expected, atol=1e-12)


def test_from_ising_matrix_energy_is_hs_plus_sJs():
    rng = np.random.default_rng(1)
    J = rng.normal(size=(6, 6))  # full, with a diagonal: s_i^2 = 1 goes to the offset
    h = rng.normal(size=6)
    bqm = ising_qubo.from_ising_matrix(h, J, offset=-1.0, labels=list("abcdef"))
    S = all_states(6, (-1, 1))
    expected = S @ h + np.einsum("ki,ij,kj->k", S, J, S) - 1.0
    np.testing.assert_allclose(bqm.energies((S, list("abcdef"))), expected, atol=1e-12)


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((2, 3)), "square"),
        (np.array([[0.0, np.nan], [0, 0]]), r"Q\[0, 1\] is nan"),
        (np.array([[np.inf, 0.0], [0, 0]]), r"Q\[0, 0\] is inf"),
        ([["a", "b"], ["c", "d"]], "numeric"),
    ],
)
def test_bad_matrices_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        ising_qubo.from_qubo_matrix(bad)


def test_labels_must_fit():
    with pytest.raises(ValueError, match="2 entries for 3 variables"):
        ising_qubo.from_qubo_matrix(np.eye(3), labels=["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        ising_qubo.from_qubo_matrix(np.eye(2), labels=["a", "a"])
    with pytest.raises(ValueError, match=r"h must have shape \(3,\)"):
        ising_qubo.from_ising_matrix(np.zeros(2), np.eye(3))


def brute_force(bqm):
    return dimod.ExactSolver().sample(bqm)


@pytest.mark.parametrize("sense,k", [("==", 3), ("<=", 2), (">=", 5)])
@pytest.mark.parametrize("vartype", ["BINARY", "SPIN"])
def test_cardinality_penalty_minimum_is_the_constrained_minimum(sense, k, vartype):
    rng = np.random.default_rng(7)
    n = 8
    J = np.triu(rng.normal(size=(n, n)), 1)
    bqm = (
        ising_qubo.from_qubo_matrix(J + np.diag(rng.normal(size=n)))
        if vartype == "BINARY"
        else ising_qubo.from_ising_matrix(rng.normal(size=n), J)
    )
    penalised = ising_qubo.with_cardinality(bqm, k, sense)
    best = brute_force(penalised).first.sample
    chosen = sum(1 for v in bqm.variables if best[v] == 1)
    assert {"==": chosen == k, "<=": chosen <= k, ">=": chosen >= k}[sense]
    exact = brute_force(bqm)
    kept = (exact.record.sample == 1).sum(axis=1)
    ok = {"==": kept == k, "<=": kept <= k, ">=": kept >= k}[sense]
    assert bqm.energy({v: best[v] for v in bqm.variables}) == pytest.approx(
        exact.record.energy[ok].min()
    )


def test_cardinality_penalty_values():
    penalty = qubo.cardinality_penalty(["a", "b", "c"], 2, strength=3.0)
    for state in itertools.product((0, 1), repeat=3):
        expected = 3.0 * (sum(state) - 2) ** 2
        assert penalty.energy(dict(zip("abc", state))) == pytest.approx(expected)


def test_budget_penalty_zero_exactly_on_feasible_states():
    costs = {"a": 1.5, "b": 2.25, "c": 0.7}
    penalty = qubo.budget_penalty(costs, 3.0, strength=1.0)
    slack = [v for v in penalty.variables if v not in costs]
    for state in itertools.product((0, 1), repeat=3):
        sample = dict(zip("abc", state))
        spent = sum(costs[v] * sample[v] for v in costs)
        # minimum of the penalty over the slack variables
        best = min(
            penalty.energy({**sample, **dict(zip(slack, s))})
            for s in itertools.product((0, 1), repeat=len(slack))
        )
        if spent <= 3.0 - 0.01:  # conservative rounding may refuse states within resolution
            assert best == pytest.approx(0.0, abs=1e-9)
        if spent > 3.0:
            assert best > 0


def test_with_budget_respects_budget():
    rng = np.random.default_rng(3)
    bqm = ising_qubo.from_qubo_matrix(-np.abs(rng.normal(size=(7, 7))))  # wants everything
    costs = {v: float(c) for v, c in zip(bqm.variables, rng.integers(1, 4, 7))}
    best = brute_force(ising_qubo.with_budget(bqm, costs, 5)).first.sample
    assert sum(costs[v] * best[v] for v in bqm.variables) <= 5


def test_penalty_argument_checks():
    with pytest.raises(ValueError, match="k must be an integer"):
        qubo.cardinality_penalty(["a"], 2, 1.0)
    with pytest.raises(ValueError, match="sense"):
        qubo.cardinality_penalty(["a"], 1, 1.0, sense="<")
    with pytest.raises(ValueError, match="strength"):
        qubo.cardinality_penalty(["a"], 1, 0.0)
    with pytest.raises(ValueError, match="unique"):
        qubo.cardinality_penalty(["a", "a"], 1, 1.0)
