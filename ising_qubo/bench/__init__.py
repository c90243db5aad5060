"""Solver benchmark harness: time to target on Gset, Beasley and generated SK problems.

>>> from ising_qubo.bench import collect_instances, run_benchmark
>>> instances = collect_instances(["gset:G1", "sk:1024"])           # doctest: +SKIP
>>> result = run_benchmark(instances, ["torch-sa", "neal"], seeds=range(3),
...                        time_limit=10, out_dir="bench-out")      # doctest: +SKIP
>>> print(result.table_markdown())                                  # doctest: +SKIP

Command line: ``ising-qubo bench gset --solvers torch-sa,neal --seeds 5 --time-limit 10``.
See :mod:`ising_qubo.bench.runner` for what is timed and how, and ``benchmarks/README.md``.
"""

from ising_qubo.bench.instances import (
    DEFAULT_BENCH_DIR,
    BenchInstance,
    collect_instances,
    sk_instance,
)
from ising_qubo.bench.runner import (
    SOLVER_DEFAULTS,
    BenchmarkResult,
    RunResult,
    SolverPlan,
    SolverSettings,
    plan_solvers,
    round_seed,
    run_benchmark,
    target_value,
    time_to_target,
)

__all__ = [
    "DEFAULT_BENCH_DIR",
    "SOLVER_DEFAULTS",
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

