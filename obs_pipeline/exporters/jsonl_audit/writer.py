"""The audit file: append-only, ``0600``, one ``write()`` per batch.

Crash safety comes from the shape of the writes (``collectors.md`` §5 item 19): the file is opened
with ``O_APPEND`` and never truncated, each batch's lines go out in one ``write()`` call, so a
crash leaves at most a partial last line. When an existing file does not end with a newline (a
previous crash, or a failed write), the next write starts with one, so our first line is intact
and readers only have to skip one broken line.

The path is followed, not just the open file: before each batch one ``stat`` checks that the
path still leads to the file we hold open. When it was deleted, renamed (logrotate) or replaced,
the file is reopened at the path (created ``0600``, its directory ``0700``), with one warning;
if that fails (a directory is there now), the write raises and the exporter retries it later.
Without this check the lines would go on into an unlinked or renamed file while being counted
as sent.

Special files (``/dev/stdout``, a FIFO) are accepted as the path: the checks that only make
sense for regular files (mode, last byte, fsync) are skipped for them. A path that leads through
a file descriptor (``/dev/stdout``, ``/dev/fd/N``, ``/proc/self/fd/N``) names whatever the process
was given, so its mode is not ours to warn about, even when the shell redirected it to a file.
When the open file is a pipe or a socket with no name in the filesystem (``/dev/stdout`` piped
into ``head``), a reader that went away never comes back: :attr:`AuditFile.reopens` is False and
the exporter fails a broken pipe at once instead of retrying it; a named FIFO is opened again
by its path, where a new reader may be waiting.

Every open is non-blocking (``O_NONBLOCK``), so a FIFO without a reader fails at once (``ENXIO``:
"no process is reading the FIFO") instead of hanging the event loop; other files are switched
back to blocking writes. A FIFO keeps its non-blocking writes: when its buffer is full,
:meth:`AuditFile.append` waits for its reader without blocking the event loop, and gives up with
``EAGAIN`` when the reader takes nothing for :data:`FIFO_STALL_SECONDS`.

This module is one file; rotation, per-tenant paths and the hash chain are built on it in
:mod:`.trail` (which calls :meth:`AuditFile.prepare` before sealing a batch, so it knows the
file and its :attr:`~AuditFile.size` first, and the write that follows does not check twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import stat
from pathlib import Path

from obs_pipeline.audit.hook import LineHook, seal_all

FILE_MODE = 0o600
DIR_MODE = 0o700
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
#: How long a full FIFO may go without its reader taking anything before the write fails
#: (retryably): the reader is stuck, and the retries and the queue take over.
FIFO_STALL_SECONDS = 5.0
NO_READER = "no process is reading the FIFO"
#: The directories whose entries are a process's open file descriptors (``os.path.realpath`` form).
_FD_DIR = re.compile(r"/proc/(?:\d+|self|thread-self)(?:/task/\d+)?/fd|/dev/fd")
#: Symbolic links followed at most when looking for a descriptor (the kernel's own limit).
_MAX_LINKS = 40


def _sync(fd: int) -> None:
    """Flush the file's data (and the size) to the device."""
    fdatasync = getattr(os, "fdatasync", None)
    (fdatasync or os.fsync)(fd)


