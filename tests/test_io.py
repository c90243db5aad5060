"""Tests for ising_qubo.io: exact round trips, benchmark readers, strict errors, atomic saves."""

from __future__ import annotations

import itertools
import os
import random
from pathlib import Path

import dimod
import numpy as np
import pytest
from timing import cpu_timed

import ising_qubo.io as qio
from ising_qubo.io import _registry

BENCH = Path(__file__).resolve().parents[2] / "shared" / "bench"
G1 = BENCH / "gset" / "G1.txt"
BQP50 = BENCH / "beasley" / "bqp50.txt"
needs_bench = pytest.mark.skipif(not G1.exists(), reason=f"benchmark data not at {BENCH}")

WRITABLE = ["bqm", "coo", "json", "qubo"]
SUFFIX = {"bqm": ".bqm", "coo": ".coo", "json": ".json", "qubo": ".qubo"}
AWKWARD = [0.1, 1e-17, 123456789.123, -2.5e10, 1 / 3, -0.0, 5e-324, 1.7976931348623157e308, 2.0]


def random_bqm(
    seed: int, vartype, n: int = 12, labels=None, huge: bool = True
) -> dimod.BinaryQuadraticModel:
    """A BQM with awkward floats, an offset and two isolated variables (no bias at all)."""
    rng = random.Random(seed)
    awkward = AWKWARD if huge else [x for x in AWKWARD if abs(x) < 1e300]
    labels = list(range(n)) if labels is None else list(labels)
    rng.shuffle(labels)  # variable order must survive too

    def value():
        return rng.choice(awkward) * rng.choice([1, -1]) if rng.random() < 0.5 else rng.gauss(0, 3)

    bqm = dimod.BinaryQuadraticModel(vartype)
    for v in labels:
        bqm.add_variable(v, 0.0 if v in labels[:2] else value())
    active = labels[2:]
    for u, v in itertools.combinations(active, 2):
        if rng.random() < 0.4:
            bqm.add_interaction(u, v, value())
    bqm.offset = -rng.choice(awkward)
    return bqm


def energies_by_label(bqm: dimod.BinaryQuadraticModel) -> dict:
    out = {}
    variables = sorted(bqm.variables, key=repr)
    values = list(bqm.vartype.value)
    for state in itertools.product(values, repeat=len(variables)):
        sample = dict(zip(variables, state, strict=True))
        out[tuple((repr(v), s) for v, s in sample.items())] = bqm.energy(sample)
    return out


def as_binary_energies(spin_bqm: dimod.BinaryQuadraticModel) -> dict:
    out = {}
    variables = sorted(spin_bqm.variables, key=repr)
    for state in itertools.product((0, 1), repeat=len(variables)):
        spins = {v: 2 * x - 1 for v, x in zip(variables, state, strict=True)}
        key = tuple((repr(v), x) for v, x in zip(variables, state, strict=True))
        out[key] = spin_bqm.energy(spins)
    return out


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", WRITABLE)
@pytest.mark.parametrize("vartype", [dimod.BINARY, dimod.SPIN])
@pytest.mark.parametrize("seed", range(4))
def test_round_trip_exact(tmp_path, fmt, vartype, seed):
    bqm = random_bqm(seed, vartype, huge=not (fmt == "qubo" and vartype is dimod.SPIN))
    path = qio.save(bqm, tmp_path / f"p{SUFFIX[fmt]}")
    assert path == tmp_path / f"p{SUFFIX[fmt]}"
    back = qio.load(path)
    if fmt == "qubo" and vartype is dimod.SPIN:
        assert back.vartype is dimod.BINARY
        # SPIN -> BINARY multiplies biases by up to 4: the largest float would overflow.
        small = random_bqm(seed, dimod.SPIN, n=7, huge=False)
        small_back = qio.load(qio.save(small, tmp_path / "small.qubo"))
        assert small_back.vartype is dimod.BINARY
        want = as_binary_energies(small)
        got = energies_by_label(small_back)
        assert got.keys() == want.keys()
        # Conversion rounds once per term: allow a few ulps of the largest terms.
        scale = abs(small.offset) + sum(map(abs, small.linear.values()))
        scale += sum(map(abs, small.quadratic.values()))
        for key, energy in want.items():
            assert got[key] == pytest.approx(energy, rel=0, abs=1e-13 * scale + 1e-300)
        return
    assert back == bqm
    assert back.vartype is bqm.vartype
    assert list(back.variables) == list(bqm.variables)
    assert back.offset == bqm.offset


