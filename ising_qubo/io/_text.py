"""Shared plumbing for the text readers.

Every reader error is a ``ValueError`` whose message starts with ``<file>`` or
``<file>:<line>``, so a user can jump straight to the offending spot.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import SupportsFloat

import numpy as np

# Far beyond any published benchmark, yet small enough that a corrupted header cannot make
# us reserve gigabytes before the data itself proves the size wrong.
MAX_DECLARED = 50_000_000
# Variables get a bias each (and a dimod adjacency entry) even when no line mentions them,
# so a variable count is capped lower than an entry count, which the lines must back up.
MAX_VARIABLES = 10_000_000
# Variables a header declares but no entry mentions (isolated): legitimate in small numbers,
# but a short file must not make us build and solve a model of millions of them.
MAX_ISOLATED = 100_000


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def require_regular(path: Path | str) -> None:
    """Refuse FIFOs, devices, sockets and directories by name, before anything opens them.

    Such a file can block forever (a FIFO with no writer) or never end (``/dev/zero``,
    ``/dev/urandom``). Standard input reaches the readers as a temporary regular file.
    A missing file is left to the caller's ``open``, whose error names it already.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise ValueError(
            f"{path}: {_kind(mode)}, not a regular file; problem files must be regular files"
            " (use '-' to read standard input)"
        )


