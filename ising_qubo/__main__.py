"""``python -m ising_qubo ...`` is the ``ising-qubo`` command (and what ``torchrun -m
ising_qubo prune ...`` starts in every process)."""

import sys

from ising_qubo.cli import main

if __name__ == "__main__":
    sys.exit(main())
