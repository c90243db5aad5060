"""The problem commands of ``ising-qubo``: ``solvers``, ``formats``, ``solve``, ``convert``
and ``info``; their arguments and handlers. Each handler reads a file, calls the library
(:mod:`ising_qubo.io`, :mod:`ising_qubo.solvers`), prints, and returns the exit code 0;
bad input is a ValueError (or OSError) that :func:`ising_qubo.cli.app.main` prints.

``-`` is standard input where a problem file is read and standard output where one is
written (``convert IN -``, ``solve --json -``); what would then mix with the data (the
human summary) goes to standard error. The read commands print JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from ising_qubo.cli.options import parse_key_values

if TYPE_CHECKING:
    from ising_qubo.io import Instance

STDIO = "-"  # the file name that means standard input or output
STDIN_NAME = "<stdin>"  # how messages name standard input


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the problem commands to the ``ising-qubo`` subcommands."""
    solvers = commands.add_parser("solvers", help="list solvers and what is available here")
    _add_json_flag(solvers)
    solvers.set_defaults(handler=cmd_solvers)
    formats = commands.add_parser("formats", help="list file formats")
    _add_json_flag(formats)
    formats.set_defaults(handler=cmd_formats)

    solve = commands.add_parser("solve", help="solve a problem file")
    solve.add_argument("file", metavar="FILE", help="problem file; - reads standard input")
    _add_instance(solve)
    solve.add_argument("--solver", default="neal", help="solver name (see 'ising-qubo solvers')")
    solve.add_argument(
        "--num-reads", type=int, metavar="N", help="samples to draw (the solver's own default)"
    )
    solve.add_argument("--seed", type=int, metavar="S", help="random seed (default: random)")
    solve.add_argument(
        "--time-limit",
        type=float,
        metavar="SEC",
        help="stop the solver after SEC seconds (solvers that take time_limit)",
    )
    solve.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other solver parameter, VALUE parsed as JSON if possible "
        "(e.g. --param num_sweeps=5000)",
    )
    solve.add_argument(
        "--json",
        metavar="OUT",
        help="write the result as JSON to OUT; - prints it to standard output and the "
        'summary to standard error (infinite or undefined numbers as "inf", "-inf", "nan")',
    )
    solve.set_defaults(handler=cmd_solve)

    convert = commands.add_parser("convert", help="convert a problem file to another format")
    convert.add_argument("input", metavar="IN", help="problem file; - reads standard input")
    convert.add_argument(
        "output", metavar="OUT", help="file to write; - writes to standard output (needs --to)"
    )
    _add_instance(convert)
    convert.add_argument(
        "--to", metavar="NAME", help="output format, if the suffix of OUT does not say"
    )
    convert.set_defaults(handler=cmd_convert)

    info = commands.add_parser("info", help="describe a problem file")
    info.add_argument("file", metavar="FILE", help="problem file; - reads standard input")
    _add_instance(info)
    _add_json_flag(info)
    info.set_defaults(handler=cmd_info)


def _add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print JSON instead of text, for scripts"
    )


def _add_instance(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--instance",
        type=int,
        metavar="K",
        help="1-based instance number in a multi-instance file (OR-Library bqp)",
    )
    parser.add_argument(
        "--format",
        metavar="NAME",
        help="file format, when the suffix does not say (see 'ising-qubo formats'); "
        "standard input without it is sniffed as text",
    )


@contextlib.contextmanager
def _readable(name: str) -> Iterator[Path]:
    """``name`` as a path; for ``-``, a temporary copy of standard input (the readers take
    file names). A message about the copy names ``<stdin>``, not the temporary file."""
    if name != STDIO:
        yield Path(name)
        return
    with tempfile.TemporaryDirectory(prefix="ising-qubo-") as folder:
        path = Path(folder) / "stdin"
        with open(path, "wb") as copy:
            shutil.copyfileobj(sys.stdin.buffer, copy)
        try:
            yield path
        except ValueError as exc:
            raise ValueError(str(exc).replace(str(path), STDIN_NAME)) from exc


