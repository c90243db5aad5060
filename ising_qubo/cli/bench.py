"""The ``ising-qubo bench`` command: its arguments, their parsing, and the call into the
harness (:mod:`ising_qubo.bench`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ising_qubo.bench.instances import BENCH_DIR_ENV, SPEC_HELP
from ising_qubo.bench.load import MAX_PER_CPU, check_count
from ising_qubo.bench.plans import SOLVER_DEFAULTS
from ising_qubo.cli.options import add_progress_flags, parse_key_value

DESCRIPTION = f"""\
Time-to-target benchmark: every solver runs repeated rounds on every instance for every
seed (order: instance > seed > solver, one process) until --time-limit seconds of solver
time; the best objective so far is recorded after each round. Writes results.json,
table.md, summary.csv, summary.tex (across instances), trajectories.png and profile.png
(a performance profile) to --out (default ./bench-results/<timestamp>/). Named sets
(gset, bqp50, ...) are read from --instances-dir, else ${BENCH_DIR_ENV}, else
../shared/bench next to a source checkout.

INSTANCE: {SPEC_HELP}."""


def _defaults_epilog() -> str:
    lines = [
        "per-round solver settings; change them with --param SOLVER:KEY=VALUE, and",
        "--param SOLVER:single_call=true makes one call with the whole time limit,",
        "--param SOLVER:grow=F sets the per-round growth of an annealer's sweeps (1: fixed):",
    ]
    for name, settings in SOLVER_DEFAULTS.items():
        params = ", ".join(f"{k}={v}" for k, v in settings.params.items()) or "-"
        mode = "single call" if settings.single_call else "rounds"
        lines.append(f"  {name:<9} {mode:<11} {params:<32} {settings.about}")
    lines.append(
        "  other     rounds      the solver's own defaults (single call if it takes no seed)"
    )
    return "\n".join(lines)


def add_command(commands: argparse._SubParsersAction) -> None:
    """Add ``bench`` to the ``ising-qubo`` subcommands."""
    parser = commands.add_parser(
        "bench", help="time-to-target benchmark of solvers on instance sets"
    )
    add_arguments(parser)
    parser.set_defaults(handler=run_from_args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Define the ``bench`` options on ``parser`` (a subparser of the ``ising-qubo`` CLI)."""
    parser.description = DESCRIPTION
    parser.epilog = _defaults_epilog()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "instances",
        nargs="+",
        metavar="INSTANCE",
        help="instance specs: gset, bqp50, bqp100, bqp250, sk:N[:SEED], files or directories",
    )
    parser.add_argument(
        "--solvers",
        default="torch-sa,neal",
        metavar="A,B,...",
        help="comma-separated solver names (default: torch-sa,neal; see 'ising-qubo solvers')",
    )
    parser.add_argument(
        "--seeds",
        default="5",
        metavar="N|S1,S2,...",
        help="number of seeds (0..N-1) or a comma-separated list (default: 5)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=10.0,
        metavar="SEC",
        help="solver time per (instance, solver, seed) run (default: 10)",
    )
    parser.add_argument(
        "--targets",
        default="0.995,1.0",
        metavar="F1,F2,...",
        help="target fractions of the reference value (default: 0.995,1.0)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="output folder (default: ./bench-results/<UTC timestamp>/ in the working directory)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="SOLVER:KEY=VALUE",
        help="per-round solver parameter, VALUE parsed as JSON if possible "
        "(e.g. --param neal:num_reads=4 --param torch-sa:device=cuda)",
    )
    parser.add_argument(
        "--instances-dir",
        "--bench-dir",
        dest="bench_dir",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"folder with gset/, beasley/ and best_known.json (default: ${BENCH_DIR_ENV}, "
        "else <repo>/../shared/bench when run from a source checkout; --bench-dir is the old "
        "name)",
    )
    parser.add_argument(
        "--skip-missing",
        action="store_true",
        help="leave out (with a message) solvers that are not registered here, "
        "and their --param options, instead of failing",
    )
    parser.add_argument(
        "--no-early-stop",
        action="store_true",
        help="keep running after reaching the best-known value",
    )
    parser.add_argument(
        "--background-load",
        default="0",
        metavar="N",
        help="run the benchmark next to N busy processes (one core each) that the harness "
        "starts after the warm-up and stops at the end, to measure on a loaded machine; "
        f"0 to {MAX_PER_CPU} per CPU; N and the load average go into results.json and "
        "table.md (default: 0)",
    )
    parser.add_argument(
        "--no-plot", action="store_true", help="skip trajectories.png and profile.png"
    )
    add_progress_flags(
        parser,
        "print neither the table nor the progress bar; the files are still written to --out "
        "and the line naming them printed",
    )


