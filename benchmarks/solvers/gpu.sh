#!/usr/bin/env bash
# GPU comparison on a dense SK problem (n = 4096), under 8 minutes on one CUDA device:
#   torch-sa and torch-sb on CUDA, sb-ref on CUDA, neal on the CPU, printing the table.
#
#   benchmarks/solvers/gpu.sh [OUT_DIR]          (default benchmarks/results/gpu-<time>)
#
# Environment: PYTHON (default .venv/bin/python), SIZE (4096), SEEDS (3), TIME_LIMIT (15),
# DEVICE (cuda; DEVICE=cpu SIZE=256 TIME_LIMIT=1 SEEDS=1 is a smoke test without a GPU).
# Prints the bench table, then time to neal's median best energy with ratios to neal and
# sb-ref (benchmarks/solvers/reach_neal.py).
# Worst case: 4 solvers x SEEDS x TIME_LIMIT = 180 s of solver time, plus neal's last read
# running past the limit, problem set-up and warm-up (CUDA start-up is not timed).
# Solvers that are not registered here are skipped with a message.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-.venv/bin/python}
[[ -x $PYTHON ]] || PYTHON=python3
OUT=${1:-benchmarks/results/gpu-$(date +%Y%m%d-%H%M%S)}
SIZE=${SIZE:-4096}
SEEDS=${SEEDS:-3}
TIME_LIMIT=${TIME_LIMIT:-15}
DEVICE=${DEVICE:-cuda}

# Solver list and per-solver --param options for what is registered here; GPU-sized rounds.
spec=$(DEVICE=$DEVICE "$PYTHON" - <<'PY'
import os
import sys

import ising_qubo

device = os.environ["DEVICE"]
if device.startswith("cuda"):
    import torch

    if not torch.cuda.is_available():
        sys.exit("gpu.sh: CUDA is not available to torch here (DEVICE=cpu for a smoke test)")
# Per-round work on the GPU: many replicas/agents per call. torch-sa updates a dense
# problem one variable at a time (n kernel launches per sweep), hence its few sweeps.
gpu_rounds = {
    "torch-sa": {"num_reads": 1024, "num_sweeps": 100},
    "torch-sb": {"num_reads": 1024, "num_steps": 1000},
    "sb-ref": {"num_reads": 1024, "num_steps": 1000},
}
registered = set(ising_qubo.list_solvers())
solvers = []
params = []
for name in ("torch-sa", "torch-sb", "sb-ref", "neal"):
    if name not in registered:
        print(f"gpu.sh: skipping solver {name!r}: not registered here", file=sys.stderr)
        continue
    solvers.append(name)
    if name == "neal":
        continue
    accepted = set(ising_qubo.get_solver(name).parameters)
    settings = dict(gpu_rounds.get(name, {}))
    if device != "cuda":
        settings = {}
    settings["device"] = device
    for key, value in settings.items():
        if key in accepted:
            params += ["--param", f"{name}:{key}={value}"]
if not solvers:
    sys.exit("gpu.sh: none of torch-sa, torch-sb, sb-ref, neal is registered here")
for arg in ["--solvers", ",".join(solvers), *params]:
    print(arg)
PY
)
mapfile -t ARGS <<< "$spec"

"$PYTHON" -m ising_qubo.cli bench "sk:$SIZE" --seeds "$SEEDS" --time-limit "$TIME_LIMIT" \
    --out "$OUT" --no-progress "${ARGS[@]}"
# The GPU target's figure: time to neal's median best energy, as a ratio to neal (CPU) and
# to sb-ref (same GPU); also written to $OUT/reach_neal.md.
echo
"$PYTHON" benchmarks/solvers/reach_neal.py "$OUT/results.json" | tee "$OUT/reach_neal.md"