def _read(name: str, format: str | None) -> list[Instance]:
    from ising_qubo import io

    with _readable(name) as path:
        return io.read_instances(path, format)


def _pick(name: str, instances: list[Instance], instance: int | None) -> Instance:
    """The ``--instance`` chosen from a file's instances; the messages name the flag
    (:func:`ising_qubo.io.read_instance` says ``instance=`` for Python callers)."""
    shown = STDIN_NAME if name == STDIO else name
    n = len(instances)
    if instance is None:
        if n == 1:
            return instances[0]
        raise ValueError(f"{shown} holds {n} instances; pass --instance 1..{n} to choose one")
    if not 1 <= instance <= n:
        valid = "--instance 1 or none" if n == 1 else f"--instance 1..{n}"
        raise ValueError(
            f"{shown}: instance {instance} is out of range; the file holds {n}"
            f" instance{'s' if n != 1 else ''}, pass {valid}"
        )
    return instances[instance - 1]


def _print_json(value: Any, stream: TextIO | None = None) -> None:
    from ising_qubo.io.jsonvalues import dumps

    print(dumps(value), file=stream or sys.stdout)


def _solver_params(sampler: Any, solver: str, args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``sampler.sample``: ``--param`` plus ``--num-reads``,
    ``--seed`` and ``--time-limit`` where given; a ValueError for one the solver lacks."""
    params = parse_key_values(args.param, "--param")
    accepted = set(getattr(sampler, "parameters", {}) or {})
    for option, key in (
        ("--num-reads", "num_reads"),
        ("--seed", "seed"),
        ("--time-limit", "time_limit"),
    ):
        value = getattr(args, key)
        if value is None:
            continue
        if key not in accepted:
            raise ValueError(
                f"solver {solver!r} does not take {option}; its parameters: "
                f"{', '.join(sorted(accepted)) or 'none'}"
            )
        params[key] = value
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(
            f"solver {solver!r} has no parameter {', '.join(unknown)}; "
            f"its parameters: {', '.join(sorted(accepted)) or 'none'}"
        )
    return params


def cmd_solvers(args: argparse.Namespace) -> int:
    from ising_qubo.solvers import solver_info

    rows = [(e.name, e.description, e.available()) for e in solver_info()]
    if args.json:
        _print_json([{"name": n, "description": d, "available": a} for n, d, a in rows])
        return 0
    width = max(len(name) for name, _, _ in rows)
    for name, description, available in rows:
        print(f"{name:<{width}}  {description}  [available: {available}]")
    return 0


def cmd_formats(args: argparse.Namespace) -> int:
    import dataclasses

    from ising_qubo import io

    if args.json:
        _print_json([dataclasses.asdict(fmt) for fmt in io.formats()])
        return 0
    for fmt in io.formats():
        modes = "read/write" if fmt.can_write else "read"
        many = ", multi-instance" if fmt.multi_instance else ""
        print(f"{fmt.name:<6} {' '.join(fmt.suffixes):<14} {modes}{many}  {fmt.description}")
    return 0


def cmd_solve(args: argparse.Namespace) -> int:
    from ising_qubo.io._atomic import check_writable
    from ising_qubo.io.jsonvalues import write_json
    from ising_qubo.solvers import get_solver
    from ising_qubo.solvers.registry import limit_after_loading

    if args.json not in (None, STDIO):  # a bad path now, not after the solve
        check_writable(args.json, "--json")
    instance = _pick(args.file, _read(args.file, args.format), args.instance)
    start = time.perf_counter()  # --time-limit counts loading the solver (torch: seconds)
    sampler = get_solver(args.solver)
    params = _solver_params(sampler, args.solver, args)
    params, _ = limit_after_loading(params, time.perf_counter() - start)
    sampleset = sampler.sample(instance.bqm, **params)
    elapsed = time.perf_counter() - start
    best = sampleset.first
    status = sampleset.info.get("status", "FEASIBLE")
    objective = instance.objective(best.energy)
    interrupted = bool(sampleset.info.get("interrupted"))
    # with --json - standard output carries the JSON only
    out = sys.stderr if args.json == STDIO else sys.stdout
    print(
        f"instance:   {instance.name} ({instance.bqm.num_variables} variables, "
        f"{instance.bqm.num_interactions} interactions, {instance.bqm.vartype.name})",
        file=out,
    )
    print(f"solver:     {args.solver}", file=out)
    print(f"energy:     {best.energy:.10g}", file=out)
    if objective is not None:
        print(f"objective:  {objective:.10g} ({instance.objective_name}, maximised)", file=out)
    print(f"status:     {status}", file=out)
    if interrupted:  # Ctrl-C: the solver returned its best so far
        print("note:       interrupted: best found so far", file=out)
    if "bound" in sampleset.info:
        bound = sampleset.info["bound"]
        print(f"bound:      {bound:.10g} (proven lower bound on the energy)", file=out)
    print(f"time:       {elapsed:.3f} s", file=out)
    if args.json is not None:
        result = {
            "solver": args.solver,
            "energy": best.energy,
            "objective": objective,
            "status": status,
            "interrupted": interrupted,
            "time_s": elapsed,
            "num_variables": instance.bqm.num_variables,
            "sample": {str(v): int(x) for v, x in best.sample.items()},
        }
        if args.json == STDIO:
            _print_json(result)
        else:
            write_json(args.json, result)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from ising_qubo import io

    instance = _pick(args.input, _read(args.input, args.format), args.instance)
    bqm = instance.bqm
    summary = f"({bqm.num_variables} variables, {bqm.num_interactions} interactions)"
    if args.output != STDIO:
        io.save(bqm, args.output, args.to)
        print(f"wrote {args.output} {summary}")
        return 0
    if args.to is None:
        raise ValueError(
            "convert to - (standard output) needs --to NAME (see 'ising-qubo formats')"
        )
    with tempfile.TemporaryDirectory(prefix="ising-qubo-") as folder:
        path = io.save(bqm, Path(folder) / "out", args.to)
        sys.stdout.flush()
        with open(path, "rb") as written:
            shutil.copyfileobj(written, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    print(f"wrote standard output {summary}", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    instances = _read(args.file, args.format)
    if args.instance is not None or len(instances) == 1:
        instances = [_pick(args.file, instances, args.instance)]
    described = [_describe(instance) for instance in instances]
    if args.json:
        _print_json(described)
        return 0
    for row in described:
        print(
            f"{row['name']}: {row['num_variables']} variables, {row['num_interactions']} "
            f"interactions, density {row['density']:.4f}, {row['vartype']}"
        )
        print(f"  linear range    [{_range(row['linear_range'])}]")
        print(f"  quadratic range [{_range(row['quadratic_range'])}]")
        print(f"  offset          {row['offset']:.10g}")
        if row["objective"] is not None:
            print(f"  objective       {row['objective']}")
    return 0


def _describe(instance: Instance) -> dict[str, Any]:
    """What ``info`` says about one instance, as plain values (``--json`` prints them)."""
    bqm = instance.bqm
    n, m = bqm.num_variables, bqm.num_interactions
    # by field name: dimod types the result as 3- or 4-tuple (labels only when asked)
    vectors = bqm.to_numpy_vectors()
    objective = None
    if instance.kind == "maxcut":
        objective = f"cut = ({instance.total_weight:.10g} - energy) / 2, maximised"
    elif instance.kind == "bqp":
        objective = "bqp objective = -energy, maximised"
    return {
        "name": instance.name,
        "num_variables": n,
        "num_interactions": m,
        "density": m / (n * (n - 1) / 2) if n > 1 else 0.0,
        "vartype": bqm.vartype.name,
        "linear_range": _bounds(vectors.linear_biases),
        "quadratic_range": _bounds(vectors.quadratic.biases),
        "offset": float(vectors.offset),
        "objective": objective,
    }


def _bounds(values: np.ndarray) -> list[float] | None:
    return [float(values.min()), float(values.max())] if len(values) else None


def _range(bounds: list[float] | None) -> str:
    return "none" if bounds is None else f"{bounds[0]:.6g}, {bounds[1]:.6g}"