def parse_solvers(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",")]
    if not text.strip() or any(not s for s in names):
        raise ValueError(f"--solvers {text!r}: expected comma-separated solver names")
    return names


def parse_seeds(text: str) -> list[int]:
    text = text.strip()
    try:
        if "," not in text:
            count = int(text)
            if count < 1:
                raise ValueError
            return list(range(count))
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise ValueError(
            f"--seeds {text!r}: expected a positive count N or a comma-separated "
            "list of non-negative seeds"
        ) from None
    if any(s < 0 for s in seeds):
        raise ValueError(f"--seeds {text!r}: seeds must be non-negative")
    return seeds


def parse_targets(text: str) -> list[float]:
    try:
        values = [float(s) for s in text.split(",")]
    except ValueError:
        raise ValueError(
            f"--targets {text!r}: expected comma-separated fractions in (0, 1]"
        ) from None
    if not all(0 < v <= 1 for v in values):
        raise ValueError(f"--targets {text!r}: fractions must be in (0, 1]")
    return values


def parse_background_load(text: str) -> int:
    """``--background-load N``: a whole number of busy processes, 0 to 4 per CPU."""
    value: Any
    try:
        value = int(text.strip())
    except ValueError:
        value = text  # not a whole number: check_count's error names it
    return check_count(value, "--background-load")


def parse_params(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["neal:num_reads=4"]`` -> ``{"neal": {"num_reads": 4}}``: SOLVER, then ``KEY=VALUE``
    as :func:`ising_qubo.cli.options.parse_key_value` reads it (VALUE JSON if possible)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        solver, colon, rest = item.partition(":")
        try:
            if not colon or not solver.strip():
                raise ValueError
            key, value = parse_key_value(rest, "--param")
        except ValueError:
            raise ValueError(f"--param {item!r}: expected SOLVER:KEY=VALUE") from None
        out.setdefault(solver.strip(), {})[key] = value
    return out


def _registered_only(
    solvers: list[str], params: dict[str, dict[str, Any]]
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    from ising_qubo.solvers import list_solvers

    known = set(list_solvers())
    for name in solvers:
        if name not in known:
            print(f"skipping solver {name!r}: not registered here", file=sys.stderr)
    kept = [name for name in solvers if name in known]
    if not kept:
        raise ValueError(
            f"none of the solvers {', '.join(solvers)} is registered here; "
            f"available solvers: {', '.join(sorted(known))}"
        )
    return kept, {k: v for k, v in params.items() if k in known or k not in solvers}


def run_from_args(args: argparse.Namespace) -> int:
    """Run the benchmark the parsed arguments describe; print the table; return 0."""
    from ising_qubo.bench.instances import collect_instances
    from ising_qubo.bench.runner import plan_solvers, run_benchmark

    solvers = parse_solvers(args.solvers)
    seeds = parse_seeds(args.seeds)
    targets = parse_targets(args.targets)
    params = parse_params(args.param)
    background_load = parse_background_load(args.background_load)
    if args.skip_missing:
        solvers, params = _registered_only(solvers, params)
    plan_solvers(solvers, params)  # bad names and parameters fail before instances load
    instances = collect_instances(args.instances, args.bench_dir)
    result = run_benchmark(
        instances,
        solvers,
        seeds=seeds,
        time_limit=args.time_limit,
        target_fractions=targets,
        # None: a bar on a terminal only
        progress=False if args.no_progress or args.quiet else None,
        out_dir=args.out,
        params=params,
        stop_at_best_known=not args.no_early_stop,
        plot=not args.no_plot,
        command=["ising-qubo", *sys.argv[1:]],
        background_load=background_load,
    )
    if not args.quiet:
        print(result.table_markdown())
    # none without matplotlib
    written = ["results.json", "table.md", "summary.csv", "summary.tex"]
    if result.out_dir is not None:
        written += [
            f for f in ("trajectories.png", "profile.png") if (Path(result.out_dir) / f).exists()
        ]
    print(f"wrote {result.out_dir}/" + ", ".join(written))
    return 0
