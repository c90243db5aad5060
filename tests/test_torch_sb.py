"""torch-sb (our simulated bifurcation) and sb-ref (the simulated-bifurcation package)."""

from __future__ import annotations

import re
import sys
import warnings

import dimod
import numpy as np
import pytest
import torch
from dimod.testing.asserts import assert_sampler_api
from dwave.samplers import SimulatedAnnealingSampler

import ising_qubo
from ising_qubo.solvers import get_solver, solver_info
from ising_qubo.solvers.sb_ref import SBReferenceSampler, package_status
from ising_qubo.solvers.torch_sb import TorchSBSampler

CUDA = torch.cuda.is_available()
HAVE_SB = package_status().startswith("yes")
needs_sb = pytest.mark.skipif(not HAVE_SB, reason="simulated-bifurcation not installed")


def random_bqm(n: int, density: float, vartype: dimod.Vartype, seed: int) -> dimod.BQM:
    rng = np.random.default_rng(seed)
    bqm = dimod.generators.gnp_random_bqm(
        n, density, vartype, random_state=seed, bias_generator=lambda k: rng.normal(size=k)
    )
    assert any(bqm.linear.values())
    return bqm


def dense_arrays(bqm: dimod.BQM) -> tuple[np.ndarray, np.ndarray, float]:
    """(linear, upper-triangular quadratic, offset) in the BQM's own vartype."""
    n = bqm.num_variables
    linear, (rows, cols, values), offset = bqm.to_numpy_vectors(list(bqm.variables))
    quadratic = np.zeros((n, n))
    np.add.at(quadratic, (np.minimum(rows, cols), np.maximum(rows, cols)), values)
    return np.asarray(linear, float), quadratic, float(offset)


def numpy_energies(bqm: dimod.BQM, states: np.ndarray) -> np.ndarray:
    linear, quadratic, offset = dense_arrays(bqm)
    states = np.asarray(states, float)
    return ((states @ quadratic) * states).sum(axis=1) + states @ linear + offset


def ordered_samples(bqm: dimod.BQM, sampleset: dimod.SampleSet) -> np.ndarray:
    """The samples as a (reads, n) array with columns in ``bqm.variables`` order."""
    columns = [sampleset.variables.index(v) for v in bqm.variables]
    return sampleset.record.sample[:, columns].astype(float)


def assert_local_minima(bqm: dimod.BQM, sampleset: dimod.SampleSet) -> None:
    """No single flip lowers any sample's energy (checked without dimod's energies).

    With Q symmetric (both triangles), flipping variable i changes the energy by
    ``-2 s_i (l_i + (Q s)_i)`` for spins and ``(1 - 2 x_i) (l_i + (Q x)_i)`` for bits.
    """
    states = ordered_samples(bqm, sampleset)
    linear, upper, _ = dense_arrays(bqm)
    fields = linear + states @ (upper + upper.T)
    if bqm.vartype is dimod.SPIN:
        deltas = -2 * states * fields
    else:
        deltas = (1 - 2 * states) * fields
    assert deltas.min() >= -1e-9, f"a single flip lowers the energy by {-deltas.min()}"
    # the formula itself, against energies of explicitly flipped states (first sample)
    other = (lambda v: 1 - v) if bqm.vartype is dimod.BINARY else (lambda v: -v)
    flipped = np.repeat(states[:1], states.shape[1], axis=0)
    np.fill_diagonal(flipped, other(np.diag(flipped)))
    np.testing.assert_allclose(
        numpy_energies(bqm, flipped) - numpy_energies(bqm, states[:1]), deltas[0], atol=1e-9
    )


