"""The compiled CPU kernel's specialised paths against their general forms and against
recomputed references: the one-problem sweep kernel, the CSR builder's 16-bit sort, and
random starts drawn without dimod's parser."""

from __future__ import annotations

import dimod
import numpy as np
import pytest
from conftest import brute_force_minimum

from ising_qubo.lowrank import csr_from_coo
from ising_qubo.solvers import _sa_cpu, _sa_native, get_solver
from ising_qubo.solvers._common import parse_initial_states, symmetric_csr


def _sparse_problem(n: int, density: float, seed: int):
    rng = np.random.default_rng(seed)
    rows, cols = np.triu_indices(n, 1)
    keep = rng.random(len(rows)) < density
    rows, cols = rows[keep], cols[keep]
    data = rng.normal(size=len(rows))
    return rng.normal(size=n), rows, cols, data


def _dense_j(n, rows, cols, data):
    J = np.zeros((n, n))
    J[rows, cols] = data
    return J + J.T


@pytest.mark.parametrize("greedy", [False, True])
def test_plain_sweeps_equal_the_general_kernel_move_for_move(greedy):
    n, reps = 90, 3
    h, rows, cols, data = _sparse_problem(n, 0.1, seed=1)
    indptr, indices, values = symmetric_csr(n, rows, cols, data)
    start = np.random.default_rng(2).choice([-1.0, 1.0], size=(reps, n))
    betas = np.geomspace(0.05, 4.0, 150)[:, None]
    empty, zeros = np.zeros((0, n)), np.zeros(n)
    streams = np.random.SeedSequence(5).generate_state(reps, np.uint64)

    general = start.copy()
    fields, pu, pv = _sa_cpu.fields_csr(general, h, indptr, indices, values, empty, empty)
    general_streams = streams.copy()
    general_flips = _sa_cpu.sweeps_csr(
        general, fields, pu, pv, indptr, indices, values, empty, empty, zeros, betas,
        np.zeros(n, dtype=np.int64), general_streams, greedy,
    )  # fmt: skip
    plain = start.copy()
    plain_fields, _, _ = _sa_cpu.fields_csr(plain, h, indptr, indices, values, empty, empty)
    plain_streams = streams.copy()
    plain_flips = _sa_cpu.sweeps_plain(
        plain, plain_fields, indptr, indices, values, betas, plain_streams, greedy
    )
    np.testing.assert_array_equal(plain, general)
    np.testing.assert_array_equal(plain_flips, general_flips)
    np.testing.assert_array_equal(plain_streams, general_streams)  # same draws
    assert not np.array_equal(plain, start)  # the sweeps moved something
    # the incrementally updated fields are h + J s, recomputed densely
    J = _dense_j(n, rows, cols, data)
    np.testing.assert_allclose(plain_fields, h + plain @ J, atol=1e-9)
    if greedy:  # a finished descent: no single flip lowers any replica's energy
        assert np.all(plain * plain_fields <= 1e-12)


def test_plain_kernel_anneals_a_small_problem_to_its_brute_force_optimum():
    n = 14
    h, rows, cols, data = _sparse_problem(n, 0.5, seed=4)
    indptr, indices, values = symmetric_csr(n, rows, cols, data)
    bqm = dimod.BinaryQuadraticModel.from_numpy_vectors(h, (rows, cols, data), 0.0, "SPIN")
    optimum = brute_force_minimum(bqm)
    spins = np.random.default_rng(0).choice([-1.0, 1.0], size=(8, n))
    fields, _, _ = _sa_cpu.fields_csr(
        spins, h, indptr, indices, values, np.zeros((0, n)), np.zeros((0, n))
    )
    streams = np.random.SeedSequence(1).generate_state(8, np.uint64)
    _sa_cpu.sweeps_plain(
        spins, fields, indptr, indices, values, np.geomspace(0.1, 10, 2000)[:, None], streams,
        False,
    )  # fmt: skip
    assert bqm.energies((spins, range(n))).min() == pytest.approx(optimum)


@pytest.mark.parametrize("n", [50, 1 << 16, (1 << 16) + 3])
def test_csr_rows_keep_their_input_order_whichever_sort_key(n):
    # n <= 2**16 sorts 16-bit keys (radix), larger n the int64 rows: the same CSR
    rng = np.random.default_rng(n)
    rows = rng.integers(0, n, size=3000)
    cols = rng.integers(0, n, size=3000)
    data = rng.normal(size=3000)
    indptr, indices, values = csr_from_coo(n, rows, cols, data)
    order = sorted(range(len(rows)), key=lambda k: rows[k])  # Python's sort is stable
    np.testing.assert_array_equal(indices, cols[order])
    np.testing.assert_array_equal(values, data[order])
    np.testing.assert_array_equal(np.diff(indptr), np.bincount(rows, minlength=n))


