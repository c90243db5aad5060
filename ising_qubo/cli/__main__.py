"""``python -m ising_qubo.cli ...`` is the ``ising-qubo`` command."""

import sys

from ising_qubo.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
