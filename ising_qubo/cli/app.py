"""``ising-qubo`` command line: the top parser, the dispatch to a subcommand's handler
(:mod:`~ising_qubo.cli.problems`, :mod:`~ising_qubo.cli.bench`,
:mod:`~ising_qubo.cli.pruning`), exit codes and the one-line error message.

Exit codes: 0 success, 2 bad input or a missing optional dependency (one line on stderr
naming the extra to install, no traceback), 130 interrupted,
141 standard output closed early (``ising-qubo solve F | head -3``: the reader left; no
message, as for a tool ended by SIGPIPE, 128 + 13).
``python -m ising_qubo`` is the same command (``torchrun ... -m ising_qubo prune ...`` runs
it in every process; see ``ising_qubo.nets.distributed``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ising_qubo import __version__
from ising_qubo._extras import as_missing_extra
from ising_qubo._progress import Level, output_level
from ising_qubo.cli import bench, problems, pruning
from ising_qubo.cli.help import DefaultsFormatter, RawDefaultsFormatter

EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 2, 130, 141

#: The extra a command needs as a whole; the others need only what a solver or a plot needs
#: (``solve --solver cpsat``: the cpsat extra).
COMMAND_EXTRA = dict.fromkeys(["prune", "train", "export", "evaluate"], "prune")


def build_parser() -> argparse.ArgumentParser:
    """The ``ising-qubo`` parser; each subcommand's parser carries its ``handler``."""
    parser = argparse.ArgumentParser(
        prog="ising-qubo",
        description="Prune networks by solving Ising energy models; solve, inspect and convert "
        "QUBO/Ising problems with solvers chosen by name.",
        formatter_class=DefaultsFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    problems.add_commands(commands)  # solvers, formats, solve, convert, info
    bench.add_command(commands)
    pruning.add_commands(commands)  # prune, train, export, evaluate
    for command in commands.choices.values():  # every --help shows the defaults
        raw = command.formatter_class is argparse.RawDescriptionHelpFormatter  # bench
        command.formatter_class = RawDefaultsFormatter if raw else DefaultsFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with output_level(_output_level(args)):
            code = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("ising-qubo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, OSError, RuntimeError, ImportError) as exc:
        # an optional dependency not installed: say which extra installs it
        exc = as_missing_extra(exc, args.command, COMMAND_EXTRA.get(args.command)) or exc
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


def _output_level(args: argparse.Namespace) -> Level:
    """``--quiet``: no bars, no status lines; ``--no-progress``: status lines only; else
    both (bars on a terminal only). Commands without these flags print no progress."""
    if getattr(args, "quiet", False):
        return Level.QUIET
    if getattr(args, "no_progress", False):
        return Level.STATUS
    return Level.BARS


def _silence_stdout() -> None:
    """Point standard output at the null device: the reader is gone, and what is still
    buffered would otherwise fail again (with a message) when the interpreter exits."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _rank_tag() -> str:
    """`` (rank K)`` in the processes other than rank 0 of a torchrun job, else empty."""
    rank = os.environ.get("RANK", "0")
    return "" if rank == "0" or os.environ.get("WORLD_SIZE", "1") == "1" else f" (rank {rank})"


def _unreadable_file(exc: BaseException) -> bool:
    import pickle

    return isinstance(exc, pickle.UnpicklingError) or type(exc).__name__ == "SafetensorError"


if __name__ == "__main__":
    sys.exit(main())
