"""Solver benchmark harness: time to target on Gset, Beasley and generated SK problems.

>>> from ising_qubo.bench import collect_instances, run_benchmark
>>> instances = collect_instances(["gset:G1", "sk:1024"])           # doctest: +SKIP
>>> result = run_benchmark(instances, ["torch-sa", "neal"], seeds=range(3),
...                        time_limit=10, out_dir="bench-out")      # doctest: +SKIP
>>> print(result.table_markdown())                                  # doctest: +SKIP

Command line: ``ising-qubo bench gset --solvers torch-sa,neal --seeds 5 --time-limit 10``.
See :mod:`ising_qubo.bench.runner` for what is timed and how, and ``benchmarks/README.md``.
Modules: ``instances`` (what is solved), ``plans`` (what each solver runs), ``runner`` (the
timed rounds), ``record`` (the results), ``report`` (results.json, table.md, the plot),
``load`` (busy competing processes: ``--background-load N``).
"""

from ising_qubo.bench.instances import (
    DEFAULT_BENCH_DIR,
    BenchInstance,
    collect_instances,
    sk_instance,
)
from ising_qubo.bench.load import BackgroundLoad
from ising_qubo.bench.plans import (
    SOLVER_DEFAULTS,
    SolverPlan,
    SolverSettings,
    plan_solvers,
    round_seed,
)
from ising_qubo.bench.record import RunResult, target_value, time_to_target
from ising_qubo.bench.report import BenchmarkResult
from ising_qubo.bench.runner import run_benchmark

__all__ = [
    "DEFAULT_BENCH_DIR",
    "SOLVER_DEFAULTS",
    "BackgroundLoad",
    "BenchInstance",
    "BenchmarkResult",
    "RunResult",
    "SolverPlan",
    "SolverSettings",
    "collect_instances",
    "plan_solvers",
    "round_seed",
    "run_benchmark",
    "sk_instance",
    "target_value",
    "time_to_target",
]
