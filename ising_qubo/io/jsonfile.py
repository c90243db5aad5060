"""dimod's JSON serialisation (``BinaryQuadraticModel.to_serializable``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

import dimod
import numpy as np
from dimod.variables import Variables

from ising_qubo.io import _labels
from ising_qubo.io._instance import Instance
from ising_qubo.io._text import TextFile, first_non_finite, show

_EXPECTED = "a dimod BQM JSON document (BinaryQuadraticModel.to_serializable())"


def write(bqm: dimod.BinaryQuadraticModel, fp: IO[str]) -> None:
    """``json.dump(bqm.to_serializable())``, keeping the variable order.

    dimod sorts the labels when serialising; we store the vectors in the model's own
    order instead (``from_serializable`` accepts any order), so a round trip gives back
    the same variable order as the other formats do. Floats are written exactly by repr;
    NaN and infinities (not JSON) are refused, as every reader refuses them.
    """
    if (bad := first_non_finite(bqm)) is not None:
        raise ValueError(f"cannot write a model with non-finite biases: {bad}")
    doc = bqm.to_serializable()
    variables = list(bqm.variables)
    vectors = bqm.to_numpy_vectors(variable_order=variables)
    ldata, (irow, icol, qdata) = vectors.linear_biases, vectors.quadratic
    doc.update(
        variable_labels=Variables(variables).to_serializable(),
        linear_biases=ldata.tolist(),
        quadratic_biases=qdata.tolist(),
        quadratic_head=irow.tolist(),
        quadratic_tail=icol.tolist(),
    )
    json.dump(doc, fp)
    fp.write("\n")


def read(path: Path) -> list[Instance]:
    """Read a JSON document produced by :func:`write` (or by dimod directly)."""
    tf = TextFile(path, _EXPECTED)
    try:
        obj = json.loads(tf.text)
    except json.JSONDecodeError as exc:
        raise tf.error(f"invalid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None
    except RecursionError:
        raise tf.error("invalid JSON: nested too deeply") from None
    if not isinstance(obj, dict) or obj.get("type") != "BinaryQuadraticModel":
        found = obj.get("type") if isinstance(obj, dict) else type(obj).__name__
        raise tf.error(f"not {_EXPECTED}: found type {found!r}")
    bqm = _build(obj, tf)
    if (bad := first_non_finite(bqm)) is not None:
        raise tf.error(f"{bad}; every bias must be a finite number")
    return [Instance(bqm=bqm, name=path.stem, path=path)]


# The keys to_serializable writes (dimod 0.12, bqm_schema 3.0.0); "info" and "version" may
# be missing in older or hand-written documents.
_REQUIRED = {
    "type",
    "use_bytes",
    "num_variables",
    "num_interactions",
    "variable_labels",
    "variable_type",
    "offset",
    "linear_biases",
    "quadratic_biases",
    "quadratic_head",
    "quadratic_tail",
}
_REQUIRED_ORDER = (
    "variable_labels",
    "use_bytes",
    "linear_biases",
    "quadratic_biases",
    "quadratic_head",
    "quadratic_tail",
    "offset",
    "variable_type",
    "num_variables",
    "num_interactions",
    "type",
)
_OPTIONAL = {"version", "index_type", "bias_type", "info"}


def _build(obj: dict, tf: TextFile) -> dimod.BinaryQuadraticModel:
    """Validate the document field by field, then build the model from checked arrays.

    dimod's ``from_serializable`` trusts the indices: a ``quadratic_head`` of -1 crashes
    the interpreter, 2**31-1 aborts it and 3e8 allocates gigabytes. Here every type is
    exact (no bools for numbers, no floats for indices), every index in range, every
    length consistent, and nothing is allocated beyond what the document already holds.
    """

    def bad(key: str, message: str) -> ValueError:
        return tf.error(f"malformed BQM JSON document ({key}: {message})")

    # in the order dimod reads them, so the message is the one its reader gave
    for key in _REQUIRED_ORDER:
        if key not in obj:
            raise tf.error(f"malformed BQM JSON document (KeyError: {key!r})")
    unknown = sorted(obj.keys() - _REQUIRED - _OPTIONAL)
    if unknown:
        raise bad(unknown[0], "unknown key")
    schema = obj.get("version", {"bqm_schema": "3.0.0"})
    if not isinstance(schema, dict) or schema.get("bqm_schema") not in _SCHEMAS:
        raise bad("version", f"{schema!r} is not one of bqm_schema {sorted(_SCHEMAS)}")
    if obj["use_bytes"] is not False:
        raise bad("use_bytes", f"{obj['use_bytes']!r}; a JSON document holds lists, not bytes")
    if obj.get("bias_type", "float64") not in ("float32", "float64"):
        raise bad("bias_type", f"{obj['bias_type']!r} is not 'float32' or 'float64'")
    if obj.get("index_type", "int32") not in ("int32", "int64"):
        raise bad("index_type", f"{obj['index_type']!r} is not 'int32' or 'int64'")
    if not isinstance(obj.get("info", {}), dict):
        raise bad("info", "must be an object")
    if obj["variable_type"] not in ("SPIN", "BINARY"):
        raise bad("variable_type", f"{show(repr(obj['variable_type']))} is not 'SPIN' or 'BINARY'")
    offset = obj["offset"]
    if type(offset) not in (int, float):
        raise bad("offset", f"{show(repr(offset))} is not a number")
    n, m = obj["num_variables"], obj["num_interactions"]
    for key, value in (("num_variables", n), ("num_interactions", m)):
        if type(value) is not int or value < 0:
            raise bad(key, f"{show(repr(value))} is not a non-negative integer")
    labels = _label_list(obj["variable_labels"], n, bad)
    linear = _numbers(obj["linear_biases"], n, "linear_biases", "a number", _is_number, bad)
    qdata = _numbers(obj["quadratic_biases"], m, "quadratic_biases", "a number", _is_number, bad)
    irow = _numbers(obj["quadratic_head"], m, "quadratic_head", "an index", _is_int, bad)
    icol = _numbers(obj["quadratic_tail"], m, "quadratic_tail", "an index", _is_int, bad)
    if m:
        rows = np.array(irow, dtype=np.int64)
        cols = np.array(icol, dtype=np.int64)
        for key, arr in (("quadratic_head", rows), ("quadratic_tail", cols)):
            out = np.flatnonzero((arr < 0) | (arr >= n))
            if out.size:
                k = int(out[0])
                raise bad(key, f"index {int(arr[k])} at position {k} is not in 0..{n - 1}")
        loops = np.flatnonzero(rows == cols)
        if loops.size:
            k = int(loops[0])
            raise bad(
                "quadratic_head", f"self-loop ({int(rows[k])}, {int(rows[k])}) at position {k}"
            )
        lo, hi = np.minimum(rows, cols), np.maximum(rows, cols)
        pairs = lo * n + hi
        order = np.argsort(pairs, kind="stable")
        dup = np.flatnonzero(pairs[order][1:] == pairs[order][:-1])
        if dup.size:
            k = int(order[dup[0] + 1])
            raise bad(
                "quadratic_head", f"pair ({int(lo[k])}, {int(hi[k])}) repeated at position {k}"
            )
    else:
        rows = cols = np.zeros(0, dtype=np.int64)
    return dimod.BinaryQuadraticModel.from_numpy_vectors(
        np.array(linear, dtype=np.float64),
        (rows, cols, np.array(qdata, dtype=np.float64)),
        float(offset),
        dimod.Vartype[obj["variable_type"]],
        variable_order=labels,
        dtype=np.dtype(obj.get("bias_type", "float64")),
    )


_SCHEMAS = {"2.0.0", "3.0.0"}


def _is_number(value: object) -> bool:
    return type(value) in (int, float)


def _is_int(value: object) -> bool:
    return type(value) is int


def _numbers(value, length: int, key: str, kind: str, ok, bad) -> list:
    """A list of exactly ``length`` items of an exact JSON type (bools are not numbers)."""
    if not isinstance(value, list):
        raise bad(key, f"must be a list, got {type(value).__name__}")
    if len(value) != length:
        count = "num_variables" if key == "linear_biases" else "num_interactions"
        raise bad(key, f"has {len(value):,} items but {count} is {length:,}")
    for k, item in enumerate(value):
        if not ok(item):
            raise bad(key, f"item {k} is {show(repr(item))}, not {kind}")
    return value


def _label_list(value, n: int, bad) -> list:
    """Distinct hashable labels, which also stay distinct as JSON object keys (1 and "1"
    would merge when a result is written as ``{label: value}``)."""
    if not isinstance(value, list) or len(value) != n:
        found = f"{len(value):,} labels" if isinstance(value, list) else type(value).__name__
        raise bad("variable_labels", f"must be a list of num_variables = {n:,} labels, got {found}")
    try:
        labels = [_labels.as_tuples(v) for v in value]
        for label in labels:
            hash(label)
    except _labels.LabelError as exc:
        raise bad("variable_labels", str(exc)) from None
    except (TypeError, ValueError, RecursionError):
        raise bad("variable_labels", "a label is not a string, number, null or list") from None
    if len(set(labels)) != n:
        raise bad("variable_labels", "labels are not distinct (1, 1.0 and true are equal)")
    keys: dict[str, int] = {}
    for k, label in enumerate(labels):
        key = label if isinstance(label, str) else json.dumps(value[k])
        if key in keys:
            raise bad(
                "variable_labels",
                f"label {label!r} at position {k} collides with label"
                f" {labels[keys[key]]!r} at position {keys[key]}",
            )
        keys[key] = k
    return labels
