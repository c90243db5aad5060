"""LowRankIsing (dense blocks + low-rank terms) against a dense matrix built here, entry by
entry; csr_from_coo against scipy.sparse."""

from __future__ import annotations

import itertools

import dimod
import numpy as np
import pytest
import scipy.sparse

from ising_qubo import lowrank
from ising_qubo.lowrank import DENSE_BQM_LIMIT, LowRankIsing, csr_from_coo

# overlapping, non-contiguous blocks: variable 4 sits in two, variable 9 in none
BLOCKS = [np.array([0, 1, 2, 3, 4]), np.array([4, 5, 6]), np.array([8, 2, 7])]
N = 10


def symmetric_zero_diagonal(rng: np.random.Generator, size: int) -> np.ndarray:
    a = rng.normal(size=(size, size))
    a = a + a.T
    np.fill_diagonal(a, 0.0)
    return a


def random_parts(seed: int, rank: int = 2):
    rng = np.random.default_rng(seed)
    h = rng.normal(size=N)
    blocks = [(index, symmetric_zero_diagonal(rng, len(index))) for index in BLOCKS]
    u = rng.normal(size=(rank, N))
    v = rng.normal(size=(rank, N)) * (rng.random((rank, N)) < 0.5)
    return h, blocks, u, v, float(rng.normal())


def dense_energies(h, blocks, u, v, offset, spins: np.ndarray) -> np.ndarray:
    """E(s) = s^T M s + h.s + offset with M filled one entry at a time from the definition
    E = h.s + sum_b 1/2 s_b^T J_b s_b + sum_r (u_r.s)(v_r.s) + offset."""
    m = np.zeros((N, N))
    for index, coupling in blocks:
        for a, b in itertools.product(range(len(index)), repeat=2):
            m[index[a], index[b]] += coupling[a, b] / 2
    for r in range(len(u)):
        for i, j in itertools.product(range(N), repeat=2):
            m[i, j] += u[r, i] * v[r, j]
    spins = np.atleast_2d(spins).astype(float)
    return np.einsum("ki,ij,kj->k", spins, m, spins) + spins @ h + offset


def all_spin_states(n: int) -> np.ndarray:
    return np.array(list(itertools.product((-1, 1), repeat=n)), dtype=float)


def test_energy_of_a_hand_worked_example():
    # h.s = 1 + 2 + 0.5; block 1/2 (3 s0 s2 + 3 s2 s0) = 3; (u.s)(v.s) = (1 + 1)(-1); + 0.25
    model = LowRankIsing(
        h=[1.0, -2.0, 0.5],
        blocks=[([0, 2], [[0.0, 3.0], [3.0, 0.0]])],
        lowrank_u=[[1.0, 0.0, 1.0]],
        lowrank_v=[[0.0, 1.0, 0.0]],
        offset=0.25,
    )
    assert model.energies(np.array([1, -1, 1])) == pytest.approx([3.5 + 3 - 2 + 0.25])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_energies_of_random_states_match_the_dense_matrix(seed):
    parts = random_parts(seed)
    model = LowRankIsing(*parts)
    spins = np.random.default_rng(100 + seed).choice([-1.0, 1.0], size=(300, N))
    np.testing.assert_allclose(
        model.energies(spins), dense_energies(*parts, spins), rtol=1e-12, atol=1e-9
    )
    # one state as a 1-D vector is one energy
    assert model.energies(spins[0]).shape == (1,)


def test_problem_without_couplings_is_linear():
    h = np.array([0.5, -1.0, 2.0])
    model = LowRankIsing(h, offset=3.0)
    assert model.lowrank_u.shape == (0, 3) and model.labels == [0, 1, 2]
    spins = all_spin_states(3)
    np.testing.assert_allclose(model.energies(spins), spins @ h + 3.0)


@pytest.mark.parametrize("seed", [3, 4])
def test_to_bqm_agrees_with_the_dense_matrix_on_every_state(seed):
    parts = random_parts(seed, rank=3)
    labels = [f"layer{i // 4}:{i % 4}" for i in range(N)]
    model = LowRankIsing(*parts, labels=labels)
    bqm = model.to_bqm()
    assert bqm.vartype is dimod.SPIN and list(bqm.variables) == labels
    states = all_spin_states(N)
    reference = dense_energies(*parts, states)
    np.testing.assert_allclose(
        bqm.energies((states.astype(int), labels)), reference, rtol=1e-12, atol=1e-9
    )
    np.testing.assert_allclose(model.energies(states), reference, rtol=1e-12, atol=1e-9)
    assert dimod.ExactSolver().sample(bqm).first.energy == pytest.approx(reference.min())


def test_from_binary_matches_the_binary_energy():
    rng = np.random.default_rng(7)
    a = rng.normal(size=N)
    # any square Q: not symmetric, non-zero diagonal (x_i^2 = x_i makes it linear)
    q_blocks = [(index, rng.normal(size=(len(index), len(index)))) for index in BLOCKS]
    pq = [(rng.normal(size=N), rng.normal(size=N)) for _ in range(2)]
    model = LowRankIsing.from_binary(a, q_blocks, pq, offset=-1.25)
    x = np.array(list(itertools.product((0, 1), repeat=N)), dtype=float)
    expected = x @ a - 1.25
    for index, q in q_blocks:
        part = x[:, index]
        expected += np.einsum("ki,ij,kj->k", part, q, part)
    for p, q in pq:
        expected += (x @ p) * (x @ q)
    np.testing.assert_allclose(model.energies(2 * x - 1), expected, rtol=1e-12, atol=1e-9)
    bqm = model.to_bqm()
    np.testing.assert_allclose(
        bqm.energies(((2 * x - 1).astype(int), model.labels)), expected, rtol=1e-12, atol=1e-9
    )


