#!/usr/bin/env bash
# Creates .venv and installs the project with its dev extras; a no-op when up to date.
# Run by run.sh, test.sh and check.sh, so a fresh machine needs nothing else.
#
# What it says goes to stderr (stdout stays the caller's). Each step it takes prints one line,
# on a terminal or not: a CI log then shows why the first run takes minutes. On a terminal
# (stderr) a live line also follows pip while it works (seconds elapsed and the latest step of
# its log), redrawn each second and cleared at the end; off a terminal that line is left out,
# as redrawn lines only clutter a log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}

step() {
  echo "setup.sh: $*" >&2
}

# The lines of pip's output that say what it is doing.
PIP_STEPS='^ *(Obtaining|Collecting|Downloading|Using cached|Preparing|Getting requirements|Building|Installing|Successfully)'

# Until process $1 ends: "  N s  <the latest step in the log $2>" on stderr, once a second.
follow_install() {
  local pid=$1 log=$2 start=$SECONDS width latest line
  width=$(stty size <&2 2>/dev/null) || width=""
  width=${width#* }
  if ! [[ $width =~ ^[0-9]+$ ]] || [ "$width" -lt 20 ]; then
    width=80
  fi
  while kill -0 "$pid" 2>/dev/null; do
    latest=$(grep -E "$PIP_STEPS" "$log" | tail -n 1 | sed 's/^ *//') || latest=""
    line="  $((SECONDS - start)) s  $latest"
    printf '\r\033[K%s' "${line:0:width-1}" >&2
    sleep 1
  done
  printf '\r\033[K' >&2
}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "ising-qubo needs Python >= 3.10 (found $("$PYTHON" --version 2>&1)); set PYTHON=..." >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  step "creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.ising-qubo-installed
# the build's inputs: the metadata, and torch-sa's C kernel (compiled by the install)
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ] ||
  [ ising_qubo/solvers/_sa_kernel.c -nt "$stamp" ]; then
  log=.venv/pip-install.log
  step "installing ising-qubo[dev] into .venv: several minutes, log in $log"
  # pip's own step lines go to the log (the live line reads them), its bars nowhere
  .venv/bin/python -m pip install --progress-bar off -e ".[dev]" >"$log" 2>&1 &
  pip_pid=$!
  trap 'kill "$pip_pid" 2>/dev/null' EXIT # interrupted: no pip left working behind
  if [ -t 2 ]; then
    follow_install "$pip_pid" "$log"
  fi
  installed=0
  wait "$pip_pid" || installed=$?
  trap - EXIT
  if [ "$installed" -ne 0 ]; then
    grep -v '^WARNING: Location' "$log" >&2 || true # an empty log: still the line below
    echo "ising-qubo: installing into .venv failed (log: $log)" >&2
    exit 1
  fi
  # [dev] holds every extra (pyproject.toml): the tests need them all
  .venv/bin/python -c 'import ising_qubo, dimod, numba, ortools, matplotlib, torch, torchvision, torch_pruning'
  touch "$stamp"
fi