@pytest.mark.parametrize("fmt", WRITABLE)
def test_exotic_labels_round_trip(tmp_path, fmt):
    labels = ["a", "b c", "ünï", ("x", 1), (("n", 2), (3,)), -4, 7, 2.5, 'q"uote\n', ""]
    if fmt in ("coo", "qubo"):
        labels.append(True)  # dimod's own serialisers (bqm, json) turn bools into ints
    bqm = random_bqm(11, dimod.BINARY, labels=labels)
    back = qio.load(qio.save(bqm, tmp_path / "p", format=fmt))
    assert back == bqm
    assert list(back.variables) == list(bqm.variables)
    assert [type(v) for v in back.variables] == [type(v) for v in bqm.variables]


@pytest.mark.parametrize("fmt", WRITABLE)
def test_empty_and_permuted_integer_labels(tmp_path, fmt):
    empty = dimod.BinaryQuadraticModel("SPIN" if fmt != "qubo" else "BINARY")
    assert qio.load(qio.save(empty, tmp_path / "e", format=fmt), format=fmt) == empty
    bqm = dimod.BinaryQuadraticModel("BINARY")
    for v, bias in ((5, 1.0), (2, 0.0), (9, -0.5), (0, 2.0)):
        bqm.add_variable(v, bias)
    bqm.add_interaction(9, 5, 0.25)
    back = qio.load(qio.save(bqm, tmp_path / "p", format=fmt), format=fmt)
    assert back == bqm and list(back.variables) == [5, 2, 9, 0]


@pytest.mark.parametrize("fmt", ["coo", "qubo"])
def test_unstorable_label_is_value_error(tmp_path, fmt):
    bqm = dimod.BinaryQuadraticModel({frozenset({1}): 1.0}, {}, 0.0, "BINARY")
    target = tmp_path / f"x{SUFFIX[fmt]}"
    with pytest.raises(ValueError, match="label"):
        qio.save(bqm, target)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_coo_readable_by_dimod(tmp_path):
    from dimod.serialization import coo as dimod_coo

    bqm = dimod.BinaryQuadraticModel(
        {0: 0.5, 3: -2.25, 1: 0.0, 7: 4.0}, {(0, 3): -0.75, (3, 1): 8.0}, 0.0, "SPIN"
    )
    path = qio.save(bqm, tmp_path / "d.coo")
    text = path.read_text()
    assert text.startswith("# vartype=SPIN\n")
    with open(path) as fp:
        theirs = dimod_coo.load(fp)
    assert theirs == bqm
    assert set(theirs.variables) == {0, 1, 3, 7}  # the isolated variable 7 survives


def test_coo_reads_dimod_written_file(tmp_path):
    from dimod.serialization import coo as dimod_coo

    bqm = dimod.BinaryQuadraticModel({0: 0.5, 2: -1.0}, {(0, 1): 2.25}, 0.0, "BINARY")
    path = tmp_path / "theirs.coo"
    path.write_text(dimod_coo.dumps(bqm, vartype_header=True))
    assert qio.load(path) == bqm


def test_qubo_file_layout(tmp_path):
    bqm = dimod.BinaryQuadraticModel("BINARY")
    for v, bias in ((0, 1.5), (1, 0.0), (2, -1.0)):
        bqm.add_variable(v, bias)
    bqm.add_interaction(2, 0, 0.5)
    bqm.offset = 3.0
    lines = qio.save(bqm, tmp_path / "q.qubo").read_text().splitlines()
    data = [ln for ln in lines if not ln.startswith("c")]
    assert data == ["p qubo 0 3 3 1", "0 0 1.5", "1 1 0", "2 2 -1", "0 2 0.5"]
    assert "c offset=3" in lines


# --------------------------------------------------------------------------- benchmarks


