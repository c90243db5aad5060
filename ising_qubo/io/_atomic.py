"""Atomic file replacement: an error or interrupt mid-write never damages the old file.

The one home of the write-to-a-temporary-then-rename pattern in the package:

* :func:`atomic_write` yields an open file, for writers that take a file object;
* :func:`atomic_path` yields the temporary file's path, for writers that want a file name
  (``torch.save``, ``safetensors.torch.save_file``);
* :func:`atomic_paths` does the same for several files that belong together: every new
  file is complete and on disk before the first old one is replaced.

Each temporary file lives next to its target (so ``os.replace`` is a rename on one file
system, hence atomic) under a random hidden name, and is fsynced before the rename (so a
crash cannot leave a renamed but empty file). It is created with mode ``0o666`` filtered by
the umask, as a plain ``open()`` would create it (not the ``0o600`` of
``tempfile.mkstemp``), and takes the mode of the file it replaces when there is one. A
symlinked target is followed: the file it points at is replaced, the link stays.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_path", "atomic_paths", "atomic_write"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], binary: bool) -> Iterator[IO]:
    """Yield a file to write (UTF-8 text with ``\\n`` line ends unless ``binary``); when the
    block ends without error the file atomically replaces ``path``."""
    with atomic_path(path) as tmp:
        handle: IO
        if binary:
            handle = open(tmp, "wb")  # noqa: SIM115 - closed by the with below
        else:
            handle = open(tmp, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
        with handle:
            yield handle


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield the path of an empty temporary file to write in place of ``path``; when the
    block ends without error it is fsynced and renamed over ``path``. On any error
    (``KeyboardInterrupt`` included) it is removed and ``path`` is left as it was."""
    with atomic_paths(path) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike[str]) -> Iterator[tuple[Path, ...]]:
    """Like :func:`atomic_path` for several files at once: yield one temporary path per
    target; when the block ends without error, all of them are fsynced first, and then
    each replaces its target in the order given.

    So no old file is replaced before every new one is complete on disk. (A crash between
    two renames can still leave a new file next to an old one: readers of such a pair
    should tell, e.g. by an id written into both.)
    """
    targets = [_resolve(Path(p)) for p in paths]
    if len({str(t) for t in targets}) != len(targets):
        raise ValueError(f"atomic_paths: the same file is named twice in {list(map(str, paths))}")
    temporaries: list[Path] = []
    modes: list[int] = []
    try:
        for target in targets:
            tmp, mode = _create_temporary(target)
            temporaries.append(tmp)
            modes.append(mode)
        yield tuple(temporaries)
        for tmp in temporaries:
            _fsync_file(tmp)
        for tmp, target, mode in zip(temporaries, targets, modes):
            # The writer may have made a file of its own under the name: set the mode anew.
            os.chmod(tmp, mode)
            os.replace(tmp, target)
    except BaseException:
        for tmp in temporaries:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    for directory in dict.fromkeys(target.parent for target in targets):
        _fsync_directory(directory)


def _resolve(path: Path) -> Path:
    # Replace what a link points at, not the link itself.
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _create_temporary(target: Path) -> tuple[Path, int]:
    """A new empty file next to ``target`` and the mode the result must have: that of
    ``target`` if it exists, else what a plain ``open()`` gives (``0o666 & ~umask``)."""
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    # O_EXCL with a random name keeps concurrent writers apart; mode 0o666 lets the umask
    # decide the permissions (reading the umask itself would not be thread-safe).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        mode = stat.S_IMODE(os.stat(target).st_mode)
    return tmp, mode


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not possible on every platform, hence best effort.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
