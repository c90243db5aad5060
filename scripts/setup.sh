#!/usr/bin/env bash
# Creates .venv and installs the project with its dev extras; a no-op when up to date.
# Sourced by run.sh and test.sh, so a fresh machine needs nothing else.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "ising-qubo needs Python >= 3.10 (found $("$PYTHON" --version 2>&1)); set PYTHON=..." >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.ising-qubo-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  if ! .venv/bin/python -m pip install --quiet -e ".[dev]" >.venv/pip-install.log 2>&1; then
    grep -v '^WARNING: Location' .venv/pip-install.log >&2
    echo "ising-qubo: installing into .venv failed (log: .venv/pip-install.log)" >&2
    exit 1
  fi
  # [dev] holds every extra (pyproject.toml): the tests need them all
  .venv/bin/python -c 'import ising_qubo, dimod, numba, ortools, matplotlib, torch, torchvision, torch_pruning'
  touch "$stamp"
fi