def parse_beasley(path: Path) -> list[tuple[int, list[tuple[int, int, int]]]]:
    """Independent tiny parser: whitespace tokens, no validation."""
    tokens = [int(t) for t in path.read_text().split()]
    m, pos, out = tokens[0], 1, []
    for _ in range(m):
        n, nnz = tokens[pos], tokens[pos + 1]
        pos += 2
        triples = [tuple(tokens[pos + 3 * k : pos + 3 * k + 3]) for k in range(nnz)]
        pos += 3 * nnz
        out.append((n, triples))
    assert pos == len(tokens)
    return out


@needs_bench
def test_beasley_bqp50():
    bqms = qio.load_all(BQP50)
    assert len(bqms) == 10
    assert all(b.num_variables == 50 and b.vartype is dimod.BINARY for b in bqms)
    instances = qio.read_instances(BQP50)
    reference = parse_beasley(BQP50)
    rng = np.random.default_rng(0)
    for k, (inst, (n, triples)) in enumerate(zip(instances, reference, strict=True), 1):
        assert inst.name == f"bqp50-{k}" and inst.index == k and inst.kind == "bqp"
        assert inst.sense == "max" and inst.objective_name == "bqp objective"
        assert list(inst.bqm.variables) == list(range(n))
        for _ in range(5):
            x = rng.integers(0, 2, n)
            f = sum(q * x[i - 1] * x[j - 1] * (1 if i == j else 2) for i, j, q in triples)
            energy = inst.bqm.energy(dict(enumerate(x.tolist())))
            assert inst.objective(energy) == f
    ones = {v: 1 for v in range(50)}
    n, triples = reference[2]
    assert instances[2].objective(instances[2].bqm.energy(ones)) == sum(
        q * (1 if i == j else 2) for i, j, q in triples
    )


@needs_bench
def test_beasley_instance_selection():
    with pytest.raises(ValueError, match=r"holds 10 instances; pass instance=1\.\.10"):
        qio.load(BQP50)
    with pytest.raises(ValueError, match=r"holds 10 instances"):
        qio.read_instance(BQP50)
    assert qio.load(BQP50, instance=3) == qio.load_all(BQP50)[2]
    assert qio.read_instance(BQP50, instance=10).name == "bqp50-10"
    for bad in (0, 11, -1, True, "2", 2.0):
        with pytest.raises(ValueError, match=r"bqp50\.txt: instance .* instance=1\.\.10"):
            qio.load(BQP50, instance=bad)


@needs_bench
def test_gset_g1_cut():
    inst = qio.read_instance(G1)
    bqm = inst.bqm
    assert inst.name == "G1" and inst.kind == "maxcut" and inst.index is None
    assert inst.sense == "max" and inst.objective_name == "cut"
    assert bqm.vartype is dimod.SPIN
    assert bqm.num_variables == 800 and bqm.num_interactions == 19176
    assert list(bqm.variables) == list(range(800))
    edges = [tuple(map(int, ln.split())) for ln in G1.read_text().splitlines()[1:] if ln.strip()]
    assert inst.total_weight == sum(w for _, _, w in edges)
    rng = np.random.default_rng(1)
    for _ in range(3):
        s = rng.choice([-1, 1], 800)
        cut = sum(w for i, j, w in edges if s[i - 1] != s[j - 1])
        assert inst.objective(bqm.energy(dict(enumerate(s.tolist())))) == cut
    assert qio.load(G1, instance=1) == bqm
    with pytest.raises(ValueError, match=r"G1\.txt: instance 2 .*only instance=1"):
        qio.load(G1, instance=2)


@needs_bench
def test_benchmarks_read_fast():
    for path in (BENCH / "gset" / "G22.txt", BENCH / "beasley" / "bqp250.txt"):
        with cpu_timed() as run:
            qio.load_all(path)
        # Typically ~0.1 s; CPU time (the work done), which other work on the machine
        # cannot stretch, and a bound 50 times that, for slower CPUs.
        assert run.seconds < 5, f"{path.name}: {run.seconds:.2f} s of CPU time"


def test_instance_objective_for_other_formats(tmp_path):
    bqm = dimod.BinaryQuadraticModel({0: 1.0}, {}, 0.0, "BINARY")
    inst = qio.read_instance(qio.save(bqm, tmp_path / "plain.coo"))
    assert inst.name == "plain" and inst.kind is None and inst.index is None
    assert inst.objective(1.0) is None and inst.objective_name is None and inst.sense is None
    assert qio.load_all(tmp_path / "plain.coo") == [bqm]


