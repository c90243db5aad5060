"""torch-sa's ahead-of-time compiled CPU kernel (ising_qubo/solvers/_sa_kernel.c through
_sa_native): built by the install, move for move the numba kernel's, right against
recomputed fields and a brute-force optimum, chosen where it can run, and a solve on it
loads neither numba nor torch."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import dimod
import numpy as np
import pytest
from conftest import brute_force_minimum

from ising_qubo.solvers import _sa_cpu, _sa_native, get_solver
from ising_qubo.solvers._common import symmetric_csr
from ising_qubo.solvers.kernel_threads import thread_cap

REPO = Path(__file__).resolve().parents[1]


def _problem(n: int, density: float, seed: int, integral: bool):
    rng = np.random.default_rng(seed)
    rows, cols = np.triu_indices(n, 1)
    keep = rng.random(len(rows)) < density
    rows, cols = rows[keep], cols[keep]
    if integral:
        return rng.integers(-2, 3, n).astype(float), rows, cols, rng.choice([-1.0, 1.0], len(rows))
    return rng.normal(size=n), rows, cols, rng.normal(size=len(rows))


def _dense(n, rows, cols, data) -> np.ndarray:
    J = np.zeros((n, n))
    J[rows, cols] = data
    return J + J.T


def test_the_install_built_the_compiled_kernel():
    # setup.py builds it (optional only where no C compiler exists); this project's
    # installs have one, so a missing kernel is a broken build, not a fallback
    assert _sa_native.available(), f"{_sa_native.EXTENSION} was not built: rerun setup"


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("greedy", [False, True])
@pytest.mark.parametrize("integral", [False, True])
def test_csr_sweeps_equal_the_numba_kernel_move_for_move(integral, greedy, threads):
    n, reps = 120, 5
    h, rows, cols, data = _problem(n, 0.08, seed=3, integral=integral)
    indptr, indices, values = symmetric_csr(n, rows, cols, data)
    start = np.random.default_rng(4).choice([-1.0, 1.0], size=(reps, n))
    betas = np.geomspace(0.05, 4.0, 160)[:, None]
    streams = np.random.SeedSequence(9).generate_state(reps, np.uint64)
    empty = np.zeros((0, n))

    ref = start.copy()
    ref_fields, _, _ = _sa_cpu.fields_csr(ref, h, indptr, indices, values, empty, empty)
    ref_streams = streams.copy()
    ref_flips = _sa_cpu.sweeps_plain(
        ref, ref_fields, indptr, indices, values, betas, ref_streams, greedy
    )
    ours = start.copy()
    fields = _sa_native.fields_csr(ours, h, indptr, indices, values, threads=threads)
    ours_streams = streams.copy()
    flips = _sa_native.sweeps_csr(
        ours, fields, indptr, indices, values, betas, ours_streams, greedy, threads=threads
    )
    assert not np.array_equal(ours, start)  # the sweeps moved something
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(fields, ref_fields)  # bit for bit, drift included
    np.testing.assert_array_equal(ours_streams, ref_streams)  # the same draws
    np.testing.assert_array_equal(flips, ref_flips)
    # and right, not only equal: incremental fields are h + J s recomputed densely
    np.testing.assert_allclose(fields, h + ours @ _dense(n, rows, cols, data), atol=1e-9)
    if greedy:  # a finished descent: no single flip lowers any replica's energy
        assert np.all(ours * fields <= 1e-12)
        assert not flips.any()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("greedy", [False, True])
def test_dense_sweeps_equal_the_numba_kernel_move_for_move(greedy, threads):
    n, reps = 70, 4
    h, rows, cols, data = _problem(n, 1.0, seed=5, integral=False)
    flat = _dense(n, rows, cols, data).ravel()
    start = np.random.default_rng(6).choice([-1.0, 1.0], size=(reps, n))
    betas = np.geomspace(0.02, 2.0, 90)[:, None]
    streams = np.random.SeedSequence(2).generate_state(reps, np.uint64)
    var_start, j_start = np.array([0, n], dtype=np.int64), np.zeros(1, dtype=np.int64)

    ref = start.copy()
    ref_fields = _sa_cpu.fields_blocks(ref, h, flat, var_start, j_start)
    ref_streams = streams.copy()
    _sa_cpu.sweeps_blocks(ref, ref_fields, flat, var_start, j_start, betas, ref_streams, greedy)
    ours = start.copy()
    fields = _sa_native.fields_dense(ours, h, flat, threads=threads)
    ours_streams = streams.copy()
    _sa_native.sweeps_dense(ours, fields, flat, betas, ours_streams, greedy, threads=threads)
    assert not np.array_equal(ours, start)
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(fields, ref_fields)
    np.testing.assert_array_equal(ours_streams, ref_streams)
    np.testing.assert_allclose(fields, h + ours @ flat.reshape(n, n), atol=1e-9)


def test_the_compiled_kernel_anneals_a_small_problem_to_its_brute_force_optimum():
    n = 14
    h, rows, cols, data = _problem(n, 0.5, seed=4, integral=False)
    bqm = dimod.BinaryQuadraticModel.from_numpy_vectors(h, (rows, cols, data), 0.0, "SPIN")
    indptr, indices, values = symmetric_csr(n, rows, cols, data)
    spins = np.random.default_rng(0).choice([-1.0, 1.0], size=(8, n))
    fields = _sa_native.fields_csr(spins, h, indptr, indices, values)
    streams = np.random.SeedSequence(1).generate_state(8, np.uint64)
    betas = np.geomspace(0.1, 10, 2000)[:, None]
    _sa_native.sweeps_csr(spins, fields, indptr, indices, values, betas, streams, False)
    assert bqm.energies((spins, range(n))).min() == pytest.approx(brute_force_minimum(bqm))


@pytest.mark.parametrize("density", [0.1, 1.0])  # the CSR and the dense layout
def test_torch_sa_picks_the_compiled_kernel_and_returns_numbas_seeded_results(density):
    h, rows, cols, data = _problem(80, density, seed=8, integral=False)
    bqm = dimod.BinaryQuadraticModel.from_numpy_vectors(h, (rows, cols, data), 0.0, "SPIN")
    sampler = get_solver("torch-sa")
    params = dict(num_reads=6, num_sweeps=300, seed=3, device="cpu")
    auto = sampler.sample(bqm, **params)
    numba = sampler.sample(bqm, backend="numba", **params)
    assert auto.info["backend"] == "native" and numba.info["backend"] == "numba"
    np.testing.assert_array_equal(auto.record.sample, numba.record.sample)
    np.testing.assert_array_equal(auto.record.energy, bqm.energies(auto))


def test_batches_run_on_numba_and_asking_native_for_one_is_a_clear_error():
    bqms = [dimod.generators.gnp_random_bqm(12, 0.4, "SPIN", random_state=s) for s in (1, 2)]
    sampler = get_solver("torch-sa")
    runs = sampler.sample_batch(bqms, num_reads=3, num_sweeps=50, seed=1, device="cpu")
    assert all(run.info["backend"] == "numba" for run in runs)
    with pytest.raises(ValueError, match="backend='native' runs one problem without low-rank"):
        sampler.sample_batch(bqms, num_reads=3, num_sweeps=50, backend="native", device="cpu")


def test_without_the_extension_auto_runs_numba_and_native_names_what_is_missing(monkeypatch):
    monkeypatch.setattr(_sa_native, "_loaded", [None])  # as an install without a compiler
    bqm = dimod.generators.gnp_random_bqm(20, 0.3, "SPIN", random_state=3)
    sampler = get_solver("torch-sa")
    run = sampler.sample(bqm, num_reads=2, num_sweeps=50, seed=0, device="cpu")
    assert run.info["backend"] == "numba"
    with pytest.raises(ValueError, match=r"_sa_kernel, which was not built.*backend='numba'"):
        sampler.sample(bqm, num_reads=2, num_sweeps=50, backend="native", device="cpu")
    with pytest.raises(RuntimeError, match="not installed"):
        _sa_native.fields_csr(np.ones((1, 1)), np.zeros(1), np.zeros(2, np.int64),
                              np.zeros(0, np.int32), np.zeros(0))  # fmt: skip


def test_arrays_of_another_type_or_layout_are_refused_not_misread():
    spins = np.ones((2, 4))
    csr = (np.zeros(5, np.int64), np.zeros(0, np.int32), np.zeros(0))
    with pytest.raises(TypeError, match="spins must be C-contiguous float64"):
        _sa_native.fields_csr(spins.astype(np.float32), np.zeros(4), *csr)
    with pytest.raises(TypeError, match="spins must be C-contiguous float64"):
        _sa_native.fields_csr(np.ones((4, 2)).T, np.zeros(4), *csr)
    with pytest.raises(TypeError, match="indices must be C-contiguous int32"):
        _sa_native.fields_csr(spins, np.zeros(4), csr[0], np.zeros(0, np.int64), csr[2])


def test_a_ctrl_c_in_the_calling_block_returns_only_after_the_other_blocks_end():
    # the blocks write into the caller's arrays: none may still run once the call returns
    finished = []

    def call(a: int, b: int) -> None:
        if a == 0:
            raise KeyboardInterrupt
        time.sleep(0.2)
        finished.append((a, b, threading.current_thread().name))

    with pytest.raises(KeyboardInterrupt):
        _sa_native._blocks(9, 3, call)
    assert sorted(f[:2] for f in finished) == [(3, 6), (6, 9)]
    assert all(name.startswith("ising-qubo-kernel") for _, _, name in finished)


def _two_thread_fields(n: int) -> float:
    spins = np.ones((4, n))
    indptr, indices = np.arange(n + 1, dtype=np.int64), np.arange(n, dtype=np.int32)
    return float(_sa_native.fields_csr(spins, np.zeros(n), indptr, indices, np.ones(n), 2).sum())


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_a_forked_child_runs_threaded_calls_on_its_own_pool():
    import multiprocessing

    assert _two_thread_fields(5) == 20.0  # the parent's pool exists now
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply_async(_two_thread_fields, (7,)).get(timeout=60) == 28.0


def test_a_workers_error_is_raised_by_the_call():
    def call(a: int, b: int) -> None:
        if a > 0:
            raise ValueError(f"block {a}:{b}")

    with pytest.raises(ValueError, match="block 2:4"):
        _sa_native._blocks(4, 2, call)


def test_the_thread_cap_is_numbas_without_importing_numba(monkeypatch):
    monkeypatch.delitem(sys.modules, "numba")  # as in a process that never loaded it
    monkeypatch.setenv("NUMBA_NUM_THREADS", "3")
    assert thread_cap() == 3
    monkeypatch.setenv("NUMBA_NUM_THREADS", "")
    assert thread_cap() >= 1
    assert "numba" not in sys.modules  # asking did not import it


def test_a_cpu_solve_on_the_compiled_kernel_loads_neither_numba_nor_torch():
    code = """
import json, sys
import dimod
from ising_qubo import get_solver
bqm = dimod.generators.gnp_random_bqm(60, 0.1, "SPIN", random_state=1)
dense = dimod.generators.gnp_random_bqm(40, 1.0, "SPIN", random_state=2)
sampler = get_solver("torch-sa")
runs = [sampler.sample(b, num_reads=4, num_sweeps=100, seed=1, time_limit=5) for b in (bqm, dense)]
print(json.dumps({"backends": [r.info["backend"] for r in runs],
                  "loaded": sorted(m for m in ("numba", "llvmlite", "torch") if m in sys.modules)}))
"""
    env = {"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"backends": ["native", "native"], "loaded": []}
