"""Atomic file replacement: an error or interrupt mid-write never damages the old file.

The one home of the write-to-a-temporary-then-rename pattern in the package:

* :func:`atomic_write` yields an open file, for writers that take a file object;
* :func:`atomic_path` yields the temporary file's path, for writers that want a file name
  (``torch.save``, ``safetensors.torch.save_file``);
* :func:`atomic_paths` does the same for several files that belong together: every new
  file is complete and on disk before the first old one is replaced;
* :func:`remove_stale_temporaries` removes what a killed write left behind.

Each temporary file lives next to its target (so ``os.replace`` is a rename on one file
system, hence atomic) under a random hidden name, and is fsynced before the rename (so a
crash cannot leave a renamed but empty file). It is created with mode ``0o666`` filtered by
the umask, as a plain ``open()`` would create it (not the ``0o600`` of
``tempfile.mkstemp``), and takes the mode of the file it replaces when there is one. A
symlinked target is followed: the file it points at is replaced, the link stays.

Only regular files are replaced. A character device or a FIFO (``/dev/null``, a named
pipe, ``/dev/stdout``) is written in place, as the shell's ``>`` would: renaming over it
would replace the device node itself (``/dev/null`` becoming a plain file, run as root).
A writer that needs a file name writes to a private temporary file whose bytes are then
copied into the device. A directory, a block device or a socket is refused up front.

A failed write (disk full, quota, read-only file system, I/O error, no permission) removes
the temporary file, leaves the target as it was and raises an :class:`OSError` of the same
class and ``errno`` whose message names the target, not the temporary file:
``cannot write out.json: No space left on device``.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["atomic_path", "atomic_paths", "atomic_write", "remove_stale_temporaries"]

#: Random bytes in a temporary file's name, ``.<target name>.<twice as many hex digits>.tmp``.
_TOKEN_BYTES = 6


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], binary: bool) -> Iterator[IO]:
    """Yield a file to write (UTF-8 text with ``\\n`` line ends unless ``binary``); when the
    block ends without error the file atomically replaces ``path`` (a device or FIFO is
    written in place)."""
    if _is_stream(Path(path)):
        with _reported([str(path)]):
            raw = _open_in_place(Path(path))
        with _reported([str(path)], own=()):
            with _write_error_first(raw):
                with _buffered(raw, binary) as handle:
                    yield handle
        return
    with atomic_path(path) as tmp:
        raw = _RecordingFile(tmp, "w")
        with _write_error_first(raw):
            with _buffered(raw, binary) as handle:
                yield handle


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield the path of an empty temporary file to write in place of ``path``; when the
    block ends without error it is fsynced and renamed over ``path`` (or copied into it,
    for a device or FIFO). On any error (``KeyboardInterrupt`` included) it is removed and
    ``path`` is left as it was."""
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
    shown = [str(p) for p in paths]
    streams = [_is_stream(Path(p)) for p in paths]
    targets = [_resolve(Path(p)) for p in paths]
    if len({str(t) for t in targets}) != len(targets):
        raise ValueError(f"atomic_paths: the same file is named twice in {shown}")
    temporaries: list[Path] = []
    modes: list[int] = []
    try:
        for name, target, stream in zip(shown, targets, streams):
            with _reported([name]):
                tmp, mode = _create_temporary(target, private=stream)
            temporaries.append(tmp)
            modes.append(mode)
        # what the writer raises about the temporary files is about the targets
        with _reported(shown, own=[str(t) for t in temporaries]), _os_error_behind():
            yield tuple(temporaries)
        for name, tmp, stream in zip(shown, temporaries, streams):
            if not stream:  # nothing to make durable: the bytes are copied, not renamed
                with _reported([name]):
                    _fsync_file(tmp)
        for name, tmp, target, mode, stream in zip(shown, temporaries, targets, modes, streams):
            with _reported([name]):
                if stream:
                    _copy_in_place(tmp, Path(name))
                    os.unlink(tmp)
                else:
                    # The writer may have made a file of its own under the name: set the
                    # mode anew.
                    os.chmod(tmp, mode)
                    os.replace(tmp, target)
    except BaseException:
        for tmp in temporaries:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    for directory in dict.fromkeys(t.parent for t, s in zip(targets, streams) if not s):
        _fsync_directory(directory)


