#!/usr/bin/env bash
# Static checks CI runs before the tests: ruff (lint and format) and mypy on the package.
# `.venv/bin/ruff format ising_qubo tests benchmarks examples scripts` fixes what the format check finds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
paths=(ising_qubo tests benchmarks examples scripts)
.venv/bin/ruff check "${paths[@]}"
.venv/bin/ruff format --check "${paths[@]}"
.venv/bin/mypy  # files and settings: pyproject.toml [tool.mypy]
