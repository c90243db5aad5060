"""The table of formats, lookup by name or suffix, and sniffing of ``.txt`` files."""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO

import dimod

from ising_qubo.io import beasley, coo, gset, jsonfile, native, qbsolv
from ising_qubo.io._instance import Instance
from ising_qubo.io._text import fail, not_text, require_regular, show

# Suffixes that say "text, look inside" rather than naming a format.
SNIFF_SUFFIXES = ("", ".txt")
_DIMOD_MAGIC = b"DIMODBQM"
_SNIFF_LIMIT = 1 << 20


@dataclass(frozen=True)
class FormatInfo:
    """What the CLI lists about one file format."""

    name: str
    suffixes: tuple[str, ...]
    aliases: tuple[str, ...]
    can_read: bool
    can_write: bool
    multi_instance: bool
    description: str


@dataclass(frozen=True)
class Format:
    """A registry entry: the public description plus the module that reads/writes it."""

    info: FormatInfo
    module: ModuleType
    binary: bool = False

    @property
    def name(self) -> str:
        return self.info.name

    # Looked up on the module at call time so tests (and users) can wrap a reader or writer.
    @property
    def read(self) -> Callable[[Path], list[Instance]] | None:
        return getattr(self.module, "read", None)

    @property
    def write(self) -> Callable[[dimod.BinaryQuadraticModel, IO], None] | None:
        return getattr(self.module, "write", None)


def _fmt(name, suffixes, aliases, module, description, multi=False, binary=False):
    info = FormatInfo(
        name,
        suffixes,
        aliases,
        hasattr(module, "read"),
        hasattr(module, "write"),
        multi,
        description,
    )
    return Format(info, module, binary)


FORMATS: tuple[Format, ...] = (
    _fmt(
        "bqm",
        (".bqm",),
        ("dimod",),
        native,
        "dimod native binary file (BinaryQuadraticModel.to_file)",
        binary=True,
    ),
    _fmt(
        "coo", (".coo",), (), coo, "COO text 'i j bias' with '# vartype=' header (dimod-compatible)"
    ),
    _fmt("json", (".json",), (), jsonfile, "dimod JSON (BinaryQuadraticModel.to_serializable)"),
    _fmt(
        "qubo",
        (".qubo",),
        ("qbsolv",),
        qbsolv,
        "qbsolv .qubo text (SPIN models are written as BINARY)",
    ),
    _fmt(
        "gset",
        (".gset", ".rudy"),
        ("rudy",),
        gset,
        "rudy/Gset max-cut graph 'N E' + 'i j w' (read only)",
    ),
    _fmt(
        "bqp",
        (".bqp",),
        ("beasley", "orlib"),
        beasley,
        "OR-Library Beasley bqp, several instances per file (read only)",
        multi=True,
    ),
)

_BY_NAME = {alias: f for f in FORMATS for alias in (f.name, *f.info.aliases)}
_BY_SUFFIX = {suffix: f for f in FORMATS for suffix in f.info.suffixes}


def _names() -> str:
    return ", ".join(
        f.name + (f" (alias {', '.join(f.info.aliases)})" if f.info.aliases else "")
        for f in FORMATS
    )


def _suffixes() -> str:
    return ", ".join([*_BY_SUFFIX, ".txt (sniffed)"])


def by_name(name: str) -> Format:
    """Look up a ``format=`` argument, case-insensitively."""
    if not isinstance(name, str) or name.lower() not in _BY_NAME:
        raise ValueError(f"unknown format {name!r}; known formats: {_names()}")
    return _BY_NAME[name.lower()]


def for_reading(path: Path, name: str | None) -> Format:
    """The format to read ``path`` with: the given name, else its suffix, else sniffed."""
    if name is not None:
        fmt = by_name(name)
    else:
        suffix = path.suffix.lower()
        if suffix in SNIFF_SUFFIXES:
            fmt = sniff(path)
        elif suffix in _BY_SUFFIX:
            fmt = _BY_SUFFIX[suffix]
        else:
            raise ValueError(
                f"{path}: unknown file suffix {suffix!r}; known suffixes: {_suffixes()};"
                f" or pass format= one of: {_names()}"
            )
    if fmt.read is None:
        raise ValueError(f"{path}: format {fmt.name!r} cannot be read")
    return fmt


