"""QUBO / Ising problem files: one module per format family, one registry by suffix.

>>> from ising_qubo import io
>>> bqm = io.load("../shared/bench/gset/G1.txt")                # doctest: +SKIP
>>> inst = io.read_instance("bqp50.txt", instance=3)           # doctest: +SKIP
>>> inst.objective(energy)                                     # doctest: +SKIP

Formats (``format=`` names are case-insensitive):

========  =====================  =====  =====  ==============================================
name      suffixes               read   write  notes
========  =====================  =====  =====  ==============================================
bqm       .bqm                   yes    yes    dimod binary file; alias ``dimod``
coo       .coo                   yes    yes    ``i j bias`` text; exact, dimod-compatible
json      .json                  yes    yes    dimod ``to_serializable``
qubo      .qubo                  yes    yes    qbsolv; alias ``qbsolv``; SPIN saved as BINARY
gset      .gset .rudy            yes    no     rudy max-cut graph; alias ``rudy``
bqp       .bqp                   yes    no     OR-Library Beasley, multi-instance; ``beasley``
========  =====================  =====  =====  ==============================================

``.txt`` and suffix-less files are sniffed from their first non-blank line. Every problem
with a file's contents is a ``ValueError`` whose message starts with ``<file>:<line>:``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dimod

from ising_qubo.io import _registry
from ising_qubo.io._atomic import atomic_write
from ising_qubo.io._instance import Instance
from ising_qubo.io._registry import FormatInfo

__all__ = [
    "FormatInfo",
    "Instance",
    "formats",
    "load",
    "load_all",
    "read_instance",
    "read_instances",
    "save",
]

PathLike = str | os.PathLike


def formats() -> list[FormatInfo]:
    """Describe every supported format (name, suffixes, aliases, read/write, multi-instance)."""
    return [f.info for f in _registry.FORMATS]


def save(bqm: dimod.BinaryQuadraticModel, path: PathLike, format: str | None = None) -> Path:
    """Write ``bqm`` to ``path`` and return the path.

    The format follows the suffix unless ``format`` is given (``.txt`` is never guessed for
    writing). The file is written to a temporary file in the same directory, fsynced and
    renamed over ``path``, so an error or interrupt leaves any existing file untouched.
    Writing the ``qubo`` format converts a SPIN model to BINARY (same energies).
    """
    if not isinstance(bqm, dimod.BinaryQuadraticModel):
        raise TypeError(f"expected a dimod.BinaryQuadraticModel, got {type(bqm).__name__}")
    path = Path(path)
    fmt = _registry.for_writing(path, format)
    write = fmt.write
    assert write is not None, "for_writing returns writable formats only"
    with atomic_write(path, binary=fmt.binary) as fp:
        write(bqm, fp)
    return path


def read_instances(path: PathLike, format: str | None = None) -> list[Instance]:
    """Read every problem in ``path`` (one for single-instance formats)."""
    path = Path(path)
    fmt = _registry.for_reading(path, format)
    read = fmt.read
    assert read is not None, "for_reading returns readable formats only"
    return read(path)


def read_instance(
    path: PathLike, format: str | None = None, instance: int | None = None
) -> Instance:
    """Read one problem; ``instance`` (1-based) is required when the file holds several."""
    path = Path(path)
    return _pick(path, read_instances(path, format), instance)


def load(
    path: PathLike, format: str | None = None, instance: int | None = None
) -> dimod.BinaryQuadraticModel:
    """Read one problem as a BQM; see :func:`read_instance` for ``instance``."""
    return read_instance(path, format, instance).bqm


def load_all(path: PathLike, format: str | None = None) -> list[dimod.BinaryQuadraticModel]:
    """Read every problem in ``path`` as BQMs (a one-element list for single-instance files)."""
    return [inst.bqm for inst in read_instances(path, format)]


def _pick(path: Path, instances: list[Instance], instance: int | None) -> Instance:
    n = len(instances)
    if instance is None:
        if n == 1:
            return instances[0]
        # Silently taking the first would make results depend on an accident of defaults.
        raise ValueError(
            f"{path} holds {n} instances; pass instance=1..{n} to choose one"
            " (or use load_all / read_instances)"
        )
    if isinstance(instance, bool) or not isinstance(instance, int) or not 1 <= instance <= n:
        valid = "only instance=1 (or None)" if n == 1 else f"instance=1..{n}"
        raise ValueError(
            f"{path}: instance {instance!r} is out of range; the file holds {n}"
            f" instance{'s' if n != 1 else ''}, pass {valid}"
        )
    return instances[instance - 1]