@pytest.mark.parametrize("vartype", [dimod.SPIN, dimod.BINARY])
@pytest.mark.parametrize(("num_reads", "seed"), [(None, 3), (1, 0), (5, 7), (4, 2**31 - 1)])
def test_random_starts_are_the_states_dimods_parser_draws(vartype, num_reads, seed):
    bqm = dimod.generators.gnp_random_bqm(23, 0.3, vartype, random_state=1)
    bqm.relabel_variables({v: f"x{(7 * v) % 23}" for v in bqm.variables})  # not sorted
    sampler = get_solver("torch-sa")
    ours = parse_initial_states(sampler, bqm, initial_states=None, num_reads=num_reads, seed=seed)
    parsed = sampler.parse_initial_states(bqm, num_reads=num_reads, seed=seed).initial_states
    columns = [parsed.variables.index(v) for v in bqm.variables]
    reference = parsed.record.sample[:, columns]
    assert ours.dtype == reference.dtype and ours.shape == reference.shape
    np.testing.assert_array_equal(ours, reference)


def test_given_starts_still_go_through_dimods_parser():
    bqm = dimod.BinaryQuadraticModel({"a": 1.0, "b": -1.0}, {("a", "b"): 0.5}, 0.0, "SPIN")
    sampler = get_solver("torch-sa")
    tiled = parse_initial_states(
        sampler, bqm, initial_states=[{"a": 1, "b": -1}], initial_states_generator="tile",
        num_reads=3,
    )  # fmt: skip
    np.testing.assert_array_equal(tiled, [[1, -1]] * 3)
    with pytest.raises(ValueError, match="insufficient number of initial states"):
        parse_initial_states(sampler, bqm, initial_states_generator="none", num_reads=2)


def test_exact_fields_only_for_biases_on_a_dyadic_grid_below_two_to_the_53_units():
    from ising_qubo.solvers._sa_cpu_driver import exact_fields

    ints = np.array([1.0, -3.0, 0.0])
    assert exact_fields(ints, np.array([2.0, -1.0]))
    assert exact_fields(ints, np.array([2.0, 0.25]))  # quarters (QUBO -> Ising) add exactly
    assert exact_fields(ints, np.array([2.0**-10]))
    assert not exact_fields(ints, np.array([2.0**-11]))  # off the grid
    assert not exact_fields(np.array([0.1]), np.array([1.0]))  # 0.1 is not dyadic: drifts
    assert not exact_fields(ints, np.array([2.0**42, 2.0**42]))  # 2**53 units of 2**-10
    assert not exact_fields(ints, np.array([np.nan]))
    assert not exact_fields(ints, np.array([np.inf]))


@pytest.mark.parametrize("backend", ["native", "numba"])
@pytest.mark.parametrize("integral", [True, False])
def test_skipping_the_field_refresh_on_exact_problems_changes_no_result(
    monkeypatch, integral, backend
):
    # integer problems skip the every-100-sweeps recomputation; forcing it back on must
    # give the very same states (and a fractional problem never skips it)
    from ising_qubo.solvers import _sa_cpu_driver

    rng = np.random.default_rng(11)
    bqm = dimod.generators.gnp_random_bqm(120, 0.2, "SPIN", random_state=4)
    for u, v in bqm.quadratic:
        bqm.set_quadratic(u, v, float(rng.integers(-3, 4)) if integral else rng.normal())
    for v in bqm.variables:
        bqm.set_linear(v, float(rng.integers(-2, 3)))
    sampler = get_solver("torch-sa")
    computed = []
    module = _sa_native if backend == "native" else _sa_cpu
    original = module.fields_csr

    def counting(*args, **kwargs):
        computed.append(len(args[0]))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "fields_csr", counting)
    skipped = sampler.sample(bqm, num_reads=3, num_sweeps=700, seed=2, backend=backend)
    calls_skipping = len(computed)
    monkeypatch.setattr(_sa_cpu_driver, "exact_fields", lambda *arrays: False)
    computed.clear()
    forced = sampler.sample(bqm, num_reads=3, num_sweeps=700, seed=2, backend=backend)
    assert skipped.info["backend"] == forced.info["backend"] == backend
    np.testing.assert_array_equal(skipped.record.sample, forced.record.sample)
    np.testing.assert_array_equal(skipped.record.energy, bqm.energies(skipped))
    # 7 segments + the final descent recompute; skipping, only the first does (the fit's
    # own calls are the same in both runs)
    assert (len(computed) - calls_skipping == 7) if integral else (len(computed) == calls_skipping)
