"""dimod's native binary BQM file (``.bqm``): exact, fast, any hashable labels.

dimod's own reader (``BinaryQuadraticModel.from_file``) trusts the file: a neighbour index
of -1 crashes the interpreter inside compiled code. So :func:`read` parses the documented
layout itself with numpy, checks every field, and only then builds the model through
``from_numpy_vectors``. Layout (``BinaryQuadraticModel.to_file``, versions 1.0 and 2.0)::

    b"DIMODBQM" major minor u32:HEADER_LEN   JSON header + "\\n", space-padded to 64 bytes
    offset                                   one ``dtype``
    num_variables x (ntype start, dtype bias)  start of each variable's neighbourhood
    2*num_interactions x (itype neighbour, dtype bias)   neighbourhoods, ascending, symmetric
    [b"VARS" u32:LEN JSON labels, space-padded]          v2 with non-range labels only
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Hashable
from pathlib import Path
from typing import IO, Any

import dimod
import numpy as np

from ising_qubo.io import _labels
from ising_qubo.io._instance import Instance
from ising_qubo.io._text import fail, first_non_finite, read_regular

_MAGIC = b"DIMODBQM"
_VARS = b"VARS"
_VERSIONS = ((1, 0), (2, 0))
_KEYS = {"dtype", "itype", "ntype", "shape", "type", "variables", "vartype"}
_BIAS_TYPES = ("float32", "float64")  # the dtypes a dimod BQM can have
_INDEX_TYPES = ("int32", "int64")
_EXPECTED = "expected the output of BinaryQuadraticModel.to_file()"


def write(bqm: dimod.BinaryQuadraticModel, fp: IO[bytes]) -> None:
    """Copy ``bqm.to_file()`` into the binary file ``fp`` (finite biases only)."""
    if (bad := first_non_finite(bqm)) is not None:
        raise ValueError(f"cannot write a model with non-finite biases: {bad}")
    with bqm.to_file() as src:
        shutil.copyfileobj(src, fp)


def read(path: Path) -> list[Instance]:
    """Read a file written by ``BinaryQuadraticModel.to_file``, validating every field."""
    data = read_regular(path)
    if not data:
        raise fail(path, "empty file")
    bqm = _parse(path, memoryview(data))
    if (bad := first_non_finite(bqm)) is not None:
        raise fail(path, f"{bad}; every bias must be a finite number")
    return [Instance(bqm=bqm, name=path.stem, path=path)]


def _parse(path: Path, buf: memoryview) -> dimod.BinaryQuadraticModel:
    def bad(message: str) -> ValueError:
        return fail(path, f"not a dimod BQM file ({message}); {_EXPECTED}")

    size = len(buf)
    if size < 14 or bytes(buf[:8]) != _MAGIC:
        raise bad(f"it does not start with {_MAGIC!r}")
    version = (buf[8], buf[9])
    if version not in _VERSIONS:
        raise bad(f"unsupported version {version[0]}.{version[1]}")
    (header_len,) = struct.unpack("<I", buf[10:14])
    pos = 14 + header_len
    if pos > size:
        raise bad(f"header length {header_len:,} runs past the end of the {size:,}-byte file")
    header = _header(bytes(buf[14:pos]), version, bad)
    dtype = np.dtype(header["dtype"])
    itype = np.dtype(header["itype"])
    ntype = np.dtype(header["ntype"]).newbyteorder("<")
    n, m = header["shape"]
    linear_dtype = np.dtype([("nidx", ntype.newbyteorder("<")), ("bias", dtype.newbyteorder("<"))])
    quad_dtype = np.dtype([("outvar", itype.newbyteorder("<")), ("bias", dtype.newbyteorder("<"))])
    need = dtype.itemsize + n * linear_dtype.itemsize + 2 * m * quad_dtype.itemsize
    if pos + need > size:
        raise bad(
            f"the header's shape [{n}, {m}] needs {need:,} bytes of data but only"
            f" {size - pos:,} follow the header"
        )
    offset = float(np.frombuffer(buf, dtype.newbyteorder("<"), 1, pos)[0])
    pos += dtype.itemsize
    ldata = np.frombuffer(buf, linear_dtype, n, pos)
    pos += n * linear_dtype.itemsize
    qdata = np.frombuffer(buf, quad_dtype, 2 * m, pos)
    pos += 2 * m * quad_dtype.itemsize
    rows, cols, biases = _quadratic(ldata["nidx"].astype(np.int64), qdata, n, m, bad)

    labels: list[Hashable] | None = None
    if version < (2, 0):
        labels = _label_list(header["variables"], n, bad)
    elif header["variables"]:
        if bytes(buf[pos : pos + 4]) != _VARS or pos + 8 > size:
            raise bad(f"expected the {_VARS!r} label section at byte {pos}")
        (vars_len,) = struct.unpack("<I", buf[pos + 4 : pos + 8])
        start, pos = pos + 8, pos + 8 + vars_len
        if pos > size:
            raise bad(f"label section length {vars_len:,} runs past the end of the file")
        labels = _label_list(_json(bytes(buf[start:pos]), "label section", bad), n, bad)
    if pos != size:
        raise bad(f"{size - pos:,} unexpected bytes after the data, starting at byte {pos}")
    return dimod.BinaryQuadraticModel.from_numpy_vectors(
        ldata["bias"].astype(np.float64),
        (rows, cols, biases),
        offset,
        dimod.Vartype[header["vartype"]],
        variable_order=labels,  # type: ignore[arg-type]  # dimod: None is its default
        dtype=dtype,
    )


def _json(raw: bytes, what: str, bad) -> Any:
    try:
        return json.loads(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise bad(f"the {what} is not ASCII JSON ({type(exc).__name__})") from None


def _header(raw: bytes, version: tuple[int, int], bad) -> dict[str, Any]:
    """The JSON header, with exactly the keys, types and values ``to_file`` writes."""
    header = _json(raw, "header", bad)
    if not isinstance(header, dict) or set(header) != _KEYS:
        found = sorted(header) if isinstance(header, dict) else type(header).__name__
        raise bad(f"the header must have the keys {sorted(_KEYS)}, found {found}")
    if header["type"] != "BinaryQuadraticModel":
        raise bad(f"header type {header['type']!r} is not 'BinaryQuadraticModel'")
    if header["vartype"] not in ("SPIN", "BINARY"):
        raise bad(f"header vartype {header['vartype']!r} is not 'SPIN' or 'BINARY'")
    if header["dtype"] not in _BIAS_TYPES:
        raise bad(f"header dtype {header['dtype']!r} is not one of {list(_BIAS_TYPES)}")
    for key in ("itype", "ntype"):
        if header[key] not in _INDEX_TYPES:
            raise bad(f"header {key} {header[key]!r} is not one of {list(_INDEX_TYPES)}")
    if header["itype"] != header["ntype"]:
        raise bad(f"header itype {header['itype']!r} differs from ntype {header['ntype']!r}")
    shape = header["shape"]
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(type(x) is int and x >= 0 for x in shape)
    ):
        raise bad(f"header shape {shape!r} is not [num_variables, num_interactions]")
    n, m = shape
    if m > n * (n - 1) // 2:
        raise bad(f"header shape {shape}: more interactions than pairs of {n} variables")
    if version >= (2, 0) and type(header["variables"]) is not bool:
        raise bad(f"header variables {header['variables']!r} is not true or false")
    if version < (2, 0) and not isinstance(header["variables"], list):
        raise bad("header variables is not a list of labels")
    return header


def _quadratic(nidx: np.ndarray, qdata: np.ndarray, n: int, m: int, bad):
    """Check the neighbourhoods (in range, ascending, no self-loops, symmetric) and return
    each interaction once as ``(rows, cols, biases)``."""
    if n == 0:
        if m:
            raise bad("interactions without variables")
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0)
    ends = np.append(nidx[1:], 2 * m)
    if nidx[0] != 0 or np.any(ends < nidx):
        raise bad("the neighbourhood starts are not ascending from 0 to 2 * num_interactions")
    owner = np.repeat(np.arange(n, dtype=np.int64), ends - nidx)
    other = qdata["outvar"].astype(np.int64)
    if other.size and (other.min() < 0 or other.max() >= n):
        k = int(np.flatnonzero((other < 0) | (other >= n))[0])
        raise bad(
            f"neighbour index {int(other[k])} of variable {int(owner[k])} is not in 0..{n - 1}"
        )
    if np.any(other == owner):
        raise bad(f"variable {int(owner[np.flatnonzero(other == owner)[0]])} is its own neighbour")
    same = owner[1:] == owner[:-1]
    if np.any(same & (other[1:] <= other[:-1])):
        raise bad("a neighbourhood is not strictly ascending (repeated or unsorted neighbours)")
    bias = qdata["bias"].astype(np.float64)
    lower, upper = other < owner, other > owner
    # every pair u < v is stored under u and under v with the same bias
    lo = np.lexsort((other[lower], owner[lower]))
    up = np.lexsort((owner[upper], other[upper]))
    a = (other[lower][lo], owner[lower][lo], bias[lower][lo])
    b = (owner[upper][up], other[upper][up], bias[upper][up])
    if (
        a[0].size != m
        or b[0].size != m
        or not all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    ):
        raise bad("the neighbourhoods are not symmetric (each pair must appear under both ends)")
    return a


def _label_list(value: Any, n: int, bad) -> list[Hashable]:
    if not isinstance(value, list) or len(value) != n:
        raise bad(f"the labels must be a list of {n} labels")
    try:
        labels = [_labels.as_tuples(v) for v in value]
        distinct = len(set(labels))
    except _labels.LabelError as exc:
        raise bad(f"a variable {exc}") from None
    except (ValueError, TypeError, RecursionError):
        raise bad("a variable label is not a JSON label (string, number, list)") from None
    if distinct != n:
        raise bad("the variable labels are not distinct")
    return labels