class AuditFile:
    """One append-only JSONL file. Not thread-safe: the exporter calls it from the event loop."""

    def __init__(self, path: str | Path, log: logging.Logger | logging.LoggerAdapter[logging.Logger]) -> None:
        self.path = Path(os.path.expanduser(path))
        self.log = log
        self._fd: int | None = None
        self._ident: tuple[int, int] = (0, 0)  # (st_dev, st_ino) of the open file
        self._regular = False
        self._needs_newline = False
        self._warned_mode = False
        self._lock = asyncio.Lock()  # one batch at a time while a FIFO write waits for its reader
        self._checked = False  # :meth:`prepare` just did the checks the next write would do
        #: How many times the file was opened: a change means a new file may be under the path.
        self.opened = 0
        #: The open regular file's size, as far as our writes know (``0`` for special files).
        self.size = 0
        #: When the open regular file was last modified before we opened it (or created: now).
        self.modified = 0.0
        #: The path leads through a file descriptor (``/dev/stdout``): what it names is the process's.
        self.names_descriptor = names_descriptor(self.path)
        #: Whether opening the path again can reach a new reader; False for an anonymous pipe or
        #: socket (known once the path was opened), whose broken pipe is then permanent.
        self.reopens = True

    @property
    def is_regular(self) -> bool:
        """Whether the open file is a regular file (rotation and the chain's resume apply to nothing else)."""
        return self._fd is not None and self._regular

    @property
    def is_open(self) -> bool:
        """Whether the file is open (it is closed after a failed write and reopened lazily)."""
        return self._fd is not None

    def open(self) -> None:
        """Create missing parent directories (``0700``) and open the file for append (``0600``).

        Raises:
            OSError: the directory or the file cannot be created or opened; ``ENXIO`` with
                :data:`NO_READER` for a FIFO that no process has open for reading.
        """
        if self._fd is not None:
            return
        make_parents(self.path.parent)
        try:
            fd = os.open(self.path, _OPEN_FLAGS, FILE_MODE)
        except OSError as exc:
            if exc.errno == errno.ENXIO and _is_fifo(self.path):
                raise OSError(errno.ENXIO, NO_READER, str(self.path)) from exc
            raise
        try:
            info = os.fstat(fd)
            if not stat.S_ISFIFO(info.st_mode):
                os.set_blocking(fd, True)  # files and devices: blocking writes, as always
            self._regular = stat.S_ISREG(info.st_mode)
            self._needs_newline = False
            if stat.S_ISFIFO(info.st_mode) or stat.S_ISSOCK(info.st_mode):
                self.reopens = _has_a_name(fd, self.names_descriptor)
            if self._regular:
                if not self.names_descriptor:
                    self._warn_loose_mode(info.st_mode)
                self._needs_newline = info.st_size > 0 and not self._ends_with_newline(info.st_size)
        except OSError:
            os.close(fd)
            raise
        self._ident = (info.st_dev, info.st_ino)
        self._fd = fd
        self.size = info.st_size if self._regular else 0
        self.modified = info.st_mtime
        self.opened += 1

    async def append(self, payload: bytes) -> None:
        """:meth:`write` ``payload``, waiting (without blocking the event loop) while a full FIFO drains.

        Raises:
            OSError: as :meth:`write`; ``EAGAIN`` when a FIFO's reader takes nothing for
                :data:`FIFO_STALL_SECONDS` (the file stays open: its reader is still there).
        """
        async with self._lock:
            rest = self.write(payload)
            while rest is not None:
                await self._writable()
                rest = self.write_more(rest)

    def write(self, payload: bytes) -> memoryview | None:
        """Append ``payload`` (whole lines) with one ``write()`` call; (re)open first if needed.

        The file is opened if it is closed, and reopened if the path no longer leads to it
        (deleted, renamed, replaced): one ``stat`` per call.

        Returns:
            None when all of ``payload`` is written. For a FIFO whose buffer is full, the part
            not written yet: pass it to :meth:`write_more` once the FIFO is writable (or drop
            it: the next batch then starts on a new line).

        Raises:
            OSError: the (re)open or the write failed; the file is closed and will be reopened
                next time.
        """
        if self._checked:
            self._checked = False
        else:
            self.prepare()
        if self._needs_newline:
            payload = b"\n" + payload
        return self.write_more(memoryview(payload))

    def prepare(self) -> None:
        """Open the file if it is closed, reopen it if the path no longer leads to it; the next write skips this.

        Raises:
            OSError: as :meth:`open`.
        """
        if self._fd is None:
            self.open()
        else:
            self._follow_path()
        self._checked = True

    def write_more(self, data: memoryview) -> memoryview | None:
        """Write ``data`` (the rest of a batch) to the open file; as :meth:`write`, without the checks."""
        fd = self._fd
        if fd is None:
            raise OSError(errno.EBADF, "the audit file was closed mid-batch")
        written = 0
        try:
            # A regular file takes everything at once unless the disk fills up mid-write;
            # finish the rest (the next call then raises ENOSPC, and a retry rewrites the batch).
            while written < len(data):
                try:
                    more = os.write(fd, data[written:])
                except BlockingIOError:  # a FIFO (the only non-blocking file) is full
                    if written:  # part of a line may be out: the next batch starts on a new line
                        self._needs_newline = data[written - 1] != 0x0A
                    return data[written:]
                if not more:
                    raise OSError(errno.EIO, os.strerror(errno.EIO))
                written += more
        except OSError:
            if self._regular:
                self.size += written
            self.close()
            raise
        if self._regular:
            self.size += written
        self._needs_newline = False
        return None

    async def _writable(self) -> None:
        """Wait until the (FIFO) file can take more, at most :data:`FIFO_STALL_SECONDS`.

        Raises:
            OSError: ``EAGAIN``, when it cannot in that time.
        """
        fd = self._fd
        if fd is None:
            raise OSError(errno.EBADF, "the audit file was closed mid-batch")
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        stall = FIFO_STALL_SECONDS
        loop.add_writer(fd, wake)
        try:
            await asyncio.wait_for(ready, stall)
        except TimeoutError:
            raise OSError(errno.EAGAIN, f"the FIFO is full: its reader took nothing for {stall:g} s") from None
        finally:
            loop.remove_writer(fd)

    def _follow_path(self) -> None:
        """Reopen when the path no longer leads to the open file (deleted, rotated, replaced).

        Raises:
            OSError: reopening failed (say, a directory is at the path now); the file is closed.
        """
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            reason = "it was deleted or renamed"
        except OSError as exc:
            reason = f"it cannot be checked ({exc.strerror or exc})"
        else:
            if (info.st_dev, info.st_ino) == self._ident:
                return
            reason = "a directory is there now" if stat.S_ISDIR(info.st_mode) else "another file is there now"
        self.log.warning("audit file %s: %s; reopening the path", self.path, reason)
        self.close()
        self.open()

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
        self._checked = False
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


