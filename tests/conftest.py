"""Shared fixtures: random problems with brute-force references."""

from __future__ import annotations

from pathlib import Path

import dimod
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCH = REPO.parent / "shared" / "bench"


def random_bqm(n: int, vartype: str, seed: int, density: float = 0.7) -> dimod.BinaryQuadraticModel:
    """Real-valued random problem with fields, couplings and an offset."""
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.normal(size=(n, n)) * (rng.random((n, n)) < density), 1)
    linear = rng.normal(size=n)
    rows, cols = np.nonzero(upper)
    return dimod.BinaryQuadraticModel.from_numpy_vectors(
        linear, (rows, cols, upper[rows, cols]), float(rng.normal()), vartype)


def brute_force_minimum(bqm: dimod.BinaryQuadraticModel) -> float:
    return float(dimod.ExactSolver().sample(bqm).first.energy)


def assert_local_minima(bqm: dimod.BinaryQuadraticModel, sampleset: dimod.SampleSet) -> None:
    """No single flip lowers any returned state (checked by recomputing energies)."""
    labels = list(sampleset.variables)
    states = sampleset.record.sample.astype(float)
    base = bqm.energies((states, labels))
    for k in range(len(labels)):
        flipped = states.copy()
        flipped[:, k] = (-flipped[:, k]) if bqm.vartype is dimod.SPIN else 1 - flipped[:, k]
        assert np.all(bqm.energies((flipped, labels)) >= base - 1e-9), f"flip of {labels[k]}"


@pytest.fixture(scope="session")
def shared_bench() -> Path:
    if not SHARED_BENCH.is_dir():
        pytest.skip(f"benchmark instances not found at {SHARED_BENCH}")
    return SHARED_BENCH


@pytest.fixture
def one_torch_thread():
    """One intra-op thread for the network tests: tiny models gain nothing from more, and
    the suite stays off the cores other work is using."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
