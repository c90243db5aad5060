"""Solvers by name, defaults, third-party samplers and entry-point plug-ins; what each
built-in solver declares it can do (capabilities), checked against what it does."""

from __future__ import annotations

import itertools
import warnings

import dimod
import numpy as np
import pytest
from conftest import brute_force_minimum, random_bqm

import ising_qubo
from ising_qubo.lowrank import LowRankIsing
from ising_qubo.solvers import registry
from ising_qubo.solvers.capabilities import Capability, capabilities, supports


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ValueError) as info:
        ising_qubo.get_solver("nope")
    for name in ["neal", "cpsat", "torch-sa", "de", "exact", "tabu", "greedy"]:
        assert name in str(info.value)


def test_defaults_apply_and_can_be_overridden():
    sampler = ising_qubo.get_solver("neal", num_reads=7, seed=1)
    bqm = random_bqm(6, "SPIN", seed=0)
    assert len(sampler.sample(bqm)) == 7
    assert len(sampler.sample(bqm, num_reads=3)) == 3
    assert sampler.parameters == ising_qubo.get_solver("neal").parameters


def test_defaults_must_be_declared_parameters():
    with pytest.raises(ValueError, match="no parameter.*bogus"):
        ising_qubo.get_solver("neal", bogus=1)


class CountingSampler(dimod.Sampler):
    """A stand-in for a third-party sampler (say, a D-Wave QPU behind dwave-system)."""

    parameters = {"num_reads": []}
    properties = {"vendor": "test"}
    calls = 0

    def sample(self, bqm, num_reads=1, **kwargs):
        CountingSampler.calls += 1
        return dimod.ExactSolver().sample(bqm).truncate(num_reads)


def test_any_dimod_sampler_instance_works_in_solve():
    bqm = random_bqm(5, "BINARY", seed=2)
    sampleset = ising_qubo.solve(bqm, CountingSampler(), num_reads=2)
    assert sampleset.first.energy == pytest.approx(dimod.ExactSolver().sample(bqm).first.energy)


def test_register_and_use_by_name():
    ising_qubo.register_solver("counting-test", CountingSampler, description="test")
    try:
        assert "counting-test" in ising_qubo.list_solvers()
        before = CountingSampler.calls
        ising_qubo.solve(random_bqm(4, "SPIN", seed=1), "counting-test")
        assert CountingSampler.calls == before + 1
        with pytest.raises(ValueError, match="already registered"):
            ising_qubo.register_solver("counting-test", CountingSampler)
        ising_qubo.register_solver("counting-test", CountingSampler(), overwrite=True)
        assert isinstance(ising_qubo.get_solver("counting-test"), CountingSampler)
    finally:
        registry.unregister_solver("counting-test")


def test_register_rejects_non_factories():
    with pytest.raises(TypeError, match="factory"):
        ising_qubo.register_solver("broken-test", 42)
    ising_qubo.register_solver("not-a-sampler-test", lambda: object())
    try:
        with pytest.raises(TypeError, match="not a dimod.Sampler"):
            ising_qubo.get_solver("not-a-sampler-test")
    finally:
        registry.unregister_solver("not-a-sampler-test")


def test_entry_point_plugins_are_found(monkeypatch):
    from importlib.metadata import EntryPoint

    plugin = EntryPoint(
        name="plugin-test", value="test_registry:CountingSampler", group=registry.ENTRY_POINT_GROUP
    )

    def fake_entry_points(group):
        return [plugin] if group == registry.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    monkeypatch.setattr(registry, "_PLUGINS_LOADED", False)
    try:
        assert "plugin-test" in ising_qubo.list_solvers()
        assert isinstance(ising_qubo.get_solver("plugin-test"), CountingSampler)
    finally:
        registry.unregister_solver("plugin-test")


def test_solver_info_reports_cuda_visibility():
    entries = {e.name: e for e in ising_qubo.solver_info()}
    assert "CUDA" in entries["torch-sa"].available()
    assert entries["neal"].available() == "yes"


def test_solve_rejects_non_bqm():
    with pytest.raises(TypeError, match="BinaryQuadraticModel"):
        ising_qubo.solve({"a": 1}, "neal")


# ------------------------------------------------------------- defaults on other entry points


