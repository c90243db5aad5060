"""Fuzzing targets for every problem-file reader, run for a bounded time.

    python tests/fuzz_readers.py --seconds 20 [--target bqm] [--last FILE]

One target per reader of :mod:`ising_qubo.io` (``bqm``, ``json``, ``coo``, ``qubo``,
``gset``, ``bqp``) and one for format sniffing. Each target takes a byte string, writes it
to a file and reads it; the only allowed outcomes are models or a ``ValueError`` whose
message starts with the file's path (the one-line error of the CLI). Anything else, an
uncaught exception, a crash of the interpreter inside compiled code (dimod's readers), a
hang or a huge allocation, is a finding.

The inputs are structure-aware mutations of valid files written by the library itself:
for the binary ``.bqm`` format, integers of the header's JSON and 4/8-byte words of the
index arrays are replaced by boundary values (-1, 2^31 - 1, the number of variables, ...);
for JSON, values of any key are replaced by values of other types and sizes; for the text
formats, tokens and lines are replaced, duplicated or dropped. hypothesis draws the
mutations (reproducible with its seed). Byte-level noise is what
``tests/test_io_fuzz.py`` already covers in process; this driver runs in a child process
(``tests/test_fuzz_readers.py``) so a crash or a hang is seen as such and not as a dead
test run. Before each input is read it is written to ``--last``, so the input that killed
the interpreter is kept for the report.

Written by hand because atheris (libFuzzer) needs a compiled build of the interpreter's
extension and coverage instrumentation that the CI machine does not have; hypothesis is
already a test dependency and gives the same "mutate, run, keep the failing input" loop.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dimod
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import ising_qubo.io as qio

#: Integers that break readers that trust a declared size or an index.
BOUNDARY_INTS = [
    -(2**63),
    -(2**31) - 1,
    -(2**31),
    -1000000,
    -2,
    -1,
    0,
    1,
    2,
    3,
    7,
    255,
    2**15,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**32,
    10**7,
    3 * 10**8,
    2**63 - 1,
]
#: JSON values of every type, for the JSON reader's keys.
JSON_VALUES: list[object] = [
    *BOUNDARY_INTS,
    3e8,
    1e30,
    -0.5,
    1.5,
    True,
    False,
    None,
    "",
    "x",
    "BINARY",
    "SPIN",
    "float64",
    "int8",
    [],
    [3e8],
    [-1],
    [2**31 - 1],
    [0, 0],
    [True],
    ["a"],
    [[0, 1]],
    {},
    {"a": 1},
]


def _models() -> list[dimod.BinaryQuadraticModel]:
    """Small valid models: integer labels (the compact layouts) and mixed labels."""
    ints = dimod.BinaryQuadraticModel(
        {0: 1.0, 1: -0.5, 2: 2.0, 3: 0.0}, {(0, 2): 0.25, (1, 3): -1.0, (2, 3): 3.0}, 0.5, "SPIN"
    )
    mixed = dimod.BinaryQuadraticModel(
        {0: 1.0, "a": -0.5, (1, "b"): 0.0}, {(0, "a"): 0.25, ("a", (1, "b")): 2.0}, 1.5, "BINARY"
    )
    return [ints, mixed]


def seeds(fmt: str) -> list[bytes]:
    """Valid files of ``fmt``, written by the library (the readers must accept them)."""
    if fmt == "gset":
        return [b"5 4\n1 2 1\n2 3 -1\n3 4 2.5\n1 5 1\n"]
    if fmt == "bqp":
        return [b"2\n3 3\n1 1 3\n1 2 -4\n2 3 1\n2 2\n1 1 5\n1 2 2\n"]
    out = []
    with tempfile.TemporaryDirectory() as name:
        for i, bqm in enumerate(_models()):
            if fmt == "qubo" and bqm.vartype is dimod.SPIN:
                bqm = bqm.change_vartype(dimod.BINARY, inplace=False)
            out.append(qio.save(bqm, Path(name) / f"seed{i}", format=fmt).read_bytes())
        if fmt == "bqm":  # float32 biases and int32 indices: the other dtypes of the layout
            small = dimod.BinaryQuadraticModel(_models()[0], dtype="float32")
            out.append(qio.save(small, Path(name) / "seed32", format=fmt).read_bytes())
    return out


# ----------------------------------------------------------------------------- mutations


def mutate_bqm(blob: bytes, data: st.DataObject) -> bytes:
    """Boundary values into the header's JSON fields and into aligned words of the body."""
    buf = bytearray(blob)
    header_end = 14 + struct.unpack_from("<I", buf, 10)[0]
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        where = data.draw(st.sampled_from(["header", "word", "truncate", "append"]))
        if where == "header" and (header := _header(buf, header_end)) is not None:
            key = data.draw(st.sampled_from(sorted(header)))
            value = data.draw(st.sampled_from(JSON_VALUES))
            shape = header.get("shape")
            pair = isinstance(shape, list) and len(shape) == 2
            if key == "shape" and pair and data.draw(st.booleans()):  # one of the two sizes
                shape = list(header["shape"])
                shape[data.draw(st.integers(0, 1))] = data.draw(st.sampled_from(BOUNDARY_INTS))
                value = shape
            header[key] = value
            text = (json.dumps(header) + "\n").encode()
            text += b" " * (-(14 + len(text)) % 64)
            buf[10:header_end] = struct.pack("<I", len(text)) + text
            header_end = 14 + len(text)
        elif where == "word" and len(buf) > header_end + 8:
            size = data.draw(st.sampled_from([4, 8]))
            slots = (len(buf) - header_end) // size
            at = header_end + size * data.draw(st.integers(0, max(slots - 1, 0)))
            value = data.draw(st.sampled_from(BOUNDARY_INTS))
            fmt = "<i" if size == 4 else "<q"
            low, high = (-(2**31), 2**31 - 1) if size == 4 else (-(2**63), 2**63 - 1)
            if at + size <= len(buf):
                struct.pack_into(fmt, buf, at, min(max(value, low), high))
        elif where == "truncate":
            buf = buf[: data.draw(st.integers(0, len(buf)))]
        else:
            buf += data.draw(st.binary(min_size=1, max_size=16))
    return bytes(buf)


