"""Benchmark instances: problem files, the shared literature sets by name, generated SK problems.

Instance specs understood by :func:`collect_instances`:

==================  ==========================================================================
spec                meaning
==================  ==========================================================================
``gset``            every ``<bench-dir>/gset/G*.txt`` (G1, G2, G3, G14, G22 in the shared set)
``gset:G1,G14``     only those Gset graphs
``bqp50``           the 10 instances of ``<bench-dir>/beasley/bqp50.txt`` (also bqp100, bqp250)
``bqp50:3,7``       only instances 3 and 7 (1-based) of that file
``sk:N[:SEED]``     dense SK-like SPIN problem: n = N, J_ij ~ N(0, 1) for i < j, h = 0
a file path         every instance in the file (any format ``ising_qubo.io`` reads)
a directory         every readable file in it (unreadable ones skipped with a warning line)
==================  ==========================================================================

Names win over paths: write ``./gset`` for a directory that happens to be called ``gset``.
Best-known values come from ``<bench-dir>/best_known.json`` by instance name (``G1``,
``bqp50-3``), only for instances of the matching kind and size.

``<bench-dir>`` is the ``bench_dir`` argument (``--instances-dir`` on the command line), else
the environment variable ``ISING_QUBO_BENCH_DIR``, else ``<checkout>/../shared/bench`` when
the package runs from a source checkout (never for an installed wheel, whose parent folders
are the interpreter's); without one, named sets fail with a message saying how to give it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import dimod
import numpy as np

from ising_qubo import io

BENCH_DIR_ENV = "ISING_QUBO_BENCH_DIR"
_PROJECT_NAME = re.compile(r"""^name\s*=\s*["']ising-qubo["']""", re.MULTILINE)


def source_checkout() -> Path | None:
    """The repository root when this package is imported from a source checkout, else None.

    A checkout has this package folder next to a ``pyproject.toml`` that names the project
    ``ising-qubo`` (an editable install is one too); an installed wheel sits in
    ``site-packages``, whose parent holds no such file.
    """
    root = Path(__file__).resolve().parents[2]
    try:
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
    except (OSError, UnicodeError):
        return None
    return root if _PROJECT_NAME.search(text) else None


REPO_ROOT = source_checkout()
"""The source checkout's root, or None for an installed package."""
DEFAULT_BENCH_DIR = None if REPO_ROOT is None else REPO_ROOT.parent / "shared" / "bench"
"""The checkout's shared instance sets (``<repo>/../shared/bench``), or None when installed."""
BEASLEY_SETS = ("bqp50", "bqp100", "bqp250")
NAMED_SETS = ("gset", *BEASLEY_SETS)
SPEC_HELP = (
    "gset[:G1,G14], bqp50|bqp100|bqp250[:K,...], sk:N[:SEED], a problem file or a directory of them"
)

_SK = re.compile(r"sk:(\d+)(?::(\d+))?")
_BQP_NAME = re.compile(r"(bqp\d+)-(\d+)")


def negated_energy(energy: float) -> float:
    """The objective of problems without a literature objective: -energy, maximised."""
    return 0.0 - float(energy)


@dataclass(frozen=True)
class BenchInstance:
    """One problem to benchmark.

    Attributes:
        name: unique within a run (``G1``, ``bqp50-3``, ``sk1024_s0``, a file stem).
        bqm: the minimisation problem the solvers see.
        best_known: best-known objective value from the literature, or None.
        objective: energy -> objective (cut, bqp objective, or -energy).
        sense: ``"max"`` or ``"min"``: which way the objective improves.
        objective_name: what the objective is called in tables (``cut``, ``-energy``).
        source: where the problem came from (a path or a generator spec).
    """

    name: str
    bqm: dimod.BinaryQuadraticModel = field(repr=False)
    best_known: float | None = None
    objective: Callable[[float], float] = negated_energy
    sense: str = "max"
    objective_name: str = "-energy"
    source: str = ""

    def __post_init__(self) -> None:
        if self.sense not in ("max", "min"):
            raise ValueError(
                f"instance {self.name!r}: sense must be 'max' or 'min', got {self.sense!r}"
            )

    def better(self, a: float, b: float) -> bool:
        """Whether objective ``a`` is strictly better than ``b``."""
        return a > b if self.sense == "max" else a < b

    @classmethod
    def from_io(
        cls, instance: io.Instance, best_known: float | None = None, name: str | None = None
    ) -> BenchInstance:
        """Wrap an ``ising_qubo.io`` instance, keeping its literature objective if it has one."""
        source = str(instance.path) if instance.path is not None else ""
        if instance.index is not None:
            source += f"#{instance.index}"
        if instance.objective_name is not None:
            return cls(
                name or instance.name,
                instance.bqm,
                best_known,
                # a literature kind (objective_name is set): its objective is never None
                cast("Callable[[float], float]", instance.objective),
                instance.sense or "max",
                instance.objective_name,
                source,
            )
        return cls(name or instance.name, instance.bqm, best_known, source=source)


def sk_instance(n: int, seed: int = 0) -> BenchInstance:
    """Dense SK-like problem: SPIN, J_ij ~ N(0, 1) for all i < j, no fields, objective -energy."""
    if n < 2:
        raise ValueError(f"sk:{n}: an SK problem needs at least 2 variables")
    rng = np.random.default_rng(seed)
    rows, cols = np.triu_indices(n, 1)
    couplings = rng.standard_normal(len(rows))
    bqm = dimod.BinaryQuadraticModel.from_numpy_vectors(
        np.zeros(n), (rows, cols, couplings), 0.0, dimod.SPIN
    )
    return BenchInstance(f"sk{n}_s{seed}", bqm, source=f"sk:{n}:{seed}")


def default_bench_dir() -> Path | None:
    """Where named instance sets live when no folder is given: ``$ISING_QUBO_BENCH_DIR``
    (read now, not at import), else :data:`DEFAULT_BENCH_DIR` (None outside a checkout)."""
    from_env = os.environ.get(BENCH_DIR_ENV, "").strip()
    if from_env:
        return Path(from_env).expanduser()
    return DEFAULT_BENCH_DIR


def load_best_known(bench_dir: Path | None) -> dict[str, Any]:
    """``best_known.json`` from ``bench_dir`` ({} when there is none)."""
    if bench_dir is None:
        return {}
    path = Path(bench_dir) / "best_known.json"
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as fp:
        data = json.load(fp)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def best_known_for(instance: io.Instance, table: dict[str, Any]) -> float | None:
    """The literature value for a Gset or Beasley instance read from a file, else None."""
    if instance.kind == "maxcut":
        value = (table.get("gset") or {}).get(instance.name)
        return None if value is None else float(value)
    if instance.kind == "bqp":
        match = _BQP_NAME.fullmatch(instance.name)
        if match is None:
            return None
        family, k = match.group(1), int(match.group(2))
        values = (table.get("beasley") or {}).get(family)
        size = int(family[3:])
        if values is None or instance.bqm.num_variables != size or not 1 <= k <= len(values):
            return None
        return float(values[k - 1])
    return None


def collect_instances(
    specs: Iterable[str | Path | BenchInstance],
    bench_dir: str | Path | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[BenchInstance]:
    """Turn instance specs (see the module docstring) into :class:`BenchInstance` objects.

    ``bench_dir`` defaults to :func:`default_bench_dir`. Raises ValueError naming the spec
    for anything that is neither a known name nor a readable path, and for a named set when
    there is no bench folder at all. Names are made unique (``name~2``) when two specs give
    instances of the same name.
    """
    bench_dir = default_bench_dir() if bench_dir is None else Path(bench_dir)
    warn = warn or _warn_stderr
    table = load_best_known(bench_dir)
    found: list[BenchInstance] = []
    for spec in specs:
        if isinstance(spec, BenchInstance):
            found.append(spec)
        else:
            found.extend(_from_spec(spec, bench_dir, table, warn))
    if not found:
        raise ValueError("no instances given")
    return _unique_names(found)


def _from_spec(
    spec: str | Path, bench_dir: Path | None, table: dict[str, Any], warn: Callable[[str], None]
) -> list[BenchInstance]:
    text = str(spec).strip()
    if not isinstance(spec, Path):
        head, _, rest = text.partition(":")
        if head.lower() == "sk":
            return [_sk_from_spec(text)]
        if head.lower() in NAMED_SETS:
            if bench_dir is None:
                raise ValueError(
                    f"instance spec {text!r}: no instance folder; pass --instances-dir DIR "
                    f"or set {BENCH_DIR_ENV} (a folder with gset/, beasley/, best_known.json)"
                )
            return _named_set(head.lower(), rest, text, bench_dir, table)
    path = Path(text).expanduser()
    if path.is_dir():
        return _from_directory(path, table, warn)
    if path.is_file():
        return [
            BenchInstance.from_io(inst, best_known_for(inst, table))
            for inst in io.read_instances(path)
        ]
    raise ValueError(f"instance spec {text!r}: not a file or directory; known specs: {SPEC_HELP}")


def _sk_from_spec(text: str) -> BenchInstance:
    match = _SK.fullmatch(text.lower())
    if match is None:
        raise ValueError(
            f"instance spec {text!r}: expected sk:N or sk:N:SEED (N >= 2 variables, SEED >= 0)"
        )
    n = int(match.group(1))
    seed = int(match.group(2)) if match.group(2) is not None else 0
    if n < 2:
        raise ValueError(f"instance spec {text!r}: N must be at least 2")
    return sk_instance(n, seed)


def _named_set(
    name: str, selection: str, text: str, bench_dir: Path, table: dict[str, Any]
) -> list[BenchInstance]:
    wanted = [s.strip() for s in selection.split(",") if s.strip()]
    if selection and not wanted:
        raise ValueError(f"instance spec {text!r}: empty selection after ':'")
    if name == "gset":
        folder = bench_dir / "gset"
        files = sorted(folder.glob("G*.txt"), key=_natural_key) if folder.is_dir() else []
        if not files:
            raise ValueError(
                f"instance spec {text!r}: no Gset files G*.txt in {folder} "
                f"(set --instances-dir or {BENCH_DIR_ENV})"
            )
        by_name = {f.stem.upper(): f for f in files}
        if wanted:
            missing = [w for w in wanted if w.upper() not in by_name]
            if missing:
                raise ValueError(
                    f"instance spec {text!r}: no Gset graph {', '.join(missing)} "
                    f"in {folder}; there are {', '.join(f.stem for f in files)}"
                )
            files = [by_name[w.upper()] for w in wanted]
        out: list[BenchInstance] = []
        for path in files:
            out.extend(
                BenchInstance.from_io(inst, best_known_for(inst, table))
                for inst in io.read_instances(path, "gset")
            )
        return out
    path = bench_dir / "beasley" / f"{name}.txt"
    if not path.is_file():
        raise ValueError(
            f"instance spec {text!r}: {path} not found (set --instances-dir or {BENCH_DIR_ENV})"
        )
    instances = io.read_instances(path, "bqp")
    if wanted:
        picked = []
        for w in wanted:
            if not w.isdigit() or not 1 <= int(w) <= len(instances):
                raise ValueError(
                    f"instance spec {text!r}: {w!r} is not an instance number 1..{len(instances)}"
                )
            picked.append(instances[int(w) - 1])
        instances = picked
    return [BenchInstance.from_io(inst, best_known_for(inst, table)) for inst in instances]


def _from_directory(
    folder: Path, table: dict[str, Any], warn: Callable[[str], None]
) -> list[BenchInstance]:
    out: list[BenchInstance] = []
    for path in sorted(folder.iterdir(), key=_natural_key):
        if not path.is_file() or path.name.startswith("."):
            continue
        try:
            instances = io.read_instances(path)
        except (ValueError, OSError, UnicodeError) as exc:
            warn(f"warning: skipping {path}: {' '.join(str(exc).split())}")
            continue
        out.extend(BenchInstance.from_io(inst, best_known_for(inst, table)) for inst in instances)
    if not out:
        raise ValueError(
            f"instance spec {str(folder)!r}: the directory holds no readable problem file"
        )
    return out


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _unique_names(instances: list[BenchInstance]) -> list[BenchInstance]:
    seen: dict[str, int] = {}
    out = []
    for inst in instances:
        count = seen.get(inst.name, 0) + 1
        seen[inst.name] = count
        if count > 1:
            name = f"{inst.name}~{count}"
            while name in seen:
                count += 1
                name = f"{inst.name}~{count}"
            seen[name] = 1
            inst = replace(inst, name=name)
        out.append(inst)
    return out


def _warn_stderr(message: str) -> None:
    print(message, file=sys.stderr)
