"""torch-sa on the CPU runs without importing torch, and gives the same seeded results
as in a process where torch is loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ising_qubo.solvers import cpu_first_device

REPO = Path(__file__).resolve().parents[1]

# Run both in a fresh interpreter and in the test process: solve() returns every case's
# energies and states as JSON-ready data.
SOLVES = """
import numpy as np
import dimod
from ising_qubo import get_solver
from ising_qubo.lowrank import LowRankIsing


def solve():
    rng = np.random.default_rng(7)
    n = 24
    rows, cols = np.triu_indices(n, 1)
    keep = rng.random(len(rows)) < 0.3
    bqm = dimod.BinaryQuadraticModel.from_numpy_vectors(
        rng.normal(size=n), (rows[keep], cols[keep], rng.normal(size=keep.sum())), 0.0, "SPIN"
    )
    blocks = []
    for index in (np.arange(0, 8), np.arange(8, 20)):
        J = rng.normal(size=(len(index), len(index)))
        J = np.triu(J, 1) + np.triu(J, 1).T
        blocks.append((index, J))
    structured = LowRankIsing(rng.normal(size=n), blocks, rng.normal(size=(2, n)),
                              rng.normal(size=(2, n)))
    groups = [(list(range(0, 12)), 5), (list(range(12, 24)), 7)]
    sampler = get_solver("torch-sa")
    runs = {
        "bqm": sampler.sample(bqm, num_reads=6, num_sweeps=200, seed=11, device="cpu"),
        "bqm-auto": sampler.sample(bqm, num_reads=6, num_sweeps=200, seed=11),
        "lowrank": sampler.sample_structured(
            structured, num_reads=6, num_sweeps=200, seed=5, device="cpu"
        ),
        "lowrank-cardinalities": sampler.sample_structured(
            structured, num_reads=6, num_sweeps=200, seed=5, device="cpu", cardinalities=groups
        ),
    }
    return {
        name: {
            "device": str(ss.info.get("device")),
            "energies": ss.record.energy.tolist(),
            "states": ss.record.sample.tolist(),
        }
        for name, ss in runs.items()
    }
"""

CHILD = (
    SOLVES
    + """
import json, sys
result = solve()
print(json.dumps({"torch_loaded": "torch" in sys.modules, "runs": result}))
"""
)


def _child(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **env},
        timeout=300,
    )


def test_cpu_solves_leave_torch_unloaded_and_match_a_torch_process():
    # no CUDA for the child, so that 'auto' is the CPU on a GPU machine too
    done = _child(CHILD, CUDA_VISIBLE_DEVICES="")
    assert done.returncode == 0, done.stderr
    child = json.loads(done.stdout.strip().splitlines()[-1])
    assert child["torch_loaded"] is False
    assert all(run["device"] == "cpu" for run in child["runs"].values())

    import torch  # the parent has torch loaded: the results must not depend on it

    assert torch.get_num_threads() >= 1
    namespace: dict = {}
    exec(SOLVES, namespace)
    parent = namespace["solve"]()
    if parent["bqm-auto"]["device"] != "cpu":  # a GPU machine: the CPU run is the reference
        parent["bqm-auto"] = parent["bqm"]
    for name, run in child["runs"].items():
        assert run["states"] == parent[name]["states"], name
        assert run["energies"] == pytest.approx(parent[name]["energies"]), name
    # the swap search kept both groups' cardinalities in every state
    assert len(child["runs"]["lowrank-cardinalities"]["states"]) == 6
    for state in child["runs"]["lowrank-cardinalities"]["states"]:
        assert sum(s > 0 for s in state[:12]) == 5 and sum(s > 0 for s in state[12:]) == 7


@pytest.mark.parametrize("backend", ["native", "numba"])
def test_torch_imported_after_a_compiled_solve_keeps_omp_num_threads(backend):
    # numba's OpenMP pool (two threads here) resets the process-wide OpenMP thread count;
    # torch, imported after it, must still find OMP_NUM_THREADS=1. The native kernel's
    # solve never starts that pool (nor imports numba).
    code = f"""
import sys
import dimod
from ising_qubo import get_solver
bqm = dimod.BinaryQuadraticModel({{0: 1.0, 1: -0.5}}, {{(0, 1): 1.0}}, 0.0, "SPIN")
run = get_solver("torch-sa").sample(bqm, num_reads=2, num_sweeps=10, seed=1, device="cpu",
                                    backend="{backend}")
assert run.info["backend"] == "{backend}"
assert "torch" not in sys.modules
numba_loaded = "numba" in sys.modules
import torch
print(int(numba_loaded), torch.get_num_threads())
if numba_loaded:
    import numba
    print(numba.get_num_threads())
"""
    done = _child(code, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("\n")
    numba_loaded, torch_threads = map(int, lines[0].split())
    assert torch_threads == 1
    assert numba_loaded == (backend == "numba")
    if backend == "numba":
        assert int(lines[1]) == 2  # the solver's pool kept its own count


@pytest.fixture
def fresh_node_probe():
    """The once-per-process device-node lookup forgotten before and after the test, so
    the fake nodes it sees are not what later tests see."""
    cpu_first_device._gpu_nodes_present.cache_clear()
    yield
    cpu_first_device._gpu_nodes_present.cache_clear()


def test_auto_device_asks_torch_only_when_a_gpu_may_be_visible(monkeypatch, fresh_node_probe):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(cpu_first_device.os, "name", "posix")
    probes = []

    def no_nodes(pattern):
        probes.append(pattern)
        return []

    monkeypatch.setattr(cpu_first_device.glob, "glob", no_nodes)
    assert cpu_first_device.gpu_may_be_visible() is False
    assert cpu_first_device.gpu_may_be_visible() is False
    # the device nodes are looked up once per process, not on every solve
    assert probes == list(cpu_first_device.GPU_NODE_PATTERNS)
    nodes = {"/dev/nvidia[0-9]*": ["/dev/nvidia0"]}
    monkeypatch.setattr(cpu_first_device.glob, "glob", lambda pattern: nodes.get(pattern, []))
    cpu_first_device._gpu_nodes_present.cache_clear()  # as a new process finds them
    assert cpu_first_device.gpu_may_be_visible() is True
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert cpu_first_device.gpu_may_be_visible() is False
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setattr(cpu_first_device.importlib.util, "find_spec", lambda name: None)
    assert cpu_first_device.gpu_may_be_visible() is False  # no torch installed: the CPU


def test_device_values_keep_their_meaning():
    import torch

    assert cpu_first_device.resolve_cpu_first("cpu", "torch-sa") == "cpu"
    auto = cpu_first_device.resolve_cpu_first("auto", "torch-sa")  # torch loaded: asked
    assert str(auto) == ("cuda" if torch.cuda.is_available() else "cpu")
    assert cpu_first_device.resolve_cpu_first(torch.device("cpu"), "x") == torch.device("cpu")
    with pytest.raises(ValueError, match="torch-sa: device must be"):
        cpu_first_device.resolve_cpu_first("gpu", "torch-sa")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            cpu_first_device.resolve_cpu_first("cuda", "torch-sa")


def test_torch_kernel_names_still_import_from_torch_sa():
    from ising_qubo.solvers import _sa_torch, torch_sa

    assert torch_sa.anneal is _sa_torch.anneal
    assert torch_sa.IsingTensors is _sa_torch.IsingTensors
    with pytest.raises(AttributeError, match="no_such_name"):
        torch_sa.no_such_name  # noqa: B018