# --------------------------------------------------------------------------- bad files

GOOD_GSET = "4 3\n1 2 1\n2 3 -1\n3 4 2.5\n"
GOOD_BQP = "2\n2 2\n1 1 3\n1 2 -4\n3 1\n2 3 5\n"
GOOD_QUBO = "c hello\np qubo 0 3 2 1\n0 0 1\n2 2 -1\n0 2 0.5\n"
GOOD_COO = "# vartype=BINARY\n0 0 1\n0 1 -2\n"

# (format, file text or bytes, expected line number or None, text expected in the message)
BAD_FILES = [
    # gset
    ("gset", "", None, "empty file"),
    ("gset", "  \n\n", None, "empty file"),
    ("gset", "4 3\n1 2 1\n2 3 1\n", 1, "truncated"),
    ("gset", "4 2\n1 2 1\n2 3 1\n3 4 1\n", 4, "extra data"),
    ("gset", "4\n1 2 1\n", 1, "header"),
    ("gset", "4 3 1\n1 2 1\n", 1, "header"),
    ("gset", "0 0\n", 1, "at least 1"),
    ("gset", "4 x\n", 1, "integer"),
    ("gset", "4 2\n1 2 1\n2 3 abc\n", 3, "number"),
    ("gset", "4 2\n1 2 1\n2 3 nan\n", 3, "finite"),
    ("gset", "4 2\n1 2 1\n2 3 inf\n", 3, "finite"),
    ("gset", "4 2\n1 2 1\n2 3 1e999\n", 3, "finite"),
    ("gset", "4 2\n1 2 1\n2 1.5 1\n", 3, "integer"),
    ("gset", "4 2\n1 2 1\n2 5 1\n", 3, "out of range 1..4"),
    ("gset", "4 2\n1 2 1\n0 3 1\n", 3, "out of range"),
    ("gset", "4 2\n1 2 1\n2 1 1\n", 3, "duplicate edge"),
    ("gset", "4 2\n1 2 1\n1 2 1\n", 3, "duplicate edge"),
    ("gset", "4 2\n1 2 1\n3 3 1\n", 3, "self-loop"),
    ("gset", "4 2\n1 2 1\n3 4\n", 3, "'i j w'"),
    ("gset", "4 7\n1 2 1\n", 1, "more than a simple graph"),
    ("gset", "60000000 1\n1 2 1\n", 1, "10,000,000"),
    ("gset", "3 60000000\n1 2 1\n", 1, "50,000,000"),
    ("gset", "4 1\n1_0 2 1\n", 2, "integer"),
    ("gset", b"\x00\x01\x02binary", None, "not a text file (binary data at byte 0)"),
    ("gset", b"4 1\n1 2 \xff\n", None, "binary data at byte 8"),
    # bqp
    ("bqp", "", None, "empty file"),
    ("bqp", "3\n2 1\n1 1 3\n", 1, "3 instances declared but the file ends after 1"),
    ("bqp", "1\n2 3\n1 1 3\n1 2 1\n", 2, "truncated"),
    ("bqp", "1\n2 1\n1 1 3\n2 2 1\n", 4, "extra data"),
    ("bqp", "1 2\n", 1, "number of instances"),
    ("bqp", "0\n", 1, "at least 1"),
    ("bqp", "1\n2\n1 1 3\n", 2, "'n nnz'"),
    ("bqp", "1\n2 1\n1 1 x\n", 3, "number"),
    ("bqp", "1\n2 1\n1 1 nan\n", 3, "finite"),
    ("bqp", "1\n2 1\n1 3 1\n", 3, "out of range 1..2"),
    ("bqp", "1\n2 2\n1 2 1\n2 1 1\n", 4, "duplicate entry 1 2"),
    ("bqp", "1\n2 2\n1 1 1\n1 1 1\n", 4, "duplicate"),
    ("bqp", "1\n2 9\n", 2, "upper triangle"),
    ("bqp", "1\n60000001 1\n1 1 1\n", 2, "10,000,000"),
    ("bqp", "99999999999\n", 1, "50,000,000"),
    ("bqp", b"\xfe\xff\x001\n", None, "not a text file"),
    # qubo
    ("qubo", "", None, "empty file"),
    ("qubo", "c only comments\n", None, "no 'p qubo"),
    ("qubo", "0 0 1\np qubo 0 1 1 0\n", 1, "before the 'p qubo"),
    ("qubo", "p qubo 0 2 1 0\n0 0 1\n1 1 1\n", 1, "nNodes=1"),
    ("qubo", "p qubo 0 2 2 1\n0 0 1\n1 1 1\n", 1, "nCouplers=1"),
    ("qubo", "p qubo 0 2 1 0\n0 0 x\n", 2, "number"),
    ("qubo", "p qubo 0 2 1 0\n0 0 nan\n", 2, "finite"),
    ("qubo", "p qubo 0 2 1 0\n0 2 1\n", 2, "out of range 0..1"),
    ("qubo", "p qubo 0 2 1 0\n-1 0 1\n", 2, "out of range"),
    ("qubo", "p qubo 0 3 0 2\n0 1 1\n1 0 1\n", 3, "duplicate entry 0 1"),
    ("qubo", "p qubo 0 2 1 0\np qubo 0 2 1 0\n", 2, "second 'p' header"),
    ("qubo", "p qubo 0 2\n", 1, "header must be"),
    ("qubo", "p qubo 0 2 3 0\n", 1, "exceeds maxNodes"),
    ("qubo", "p qubo 0 60000000 0 0\n", 1, "10,000,000"),
    ("qubo", "c offset=abc\np qubo 0 1 0 0\n", 1, "offset must be a number"),
    ("qubo", 'c label 0 "a"\np qubo 0 2 0 0\n', None, "position 1 is missing"),
    ("qubo", 'c label 0 "a"\nc label 1 "a"\np qubo 0 2 0 0\n', 2, "already used"),
    ("qubo", "c label 0 {bad\np qubo 0 1 0 0\n", 1, "JSON label"),
    ("qubo", "p qubo 0 2 1 0\n0 0 1 5\n", 2, "3 fields"),
    ("qubo", b"p qubo 0 1 1 0\n0 0 \x001\n", None, "binary data at byte 19"),
    # coo
    ("coo", "", None, "empty file"),
    ("coo", "0 0 1\n", None, "vartype"),
    ("coo", "# vartype=INTEGER\n", 1, "SPIN or BINARY"),
    ("coo", "# vartype=SPIN\n# vartype=BINARY\n", 2, "contradicts"),
    ("coo", "# vartype=SPIN\n0 0\n", 2, "3 fields"),
    ("coo", "# vartype=SPIN\n0 0 x\n", 2, "number"),
    ("coo", "# vartype=SPIN\n0 0 1\n0 1 nan\n", 3, "finite"),
    ("coo", "# vartype=SPIN\n0 a 1\n", 2, "integer"),
    ("coo", "# vartype=SPIN\n0 1 1\n1 0 2\n", 3, "duplicate entry 0 1"),
    ("coo", '# vartype=SPIN\n# label 0 "a"\n0 1 1\n', 3, "out of range 0..0"),
    ("coo", "# vartype=SPIN\n# offset=1\n# offset=2\n", 3, "second offset"),
    ("coo", b"# vartype=SPIN\n\xc3\x28\n", None, "binary data at byte 15"),
    # json
    ("json", "", None, "empty file"),
    ("json", '{"type": "BinaryQuadraticModel",\n "x": }', 2, "invalid JSON"),
    ("json", "[1, 2]", None, "not a dimod BQM JSON"),
    ("json", '{"type": "DiscreteQuadraticModel"}', None, "not a dimod BQM JSON"),
    ("json", '{"type": "BinaryQuadraticModel"}', None, "malformed"),
    ("json", b"\x89PNG\r\n\x1a\n\x00", None, "not a text file"),
    # bqm
    ("bqm", "", None, "empty file"),
    ("bqm", "this is text\n", None, "not a dimod BQM file"),
    ("bqm", b"DIMODBQM\x01\x00garbage", None, "not a dimod BQM file"),
]


