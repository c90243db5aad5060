"""Property tests for ising_qubo.io: random models round trip, damaged files fail cleanly."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import dimod
import pytest
from fuzz_readers import mutate_lines
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ising_qubo.io as qio

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WRITABLE = ["bqm", "coo", "json", "qubo"]
READERS = ["bqm", "coo", "json", "qubo", "gset", "bqp"]


@pytest.fixture(scope="module")
def workdir():
    # hypothesis reruns the test body many times; a function-scoped tmp_path would not be
    # fresh per example anyway, so one directory with overwritten files is simplest.
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


# --------------------------------------------------------------------------- (a) round trips

labels = st.one_of(
    st.integers(-3, 40),
    st.text(max_size=4),
    st.tuples(st.integers(0, 3), st.text(max_size=2)),
)


@st.composite
def bqms(draw, finite_range: float | None = None):
    if finite_range is None:
        bias = st.floats(allow_nan=False, allow_infinity=False)
    else:
        bias = st.floats(-finite_range, finite_range, allow_nan=False)
    variables = draw(st.lists(labels, unique=True, max_size=7))
    vartype = draw(st.sampled_from([dimod.BINARY, dimod.SPIN]))
    bqm = dimod.BinaryQuadraticModel(vartype)
    for v in variables:
        bqm.add_variable(v, draw(bias))
    for u, v in itertools.combinations(variables, 2):
        if draw(st.booleans()):
            bqm.add_interaction(u, v, draw(bias))
    bqm.offset = draw(bias)
    return bqm


@SETTINGS
@given(bqm=bqms(), fmt=st.sampled_from(WRITABLE))
def test_round_trip(workdir, bqm, fmt):
    if fmt == "qubo" and bqm.vartype is dimod.SPIN:
        bqm = bqm.change_vartype(dimod.BINARY, inplace=False)
        if not all(map(_finite, [bqm.offset, *bqm.linear.values(), *bqm.quadratic.values()])):
            return  # the conversion itself overflowed; covered by test_spin_qubo_energies
    back = qio.load(qio.save(bqm, workdir / "rt", format=fmt), format=fmt)
    assert back == bqm
    assert list(back.variables) == list(bqm.variables)


@SETTINGS
@given(bqm=bqms(finite_range=1e6))
def test_spin_qubo_energies(workdir, bqm):
    spin = bqm.change_vartype(dimod.SPIN, inplace=False)
    back = qio.load(qio.save(spin, workdir / "spin.qubo"))
    assert back.vartype is dimod.BINARY
    assert set(back.variables) == set(spin.variables)
    scale = 1 + abs(spin.offset) + sum(map(abs, spin.linear.values()))
    scale += sum(map(abs, spin.quadratic.values()))
    variables = list(spin.variables)
    for state in itertools.product((0, 1), repeat=len(variables)):
        x = dict(zip(variables, state, strict=True))
        s = {v: 2 * b - 1 for v, b in x.items()}
        assert back.energy(x) == pytest.approx(spin.energy(s), rel=0, abs=1e-12 * scale)


def _finite(value) -> bool:
    return abs(float(value)) < float("inf")


# --------------------------------------------------------------------------- (b) bad input

GSET = "5 4\n1 2 1\n2 3 -1\n3 4 2.5\n1 5 1\n"
BQP = "2\n3 3\n1 1 3\n1 2 -4\n2 3 1\n2 2\n1 1 5\n1 2 2\n"


def _written(fmt: str) -> str:
    bqm = dimod.BinaryQuadraticModel(
        {0: 1.0, "a": -0.5, (1, "b"): 0.0}, {(0, "a"): 0.25}, 1.5, "BINARY"
    )
    with tempfile.TemporaryDirectory() as name:
        return qio.save(bqm, Path(name) / "w", format=fmt).read_text()


def _written_int(fmt: str) -> str:
    bqm = dimod.BinaryQuadraticModel({0: 1.0, 1: -0.5, 2: 2.0}, {(0, 2): 0.25}, 0.0, "SPIN")
    with tempfile.TemporaryDirectory() as name:
        return qio.save(bqm, Path(name) / "w", format=fmt).read_text()


VALID = {
    "gset": [GSET],
    "bqp": [BQP],
    "qubo": [_written("qubo"), _written_int("qubo")],
    "coo": [_written("coo"), _written_int("coo")],
}
TOKENS = [
    "0",
    "1",
    "-1",
    "2",
    "3",
    "4",
    "5",
    "17",
    "-0",
    "1.5",
    "1e3",
    "nan",
    "inf",
    "-inf",
    "1e309",
    "60000000",
    "99999999999999999999",
    "x",
    "#",
    "c",
    "p",
    "qubo",
    "1_0",
    "\u0661",
    "\ufeff",
    '"a"',
    "[1,",
    "{",
    "# vartype=SPIN",
    "# label 0 1",
    "c label 9 0",
    "\x00",
]


def _mutate(text: str, data) -> str:
    return mutate_lines(
        text,
        data,
        st.text(max_size=12),
        st.one_of(st.sampled_from(TOKENS), st.text(max_size=5)),
    )


def _read_or_value_error(path: Path, fmt: str):
    try:
        result = qio.load_all(path, format=fmt)
    except ValueError as exc:
        assert str(exc).startswith(str(path)), str(exc)
        return None
    assert result and all(isinstance(b, dimod.BinaryQuadraticModel) for b in result)
    return result


@SETTINGS
@given(data=st.data(), source=st.sampled_from(sorted(VALID)), fmt=st.sampled_from(READERS))
def test_mutated_files(workdir, data, source, fmt):
    text = _mutate(data.draw(st.sampled_from(VALID[source])), data)
    path = workdir / "mutated.txt"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    result = _read_or_value_error(path, fmt)
    if result is None:
        return
    # Whatever was accepted must agree with what its own header declares.
    first = text.lstrip("\ufeff").split()
    if fmt == "gset":
        assert result[0].num_variables == int(first[0])
        assert result[0].num_interactions == int(first[1])
    elif fmt == "bqp":
        assert len(result) == int(first[0])


@SETTINGS
@given(blob=st.binary(max_size=300), fmt=st.sampled_from(READERS))
def test_random_bytes(workdir, blob, fmt):
    path = workdir / "blob.txt"
    path.write_bytes(blob)
    _read_or_value_error(path, fmt)


@SETTINGS
@given(blob=st.binary(max_size=300))
def test_random_bytes_sniffed(workdir, blob):
    path = workdir / "sniffed.txt"
    path.write_bytes(blob)
    try:
        qio.load_all(path)
    except ValueError as exc:
        assert str(exc).startswith(str(path)), str(exc)


def test_mutations_parse_valid_sources(workdir):
    for fmt, texts in VALID.items():
        for text in texts:
            path = workdir / "valid.txt"
            path.write_text(text)
            assert qio.load_all(path, format=fmt)