def assert_recomputed(bqm: dimod.BQM, sampleset: dimod.SampleSet) -> None:
    assert sampleset.vartype is bqm.vartype
    assert set(sampleset.variables) == set(bqm.variables)
    assert set(np.unique(sampleset.record.sample)) <= set(bqm.vartype.value)
    np.testing.assert_allclose(
        sampleset.record.energy,
        bqm.energies((sampleset.record.sample, sampleset.variables)),
        rtol=0,
        atol=1e-9,
    )
    np.testing.assert_allclose(
        sampleset.record.energy,
        numpy_energies(bqm, ordered_samples(bqm, sampleset)),
        rtol=0,
        atol=1e-9,
    )


def maxcut_bqm(n: int, p: float, seed: int) -> dimod.BQM:
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((n, n)) < p, 1)
    rows, cols = np.nonzero(upper)
    couplings = {(int(i), int(j)): 1.0 for i, j in zip(rows, cols, strict=True)}
    return dimod.BQM.from_ising({}, couplings)


# ---------------------------------------------------------------- API and registry


@pytest.mark.parametrize(
    "sampler", [TorchSBSampler(), SBReferenceSampler()], ids=["torch-sb", "sb-ref"]
)
def test_sampler_api(sampler):
    assert_sampler_api(sampler)
    assert set(sampler.properties["mode_options"]) == {"ballistic", "discrete"}


def test_registry_entries():
    info = {entry.name: entry for entry in solver_info()}
    assert info["torch-sb"].description.startswith("simulated bifurcation")
    assert info["torch-sb"].available().startswith("yes")
    assert info["sb-ref"].available() == package_status()
    assert isinstance(get_solver("torch-sb"), TorchSBSampler)
    assert isinstance(get_solver("sb-ref"), SBReferenceSampler)


# ---------------------------------------------------------------- torch-sb