def test_csr_holds_the_block_couplings():
    h, blocks, u, v, offset = random_parts(5)
    model = LowRankIsing(h, blocks, u, v, offset)
    indptr, indices, data = model.csr()
    expected = np.zeros((N, N))
    for index, coupling in blocks:
        for a, b in itertools.product(range(len(index)), repeat=2):
            expected[index[a], index[b]] += coupling[a, b]
    got = scipy.sparse.csr_matrix((data, indices, indptr), shape=(N, N)).toarray()
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert not np.any(data == 0), "zero couplings are not stored"
    empty = LowRankIsing(h).csr()
    assert empty[0].tolist() == [0] * (N + 1) and len(empty[1]) == len(empty[2]) == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_csr_from_coo_matches_scipy_and_keeps_column_order(seed):
    rng = np.random.default_rng(seed)
    n, nnz = 9, 40
    rows = rng.integers(0, n - 2, size=nnz)  # the last two rows stay empty
    cols = rng.integers(0, n, size=nnz)
    rows[:3], cols[:3] = 4, 5  # a duplicate entry: values add up
    data = rng.normal(size=nnz)
    indptr, indices, values = csr_from_coo(n, rows, cols, data)
    assert indptr.dtype == np.int64 and indices.dtype == np.int64 and values.dtype == float
    assert len(indptr) == n + 1
    got = scipy.sparse.csr_matrix((values, indices, indptr), shape=(n, n)).toarray()
    want = scipy.sparse.coo_matrix((data, (rows, cols)), shape=(n, n)).toarray()
    np.testing.assert_allclose(got, want, atol=1e-12)
    for i in range(n):
        mine = np.flatnonzero(rows == i)
        assert indices[indptr[i] : indptr[i + 1]].tolist() == cols[mine].tolist()
        assert values[indptr[i] : indptr[i + 1]].tolist() == data[mine].tolist()


def test_csr_from_coo_of_nothing():
    indptr, indices, values = csr_from_coo(
        4, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    )
    assert indptr.tolist() == [0] * 5 and len(indices) == len(values) == 0


def _j(values) -> np.ndarray:
    return np.array(values, dtype=float)


GOOD_J = _j([[0, 1], [1, 0]])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(blocks=[([0, 1, 2], GOOD_J)]), r"block 0: J has shape \(2, 2\) for 3 variables"),
        (dict(blocks=[([0, 3], GOOD_J)]), r"block 0: variable index out of range \[0, 3\)"),
        (dict(blocks=[([-1, 0], GOOD_J)]), "block 0: variable index out of range"),
        (
            dict(blocks=[([0, 1], GOOD_J), ([1, 2], _j([[0, 1], [2, 0]]))]),
            "block 1: J must be symmetric with a zero diagonal",
        ),
        (dict(blocks=[([0, 1], _j([[1, 1], [1, 0]]))]), "symmetric with a zero diagonal"),
        (dict(lowrank_u=np.ones((2, 3)), lowrank_v=np.ones((1, 3))), r"shape \(rank, 3\)"),
        (dict(lowrank_u=np.ones((1, 4)), lowrank_v=np.ones((1, 4))), r"shape \(rank, 3\)"),
        # one factor alone used to be dropped (v) or misreported as a shape error (u)
        (dict(lowrank_v=np.ones((1, 3))), "lowrank_u and lowrank_v must be given together"),
        (dict(lowrank_u=np.ones((1, 3))), "lowrank_u and lowrank_v must be given together"),
        (dict(blocks=[([0, 1], _j([[0, np.inf], [np.inf, 0]]))]), "finite"),
        (dict(lowrank_u=[[0, np.nan, 0]], lowrank_v=[[1, 1, 1]]), "finite"),
        (dict(offset=np.nan), "finite"),
        (dict(labels=["a", "b"]), "labels must be 3 unique names"),
        (dict(labels=["a", "b", "a"]), "labels must be 3 unique names"),
    ],
)
def test_invalid_problems_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LowRankIsing(np.zeros(3), **kwargs)


def test_non_finite_field_is_refused():
    with pytest.raises(ValueError, match="finite"):
        LowRankIsing([0.0, np.nan])


def test_to_bqm_refuses_more_than_the_dense_limit():
    with pytest.raises(ValueError, match=rf"{DENSE_BQM_LIMIT + 1} variables"):
        LowRankIsing(np.zeros(DENSE_BQM_LIMIT + 1)).to_bqm()


def test_to_bqm_limit_is_inclusive(monkeypatch):
    monkeypatch.setattr(lowrank, "DENSE_BQM_LIMIT", 6)
    assert LowRankIsing(np.ones(6)).to_bqm().num_variables == 6
    with pytest.raises(ValueError, match="7 variables"):
        LowRankIsing(np.ones(7)).to_bqm()


def test_csr_is_built_once_per_blocks_list_and_rebuilt_for_new_blocks():
    rng = np.random.default_rng(0)
    J = rng.normal(size=(4, 4))
    J = J + J.T
    np.fill_diagonal(J, 0.0)
    model = LowRankIsing(rng.normal(size=6), [(np.arange(4), J)])
    first = model.csr()
    assert model.csr() is first  # cached: the global search asks several times
    K = np.array([[0.0, 2.0], [2.0, 0.0]])
    model.blocks = LowRankIsing(np.zeros(6), [(np.array([4, 5]), K)]).blocks
    indptr, indices, data = model.csr()
    dense = np.zeros((6, 6))
    rows = np.repeat(np.arange(6), np.diff(indptr))
    np.add.at(dense, (rows, indices), data)
    expected = np.zeros((6, 6))
    expected[4, 5] = expected[5, 4] = 2.0
    assert np.array_equal(dense, expected)  # the new blocks, not the cached ones
