"""The problem commands of ``ising-qubo``: ``solvers``, ``formats``, ``solve``, ``convert``
and ``info``; their arguments and handlers. Each handler reads a file, calls the library
(:mod:`ising_qubo.io`, :mod:`ising_qubo.solvers`), prints, and returns the exit code 0;
bad input is a ValueError (or OSError) that :func:`ising_qubo.cli.app.main` prints."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from ising_qubo.cli.options import parse_key_values


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the problem commands to the ``ising-qubo`` subcommands."""
    commands.add_parser("solvers", help="list solvers and what is available here").set_defaults(
        handler=cmd_solvers
    )
    commands.add_parser("formats", help="list file formats").set_defaults(handler=cmd_formats)

    solve = commands.add_parser("solve", help="solve a problem file")
    solve.add_argument("file", type=Path)
    _add_instance(solve)
    solve.add_argument("--solver", default="neal", help="solver name (default: neal)")
    solve.add_argument("--num-reads", type=int, metavar="N")
    solve.add_argument("--seed", type=int, metavar="S")
    solve.add_argument("--time-limit", type=float, metavar="SEC")
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
        type=Path,
        metavar="OUT",
        help='write the result as JSON (infinite or undefined numbers as "inf", "-inf", "nan")',
    )
    solve.set_defaults(handler=cmd_solve)

    convert = commands.add_parser("convert", help="convert a problem file to another format")
    convert.add_argument("input", type=Path)
    convert.add_argument("output", type=Path)
    _add_instance(convert)
    convert.add_argument("--to", metavar="NAME", help="output format, if the suffix does not say")
    convert.set_defaults(handler=cmd_convert)

    info = commands.add_parser("info", help="describe a problem file")
    info.add_argument("file", type=Path)
    _add_instance(info)
    info.set_defaults(handler=cmd_info)


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
        help="file format, when the suffix does not say (see 'ising-qubo formats')",
    )


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

    entries = solver_info()
    width = max(len(e.name) for e in entries)
    for entry in entries:
        print(f"{entry.name:<{width}}  {entry.description}  [available: {entry.available()}]")
    return 0


def cmd_formats(args: argparse.Namespace) -> int:
    from ising_qubo import io

    for fmt in io.formats():
        modes = "read/write" if fmt.can_write else "read"
        many = ", multi-instance" if fmt.multi_instance else ""
        print(f"{fmt.name:<6} {' '.join(fmt.suffixes):<14} {modes}{many}  {fmt.description}")
    return 0


def cmd_solve(args: argparse.Namespace) -> int:
    from ising_qubo import io
    from ising_qubo.io.jsonvalues import write_json
    from ising_qubo.solvers import get_solver

    instance = io.read_instance(args.file, args.format, args.instance)
    sampler = get_solver(args.solver)
    params = _solver_params(sampler, args.solver, args)
    start = time.perf_counter()
    sampleset = sampler.sample(instance.bqm, **params)
    elapsed = time.perf_counter() - start
    best = sampleset.first
    status = sampleset.info.get("status", "FEASIBLE")
    objective = instance.objective(best.energy)
    print(
        f"instance:   {instance.name} ({instance.bqm.num_variables} variables, "
        f"{instance.bqm.num_interactions} interactions, {instance.bqm.vartype.name})"
    )
    print(f"solver:     {args.solver}")
    print(f"energy:     {best.energy:.10g}")
    if objective is not None:
        print(f"objective:  {objective:.10g} ({instance.objective_name}, maximised)")
    print(f"status:     {status}")
    interrupted = bool(sampleset.info.get("interrupted"))
    if interrupted:  # Ctrl-C: the solver returned its best so far
        print("note:       interrupted: best found so far")
    if "bound" in sampleset.info:
        print(f"bound:      {sampleset.info['bound']:.10g} (proven lower bound on the energy)")
    print(f"time:       {elapsed:.3f} s")
    if args.json is not None:
        write_json(
            args.json,
            {
                "solver": args.solver,
                "energy": best.energy,
                "objective": objective,
                "status": status,
                "interrupted": interrupted,
                "time_s": elapsed,
                "num_variables": instance.bqm.num_variables,
                "sample": {str(v): int(x) for v, x in best.sample.items()},
            },
        )
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from ising_qubo import io

    instance = io.read_instance(args.input, args.format, args.instance)
    io.save(instance.bqm, args.output, args.to)
    print(
        f"wrote {args.output} ({instance.bqm.num_variables} variables, "
        f"{instance.bqm.num_interactions} interactions)"
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from ising_qubo import io

    instances = io.read_instances(args.file, args.format)
    if args.instance is not None or len(instances) == 1:
        instances = [io.read_instance(args.file, args.format, args.instance)]
    for instance in instances:
        bqm = instance.bqm
        n, m = bqm.num_variables, bqm.num_interactions
        # by field name: dimod types the result as 3- or 4-tuple (labels only when asked)
        vectors = bqm.to_numpy_vectors()
        linear, quadratic = vectors.linear_biases, vectors.quadratic.biases
        offset = vectors.offset
        density = m / (n * (n - 1) / 2) if n > 1 else 0.0
        print(
            f"{instance.name}: {n} variables, {m} interactions, density {density:.4f}, "
            f"{bqm.vartype.name}"
        )
        print(f"  linear range    [{_range(linear)}]")
        print(f"  quadratic range [{_range(quadratic)}]")
        print(f"  offset          {offset:.10g}")
        if instance.kind == "maxcut":
            print(f"  objective       cut = ({instance.total_weight:.10g} - energy) / 2, maximised")
        elif instance.kind == "bqp":
            print("  objective       bqp objective = -energy, maximised")
    return 0


def _range(values: np.ndarray) -> str:
    if len(values) == 0:
        return "none"
    return f"{values.min():.6g}, {values.max():.6g}"
