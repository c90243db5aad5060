"""Peak memory of each solver on benchmark instances: one fresh process per (instance, solver).

    python benchmarks/solvers/memory.py gset:G1 gset:G22 --solvers torch-sa,neal \\
        --time-limit 2 --out benchmarks/results/memory-<date>

Each child process loads one instance, plans the solver as ``ising-qubo bench`` does
(:data:`ising_qubo.bench.plans.SOLVER_DEFAULTS`, ``--param`` overrides), runs its rounds
until ``--time-limit`` seconds of solver time, and reports its own peak resident set
(``ru_maxrss``: the whole process, interpreter and imports included) and whether torch
got imported. The row ``(load only)`` is a child that loads the instance and plans
nothing: the floor every solver's number stands on. Prints a table (MiB, and the ratio
to neal's peak on the same instance) and writes ``memory.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

LOAD_ONLY = "(load only)"

# The measured process: kept out of the parent, whose own imports must not count.
CHILD = """
import json, resource, sys, time
args = json.loads(sys.argv[1])
from ising_qubo.bench.instances import collect_instances
[instance] = collect_instances([args["instance"]], args["instances_dir"])
report = {"num_variables": instance.bqm.num_variables, "rounds": 0, "best_objective": None}
if args["solver"] is not None:
    from ising_qubo.bench.plans import plan_solvers
    [plan] = plan_solvers([args["solver"]], args["params"])
    elapsed, best, previous = 0.0, None, None
    while elapsed < args["time_limit"]:
        kwargs = plan.call_params(
            args["seed"], report["rounds"], args["time_limit"] - elapsed, previous
        )
        start = time.perf_counter()
        sampleset = plan.sampler.sample(instance.bqm, **kwargs)
        previous = (kwargs, time.perf_counter() - start)
        elapsed += previous[1]
        report["rounds"] += 1
        value = float(instance.objective(instance.bqm.energy(sampleset.first.sample)))
        best = value if best is None or instance.better(value, best) else best
        if plan.single_call:
            break
    report.update(best_objective=best, solver_time_s=elapsed)
usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
report["peak_mib"] = usage / (2**20 if sys.platform == "darwin" else 2**10)
report["torch_imported"] = "torch" in sys.modules
print(json.dumps(report))
"""


def measure(
    instance: str,
    solver: str | None,
    args: argparse.Namespace,
    params: dict,
) -> dict:
    """One child process; its report, or the error it ended with."""
    spec = {
        "instance": instance,
        "solver": solver,
        "params": params,
        "time_limit": args.time_limit,
        "seed": args.seed,
        "instances_dir": None if args.instances_dir is None else str(args.instances_dir),
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=args.time_limit * 20 + 600,
    )
    row = {"instance": instance, "solver": solver or LOAD_ONLY}
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        return {**row, "error": tail[0]}
    return {**row, **json.loads(done.stdout.strip().splitlines()[-1])}


def parse_params(items: list[str]) -> dict[str, dict]:
    from ising_qubo.cli.bench import parse_params as bench_params

    return bench_params(items)


def table(rows: list[dict]) -> str:
    neal = {r["instance"]: r["peak_mib"] for r in rows if r["solver"] == "neal" and "peak_mib" in r}
    lines = [
        "| instance | n | solver | peak MiB | x neal | torch imported | rounds | best |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['instance']} | | {r['solver']} | error: {r['error']} |||||")
            continue
        base = neal.get(r["instance"])
        ratio = f"{r['peak_mib'] / base:.2f}" if base else "—"
        best = "—" if r["best_objective"] is None else f"{r['best_objective']:g}"
        lines.append(
            f"| {r['instance']} | {r['num_variables']} | {r['solver']} | {r['peak_mib']:.0f} | "
            f"{ratio} | {'yes' if r['torch_imported'] else 'no'} | {r['rounds']} | {best} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("instances", nargs="+", help="instance specs as for ising-qubo bench")
    parser.add_argument("--solvers", default="torch-sa,neal", help="comma-separated names")
    parser.add_argument("--time-limit", type=float, default=2.0, help="solver seconds per child")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--param", action="append", default=[], metavar="SOLVER:KEY=VALUE")
    parser.add_argument("--instances-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True, help="folder for memory.json")
    args = parser.parse_args(argv)
    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    params = parse_params(args.param)
    rows = []
    for instance in args.instances:
        for solver in [None, *solvers]:
            own = {solver: params[solver]} if solver in params else {}
            rows.append(measure(instance, solver, args, own))
            print(f"  {instance} {rows[-1]['solver']}: {rows[-1].get('peak_mib', 'error')}")
    print(table(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "command": [sys.executable, *sys.argv],
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "time_limit_s": args.time_limit,
        "seed": args.seed,
        "peak": "ru_maxrss of the child process (resident set, whole process)",
        "rows": rows,
    }
    (args.out / "memory.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out / 'memory.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