def remove_stale_temporaries(directory: str | os.PathLike[str], names: Iterable[str]) -> list[Path]:
    """Remove the temporary files that a killed write left next to ``names`` in
    ``directory`` (each a file name or a path below it: ``"model/model.safetensors"``) and
    return them. Only regular files named exactly as this module names its temporaries
    (``.<name>.<12 hex digits>.tmp``) are touched: call it only where no other process can
    be writing the same files (a resumed run owns its directory)."""
    removed = []
    for name in names:
        target = Path(directory) / name
        pattern = re.compile(rf"\.{re.escape(target.name)}\.[0-9a-f]{{{2 * _TOKEN_BYTES}}}\.tmp")
        try:
            entries = list(os.scandir(target.parent))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


# ---------------------------------------------------------------------------------------
# what the target is


def check_writable(path: str | os.PathLike[str], option: str | None = None) -> None:
    """Refuse, before any work, an output that cannot be written: a missing folder, a
    folder that is not one or not writable, a directory or block device as the target.

    Commands call this before a long solve so that a typo in the output path is reported
    at once rather than after minutes of work (the write itself still reports everything
    else, a full disk included). ``option`` names the command-line flag in the message.
    """
    target = Path(path)
    where = f"{option} {target}" if option else str(target)
    resolved = _resolve(target)
    try:
        stream = _is_stream(resolved)
    except IsADirectoryError:
        raise _error(IsADirectoryError, errno.EISDIR, f"{where}: it is a directory") from None
    except ValueError as exc:  # a block device or socket
        raise ValueError(f"{option}: {exc}" if option else str(exc)) from None
    if stream:  # written in place: the device or FIFO itself must be writable
        if not os.access(resolved, os.W_OK):
            raise _error(PermissionError, errno.EACCES, f"{where}: not writable")
        return
    folder = resolved.parent
    if not folder.exists():
        raise _error(FileNotFoundError, errno.ENOENT, f"{where}: folder {folder} does not exist")
    if not folder.is_dir():
        raise _error(NotADirectoryError, errno.ENOTDIR, f"{where}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _error(PermissionError, errno.EACCES, f"{where}: folder {folder} is not writable")


def _is_stream(path: Path) -> bool:
    """True for a character device or FIFO (written in place), False for a regular file or
    a name not taken yet (replaced atomically); anything else is refused here, before any
    work, with a message naming ``path``."""
    try:
        mode = os.stat(path).st_mode  # follows links, /dev/stdout's to a pipe too
    except OSError:
        return False  # a new file; a bad parent is reported when the temporary is made
    if stat.S_ISREG(mode):
        return False
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return True
    if stat.S_ISDIR(mode):
        raise _error(IsADirectoryError, errno.EISDIR, f"cannot write {path}: it is a directory")
    kind = "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else None
    raise ValueError(
        f"cannot write {path}: it is {kind or 'not a regular file'}; name a file, a character "
        "device or a FIFO"
    )


def _resolve(path: Path) -> Path:
    # Replace what a link points at, not the link itself.
    return Path(os.path.realpath(path)) if path.is_symlink() else path


# ---------------------------------------------------------------------------------------
# writing


class _RecordingFile(io.FileIO):
    """A raw file that remembers its last write error: some writers catch it and raise an
    unrelated error of their own (``torch.save`` to a file object on a full disk says
    ``[enforce fail at inline_container.cc:672] . unexpected pos``)."""

    write_error: OSError | None = None

    def write(self, data: ReadableBuffer, /) -> int:
        try:
            return super().write(data)
        except OSError as exc:
            self.write_error = exc
            raise


def _buffered(raw: _RecordingFile, binary: bool) -> IO:
    # the same layers a plain open(..., "wb") or open(..., "w", ...) builds
    buffered = io.BufferedWriter(raw)
    if binary:
        return buffered
    return io.TextIOWrapper(buffered, encoding="utf-8", newline="\n")


@contextlib.contextmanager
def _write_error_first(raw: _RecordingFile) -> Iterator[None]:
    """Raise the write error behind whatever the writer raised after catching it."""
    try:
        yield
    except Exception as exc:
        if raw.write_error is None or exc is raw.write_error:
            raise
        raise raw.write_error from exc
    finally:
        raw.close()  # when a buffered layer above failed to close before
    if raw.write_error is not None:  # the writer went on as if nothing happened
        raise raw.write_error


def _open_in_place(path: Path) -> _RecordingFile:
    """``path`` (a character device or FIFO) opened for writing. Neither ``O_CREAT`` nor
    ``O_TRUNC``: if the device went away it is not replaced by a new file. Opening a FIFO
    waits for its reader, as the shell's ``>`` does."""
    fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0))
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # it changed between the checks
            raise _error(OSError, errno.EEXIST, f"cannot write {path}: it changed while opened")
        return _RecordingFile(fd, "w", closefd=True)
    except BaseException:
        os.close(fd)
        raise