@pytest.mark.parametrize(
    "fmt, content, line, needle",
    BAD_FILES,
    ids=[f"{i}-{case[0]}-{case[3][:20]}" for i, case in enumerate(BAD_FILES)],
)
def test_bad_files(tmp_path, fmt, content, line, needle):
    path = tmp_path / f"bad_{fmt}.dat"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(ValueError) as info:
        qio.load_all(path, format=fmt)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert needle in message, message
    if line is not None:
        assert message.startswith(f"{path}:{line}: "), message


@pytest.mark.parametrize(
    "fmt, text", [("gset", GOOD_GSET), ("bqp", GOOD_BQP), ("qubo", GOOD_QUBO), ("coo", GOOD_COO)]
)
def test_good_small_files(tmp_path, fmt, text):
    path = tmp_path / "ok.txt"
    path.write_text(text)
    assert len(qio.load_all(path, format=fmt)) == (2 if fmt == "bqp" else 1)
    assert len(qio.load_all(path)) == (2 if fmt == "bqp" else 1)  # sniffed


def test_small_bqp_values(tmp_path):
    path = tmp_path / "tiny.bqp"
    path.write_text(" 1 \n 3 4 \n 1 1 3\n 2 1 -4 \n\n 3 3 2\n 2 3 5\n")
    bqm = qio.load(path)
    expected = dimod.BinaryQuadraticModel(
        {0: -3.0, 1: 0.0, 2: -2.0}, {(0, 1): 8.0, (1, 2): -10.0}, 0.0, "BINARY"
    )
    assert bqm == expected and list(bqm.variables) == [0, 1, 2]