def test_defaults_apply_to_sample_batch():
    bqms = [random_bqm(8, "SPIN", seed=3), random_bqm(9, "BINARY", seed=4)]
    sampler = ising_qubo.get_solver("torch-sa", num_reads=5, num_sweeps=40, seed=2)
    results = sampler.sample_batch(bqms)
    reference = ising_qubo.get_solver("torch-sa").sample_batch(
        bqms, num_reads=5, num_sweeps=40, seed=2
    )
    for got, want in zip(results, reference):
        np.testing.assert_array_equal(got.record.sample, want.record.sample)
        assert got.info["num_sweeps"] == 40
    # a call's own parameters win over the defaults
    assert [len(r) for r in sampler.sample_batch(bqms, num_reads=3)] == [3, 3]
    # the README's example
    readme = ising_qubo.get_solver("torch-sa", num_reads=64).sample_batch(
        [bqms[0], bqms[0].copy()], num_sweeps=500
    )
    assert [len(r) for r in readme] == [64, 64]
    for result in readme:
        assert result.first.energy == pytest.approx(brute_force_minimum(bqms[0]), abs=1e-9)


def random_structured(n: int, seed: int) -> LowRankIsing:
    """Two dense blocks and one rank-1 term, labels 0..n-1."""
    rng = np.random.default_rng(seed)
    half = n // 2
    blocks = [
        (np.arange(half), rng.normal(size=(half, half))),
        (np.arange(half, n), rng.normal(size=(n - half, n - half))),
    ]
    return LowRankIsing.from_binary(
        rng.normal(size=n),
        blocks,
        [(rng.normal(size=n), rng.normal(size=n))],
        offset=0.3,
        labels=list(range(n)),
    )


def test_defaults_apply_to_sample_structured():
    problem = random_structured(8, seed=5)
    sampler = ising_qubo.get_solver("torch-sa", num_reads=4, num_sweeps=30, seed=1)
    result = sampler.sample_structured(problem)
    reference = ising_qubo.get_solver("torch-sa").sample_structured(
        problem, num_reads=4, num_sweeps=30, seed=1
    )
    np.testing.assert_array_equal(result.record.sample, reference.record.sample)
    assert len(sampler.sample_structured(problem, num_reads=2)) == 2


class BatchingSampler(dimod.Sampler):
    """A third-party sampler that declares BATCH and records what it was called with."""

    parameters = {"num_reads": [], "flavour": []}
    properties: dict = {}
    capabilities = frozenset({Capability.BATCH})

    def sample(self, bqm, **kwargs):
        return dimod.ExactSolver().sample(bqm)

    def sample_batch(self, bqms, **kwargs):
        self.called_with = kwargs
        return [self.sample(bqm) for bqm in bqms]


def test_forwarded_entry_points_follow_the_childs_capabilities():
    child = BatchingSampler()
    sampler = registry.ParameterDefaults(child, num_reads=4, flavour="plain")
    sampler.sample_batch([random_bqm(3, "SPIN", seed=0)], flavour="spicy")
    assert child.called_with == {"num_reads": 4, "flavour": "spicy"}
    assert not hasattr(sampler, "sample_structured")
    neal = ising_qubo.get_solver("neal", num_reads=3)
    assert not hasattr(neal, "sample_batch") and not hasattr(neal, "sample_structured")
    with pytest.raises(AttributeError, match="sample_batch"):
        neal.sample_batch([random_bqm(3, "SPIN", seed=0)])
    assert supports(neal, Capability.TIME_LIMIT) and not supports(neal, Capability.BATCH)


# ------------------------------------------------------------- declared capabilities
# Each built-in solver's ``capabilities`` against what it really does, on problems small
# enough to check by brute force (8 variables: 256 states).

BUILTINS = [
    "neal",
    "tabu",
    "greedy",
    "exact",
    "cpsat",
    "de",
    "torch-sa",
    "torch-sb",
    "sb-ref",
    "openjij",
]
# Enough effort to reach the optimum of 8 variables, little enough to take well under 1 s.
EFFORT = {
    "neal": dict(num_reads=20, num_sweeps=200, seed=0),
    "tabu": dict(num_reads=4, timeout=20, seed=0),
    "greedy": dict(num_reads=50, seed=0),
    "exact": {},
    "cpsat": dict(seed=0),
    "de": dict(num_reads=1, num_generations=100, seed=0),
    "torch-sa": dict(num_reads=16, num_sweeps=200, seed=0),
    "torch-sb": dict(num_reads=16, num_steps=200, device="cpu", seed=0),
    "sb-ref": dict(num_reads=16, num_steps=200, early_stopping=False, seed=0),
    "openjij": dict(num_reads=8, num_sweeps=200, seed=0),
}
N = 8
ALL_STATES = np.array(list(itertools.product((0, 1), repeat=N)), dtype=float)