def _copy_in_place(tmp: Path, target: Path) -> None:
    raw = _open_in_place(target)
    with _write_error_first(raw), io.BufferedWriter(raw) as out, open(tmp, "rb") as data:
        shutil.copyfileobj(data, out)


def _create_temporary(target: Path, private: bool) -> tuple[Path, int]:
    """A new empty file and the mode the result must have: that of ``target`` if it exists,
    else what a plain ``open()`` gives (``0o666 & ~umask``). It is next to ``target``, or,
    if ``private`` (the bytes are copied to a device), in the system's temporary folder:
    never a new file in ``/dev``."""
    name = f".{target.name}.{secrets.token_hex(_TOKEN_BYTES)}.tmp"
    tmp = Path(tempfile.gettempdir()) / name if private else target.with_name(name)
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


# ---------------------------------------------------------------------------------------
# errors


@contextlib.contextmanager
def _reported(shown: list[str], own: Iterable[str] | None = None) -> Iterator[None]:
    """Re-raise an OSError as one naming the targets ``shown``: every one (``own`` None:
    this module's own steps), or one about writing the files ``own`` (the temporaries; no
    file name: an open file's write) raised by a writer; other errors pass unchanged."""
    mine = None if own is None else set(own)
    try:
        yield
    except OSError as exc:
        if getattr(exc, "_names_target", False):
            raise
        filename = None if exc.filename is None else os.fsdecode(exc.filename)
        if mine is not None and filename is not None and filename not in mine:
            raise
        reason = exc.strerror or str(exc)
        cls = type(exc) if type(exc).__module__ == "builtins" else OSError
        raise _error(cls, exc.errno, f"cannot write {', '.join(shown)}: {reason}") from exc


@contextlib.contextmanager
def _os_error_behind() -> Iterator[None]:
    """Raise the OSError that a writer's own error reports in its text: safetensors says
    ``I/O error: No space left on device (os error 28)`` in a SafetensorError."""
    try:
        yield
    except OSError:
        raise
    except Exception as exc:
        match = re.search(r"\(os error (\d+)\)", str(exc))
        if match is None:
            raise
        number = int(match.group(1))
        raise OSError(number, os.strerror(number)) from exc


def _error(cls: type[OSError], number: int | None, message: str) -> OSError:
    # One argument, so str() is the message alone (no "[Errno N]"); errno still tells the
    # cause to a program.
    error = cls(message)
    error.errno = number
    error._names_target = True  # type: ignore[attr-defined]
    return error