def test_small_gset_values(tmp_path):
    path = tmp_path / "tiny.rudy"
    path.write_text("5 2\r\n1 3 2\r\n4 2 -1.5\r\n")
    inst = qio.read_instance(path)
    assert inst.bqm == dimod.BinaryQuadraticModel(
        {v: 0.0 for v in range(5)}, {(0, 2): 2.0, (1, 3): -1.5}, 0.0, "SPIN"
    )
    assert list(inst.bqm.variables) == list(range(5)) and inst.total_weight == 0.5


def test_missing_file(tmp_path):
    for name in ("nope.coo", "nope.txt", "nope"):
        with pytest.raises(FileNotFoundError, match="nope"):
            qio.load(tmp_path / name)


# --------------------------------------------------------------------------- atomic save


@pytest.mark.parametrize("fmt", WRITABLE)
def test_failed_save_keeps_old_file(tmp_path, monkeypatch, fmt):
    target = tmp_path / f"keep{SUFFIX[fmt]}"
    old = random_bqm(1, dimod.BINARY)
    qio.save(old, target)
    before = target.read_bytes()
    module = _registry.by_name(fmt).module
    real_write = module.write

    def broken(bqm, fp):
        real_write(bqm, fp)  # a whole file's worth of bytes, then the failure
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(module, "write", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        qio.save(random_bqm(2, dimod.SPIN), target)
    assert target.read_bytes() == before
    assert qio.load(target) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temp file left


def test_interrupted_save_keeps_old_file(tmp_path, monkeypatch):
    from ising_qubo.io import coo

    target = tmp_path / "keep.coo"
    target.write_text("precious\n")

    def interrupted(bqm, fp):
        fp.write("# vartype=SPIN\n0 0 1")
        raise KeyboardInterrupt

    monkeypatch.setattr(coo, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        qio.save(random_bqm(3, dimod.SPIN), target)
    assert target.read_text() == "precious\n"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.coo"]


def test_save_replaces_and_keeps_mode(tmp_path):
    target = tmp_path / "m.json"
    target.write_text("old")
    os.chmod(target, 0o640)
    bqm = random_bqm(4, dimod.SPIN)
    qio.save(bqm, target)
    assert qio.load(target) == bqm
    assert (target.stat().st_mode & 0o777) == 0o640


def test_save_rejects_non_bqm(tmp_path):
    with pytest.raises(TypeError):
        qio.save({"a": 1}, tmp_path / "x.coo")


# --------------------------------------------------------------------------- dispatch


def test_suffix_dispatch(tmp_path):
    bqm = random_bqm(5, dimod.BINARY)
    assert qio.save(bqm, tmp_path / "a.coo").read_text().startswith("# vartype=BINARY")
    assert qio.save(bqm, tmp_path / "a.qubo").read_text().startswith("c ")
    assert qio.save(bqm, tmp_path / "a.JSON").read_text().startswith("{")
    assert qio.save(bqm, tmp_path / "a.bqm").read_bytes().startswith(b"DIMODBQM")
    for name in ("a.coo", "a.qubo", "a.JSON", "a.bqm"):
        assert qio.load(tmp_path / name) == bqm
    # format= wins over the suffix, and names are case-insensitive with aliases
    for fmt in ("COO", "qbsolv", "Dimod", "json"):
        path = qio.save(bqm, tmp_path / f"b_{fmt}.dat", format=fmt)
        assert qio.load(path, format=fmt.upper()) == bqm


@needs_bench
def test_sniffing(tmp_path):
    bqm = random_bqm(6, dimod.SPIN, huge=False)
    cases = {
        "g.txt": G1.read_bytes(),
        "b.txt": BQP50.read_bytes(),
        "noext": G1.read_bytes(),
        "c.txt": qio.save(bqm, tmp_path / "src.coo").read_bytes(),
        "q.txt": qio.save(bqm, tmp_path / "src.qubo").read_bytes(),
        "j.txt": qio.save(bqm, tmp_path / "src.json").read_bytes(),
        "d.txt": qio.save(bqm, tmp_path / "src.bqm").read_bytes(),
        "plain.txt": b"\n\n  0 1 0.5\n0 0 1\n",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    expect = {
        "g.txt": "gset",
        "b.txt": "bqp",
        "noext": "gset",
        "c.txt": "coo",
        "q.txt": "qubo",
        "j.txt": "json",
        "d.txt": "bqm",
        "plain.txt": "coo",
    }
    for name, fmt in expect.items():
        assert _registry.sniff(tmp_path / name).name == fmt, name
    assert qio.load(tmp_path / "g.txt").num_interactions == 19176
    assert qio.load(tmp_path / "b.txt", instance=1).num_variables == 50
    assert qio.load(tmp_path / "c.txt") == bqm
    assert qio.load(tmp_path / "j.txt") == bqm
    assert qio.load(tmp_path / "d.txt") == bqm
    # plain COO without the vartype header: sniffed as coo, then refused (can't guess vartype)
    with pytest.raises(ValueError, match="plain.txt: no '# vartype"):
        qio.load(tmp_path / "plain.txt")


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"", "empty file"),
        (b"  \n \n", "empty file"),
        (b"hello world\n", "cannot tell the format"),
        (b"1 2 3 4\n", "cannot tell the format"),
        (b"\x00\x01", "not a text file (binary data at byte 0)"),
        (b"\n\n \xff\n", "binary data at byte 3"),
    ],
)
def test_sniff_failures(tmp_path, content, needle):
    path = tmp_path / "x.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"x\.txt") as info:
        qio.load(path)
    assert needle in str(info.value)