def builtin(name: str) -> dimod.Sampler:
    entry = {e.name: e for e in ising_qubo.solver_info()}[name]
    if not entry.available().startswith("yes"):
        pytest.skip(f"{name}: {entry.available()}")
    return ising_qubo.get_solver(name)


def constrained_minimum(bqm: dimod.BinaryQuadraticModel, feasible: np.ndarray) -> float:
    """Brute force: the least energy over the binary states (rows of ALL_STATES, in
    ``range(N)`` label order) that ``feasible`` marks."""
    states = ALL_STATES[feasible]
    if bqm.vartype is dimod.SPIN:
        states = 2 * states - 1
    return float(bqm.energies((states, range(N))).min())


def binary_states(sampleset: dimod.SampleSet) -> np.ndarray:
    states = sampleset.record.sample[:, [sampleset.variables.index(v) for v in range(N)]]
    return (states + 1) // 2 if sampleset.vartype is dimod.SPIN else states


def accepts(sampler: dimod.Sampler, bqm: dimod.BinaryQuadraticModel, **keywords) -> bool:
    """Whether ``sample`` takes ``keywords``: dimod samplers warn about unknown ones."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", dimod.exceptions.SamplerUnknownArgWarning)
        try:
            sampleset = sampler.sample(bqm, **keywords)
        except dimod.exceptions.SamplerUnknownArgWarning:
            return False
    assert len(sampleset) >= 1
    return True


@pytest.mark.parametrize("name", BUILTINS)
def test_declared_keywords_are_exactly_the_accepted_ones(name):
    sampler = builtin(name)
    bqm = random_bqm(N, "BINARY", seed=1)
    effort = EFFORT[name]
    probes = {
        Capability.TIME_LIMIT: dict(time_limit=0.2),
        Capability.INITIAL_STATES: dict(initial_states=([[0] * N], list(bqm.variables))),
        Capability.CARDINALITY: dict(cardinality=3),
        Capability.CARDINALITIES: dict(cardinalities=[(range(4), 2)]),
        Capability.BUDGET: dict(budget_costs={v: 1.0 for v in bqm.variables}, budget=2.0),
        Capability.COUNT_BUDGET: dict(count_budget={"groups": [range(4)], "limit": 9}),
    }
    accepted = {
        cap for cap, keywords in probes.items() if accepts(sampler, bqm, **effort, **keywords)
    }
    assert accepted == capabilities(sampler) & set(probes)
    assert supports(sampler, Capability.BATCH) == callable(getattr(sampler, "sample_batch", None))
    assert supports(sampler, Capability.STRUCTURED) == callable(
        getattr(sampler, "sample_structured", None)
    )
    if supports(sampler, Capability.STRUCTURED_CARDINALITIES):
        assert supports(sampler, Capability.STRUCTURED)


def with_capability(capability: Capability) -> list[str]:
    """The built-in solvers (usable here) whose class declares ``capability``."""
    entries = {e.name: e for e in ising_qubo.solver_info()}
    return [
        name
        for name in BUILTINS
        if entries[name].available().startswith("yes")
        and capability in getattr(entries[name].load_factory(), "capabilities", ())
    ]


@pytest.mark.parametrize("name", with_capability(Capability.CARDINALITY))
@pytest.mark.parametrize("sense, k", [("==", 3), ("<=", 2), (">=", 6)])
def test_declared_cardinality_is_hard(name, sense, k):
    sampler = builtin(name)
    bqm = random_bqm(N, "BINARY", seed=11)
    result = sampler.sample(bqm, cardinality=k, cardinality_sense=sense, **EFFORT[name])
    counts = binary_states(result).sum(axis=1)
    meets = {"==": np.equal, "<=": np.less_equal, ">=": np.greater_equal}[sense]
    assert np.all(meets(counts, k))
    best = constrained_minimum(bqm, meets(ALL_STATES.sum(axis=1), k))
    assert result.first.energy == pytest.approx(best, abs=1e-6)


@pytest.mark.parametrize("name", with_capability(Capability.CARDINALITIES))
def test_declared_cardinalities_are_hard(name):
    sampler = builtin(name)
    bqm = random_bqm(N, "SPIN", seed=12)
    groups = [([0, 2, 4], 1), ([1, 3, 5, 6, 7], 3)]
    result = sampler.sample(bqm, cardinalities=groups, **EFFORT[name])
    states = binary_states(result)
    feasible = np.ones(len(ALL_STATES), dtype=bool)
    for index, k in groups:
        assert np.all(states[:, index].sum(axis=1) == k)
        feasible &= ALL_STATES[:, index].sum(axis=1) == k
    assert result.first.energy == pytest.approx(constrained_minimum(bqm, feasible), abs=1e-6)


@pytest.mark.parametrize("name", with_capability(Capability.BUDGET))
def test_declared_budget_is_hard(name):
    sampler = builtin(name)
    bqm = random_bqm(N, "BINARY", seed=13)
    costs = np.random.default_rng(13).uniform(0.5, 2.0, size=N)
    result = sampler.sample(bqm, budget_costs=dict(enumerate(costs)), budget=3.0, **EFFORT[name])
    assert np.all(binary_states(result) @ costs <= 3.0 + 1e-9)
    best = constrained_minimum(bqm, ALL_STATES @ costs <= 3.0)
    assert result.first.energy == pytest.approx(best, abs=1e-6)


@pytest.mark.parametrize("name", with_capability(Capability.COUNT_BUDGET))
def test_declared_count_budget_is_hard(name):
    sampler = builtin(name)
    bqm = random_bqm(N, "SPIN", seed=18)
    groups = [[0, 1, 2], [3, 4, 5, 6, 7]]
    budget = {
        "groups": groups,
        "constant": 0.5,
        "linear": [1.25, 1.0],
        "pairs": [(0, 1, 0.5), (1, 1, 0.25)],
        "limit": 6.0,
        "floors": [1, 1],
    }
    result = sampler.sample(bqm, count_budget=budget, **EFFORT[name])

    def cost(states: np.ndarray) -> np.ndarray:
        k0, k1 = (states[:, group].sum(axis=1) for group in groups)
        return 0.5 + 1.25 * k0 + 1.0 * k1 + 0.5 * k0 * k1 + 0.25 * k1 * k1

    def feasible(states: np.ndarray) -> np.ndarray:
        k0, k1 = (states[:, group].sum(axis=1) for group in groups)
        return (cost(states) <= 6.0) & (k0 >= 1) & (k1 >= 1)

    assert np.all(feasible(binary_states(result)))
    best = constrained_minimum(bqm, feasible(ALL_STATES))
    assert result.first.energy == pytest.approx(best, abs=1e-6)


@pytest.mark.parametrize("name", with_capability(Capability.BATCH))
def test_declared_batch_solves_each_problem(name):
    sampler = builtin(name)
    bqms = [random_bqm(N, "SPIN", seed=14), random_bqm(N - 2, "BINARY", seed=15)]
    results = sampler.sample_batch(bqms, **EFFORT[name])
    assert len(results) == len(bqms)
    for bqm, result in zip(bqms, results):
        assert result.vartype is bqm.vartype and set(result.variables) == set(bqm.variables)
        np.testing.assert_allclose(result.record.energy, bqm.energies(result), atol=1e-9)
        assert result.first.energy == pytest.approx(brute_force_minimum(bqm), abs=1e-9)


@pytest.mark.parametrize("name", with_capability(Capability.STRUCTURED))
def test_declared_structured_matches_its_dense_bqm(name):
    sampler = builtin(name)
    problem = random_structured(N, seed=16)
    bqm = problem.to_bqm()
    result = sampler.sample_structured(problem, **EFFORT[name])
    np.testing.assert_allclose(result.record.energy, bqm.energies(result), atol=1e-9)
    assert result.first.energy == pytest.approx(brute_force_minimum(bqm), abs=1e-9)


@pytest.mark.parametrize("name", with_capability(Capability.STRUCTURED_CARDINALITIES))
def test_declared_structured_cardinalities_are_hard(name):
    sampler = builtin(name)
    problem = random_structured(N, seed=17)
    groups = [([0, 1, 2, 3], 1), ([4, 5, 6, 7], 2)]
    result = sampler.sample_structured(problem, cardinalities=groups, **EFFORT[name])
    states = binary_states(result)
    feasible = np.ones(len(ALL_STATES), dtype=bool)
    for index, k in groups:
        assert np.all(states[:, index].sum(axis=1) == k)
        feasible &= ALL_STATES[:, index].sum(axis=1) == k
    best = constrained_minimum(problem.to_bqm(), feasible)
    assert result.first.energy == pytest.approx(best, abs=1e-9)
