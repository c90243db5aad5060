"""torch-sa's two CPU kernels side by side: one call of 1000 sweeps per (backend, replicas),
interleaved, with neal's 1000-sweep read as the yardstick.

    python benchmarks/solvers/kernels.py gset:G1 gset:G22 bqp250:1 --reps 9 \\
        --background-load 2 --out benchmarks/results/kernels-<date>/load2.json

For each instance, ``--reps`` rounds; in each round every configuration runs once, the
order turned by one place per round (so no configuration always follows another's busy
work). Configurations: torch-sa ``backend='native'`` (the C kernel) and ``'numba'``, each
with 1 and 2 replicas (2 replicas run on 2 threads only when the call is long enough,
``ising_qubo/solvers/kernel_threads.py``), and neal with one read. Every configuration
first runs once untimed (numba's compile and cache load, first-call costs). Prints and
writes the median wall and CPU (process) time of a call, and the load average at the
start and the end; ``--background-load N`` runs N busy processes beside it
(:class:`ising_qubo.bench.load.BackgroundLoad`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ising_qubo.bench.instances import collect_instances
from ising_qubo.bench.load import BackgroundLoad
from ising_qubo.solvers import get_solver

CONFIGS = [("native", 1), ("numba", 1), ("native", 2), ("numba", 2), ("neal", 1)]
SWEEPS = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("instances", nargs="+", help="instance specs as for ising-qubo bench")
    parser.add_argument("--reps", type=int, default=9, help="timed rounds per instance")
    parser.add_argument("--background-load", type=int, default=0, help="busy processes beside")
    parser.add_argument("--instances-dir", default=None, help="folder of the instance sets")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args()
    instances = collect_instances(args.instances, args.instances_dir)
    annealer, neal = get_solver("torch-sa"), get_solver("neal")

    def call(bqm, backend: str, reads: int, sweeps: int, seed: int) -> None:
        if backend == "neal":
            neal.sample(bqm, num_reads=reads, num_sweeps=sweeps, seed=seed)
        else:
            annealer.sample(bqm, num_reads=reads, num_sweeps=sweeps, seed=seed, backend=backend)

    for instance in instances:  # untimed: compile, caches, first-call costs
        for backend, reads in CONFIGS:
            call(instance.bqm, backend, reads, 10, 0)
    rows = []
    with BackgroundLoad(args.background_load, max_seconds=1200):
        if args.background_load:
            time.sleep(3)  # the busy processes running before the first call
        load_start = os.getloadavg()
        for instance in instances:
            times: dict[tuple[str, int], list[tuple[float, float]]] = {c: [] for c in CONFIGS}
            for k in range(args.reps):
                turn = k % len(CONFIGS)
                for config in CONFIGS[turn:] + CONFIGS[:turn]:
                    wall, cpu = time.perf_counter(), time.process_time()
                    call(instance.bqm, *config, SWEEPS, 100 + k)
                    times[config].append((time.perf_counter() - wall, time.process_time() - cpu))
            for (backend, reads), measured in times.items():
                wall_ms = 1000 * float(np.median([m[0] for m in measured]))
                cpu_ms = 1000 * float(np.median([m[1] for m in measured]))
                rows.append(
                    dict(instance=instance.name, backend=backend, num_reads=reads,
                         wall_ms=wall_ms, cpu_ms=cpu_ms)
                )  # fmt: skip
                print(
                    f"{instance.name:10s} {backend:7s} reads={reads} "
                    f"wall {wall_ms:8.1f} ms  cpu {cpu_ms:8.1f} ms",
                    flush=True,
                )
        load_end = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = dict(
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        machine=platform.processor() or platform.machine(),
        cores=os.cpu_count(),
        background_load=args.background_load,
        reps=args.reps,
        sweeps=SWEEPS,
        load_start=load_start,
        load_end=load_end,
        rows=rows,
    )
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"load {load_start} -> {load_end}; wrote {args.out}")


if __name__ == "__main__":
    main()
