"""``ising-qubo`` command line: parses arguments and calls the library, nothing more.

Exit codes: 0 success, 2 bad input (one line on stderr, no traceback), 130 interrupted.
``python -m ising_qubo`` is the same command (``torchrun ... -m ising_qubo prune ...`` runs
it in every process; see ``ising_qubo.nets.distributed``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 2, 130


class UsageError(ValueError):
    """A user-facing error: printed as one line, exit code 2."""


def _add_instance(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--instance", type=int, metavar="K",
                        help="1-based instance number in a multi-instance file (OR-Library bqp)")
    parser.add_argument("--format", metavar="NAME",
                        help="file format, when the suffix does not say (see 'ising-qubo formats')")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ising-qubo",
        description="Prune networks by solving Ising energy models; solve, inspect and convert "
                    "QUBO/Ising problems with solvers chosen by name.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("solvers", help="list solvers and what is available here")
    sub.add_parser("formats", help="list file formats")

    solve = sub.add_parser("solve", help="solve a problem file")
    solve.add_argument("file", type=Path)
    _add_instance(solve)
    solve.add_argument("--solver", default="neal", help="solver name (default: neal)")
    solve.add_argument("--num-reads", type=int, metavar="N")
    solve.add_argument("--seed", type=int, metavar="S")
    solve.add_argument("--time-limit", type=float, metavar="SEC")
    solve.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                       help="any other solver parameter, VALUE parsed as JSON if possible "
                            "(e.g. --param num_sweeps=5000)")
    solve.add_argument("--json", type=Path, metavar="OUT", help="write the result as JSON")

    convert = sub.add_parser("convert", help="convert a problem file to another format")
    convert.add_argument("input", type=Path)
    convert.add_argument("output", type=Path)
    _add_instance(convert)
    convert.add_argument("--to", metavar="NAME", help="output format, if the suffix does not say")

    info = sub.add_parser("info", help="describe a problem file")
    info.add_argument("file", type=Path)
    _add_instance(info)

    bench = sub.add_parser("bench", help="time-to-target benchmark of solvers on instance sets")
    from ising_qubo.cli.bench import add_arguments as add_bench_arguments

    add_bench_arguments(bench)

    from ising_qubo.cli import pruning as prune_command

    parallel = ("Data-parallel on several GPUs or machines when started by torchrun, e.g. "
                "'torchrun --nproc-per-node 4 -m ising_qubo prune --device cuda ...': "
                "--batch-size is then the global batch, and only rank 0 writes to --out.")
    prune = sub.add_parser("prune", help="train with Ising-dropout, prune for real, fine-tune",
                           description="Train with Ising-dropout, prune for real, fine-tune. "
                                       + parallel)
    prune_command.add_run_arguments(prune, default_method="ising")
    train = sub.add_parser("train", help="the same run with a baseline method (l1, random, "
                                         "tp-magnitude, tp-taylor) or none",
                           description="The prune run with a baseline method (l1, random, "
                                       "tp-magnitude, tp-taylor) or none. " + parallel)
    prune_command.add_run_arguments(train, default_method="l1")
    export = sub.add_parser("export", help="write a network's pruning QUBOs, one file per group")
    prune_command.add_export_arguments(export)
    evaluate = sub.add_parser("evaluate", help="top-1/top-5 of a saved (pruned) model")
    prune_command.add_evaluate_arguments(evaluate)
    return parser


def _parse_param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--param {text!r}: expected KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _solver_params(sampler: Any, solver: str, args: argparse.Namespace) -> dict[str, Any]:
    params = dict(_parse_param(p) for p in args.param)
    accepted = set(getattr(sampler, "parameters", {}) or {})
    for option, key in (("--num-reads", "num_reads"), ("--seed", "seed"),
                        ("--time-limit", "time_limit")):
        value = getattr(args, key)
        if value is None:
            continue
        if key not in accepted:
            raise UsageError(f"solver {solver!r} does not take {option}; its parameters: "
                             f"{', '.join(sorted(accepted)) or 'none'}")
        params[key] = value
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise UsageError(f"solver {solver!r} has no parameter {', '.join(unknown)}; "
                         f"its parameters: {', '.join(sorted(accepted)) or 'none'}")
    return params


def _plain(value: Any) -> Any:
    """JSON-safe numbers (numpy scalars, inf/nan as strings)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def cmd_solvers(args: argparse.Namespace) -> int:
    from ising_qubo.solvers import solver_info

    entries = solver_info()
    width = max(len(e.name) for e in entries)
    for entry in entries:
        print(f"{entry.name:<{width}}  {entry.description}  [available: {entry.available()}]")
    return EXIT_OK


