"""Solvers by name, defaults, third-party samplers and entry-point plug-ins."""

from __future__ import annotations

import dimod
import pytest
from conftest import random_bqm

import ising_qubo
from ising_qubo.solvers import registry


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

    plugin = EntryPoint(name="plugin-test", value="test_registry:CountingSampler",
                        group=registry.ENTRY_POINT_GROUP)

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
