"""What a person waiting at a terminal sees: progress bars and status lines, on stderr.

Standard output carries a command's results (JSON, tables, summaries); everything here goes
to standard error, so ``ising-qubo evaluate --json DIR > out.json`` stays clean.

- A *bar* (:func:`progress_bar`, tqdm) is drawn only when its caller asks for it and
  stderr is a terminal: a log file or a pipe gets no redrawn lines.
- A *status line* (:func:`status`) says what a person is waiting for ("loading data",
  "solving the pruning problem"); on a terminal only, like the bars: off a terminal it
  would only stand between a command and its one-line error.
- A *log line* (:func:`log_line`) records a result as it comes (an epoch's loss and
  accuracy): on stderr whether or not that is a terminal, so a log file keeps it.

The command line sets the :func:`output_level` for the whole command: ``--no-progress``
hides the bars and keeps the lines, ``--quiet`` hides all three. Errors, warnings and the
requested output are never silenced.
"""

from __future__ import annotations

import contextlib
import enum
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from tqdm import tqdm

# tqdm is imported where a bar or a line is drawn: the command line sets the level at start
# and should not pay for the import in commands that never draw (solve, convert, info)

__all__ = ["Level", "bars_allowed", "log_line", "output_level", "progress_bar", "status"]

T = TypeVar("T")


class Level(enum.IntEnum):
    """How much progress output the process shows (each level includes the ones below)."""

    QUIET = 0  # neither bars nor lines
    STATUS = 1  # status and log lines only
    BARS = 2  # the lines, and bars where stderr is a terminal


_level = Level.BARS


@contextlib.contextmanager
def output_level(level: Level) -> Iterator[None]:
    """Show progress up to ``level`` inside the ``with`` block (the CLI wraps a command)."""
    global _level
    previous, _level = _level, level
    try:
        yield
    finally:
        _level = previous


def bars_allowed() -> bool:
    """False under ``--no-progress`` or ``--quiet`` (:func:`output_level` below BARS)."""
    return _level >= Level.BARS


def progress_bar(
    iterable: Iterable[T] | None = None, *, progress: bool = True, **options: Any
) -> tqdm:
    """A tqdm bar on stderr, drawn when ``progress`` is true, the output level allows bars
    and stderr is a terminal (tqdm's ``disable=None``); otherwise a silent stand-in that
    still iterates. ``options`` go to tqdm (``desc``, ``total``, ``unit``, ``leave``)."""
    from tqdm.auto import tqdm

    return tqdm(
        iterable,
        file=sys.stderr,  # looked up now: a redirected sys.stderr is honoured
        disable=None if progress and bars_allowed() else True,
        dynamic_ncols=True,
        **options,
    )


def status(message: str) -> None:
    """A status line on stderr when it is a terminal, unless quiet (above any bar)."""
    isatty = getattr(sys.stderr, "isatty", None)
    if isatty is not None and isatty():
        log_line(message)


def log_line(message: str) -> None:
    """A line on stderr, terminal or not, unless quiet (above any bar)."""
    if _level >= Level.STATUS:
        from tqdm.auto import tqdm

        tqdm.write(message, file=sys.stderr)
