"""dimod's JSON serialisation (``BinaryQuadraticModel.to_serializable``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

import dimod
from dimod.variables import Variables

from ising_qubo.io import _labels
from ising_qubo.io._instance import Instance
from ising_qubo.io._text import TextFile, first_non_finite

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
    try:
        # dimod restores only the top level of tuple labels; nested tuples need this.
        obj = dict(obj, variable_labels=_labels.as_tuples(obj["variable_labels"]))
        bqm = dimod.BinaryQuadraticModel.from_serializable(obj)
    except Exception as exc:  # missing keys, wrong lengths, bad vartype, ...
        raise tf.error(f"malformed BQM JSON document ({type(exc).__name__}: {exc})") from exc
    if (bad := first_non_finite(bqm)) is not None:
        raise tf.error(f"{bad}; every bias must be a finite number")
    return [Instance(bqm=bqm, name=path.stem, path=path)]
