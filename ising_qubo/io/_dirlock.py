"""One owner per directory: an exclusive lock held for as long as a process works in it.

:class:`DirectoryLock` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``<directory>/.lock`` and
writes its process id there; a second process (or a second lock in the same process) is
refused at once with :class:`DirectoryInUseError`: ``run directory X is in use by another
process (pid N)``. It never waits: two runs that would write the same files must not take
turns, one of them is a mistake.

Why ``flock``: the kernel releases the lock when its process ends however it ends
(``SIGKILL``, a crash, a power loss), so a stale lock can never keep a directory closed;
the ``.lock`` file a killed process leaves behind is simply locked again by the next one.
A clean :meth:`DirectoryLock.release` removes the file (and the directory, if the lock
created it and nothing else was written there: a run that fails at its start leaves
nothing). Removing the file while others may have it open is safe because every taker
checks, after locking, that the path still names the file it locked, and starts over if not.

Where ``fcntl`` does not exist (Windows) or the file system does not support ``flock``
(some network mounts), the directory is used unlocked, with a warning in the second case:
keep one process per directory there yourself.
"""

from __future__ import annotations

import contextlib
import errno
import os
import warnings
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; the lock degrades to nothing (see above)
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "DirectoryInUseError", "DirectoryLock"]

LOCK_FILE = ".lock"
# flock on a file system that cannot lock: go on unlocked rather than refuse every run there
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class DirectoryInUseError(OSError):
    """Another process (or another lock of this one) holds the directory's lock."""


class DirectoryLock:
    """``acquire()`` ... ``release()`` (or ``with DirectoryLock(path):``) around the work in
    ``directory``; ``what`` names the directory in the error, ``advice`` ends it."""

    def __init__(
        self, directory: str | os.PathLike[str], what: str = "directory", advice: str = ""
    ) -> None:
        self.directory = Path(directory)
        self.what = what
        self.advice = advice
        self._fd: int | None = None
        self._created: list[Path] = []  # directories this lock made, deepest first

    @property
    def path(self) -> Path:
        return self.directory / LOCK_FILE

    def acquire(self) -> None:
        """Create the directory if needed and lock it, or raise DirectoryInUseError."""
        if self._fd is not None:
            raise RuntimeError(f"{self.directory}: this lock is held already")
        missing = [p for p in (self.directory, *self.directory.parents) if not p.exists()]
        self.directory.mkdir(parents=True, exist_ok=True)
        self._created = missing
        if fcntl is None:
            return
        try:
            self._fd = self._lock()
        except BaseException:
            self._remove_created()
            raise

    def _lock(self) -> int | None:
        while True:
            # O_NOFOLLOW: a planted symlink must not make us truncate the file it points at
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                raise DirectoryInUseError(
                    f"{self.what} {self.directory} is in use by another process "
                    f"(pid {holder or 'unknown'}){'; ' + self.advice if self.advice else ''}"
                ) from None
            except OSError as error:
                os.close(fd)
                if error.errno not in _UNSUPPORTED:
                    raise
                with contextlib.suppress(OSError):
                    os.unlink(self.path)  # nothing is locked: leave nothing behind
                warnings.warn(
                    f"{self.directory}: the file system cannot lock files ({error.strerror}); "
                    f"nothing stops a second process from using this {self.what} at once",
                    RuntimeWarning,
                    stacklevel=3,
                )
                return None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path, follow_symlinks=False))
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return fd
            # the previous holder removed the file between our open and our lock: the lock
            # we hold is on a file nobody else will ever open; take the one at the path
            os.close(fd)

    def release(self) -> None:
        """Remove the lock file and unlock (in that order: nobody can lock the file we
        remove); remove the directories :meth:`acquire` made if they are empty."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            finally:
                os.close(fd)  # closing the last descriptor releases the flock
        self._remove_created()

    def _remove_created(self) -> None:
        for folder in self._created:
            try:
                folder.rmdir()  # only when empty: whatever the run wrote stays
            except OSError:
                break
        self._created = []

    def __enter__(self) -> DirectoryLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    """The holder's pid as written in the lock file ('' while it has not written it yet)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""
