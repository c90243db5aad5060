#!/usr/bin/env bash
# The main job: set up (first time only), then solve a problem file with the default solver.
#   bash scripts/run.sh                      # bqp50 instance 1 (optimum 2098) with neal
#   bash scripts/run.sh FILE [solve options]  # any file ising-qubo reads, e.g. --solver cpsat
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ $# -eq 0 ]; then
  set -- examples/instances/bqp50.txt --instance 1
fi
exec .venv/bin/ising-qubo solve "$@"
