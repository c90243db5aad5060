"""CP-SAT's ``count_budget``: a hard limit on a quadratic function of per-group counts.

Every optimum is checked against a brute force over all 2^n states; costs are recomputed
here from the mapping itself, independently of ``ising_qubo.solvers.count_budget``.
"""

from __future__ import annotations

import itertools

import dimod
import numpy as np
import pytest
from conftest import random_bqm

import ising_qubo
from ising_qubo.scaling import scale_bounded_budget


def all_binary_states(n: int) -> np.ndarray:
    return np.array(list(itertools.product((0, 1), repeat=n)), dtype=np.int8)


def spec_costs(spec: dict, labels: list, binary_states: np.ndarray) -> np.ndarray:
    """The real cost of each binary row (columns in ``labels`` order), read off ``spec``."""
    column = {v: i for i, v in enumerate(labels)}
    counts = [binary_states[:, [column[v] for v in group]].sum(axis=1) for group in spec["groups"]]
    cost = np.full(len(binary_states), float(spec.get("constant", 0.0)))
    for g, a in enumerate(spec.get("linear", [])):
        cost += a * counts[g]
    for g, h, b in spec.get("pairs", []):
        cost += b * counts[g] * counts[h]
    return cost


def meets_floors(spec: dict, labels: list, binary_states: np.ndarray) -> np.ndarray:
    column = {v: i for i, v in enumerate(labels)}
    ok = np.ones(len(binary_states), dtype=bool)
    for group, floor in zip(spec["groups"], spec.get("floors", [0] * len(spec["groups"]))):
        ok &= binary_states[:, [column[v] for v in group]].sum(axis=1) >= floor
    return ok


def as_binary(sampleset: dimod.SampleSet, labels: list) -> np.ndarray:
    states = sampleset.record.sample[:, [sampleset.variables.index(v) for v in labels]]
    return (states + 1) // 2 if sampleset.vartype is dimod.SPIN else states


def brute_force(bqm: dimod.BinaryQuadraticModel, spec: dict, extra=None) -> tuple:
    """(least energy, feasible mask, binary states, costs) over all states meeting ``spec``
    (and ``extra(binary_states)``, a mask, if given)."""
    labels = list(bqm.variables)
    binary = all_binary_states(len(labels))
    costs = spec_costs(spec, labels, binary)
    feasible = (costs <= spec["limit"]) & meets_floors(spec, labels, binary)
    if extra is not None:
        feasible &= extra(binary)
    states = 2 * binary - 1 if bqm.vartype is dimod.SPIN else binary
    energies = bqm.energies((states, labels))
    return float(energies[feasible].min()), feasible, binary, costs