def for_writing(path: Path, name: str | None) -> Format:
    """The format to write ``path`` in: the given name, else its suffix (never guessed)."""
    fmt: Format | None
    if name is not None:
        fmt = by_name(name)
    else:
        suffix = path.suffix.lower()
        fmt = _BY_SUFFIX.get(suffix)
        if fmt is None:
            raise ValueError(
                f"{path}: cannot choose a format to write from the suffix {suffix!r};"
                f" use one of {', '.join(_writable_suffixes())} or pass format= one of:"
                f" {', '.join(f.name for f in FORMATS if f.write)}"
            )
    if fmt.write is None:
        raise ValueError(
            f"{path}: format {fmt.name!r} is read only; writable formats:"
            f" {', '.join(f.name for f in FORMATS if f.write)}"
        )
    return fmt


def _writable_suffixes() -> list[str]:
    return [s for f in FORMATS if f.write for s in f.info.suffixes]


def sniff(path: Path) -> Format:
    """Guess the format of a ``.txt`` (or suffix-less) file from its first non-blank line.

    One integer: bqp (Beasley). Two integers: gset (rudy). ``#`` or three fields: coo.
    Also recognised: dimod's binary magic (bqm), ``{`` (json), ``c``/``p`` lines (qubo).
    """
    expected = "a QUBO/Ising text file (bqp, gset, coo, qubo or json)"
    require_regular(path)  # a FIFO would block this open, /dev/zero never end
    with open(path, "rb") as fp:
        buf = fp.read(len(_DIMOD_MAGIC))
        if not buf:
            raise fail(path, "empty file")
        if buf == _DIMOD_MAGIC:
            return _BY_NAME["bqm"]
        offset = 0  # file position of buf[0], for the "binary data at byte N" message
        # Read only as far as the first non-blank line (capped: a one-line JSON document
        # can be huge, and the prefix is enough to recognise it).
        while True:
            stripped = buf.lstrip()
            offset += len(buf) - len(stripped)
            buf = stripped
            if b"\n" in buf or len(buf) > _SNIFF_LIMIT:
                break
            chunk = fp.read(1 << 16)
            if not chunk:
                break
            buf += chunk
    if not buf:
        raise fail(path, "empty file (only whitespace)")
    line = buf.split(b"\n", 1)[0]
    nul = line.find(b"\0")
    if nul >= 0:
        raise not_text(path, offset + nul, expected)
    try:
        # Incremental decoding tolerates a character cut at the read cap.
        first = codecs.getincrementaldecoder("utf-8")().decode(line, final=False)
    except UnicodeDecodeError as exc:
        raise not_text(path, offset + exc.start, expected) from None
    first = first.lstrip("\ufeff").strip()
    tokens = first.split() or [""]
    if first.startswith("#"):
        return _BY_NAME["coo"]
    if first.startswith(("{", "[")):
        return _BY_NAME["json"]
    if tokens[0] == "p" or tokens[0].startswith("c"):
        return _BY_NAME["qubo"]
    ints = sum(1 for t in tokens if _is_int(t))
    if len(tokens) == 1 and ints == 1:
        return _BY_NAME["bqp"]
    if len(tokens) == 2 and ints == 2:
        return _BY_NAME["gset"]
    if len(tokens) == 3:
        return _BY_NAME["coo"]
    raise fail(
        path,
        f"cannot tell the format from the first line {show(first)}: expected one integer"
        " (bqp), two integers (gset), '#' or 'i j bias' (coo), 'p qubo'/'c' (qubo) or '{'"
        f" (json); pass format= one of: {_names()}",
    )


def _is_int(token: str) -> bool:
    body = token[1:] if token[:1] in "+-" else token
    return body.isascii() and body.isdigit()