def test_unknown_suffix_and_format(tmp_path):
    path = tmp_path / "x.xyz"
    path.write_text("1 2\n")
    with pytest.raises(ValueError) as info:
        qio.load(path)
    msg = str(info.value)
    assert "x.xyz" in msg and ".coo" in msg and ".qubo" in msg and "qbsolv" in msg
    with pytest.raises(ValueError) as info:
        qio.load(path, format="matrixmarket")
    msg = str(info.value)
    assert "matrixmarket" in msg and all(n in msg for n in ("bqm", "coo", "json", "gset", "bqp"))
    bqm = random_bqm(0, dimod.BINARY)
    with pytest.raises(ValueError, match="format="):
        qio.save(bqm, tmp_path / "out.txt")
    with pytest.raises(ValueError, match="read only"):
        qio.save(bqm, tmp_path / "out.gset")
    with pytest.raises(ValueError, match="unknown format"):
        qio.save(bqm, tmp_path / "out.coo", format="nope")
    assert not list(tmp_path.glob("out*"))


def test_formats_listing():
    infos = {f.name: f for f in qio.formats()}
    assert set(infos) == {"bqm", "coo", "json", "qubo", "gset", "bqp"}
    assert infos["bqp"].multi_instance and not infos["bqp"].can_write
    assert infos["gset"].can_read and not infos["gset"].can_write
    assert ".rudy" in infos["gset"].suffixes and "rudy" in infos["gset"].aliases
    assert all(infos[n].can_read and infos[n].can_write for n in WRITABLE)
