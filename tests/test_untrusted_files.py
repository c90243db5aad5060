"""Hostile problem files (issue 17): no interpreter crash, no hang, one line and exit 2.

Every case is generated here (no binary fixtures) and run through the CLI in a subprocess,
because the failures being guarded against kill or stall the interpreter itself: a
segfault in dimod's compiled readers, an abort, a multi-gigabyte allocation, a FIFO that
blocks ``open`` forever.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
from pathlib import Path

import dimod
import numpy as np
import pytest
from timing import cpu_timed

from ising_qubo import io as qio

ROOT = Path(__file__).resolve().parents[1]


def _bqm_file() -> bytes:
    bqm = dimod.BinaryQuadraticModel(
        {0: 1.0, 1: -2.0, 2: 0.5}, {(0, 1): 1.5, (1, 2): -1.0}, 0.25, "SPIN"
    )
    return bqm.to_file().read()


def _patch_neighbour(data: bytes, value: int) -> bytes:
    """Overwrite the first neighbour index (int32) of a 3-variable float64 file."""
    (hlen,) = struct.unpack("<I", data[10:14])
    first = 14 + hlen + 8 + 3 * 12  # header, offset, 3 x (int32 start, float64 bias)
    return data[:first] + struct.pack("<i", value) + data[first + 4 :]


def _patch_header(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data[:200]
    return data.replace(old, new, 1)


def _json_doc(**changes) -> str:
    bqm = dimod.BinaryQuadraticModel(
        {"a": 1.0, "b": 2.0, "c": 0.5}, {("a", "b"): -1.0}, 0.0, "SPIN"
    )
    doc = bqm.to_serializable()
    doc.update(changes)
    return json.dumps(doc)


CASES: dict[str, tuple[str, bytes | str]] = {
    "bqm neighbour -1": (".bqm", _patch_neighbour(_bqm_file(), -1)),
    "bqm neighbour -1000000": (".bqm", _patch_neighbour(_bqm_file(), -1_000_000)),
    "bqm neighbour too large": (".bqm", _patch_neighbour(_bqm_file(), 3)),
    "bqm trailing garbage": (".bqm", _bqm_file() + b"garbage"),
    "bqm header itype int8": (
        ".bqm",
        _patch_header(_bqm_file(), b'"itype": "int32"', b'"itype": "int8" '),
    ),
    "bqm header shape huge": (
        ".bqm",
        _patch_header(_bqm_file(), b'"shape": [3, 2]', b'"shape": [3, 9]'),
    ),
    "bqm header length past end": (".bqm", b"DIMODBQM\x02\x00\xff\xff\xff\x7f{}"),
    "json quadratic_head -1": (".json", _json_doc(quadratic_head=[-1])),
    "json quadratic_head 2**31-1": (".json", _json_doc(quadratic_head=[2**31 - 1])),
    "json quadratic_head 3e8": (".json", _json_doc(quadratic_head=[3e8])),
    "json boolean linear bias": (".json", _json_doc(linear_biases=[True, 2.0, 0.5])),
    "json linear biases too short": (".json", _json_doc(linear_biases=[1.0, 2.0])),
    "json labels 1 and '1'": (".json", _json_doc(variable_labels=[1, "1", "c"])),
    "json self-loop": (".json", _json_doc(quadratic_head=[1], quadratic_tail=[1])),
    "json num_variables lies": (".json", _json_doc(num_variables=10**9)),
    "qbsolv 10^7 nodes in 22 bytes": (".qubo", "p qubo 0 10000000 0 0\n"),
    "gset 10^7 nodes": (".gset", "10000000 0\n"),
    "gset 10^7 edges declared": (".gset", "5000 10000000\n1 2 1\n"),
    "bqp n = 10^7, no entries": (".bqp", "1\n10000000 0\n   \n"),
}


def _run(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    """The CLI's result and the CPU time (user + system) it used: start-up and imports
    about 0.5 s, which load cannot stretch. A refusal that blocks (a FIFO opened for
    reading) uses no CPU: the wall-clock ``timeout`` catches it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, "-m", "ising_qubo.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,  # blocking: the command returns in ~2 s at load 8 on 2 cores
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc, cpu


def _assert_refused(path: Path, command: str) -> None:
    proc, seconds = _run(command, str(path))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    assert seconds < 5, f"{seconds:.2f} s of CPU time"  # start-up ~0.5 s; no n-sized work


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("command", ["info", "solve"])
def test_hostile_file_is_one_line_and_exit_2(tmp_path: Path, name: str, command: str) -> None:
    suffix, content = CASES[name]
    path = tmp_path / f"hostile{suffix}"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    _assert_refused(path, command)


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_file_is_a_value_error_in_process(tmp_path: Path, name: str) -> None:
    """The library itself (not only the CLI) refuses each case quickly, naming the file."""
    suffix, content = CASES[name]
    path = tmp_path / f"hostile{suffix}"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with cpu_timed() as run, pytest.raises(ValueError, match=r"^" + str(path).replace(".", r"\.")):
        qio.load_all(path)
    assert run.seconds < 1.0  # "within a second" of CPU time: no n-sized work (ms today)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("command", ["info", "solve"])
def test_fifo_without_writer_is_refused(tmp_path: Path, command: str) -> None:
    fifo = tmp_path / "pipe.coo"
    os.mkfifo(fifo)
    _assert_refused(fifo, command)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
@pytest.mark.parametrize("fmt", ["coo", "gset", "json", "bqm", "qubo", "bqp"])
def test_endless_device_is_refused(device: str, fmt: str) -> None:
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    refusal = f"^{device}: a character device, not a regular file"
    with cpu_timed() as run, pytest.raises(ValueError, match=refusal):
        qio.load_all(device, format=fmt)
    assert run.seconds < 1.0  # CPU time (reading the device would be endless work): ms today


@pytest.mark.parametrize("command", ["info", "solve"])
def test_endless_device_through_the_cli(command: str) -> None:
    proc, seconds = _run(command, "--format", "coo", "/dev/urandom")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "/dev/urandom" in proc.stderr and seconds < 5  # CPU time, as above


def test_validated_bqm_reader_round_trips() -> None:
    """The hand-written .bqm parser gives back exactly what dimod wrote (all versions,
    dtypes, label kinds), so the validation rejects nothing dimod itself produces."""
    models = [
        dimod.BinaryQuadraticModel("BINARY"),
        dimod.BinaryQuadraticModel({0: 1.0, 1: 2.0}, {}, 0.0, "BINARY", dtype=np.float32),
        dimod.generators.gnp_random_bqm(200, 0.2, "SPIN", random_state=1),
        dimod.BinaryQuadraticModel(
            {"a": 1.0, 3: 2.0, (1, "x"): -0.5}, {("a", 3): 1.5, (3, (1, "x")): -2.0}, 1.25, "SPIN"
        ),
    ]
    for bqm in models:
        for version in (1, 2):
            back = qio._registry.native._parse(
                Path("m.bqm"), memoryview(bqm.to_file(version=version).read())
            )
            assert back == bqm and list(back.variables) == list(bqm.variables)
            assert back.dtype == bqm.dtype