def _header(buf: bytearray, end: int) -> dict | None:
    """The header's JSON object, or None once an earlier edit (a truncation) broke it."""
    try:
        header = json.loads(bytes(buf[14:end]).decode())
    except (ValueError, UnicodeDecodeError):
        return None
    return header if isinstance(header, dict) and header else None


def mutate_json(blob: bytes, data: st.DataObject) -> bytes:
    """Values of any key (at the top or inside a list) replaced by other values."""
    obj = json.loads(blob)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        key = data.draw(st.sampled_from(sorted(obj)))
        value = obj[key]
        if isinstance(value, list) and value and data.draw(st.booleans()):
            value = list(value)
            value[data.draw(st.integers(0, len(value) - 1))] = data.draw(
                st.sampled_from(JSON_VALUES)
            )
        elif data.draw(st.integers(0, 9)) == 0:
            del obj[key]
            continue
        else:
            value = data.draw(st.sampled_from(JSON_VALUES))
        obj[key] = value
    return json.dumps(obj).encode()


TOKENS = [str(v) for v in BOUNDARY_INTS] + ["1.5", "nan", "inf", "1e309", "x", "#", "\x00"]


def mutate_lines(
    text: str,
    data: st.DataObject,
    new_line: st.SearchStrategy[str],
    new_token: st.SearchStrategy[str],
    operations: tuple[str, ...] = ("token", "delete", "duplicate", "line", "swap"),
) -> str:
    """One to three edits of a text file's lines: a token replaced by a ``new_token``,
    a line dropped, duplicated, swapped with another or a ``new_line`` inserted (also the
    mutator of the in-process tests, ``tests/test_io_fuzz.py``)."""
    lines = text.split("\n")
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        k = data.draw(st.integers(0, max(len(lines) - 1, 0)))
        op = data.draw(st.sampled_from(operations))
        if op == "delete" and lines:
            del lines[k]
        elif op == "duplicate" and lines:
            lines.insert(k, lines[k])
        elif op == "line":
            lines.insert(k, data.draw(new_line))
        elif op == "swap" and len(lines) > 1:
            j = data.draw(st.integers(0, len(lines) - 1))
            lines[k], lines[j] = lines[j], lines[k]
        elif lines:
            tokens = lines[k].split(" ")
            t = data.draw(st.integers(0, len(tokens) - 1))
            tokens[t] = data.draw(new_token)
            lines[k] = " ".join(tokens)
    return "\n".join(lines)