def random_spec(bqm: dimod.BinaryQuadraticModel, seed: int, real: bool) -> dict:
    """2-4 disjoint groups over a random subset of the variables, random integer or real
    coefficients (squares g == h and repeated pairs included), floors, and a limit that
    binds: between two neighbouring distinct costs near the cost distribution's 40 %."""
    rng = np.random.default_rng(seed)
    labels = list(bqm.variables)
    num_groups = int(rng.integers(2, 5))
    chosen = rng.permutation(labels)[
        : max(num_groups, int(rng.integers(len(labels) - 3, len(labels) + 1)))
    ]
    cuts = np.sort(rng.choice(np.arange(1, len(chosen)), num_groups - 1, replace=False))
    groups = [[int(v) for v in part] for part in np.split(chosen, cuts)]

    def coefficient(low: float, high: float) -> float:
        return float(rng.uniform(low, high)) if real else float(rng.integers(low, high + 1))

    pairs = [(g, g, coefficient(0, 2)) for g in range(num_groups) if rng.random() < 0.5]
    pairs += [
        (g, h, coefficient(-1, 3))
        for g, h in itertools.combinations(range(num_groups), 2)
        if rng.random() < 0.7
    ]
    if pairs:
        pairs.append(pairs[0][:2] + (coefficient(0, 1),))  # a repeated pair adds up
    spec = {
        "groups": groups,
        "constant": coefficient(-2, 5),
        "linear": [coefficient(-1, 4) for _ in groups],
        "pairs": pairs,
        "floors": [int(rng.integers(0, len(g) // 2 + 1)) for g in groups],
        "limit": 0.0,
    }
    binary = all_binary_states(len(labels))
    costs = np.unique(spec_costs(spec, labels, binary)[meets_floors(spec, labels, binary)])
    i = int(0.4 * (len(costs) - 1))
    spec["limit"] = float(costs[i] if not real else (costs[i] + costs[i + 1]) / 2)
    return spec


CASES = [
    (n, vartype, real)
    for n in (9, 12, 14)
    for vartype in ("BINARY", "SPIN")
    for real in (False, True)
]


@pytest.mark.parametrize("n, vartype, real", CASES)
@pytest.mark.parametrize("seed", range(2))
def test_optimum_matches_brute_force(n, vartype, real, seed):
    bqm = random_bqm(n, vartype, seed=1000 * n + seed)
    spec = random_spec(bqm, seed=seed + 7 * n + int(real), real=real)
    best, _, binary, costs = brute_force(bqm, spec)
    result = ising_qubo.solve(bqm, "cpsat", count_budget=spec, num_reads=3, seed=0)
    info = result.info
    assert info["status"] == "OPTIMAL"
    assert result.first.energy == pytest.approx(best, rel=1e-6, abs=1e-9)
    returned = as_binary(result, list(bqm.variables))
    row_costs = spec_costs(spec, list(bqm.variables), returned)
    assert np.all(row_costs <= spec["limit"])
    assert np.all(meets_floors(spec, list(bqm.variables), returned))
    np.testing.assert_allclose(info["count_budget"]["costs"], row_costs, rtol=1e-12, atol=1e-9)
    assert info["bound"] == pytest.approx(best, abs=info["energy_error_bound"] + 1e-9)
    budget = info["count_budget"]
    assert budget["limit"] == spec["limit"] and budget["groups"] == len(spec["groups"])
    if real:
        # the rounding tightens the limit by a margin no state's cost falls into
        assert 0 < budget["margin"] < 1e-5 * max(abs(spec["limit"]), 1.0)
        near = (costs > spec["limit"] - budget["margin"]) & (costs <= spec["limit"])
        assert not near.any()
    else:
        assert budget["resolution"] == 1.0 and budget["margin"] == 0.0


def test_spin_counts_plus_one_as_selected():
    # a SPIN problem that wants every spin at -1, but the floors force 2 of group 0 up
    bqm = dimod.BinaryQuadraticModel({v: 1.0 for v in range(6)}, {}, 0.0, "SPIN")
    spec = {"groups": [[0, 1, 2], [3, 4, 5]], "linear": [1, 1], "limit": 2, "floors": [2, 0]}
    result = ising_qubo.solve(bqm, "cpsat", count_budget=spec)
    sample = result.first.sample
    assert sum(sample[v] == 1 for v in (0, 1, 2)) == 2
    assert all(sample[v] == -1 for v in (3, 4, 5))
    assert result.first.energy == pytest.approx(-2.0)


# ------------------------------------------------------------------- conservative rounding


def test_conservative_rounding_rejects_what_naive_rounding_accepts():
    """Each unit costs a little more than 1 (by 0.4 resolution): rounding to the nearest
    multiple would accept 3 units under a limit of 3, whose real cost is above it."""
    bqm = dimod.BinaryQuadraticModel({v: -1.0 for v in range(4)}, {}, 0.0, "BINARY")
    resolution = 1e-7  # what the scaling picks for costs ~ 4 over 5 terms
    unit = 1 + 0.4 * resolution
    spec = {"groups": [[0, 1, 2, 3]], "linear": [unit], "limit": 3.0}
    result = ising_qubo.solve(bqm, "cpsat", count_budget=spec)
    assert result.info["count_budget"]["resolution"] == resolution
    naive_accepts = 3 * round(unit / resolution) <= round(3.0 / resolution)
    assert naive_accepts and 3 * unit > 3.0
    kept = sum(result.first.sample.values())
    assert kept * unit <= 3.0 and kept == 2
    assert result.info["count_budget"]["costs"][0] <= 3.0


def test_conservative_rounding_of_a_square():
    bqm = dimod.BinaryQuadraticModel({v: -1.0 for v in range(5)}, {}, 0.0, "BINARY")
    result = ising_qubo.solve(
        bqm,
        "cpsat",
        count_budget={"groups": [list(range(5))], "pairs": [(0, 0, 1 + 3e-8)], "limit": 9},
    )
    kept = sum(result.first.sample.values())
    assert kept == 2 and kept**2 * (1 + 3e-8) <= 9


@pytest.mark.parametrize("seed", range(20))
def test_scaled_budget_is_conservative_and_tight(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 8))
    costs = rng.normal(size=m) * 10.0 ** rng.integers(-3, 4)
    bounds = rng.integers(0, 50, size=m).astype(float)
    limit = float(rng.normal() * np.abs(costs) @ bounds)
    scaled = scale_bounded_budget(costs, bounds, limit)
    terms = rng.integers(0, bounds + 1, size=(2000, m))
    real = terms @ costs
    accepted = terms @ scaled.integers <= scaled.integer_limit
    assert not np.any(accepted & (real > limit))  # never more than the real limit
    assert np.all(accepted[real <= limit - scaled.margin])  # and tight up to the margin
    assert scaled.margin <= 1e-6 * max(abs(limit), float(np.abs(costs) @ bounds)) + 1e-300


# -------------------------------------------------------------------------- infeasibility


def test_floors_above_the_limit_name_the_least_cost():
    bqm = random_bqm(8, "BINARY", seed=3)
    spec = {
        "groups": [[0, 1, 2], [3, 4, 5, 6]],
        "constant": 1.5,
        "linear": [2.0, 1.0],
        "pairs": [(0, 1, 1.0)],
        "floors": [2, 3],
        "limit": 15.0,
    }  # the least cost is at the floors: 1.5 + 4 + 3 + 6 = 14.5; a limit of 14 cannot be met
    assert ising_qubo.solve(bqm, "cpsat", count_budget=spec).info["status"] == "OPTIMAL"
    with pytest.raises(ValueError, match=r"count_budget cannot be met \(INFEASIBLE\).* 14\.5 "):
        ising_qubo.solve(bqm, "cpsat", count_budget=dict(spec, limit=14.0))


def test_least_cost_is_found_where_costs_fall_with_the_counts():
    # negative pair coefficient: the least cost is at the group sizes, not at the floors
    bqm = random_bqm(6, "BINARY", seed=4)
    spec = {"groups": [[0, 1, 2], [3, 4, 5]], "linear": [1, 1], "pairs": [(0, 1, -1)], "limit": -4}
    with pytest.raises(ValueError, match=r"least cost the floors allow is -3 at k = \[3, 3\]"):
        ising_qubo.solve(bqm, "cpsat", count_budget=spec)


def test_infeasible_only_together_with_cardinality():
    bqm = random_bqm(8, "BINARY", seed=5)
    spec = {"groups": [[0, 1, 2, 3], [4, 5, 6, 7]], "linear": [1, 1], "limit": 3}
    with pytest.raises(ValueError, match=r"constraints cannot be met \(INFEASIBLE\).*count_budget"):
        ising_qubo.solve(bqm, "cpsat", count_budget=spec, cardinality=5)


# ---------------------------------------------------------------------------- combinations


@pytest.mark.parametrize("sense, k", [("==", 5), ("<=", 4), (">=", 6)])
def test_combines_with_cardinality(sense, k):
    bqm = random_bqm(12, "SPIN", seed=21)
    spec = random_spec(bqm, seed=22, real=True)
    meets = {"==": np.equal, "<=": np.less_equal, ">=": np.greater_equal}[sense]
    best, *_ = brute_force(bqm, spec, extra=lambda b: meets(b.sum(axis=1), k))
    result = ising_qubo.solve(
        bqm, "cpsat", count_budget=spec, cardinality=k, cardinality_sense=sense
    )
    assert result.info["status"] == "OPTIMAL"
    assert result.first.energy == pytest.approx(best, rel=1e-6, abs=1e-9)
    state = as_binary(result, list(bqm.variables))[:1]
    assert meets(state.sum(), k)
    assert spec_costs(spec, list(bqm.variables), state)[0] <= spec["limit"]


def test_combines_with_cardinalities_and_linear_budget():
    bqm = random_bqm(11, "BINARY", seed=31)
    labels = list(bqm.variables)
    spec = random_spec(bqm, seed=32, real=False)
    weights = np.random.default_rng(33).uniform(0.5, 2.0, size=len(labels))
    per_group = ([0, 1, 2, 3], 2)

    def extra(binary):
        return (binary[:, per_group[0]].sum(axis=1) == per_group[1]) & (binary @ weights <= 6.0)

    best, *_ = brute_force(bqm, spec, extra=extra)
    result = ising_qubo.solve(
        bqm,
        "cpsat",
        count_budget=spec,
        cardinalities=[per_group],
        budget_costs=dict(zip(labels, weights)),
        budget=6.0,
    )
    assert result.first.energy == pytest.approx(best, rel=1e-6, abs=1e-9)
    assert extra(as_binary(result, labels)).all()


def test_time_limit_and_reads_keep_the_budget():
    bqm = random_bqm(14, "BINARY", seed=41)
    spec = random_spec(bqm, seed=42, real=True)
    result = ising_qubo.solve(bqm, "cpsat", count_budget=spec, time_limit=5.0, num_reads=5)
    assert result.info["status"] in ("OPTIMAL", "FEASIBLE")
    costs = spec_costs(spec, list(bqm.variables), as_binary(result, list(bqm.variables)))
    assert np.all(costs <= spec["limit"])


# ----------------------------------------------------------------------------- validation

GOOD = {"groups": [[0, 1], [2, 3, 4]], "linear": [1.0, 2.0], "pairs": [(0, 1, 1.0)], "limit": 9}


@pytest.mark.parametrize(
    "change, message",
    [
        ("not a mapping", r"count_budget must be a mapping"),
        ({"lineer": [1, 2]}, r"unknown keys \['lineer'\]"),
        ({"limit": None}, r"count_budget\['limit'\] must be a finite number"),
        ({"limit": float("inf")}, r"count_budget\['limit'\] must be a finite number"),
        ({"constant": float("nan")}, r"count_budget\['constant'\] must be a finite number"),
        ({"constant": "1"}, r"count_budget\['constant'\] must be a finite number"),
        ({"groups": [[0, 1], [2, 99]]}, r"count_budget\['groups'\]\[1\] names 99"),
        ({"groups": [[0, 1], [1, 2]]}, r"count_budget\['groups'\].*variable 1 .*disjoint"),
        ({"groups": [[0, 0], [2]]}, r"count_budget\['groups'\].*variable 0 .*disjoint"),
        ({"groups": "01"}, r"count_budget\['groups'\] must be a list"),
        ({"groups": [[0, [1]], [2]]}, r"count_budget\['groups'\]\[0\] names \[1\]"),
        ({"linear": [1.0]}, r"count_budget\['linear'\] must have one number per group \(2\)"),
        ({"linear": [1.0, float("inf")]}, r"count_budget\['linear'\]\[1\] must be a finite"),
        ({"pairs": [(0, 2, 1.0)]}, r"count_budget\['pairs'\]\[0\].*must be in 0\.\.1"),
        ({"pairs": [(-1, 0, 1.0)]}, r"count_budget\['pairs'\]\[0\].*must be in 0\.\.1"),
        ({"pairs": [(0, 1)]}, r"count_budget\['pairs'\]\[0\] must be \(g, h, b\)"),
        ({"pairs": [(0.5, 1, 1.0)]}, r"count_budget\['pairs'\]\[0\] must be an integer"),
        ({"pairs": [(0, 1, float("nan"))]}, r"count_budget\['pairs'\]\[0\] b must be a finite"),
        ({"floors": [1]}, r"count_budget\['floors'\] must have one floor per group \(2\)"),
        ({"floors": [-1, 0]}, r"count_budget\['floors'\]\[0\] = -1 must be in 0\.\.2"),
        ({"floors": [0, 4]}, r"count_budget\['floors'\]\[1\] = 4 must be in 0\.\.3"),
        ({"floors": [0, 1.5]}, r"count_budget\['floors'\]\[1\] must be an integer"),
    ],
)
def test_bad_mappings_are_refused_naming_the_key(change, message):
    bqm = random_bqm(6, "BINARY", seed=51)
    spec = change if isinstance(change, str) else {**GOOD, **change}
    with pytest.raises(ValueError, match=message) as error:
        ising_qubo.solve(bqm, "cpsat", count_budget=spec)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("key", ["groups", "limit"])
def test_required_keys(key):
    spec = {k: v for k, v in GOOD.items() if k != key}
    with pytest.raises(ValueError, match=rf"count_budget\['{key}'\] is required"):
        ising_qubo.solve(random_bqm(6, "BINARY", seed=52), "cpsat", count_budget=spec)
