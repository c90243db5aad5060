"""The ``ising-qubo`` command line."""

from ising_qubo.cli.app import main

__all__ = ["main"]