@pytest.mark.parametrize("mode", ["ballistic", "discrete"])
@pytest.mark.parametrize("vartype", [dimod.SPIN, dimod.BINARY], ids=["spin", "binary"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_torch_sb_reaches_optimum(mode, vartype, seed):
    bqm = random_bqm(12 + seed, 0.6, vartype, seed)
    optimum = dimod.ExactSolver().sample(bqm).first.energy
    result = TorchSBSampler().sample(bqm, num_reads=64, mode=mode, seed=seed, device="cpu")
    assert len(result) == 64
    assert result.first.energy == pytest.approx(optimum, abs=1e-9)
    assert_recomputed(bqm, result)
    assert_local_minima(bqm, result)
    assert result.info["mode"] == mode
    assert result.info["device"] == "cpu"
    assert result.info["num_steps"] == 1000
    assert result.info["timing"]["wall_s"] > 0


def test_torch_sb_defaults_and_labels():
    bqm = dimod.BQM(
        {"a": 1.0, ("x", 1): -0.5}, {("a", ("x", 1)): 2.0, (("x", 1), 7): -1.0}, 0.25, dimod.BINARY
    )
    result = ising_qubo.solve(bqm, "torch-sb", seed=3)
    assert len(result) == 128  # default num_reads
    assert result.first.energy == pytest.approx(dimod.ExactSolver().sample(bqm).first.energy)
    assert_recomputed(bqm, result)


@pytest.mark.parametrize("mode", ["ballistic", "discrete"])
def test_torch_sb_same_seed_same_samples(mode):
    bqm = random_bqm(14, 0.5, dimod.SPIN, 7)
    kwargs = dict(
        num_reads=16,
        num_steps=600,
        mode=mode,
        sampling_period=5,
        convergence_threshold=4,
        device="cpu",
    )
    first = TorchSBSampler().sample(bqm, seed=11, **kwargs)
    second = TorchSBSampler().sample(bqm, seed=11, **kwargs)
    np.testing.assert_array_equal(first.record.sample, second.record.sample)
    assert first.info["num_steps"] == second.info["num_steps"]


def test_torch_sb_early_stopping_and_time_limit():
    bqm = random_bqm(10, 0.6, dimod.SPIN, 3)
    sampler = TorchSBSampler()
    stopped = sampler.sample(
        bqm,
        num_reads=8,
        num_steps=5000,
        sampling_period=10,
        convergence_threshold=10,
        seed=0,
        device="cpu",
    )
    assert stopped.info["num_steps"] < 5000
    full = sampler.sample(
        bqm, num_reads=8, num_steps=300, early_stopping=False, seed=0, device="cpu"
    )
    assert full.info["num_steps"] == 300
    timed = sampler.sample(bqm, num_reads=8, num_steps=10**8, time_limit=0.2, seed=0, device="cpu")
    assert timed.info["num_steps"] < 10**8
    assert timed.info["timing"]["wall_s"] < 5  # 25 x the limit: holds under load, not if ignored
    for result in (stopped, full, timed):
        assert_recomputed(bqm, result)
        assert_local_minima(bqm, result)


def test_torch_sb_warm_start_and_float64():
    bqm = random_bqm(9, 0.7, dimod.BINARY, 4)
    ground = dimod.ExactSolver().sample(bqm).first
    result = TorchSBSampler().sample(
        bqm, initial_states=[ground.sample] * 5, seed=0, dtype="float64", dt=0.5, device="cpu"
    )
    assert len(result) == 5  # num_reads defaults to the number of initial states
    assert result.info["dt"] == 0.5
    assert_recomputed(bqm, result)
    assert_local_minima(bqm, result)


@pytest.mark.parametrize(
    "bqm",
    [
        dimod.BQM({}, {}, 1.5, dimod.SPIN),
        dimod.BQM({"a": 2.0}, {}, 0.0, dimod.SPIN),
        dimod.BQM({"a": 0.0}, {}, 0.0, dimod.BINARY),
        dimod.BQM({"a": -1.0, "b": 3.0, "c": 0.5}, {}, 0.0, dimod.BINARY),
        dimod.BQM({}, {("a", "b"): 1.0}, -2.0, dimod.SPIN),
    ],
    ids=["empty", "one-field", "one-free", "fields-only", "one-coupling"],
)
def test_torch_sb_edge_cases(bqm):
    result = TorchSBSampler().sample(bqm, num_reads=4, num_steps=50, seed=0, device="cpu")
    assert len(result) == 4
    assert_recomputed(bqm, result)
    if bqm.num_variables:
        assert result.first.energy == pytest.approx(dimod.ExactSolver().sample(bqm).first.energy)
        assert_local_minima(bqm, result)


def test_torch_sb_sparse_path_close_to_neal():
    bqm = maxcut_bqm(300, 0.02, seed=5)
    edges = bqm.num_interactions
    result = TorchSBSampler().sample(bqm, num_reads=64, num_steps=1000, seed=0, device="cpu")
    assert result.info["matrix"] == "csr"
    assert_recomputed(bqm, result)
    assert_local_minima(bqm, result)
    neal = SimulatedAnnealingSampler().sample(bqm, num_reads=16, num_sweeps=1000, seed=0)
    cut_sb = (edges - result.first.energy) / 2
    cut_neal = (edges - neal.first.energy) / 2
    assert cut_sb >= 0.98 * cut_neal, (cut_sb, cut_neal)


def test_torch_sb_sparse_matches_dense_on_small_problem():
    bqm = random_bqm(12, 0.5, dimod.SPIN, 9)
    optimum = dimod.ExactSolver().sample(bqm).first.energy
    result = TorchSBSampler().sample(
        bqm, num_reads=32, num_steps=300, sparse=True, seed=1, device="cpu"
    )
    assert result.info["matrix"] == "csr"
    assert result.first.energy == pytest.approx(optimum)
    assert_recomputed(bqm, result)


@pytest.mark.cuda
@pytest.mark.parametrize("sparse", [False, True])
def test_torch_sb_cuda(sparse):
    bqm = random_bqm(14, 0.5, dimod.BINARY, 2)
    optimum = dimod.ExactSolver().sample(bqm).first.energy
    result = TorchSBSampler().sample(bqm, num_reads=128, device="cuda", sparse=sparse, seed=0)
    assert result.info["device"].startswith("cuda")
    assert result.first.energy == pytest.approx(optimum)
    assert_recomputed(bqm, result)
    assert_local_minima(bqm, result)
    if HAVE_SB:
        ref = SBReferenceSampler().sample(bqm, num_reads=64, device="cuda", seed=0)
        assert_recomputed(bqm, ref)


# ---------------------------------------------------------------- sb-ref


@needs_sb
@pytest.mark.parametrize("vartype", [dimod.SPIN, dimod.BINARY], ids=["spin", "binary"])
def test_sb_ref_reaches_optimum(vartype):
    bqm = random_bqm(10, 0.6, vartype, 1)
    optimum = dimod.ExactSolver().sample(bqm).first.energy
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with the defaults, the package's agents converge
        result = SBReferenceSampler().sample(bqm, num_reads=64, seed=0, device="cpu")
    assert len(result) == 64
    assert result.first.energy == pytest.approx(optimum, abs=1e-9)
    assert_recomputed(bqm, result)
    assert result.info["timing"]["wall_s"] > 0


@needs_sb
def test_sb_ref_same_seed_same_samples():
    bqm = random_bqm(10, 0.6, dimod.SPIN, 2)
    kwargs = dict(num_reads=8, num_steps=500, early_stopping=False, mode="discrete", device="cpu")
    first = SBReferenceSampler().sample(bqm, seed=4, **kwargs)
    second = SBReferenceSampler().sample(bqm, seed=4, **kwargs)
    np.testing.assert_array_equal(first.record.sample, second.record.sample)


def test_sb_ref_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "simulated_bifurcation", None)
    hint = "pip install simulated-bifurcation (or the extra: pip install 'ising-qubo[bench]')"
    assert package_status() == f"no: {hint}"  # no "-e .": a wheel user has no source tree
    bqm = random_bqm(4, 1.0, dimod.SPIN, 0)
    with pytest.raises(
        ImportError,
        match=re.escape(f"sb-ref needs the optional package simulated-bifurcation: {hint}"),
    ):
        SBReferenceSampler().sample(bqm)


# ---------------------------------------------------------------- bad parameters


BAD = [
    ({"num_reads": 0}, "num_reads"),
    ({"num_steps": 0}, "num_steps"),
    ({"mode": "foo"}, "mode"),
    ({"dtype": "int8"}, "dtype"),
    ({"time_limit": -1}, "time_limit"),
    ({"device": "tpu"}, "device"),
    ({"early_stopping": "yes"}, "early_stopping"),
]
if not CUDA:
    BAD.append(({"device": "cuda"}, "device"))


@pytest.mark.parametrize(
    "kwargs, name",
    BAD
    + [
        ({"dt": -1}, "dt"),
        ({"dt": float("nan")}, "dt"),
        ({"sampling_period": 0}, "sampling_period"),
        ({"sparse": "yes"}, "sparse"),
    ],
)
def test_torch_sb_bad_parameters(kwargs, name):
    bqm = random_bqm(4, 1.0, dimod.SPIN, 0)
    with pytest.raises(ValueError, match=rf"torch-sb: {name}") as caught:
        TorchSBSampler().sample(bqm, **kwargs)
    assert repr(next(iter(kwargs.values()))) in str(caught.value)


@pytest.mark.parametrize("kwargs, name", BAD)
def test_sb_ref_bad_parameters(kwargs, name):
    bqm = random_bqm(4, 1.0, dimod.SPIN, 0)
    with pytest.raises(ValueError, match=rf"sb-ref: {name}"):
        SBReferenceSampler().sample(bqm, **kwargs)


def test_not_a_bqm():
    with pytest.raises(TypeError, match="torch-sb"):
        TorchSBSampler().sample({"a": 1})
    with pytest.raises(TypeError, match="sb-ref"):
        SBReferenceSampler().sample({"a": 1})