def cmd_formats(args: argparse.Namespace) -> int:
    from ising_qubo import io

    for fmt in io.formats():
        modes = "read/write" if fmt.can_write else "read"
        many = ", multi-instance" if fmt.multi_instance else ""
        print(f"{fmt.name:<6} {' '.join(fmt.suffixes):<14} {modes}{many}  {fmt.description}")
    return EXIT_OK


def cmd_solve(args: argparse.Namespace) -> int:
    from ising_qubo import io
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
    print(f"instance:   {instance.name} ({instance.bqm.num_variables} variables, "
          f"{instance.bqm.num_interactions} interactions, {instance.bqm.vartype.name})")
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
        result = {
            "solver": args.solver,
            "energy": _plain(best.energy),
            "objective": _plain(objective),
            "status": status,
            "interrupted": interrupted,
            "time_s": elapsed,
            "num_variables": instance.bqm.num_variables,
            "sample": {str(v): int(x) for v, x in best.sample.items()},
        }
        _write_json(args.json, result)
    return EXIT_OK


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from ising_qubo.io._atomic import atomic_write

    with atomic_write(path, binary=False) as fp:
        json.dump(data, fp, indent=1)
        fp.write("\n")


def cmd_convert(args: argparse.Namespace) -> int:
    from ising_qubo import io

    instance = io.read_instance(args.input, args.format, args.instance)
    io.save(instance.bqm, args.output, args.to)
    print(f"wrote {args.output} ({instance.bqm.num_variables} variables, "
          f"{instance.bqm.num_interactions} interactions)")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    from ising_qubo import io

    instances = io.read_instances(args.file, args.format)
    if args.instance is not None or len(instances) == 1:
        instances = [io.read_instance(args.file, args.format, args.instance)]
    for instance in instances:
        bqm = instance.bqm
        n, m = bqm.num_variables, bqm.num_interactions
        linear, (_, _, quadratic), offset = bqm.to_numpy_vectors()
        density = m / (n * (n - 1) / 2) if n > 1 else 0.0
        print(f"{instance.name}: {n} variables, {m} interactions, density {density:.4f}, "
              f"{bqm.vartype.name}")
        print(f"  linear range    [{_range(linear)}]")
        print(f"  quadratic range [{_range(quadratic)}]")
        print(f"  offset          {offset:.10g}")
        if instance.kind == "maxcut":
            print(f"  objective       cut = ({instance.total_weight:.10g} - energy) / 2, "
                  "maximised")
        elif instance.kind == "bqp":
            print("  objective       bqp objective = -energy, maximised")
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from ising_qubo.cli.bench import run_from_args

    return run_from_args(args)


def _range(values: np.ndarray) -> str:
    if len(values) == 0:
        return "none"
    return f"{values.min():.6g}, {values.max():.6g}"


COMMANDS = {
    "solvers": cmd_solvers,
    "formats": cmd_formats,
    "solve": cmd_solve,
    "convert": cmd_convert,
    "info": cmd_info,
    "bench": cmd_bench,
    "prune": lambda args: _prune_command().cmd_run(args),
    "train": lambda args: _prune_command().cmd_run(args),
    "export": lambda args: _prune_command().cmd_export(args),
    "evaluate": lambda args: _prune_command().cmd_evaluate(args),
}


def _prune_command():
    from ising_qubo.cli import pruning as prune_command

    return prune_command


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("ising-qubo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, OSError, RuntimeError, ImportError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in message:
            message = f"{exc.filename}: {message}"
        print(f"ising-qubo: error{_rank_tag()}: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:
        if not _unreadable_file(exc):
            raise  # a bug: the traceback is what a report needs
        # a weights file refused by torch's weights-only unpickler or by safetensors
        source = getattr(args, "checkpoint", None)
        where = f"--checkpoint {source}: " if source else ""
        from ising_qubo.nets.training import _torch_load_reason  # torch is loaded by now

        print(f"ising-qubo: error: {where}cannot be read as plain tensors (nothing in it was "
              f"executed): {_torch_load_reason(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _rank_tag() -> str:
    """`` (rank K)`` in the processes other than rank 0 of a torchrun job, else empty."""
    import os

    rank = os.environ.get("RANK", "0")
    return "" if rank == "0" or os.environ.get("WORLD_SIZE", "1") == "1" else f" (rank {rank})"


def _unreadable_file(exc: BaseException) -> bool:
    import pickle

    return isinstance(exc, pickle.UnpicklingError) or type(exc).__name__ == "SafetensorError"


if __name__ == "__main__":
    sys.exit(main())