def read_regular(path: Path | str) -> bytes:
    """All bytes of the regular file ``path``; anything else is refused without blocking.

    ``O_NONBLOCK`` keeps ``open`` itself from waiting for a FIFO's writer; the type is then
    checked on the open descriptor, so a file swapped after :func:`require_regular` is
    caught too.
    """
    require_regular(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as fp:
        mode = os.fstat(fp.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(
                f"{path}: {_kind(mode)}, not a regular file; problem files must be regular"
                " files (use '-' to read standard input)"
            )
        return fp.read()


def fail(path: Path | str, message: str, line: int | None = None) -> ValueError:
    """Build (not raise) the error every reader uses."""
    where = f"{path}" if line is None else f"{path}:{line}"
    return ValueError(f"{where}: {message}")


def not_text(path: Path | str, offset: int, expected: str) -> ValueError:
    return ValueError(
        f"{path} is not a text file (binary data at byte {offset}); expected {expected}"
    )


def show(token: str, limit: int = 40) -> str:
    """Quote a token for an error message without dumping a megabyte of garbage."""
    if len(token) > limit:
        token = token[:limit] + "..."
    return repr(token)


def format_float(value: SupportsFloat) -> str:
    """Shortest decimal that reads back to exactly ``value``, never in exponent form.

    Positional notation keeps the output inside the number syntax dimod's COO reader accepts.
    Non-finite values are refused here because every text reader refuses them.
    """
    if not math.isfinite(value):
        raise ValueError(f"cannot write the non-finite value {value!r} to a text QUBO/Ising file")
    return np.format_float_positional(float(value), unique=True, trim="-")


def first_non_finite(bqm) -> str | None:
    """Describe the first NaN or infinite bias of ``bqm`` (None when all are finite).

    The text readers refuse such values line by line; the binary and JSON formats carry
    whole arrays, so they are checked once the model is built (and before it is written).
    """
    ldata, (irow, icol, qdata), offset = bqm.to_numpy_vectors()
    if not math.isfinite(offset):
        return f"the offset is {float(offset)!r}"
    variables = list(bqm.variables)
    bad = np.flatnonzero(~np.isfinite(ldata))
    if bad.size:
        return f"the linear bias of variable {variables[bad[0]]!r} is {float(ldata[bad[0]])!r}"
    bad = np.flatnonzero(~np.isfinite(qdata))
    if bad.size:
        k = bad[0]
        u, v = variables[irow[k]], variables[icol[k]]
        return f"the quadratic bias of ({u!r}, {v!r}) is {float(qdata[k])!r}"
    return None


def decode(path: Path | str, data: bytes, expected: str) -> str:
    """Strict UTF-8 decoding with the byte offset of the first thing that is not text."""
    nul = data.find(b"\0")
    if nul >= 0:
        raise not_text(path, nul, expected)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_text(path, exc.start, expected) from None
    # Editors on Windows like to prepend a byte-order mark; it carries no data.
    return text[1:] if text.startswith("\ufeff") else text


class TextFile:
    """A decoded text file plus the strict parsing helpers the readers share."""

    __slots__ = ("path", "size", "text")

    def __init__(self, path: Path | str, expected: str) -> None:
        self.path = Path(path)
        data = read_regular(self.path)
        if not data:
            raise fail(self.path, "empty file")
        self.size = len(data)
        self.text = decode(self.path, data, expected)
        if not self.text.strip():
            raise fail(self.path, "empty file (only whitespace)")

    def error(self, message: str, line: int | None = None) -> ValueError:
        return fail(self.path, message, line)

    def lines(self) -> Iterator[tuple[int, str]]:
        """Yield ``(line number, stripped line)`` for the non-blank lines.

        Splitting on ``\\n`` only (not ``str.splitlines``) keeps our line numbers equal to
        what editors and ``grep -n`` show, even when the file holds form feeds and the like.
        """
        for number, raw in enumerate(self.text.split("\n"), 1):
            line = raw.strip()
            if line:
                yield number, line

    def integer(self, token: str, line: int, what: str) -> int:
        # int() alone would also take '1_000' and non-ASCII digits; no real file means those.
        if token.isascii() and "_" not in token:
            try:
                return int(token)
            except ValueError:
                pass
        raise self.error(f"{what} must be an integer, got {show(token)}", line)

    def number(self, token: str, line: int, what: str) -> float:
        if token.isascii() and "_" not in token:
            try:
                value = float(token)
            except ValueError:
                pass
            else:
                if math.isfinite(value):
                    return value
                raise self.error(f"{what} must be a finite number, got {show(token)}", line)
        raise self.error(f"{what} must be a number, got {show(token)}", line)

    def count(
        self, token: str, line: int, what: str, minimum: int = 0, maximum: int = MAX_DECLARED
    ) -> int:
        """A declared size: an integer in ``[minimum, maximum]``, checked before anything
        of that size is allocated."""
        value = self.integer(token, line, what)
        if value < minimum:
            raise self.error(f"{what} must be at least {minimum}, got {value}", line)
        if value > maximum:
            raise self.error(
                f"{what} = {value} is more than this reader accepts ({maximum:,});"
                " the header is probably corrupt",
                line,
            )
        return value

    def variables(self, token: str, line: int, what: str, minimum: int = 0) -> int:
        """A declared number of variables: at most ``MAX_VARIABLES``."""
        return self.count(token, line, what, minimum, maximum=MAX_VARIABLES)

    def room_for(self, count: int, what: str, line: int) -> None:
        """Refuse a declared ``count`` of entries that the whole file cannot hold even at one
        byte each, before any work proportional to ``count`` (smaller shortfalls end in the
        reader's own "truncated" error once the lines run out)."""
        if count > self.size:
            raise self.error(
                f"{what} = {count:,} entries cannot fit in this {self.size:,}-byte file;"
                " the header is corrupt or the file truncated",
                line,
            )

    def isolated(self, declared: int, mentioned: int, what: str, line: int) -> None:
        """Bound the variables that a header declares but no entry mentions.

        Each costs a bias and an adjacency entry, and a solver then works on all of them,
        so a 20-byte header must not buy millions: beyond ``MAX_ISOLATED`` (or as many as
        the entries mention, if more) the header is taken as corrupt.
        """
        if declared - mentioned > max(MAX_ISOLATED, mentioned):
            raise self.error(
                f"{what} = {declared:,} but the entries mention only {mentioned:,} of them;"
                f" more than {max(MAX_ISOLATED, mentioned):,} variables without any entry"
                " means the header is corrupt",
                line,
            )