def frame(lines: list[bytes], hook: LineHook) -> bytes:
    """The payload of one batch: each line through ``hook`` (the hash chain's seam), newline-terminated.

    ``lines`` is the caller's to give away: it may be extended (one join, no copy of the payload).
    """
    sealed = seal_all(hook, lines)
    sealed.append(b"")
    return b"\n".join(sealed)


def names_descriptor(path: str | Path) -> bool:
    """Whether ``path`` leads through a file descriptor (``/dev/stdout``, ``/dev/fd/1``, ``/proc/self/fd/3``).

    Follows the symbolic links of the last component one at a time (the directories above it
    resolved with ``realpath``) and answers True as soon as one lives in a descriptor directory.
    Never raises: what cannot be read is no descriptor.
    """
    current = Path.cwd() / Path(path)  # an absolute path stays as it is
    for _ in range(_MAX_LINKS):
        parent = current.parent.resolve()
        if _FD_DIR.fullmatch(str(parent)):
            return True
        current = parent / current.name
        try:
            target = current.readlink()
        except OSError:  # not a link (or not there): the end of the chain
            return False
        current = parent / target  # an absolute target replaces the parent
    return False


def _has_a_name(fd: int, names_descriptor: bool) -> bool:
    """Whether the pipe or socket open at ``fd`` has a name in the filesystem (a named FIFO, say).

    Linux says so in ``/proc/self/fd``: an anonymous pipe is ``pipe:[inode]``, a name is a path.
    Without ``/proc``, a path through a descriptor is taken for an anonymous pipe, any other for a FIFO.
    """
    try:
        return Path(f"/proc/self/fd/{fd}").readlink().is_absolute()
    except OSError:
        return not names_descriptor


def _is_fifo(path: Path) -> bool:
    """Whether ``path`` is a FIFO (named pipe); False when it cannot be checked."""
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


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


def _read_only(path: Path) -> bool:
    """Whether ``path`` is on a file system mounted read-only (``statvfs``'s ``ST_RDONLY``); False if unknown."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows): unknown
        return False


def check_path(path: str | Path) -> str | None:
    """Why ``path`` cannot be used as the audit file, or None. Creates nothing.

    Walks up to the first existing ancestor and checks it is a writable directory, so a path
    whose directories do not exist yet is fine when they can be created. A file or directory that
    cannot be written because its file system is mounted read-only says so ("read-only file
    system"), not "permission denied": no ``chmod`` would help. Devices, FIFOs and ``/dev/stdout``
    live on read-only file systems too and are written all the same: only a regular file or a
    directory is held to its mount.
    """
    target = Path(os.path.expanduser(path))
    if target.is_dir():
        return f"{target} is a directory"
    if target.exists():
        regular = target.is_file()
        if regular and _read_only(target):
            return f"{target} is on a read-only file system"
        if not os.access(target, os.W_OK):
            return f"{target} is not writable (permission denied)"
        return None
    ancestor = target.parent
    while not ancestor.exists() and ancestor.parent != ancestor:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is not a directory"
    if _read_only(ancestor):
        return f"{ancestor} is on a read-only file system"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{ancestor} is not writable (permission denied)"
    return None