def mutate_text(blob: bytes, data: st.DataObject) -> bytes:
    """Tokens replaced by boundary values (twice as often as the other edits), lines
    dropped, duplicated or added."""
    tokens = st.sampled_from(TOKENS)
    line = st.lists(tokens, max_size=3).map(" ".join)
    operations = ("token", "token", "delete", "duplicate", "line")
    return mutate_lines(blob.decode(), data, line, tokens, operations).encode()


MUTATORS: dict[str, Callable[[bytes, st.DataObject], bytes]] = {
    "bqm": mutate_bqm,
    "json": mutate_json,
    "coo": mutate_text,
    "qubo": mutate_text,
    "gset": mutate_text,
    "bqp": mutate_text,
}
TARGETS = [*MUTATORS, "sniffed"]


# ------------------------------------------------------------------------------- targets


class Finding(AssertionError):
    """A reader broke its contract (wrong exception type or message)."""


def read_target(blob: bytes, fmt: str | None, workdir: Path, last: Path | None) -> int:
    """Read ``blob`` as ``fmt`` (None: sniffed). Returns the number of models read (0 on
    the expected one-line error); raises :class:`Finding` on anything else."""
    if last is not None:
        last.write_bytes(blob)
    path = workdir / ("input.txt" if fmt is None else f"input.{fmt}")
    path.write_bytes(blob)
    try:
        models = qio.load_all(path) if fmt is None else qio.load_all(path, format=fmt)
    except ValueError as exc:
        message = str(exc)
        if not message.startswith(str(path)) or "\n" in message:
            raise Finding(f"{fmt}: message not one line naming the file: {message!r}") from exc
        return 0
    except Exception as exc:  # the contract allows nothing else
        raise Finding(f"{fmt}: {type(exc).__name__}: {exc}") from exc
    if not models or not all(isinstance(m, dimod.BinaryQuadraticModel) for m in models):
        raise Finding(f"{fmt}: read returned {models!r}")
    return len(models)


def run_target(
    target: str, seconds: float, workdir: Path, last: Path | None, seed: int
) -> dict[str, int]:
    """Fuzz one target for about ``seconds``; returns counts of inputs accepted/refused."""
    fmt = None if target == "sniffed" else target
    # the sniffer gets every format's mutants
    sources = [(f, s) for f in MUTATORS for s in seeds(f)] if fmt is None else None
    pool = sources or [(target, s) for s in seeds(target)]
    counts = {"inputs": 0, "accepted": 0, "refused": 0}
    for source in pool:  # the valid seeds themselves must be read
        if fmt is not None and read_target(source[1], fmt, workdir, last) == 0:
            raise Finding(f"{fmt}: a valid file written by the library was refused")

    @settings(
        max_examples=50,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.generate],  # a crash leaves no chance to shrink; --last keeps the input
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def once(data: st.DataObject) -> None:
        kind, blob = data.draw(st.sampled_from(pool), label="seed")
        blob = MUTATORS[kind](blob, data)
        counts["inputs"] += 1
        counts["accepted" if read_target(blob, fmt, workdir, last) else "refused"] += 1

    random.seed(seed)  # hypothesis draws from the global random state without a database
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        once()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="total time, all targets")
    parser.add_argument("--target", choices=TARGETS, action="append", help="default: all")
    parser.add_argument("--last", type=Path, help="write each input here before reading it")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first round")
    args = parser.parse_args(argv)
    targets = args.target or TARGETS
    with tempfile.TemporaryDirectory() as name:
        report = {}
        for i, target in enumerate(targets):
            share = args.seconds / len(targets)
            report[target] = run_target(target, share, Path(name), args.last, args.seed + i)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
