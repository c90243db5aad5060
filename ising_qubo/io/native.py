"""dimod's native binary BQM file (``.bqm``): exact, fast, any hashable labels."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import IO

import dimod

from ising_qubo.io._instance import Instance
from ising_qubo.io._text import fail, first_non_finite


def write(bqm: dimod.BinaryQuadraticModel, fp: IO[bytes]) -> None:
    """Copy ``bqm.to_file()`` into the binary file ``fp`` (finite biases only)."""
    if (bad := first_non_finite(bqm)) is not None:
        raise ValueError(f"cannot write a model with non-finite biases: {bad}")
    with bqm.to_file() as src:
        shutil.copyfileobj(src, fp)


def read(path: Path) -> list[Instance]:
    """Read a file written by ``BinaryQuadraticModel.to_file``."""
    with open(path, "rb") as fp:
        if not fp.read(1):
            raise fail(path, "empty file")
        fp.seek(0)
        try:
            bqm = dimod.BinaryQuadraticModel.from_file(fp)
        except Exception as exc:  # dimod raises many types for a corrupt file
            raise fail(
                path,
                f"not a dimod BQM file ({type(exc).__name__}: {exc}); expected the"
                " output of BinaryQuadraticModel.to_file()",
            ) from exc
    if (bad := first_non_finite(bqm)) is not None:
        raise fail(path, f"{bad}; every bias must be a finite number")
    return [Instance(bqm=bqm, name=path.stem, path=path)]
