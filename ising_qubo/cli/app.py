"""``ising-qubo`` command line: the top parser, the dispatch to a subcommand's handler
(:mod:`~ising_qubo.cli.problems`, :mod:`~ising_qubo.cli.bench`,
:mod:`~ising_qubo.cli.pruning`), exit codes and the one-line error message.

Exit codes: 0 success, 2 bad input (one line on stderr, no traceback), 130 interrupted.
``python -m ising_qubo`` is the same command (``torchrun ... -m ising_qubo prune ...`` runs
it in every process; see ``ising_qubo.nets.distributed``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ising_qubo.cli import bench, problems, pruning

EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 2, 130


def build_parser() -> argparse.ArgumentParser:
    """The ``ising-qubo`` parser; each subcommand's parser carries its ``handler``."""
    parser = argparse.ArgumentParser(
        prog="ising-qubo",
        description="Prune networks by solving Ising energy models; solve, inspect and convert "
        "QUBO/Ising problems with solvers chosen by name.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    problems.add_commands(commands)  # solvers, formats, solve, convert, info
    bench.add_command(commands)
    pruning.add_commands(commands)  # prune, train, export, evaluate
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("ising-qubo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, OSError, RuntimeError, ImportError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in message:
            message = f"{exc.filename}: {message}"
        print(f"ising-qubo: error{_rank_tag()}: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:
        if not _unreadable_file(exc):
            raise  # a bug: the traceback is what a report needs
        # a weights file refused by torch's weights-only unpickler or by safetensors
        source = getattr(args, "checkpoint", None)
        where = f"--checkpoint {source}: " if source else ""
        from ising_qubo.nets.training import torch_load_reason  # torch is loaded by now

        print(
            f"ising-qubo: error: {where}cannot be read as plain tensors (nothing in it was "
            f"executed): {torch_load_reason(exc)}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT


def _rank_tag() -> str:
    """`` (rank K)`` in the processes other than rank 0 of a torchrun job, else empty."""
    import os

    rank = os.environ.get("RANK", "0")
    return "" if rank == "0" or os.environ.get("WORLD_SIZE", "1") == "1" else f" (rank {rank})"


def _unreadable_file(exc: BaseException) -> bool:
    import pickle

    return isinstance(exc, pickle.UnpicklingError) or type(exc).__name__ == "SafetensorError"


if __name__ == "__main__":
    sys.exit(main())
