"""The audit file: append-only, ``0600``, one ``write()`` per batch.

Crash safety comes from the shape of the writes (``collectors.md`` §5 item 19): the file is opened
with ``O_APPEND`` and never truncated, each batch's lines go out in one ``write()`` call, so a
crash leaves at most a partial last line. When an existing file does not end with a newline (a
previous crash, or a failed write), the next write starts with one, so our first line is intact
and readers only have to skip one broken line.

Special files (``/dev/stdout``, a FIFO) are accepted as the path: the checks that only make
sense for regular files (mode, last byte, fsync) are skipped for them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


def _sync(fd: int) -> None:
    """Flush the file's data (and the size) to the device."""
    fdatasync = getattr(os, "fdatasync", None)
    (fdatasync or os.fsync)(fd)


class AuditFile:
    """One append-only JSONL file. Not thread-safe: the exporter calls it from the event loop."""

    def __init__(self, path: str | Path, log: logging.Logger) -> None:
        self.path = Path(os.path.expanduser(path))
        self.log = log
        self._fd: int | None = None
        self._regular = False
        self._needs_newline = False
        self._warned_mode = False

    @property
    def is_open(self) -> bool:
        """Whether the file is open (it is closed after a failed write and reopened lazily)."""
        return self._fd is not None

    def open(self) -> None:
        """Create missing parent directories (``0700``) and open the file for append (``0600``).

        Raises:
            OSError: the directory or the file cannot be created or opened.
        """
        if self._fd is not None:
            return
        make_parents(self.path.parent)
        fd = os.open(self.path, _OPEN_FLAGS, FILE_MODE)
        try:
            info = os.fstat(fd)
            self._regular = stat.S_ISREG(info.st_mode)
            self._needs_newline = False
            if self._regular:
                self._warn_loose_mode(info.st_mode)
                self._needs_newline = info.st_size > 0 and not self._ends_with_newline(info.st_size)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd

    def write(self, payload: bytes) -> None:
        """Append ``payload`` (whole lines) with one ``write()`` call; reopen first if closed.

        Raises:
            OSError: the write failed; the file is closed and will be reopened next time.
        """
        if self._fd is None:
            self.open()
        assert self._fd is not None
        if self._needs_newline:
            payload = b"\n" + payload
        try:
            written = os.write(self._fd, payload)
            # A regular file takes everything at once unless the disk fills up mid-write;
            # finish the rest (the next call then raises ENOSPC, and a retry rewrites the batch).
            while written < len(payload):
                more = os.write(self._fd, memoryview(payload)[written:])
                if not more:
                    raise OSError(errno.EIO, os.strerror(errno.EIO))
                written += more
        except OSError:
            self.close()
            raise
        self._needs_newline = False

    def sync(self) -> None:
        """``fdatasync`` the file (a no-op for special files, where it is meaningless).

        Raises:
            OSError: the flush failed; the file is closed and will be reopened next time.
        """
        fd = self._fd
        if fd is None or not self._regular:
            return
        try:
            _sync(fd)
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        """Close the file. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError as exc:
                self.log.warning("closing %s failed: %s", self.path, exc.strerror or exc)

    def _ends_with_newline(self, size: int) -> bool:
        """Whether the file's last byte is a newline (unreadable counts as "no": add one)."""
        try:
            with self.path.open("rb") as f:
                f.seek(size - 1)
                return f.read(1) == b"\n"
        except OSError:
            return False

    def _warn_loose_mode(self, mode: int) -> None:
        """Warn once when an existing file is readable by others; it is left as the user made it."""
        if mode & 0o077 and not self._warned_mode:
            self._warned_mode = True
            self.log.warning(
                "audit file %s has mode %04o, looser than %04o; leaving it as it is",
                self.path, stat.S_IMODE(mode), FILE_MODE,
            )


def make_parents(directory: Path) -> None:
    """Create ``directory`` and its missing ancestors, each with mode ``0700``."""
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # created concurrently: fine
            path.mkdir(mode=DIR_MODE)


def check_path(path: str | Path) -> str | None:
    """Why ``path`` cannot be used as the audit file, or None. Creates nothing.

    Walks up to the first existing ancestor and checks it is a writable directory, so a path
    whose directories do not exist yet is fine when they can be created.
    """
    target = Path(os.path.expanduser(path))
    if target.is_dir():
        return f"{target} is a directory"
    if target.exists():
        if not os.access(target, os.W_OK):
            return f"{target} is not writable (permission denied)"
        return None
    ancestor = target.parent
    while not ancestor.exists() and ancestor.parent != ancestor:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{ancestor} is not writable (permission denied)"
    return None
