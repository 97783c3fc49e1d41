"""Rotation, compression and retention of an audit trail's files.

A live file is rotated before a batch when the batch would take it past ``max_size`` (a batch
larger than ``max_size`` still goes whole into an empty file: a batch is never split), or when
the UTC day changed since the file was started (``daily``). Rotating renames the live file to
:func:`~obs_pipeline.audit.files.rotated_name` and opens a new one at the path; the hash chain
goes on into it. A rotated file is then gzip-compressed (``compress``) and files rotated more
than ``retention_days`` ago are removed: both in a worker thread, driven by the exporter's
supervised :class:`Maintenance` task, so the event loop never waits on them. The live file is
never compressed nor removed.

Compression writes ``<name>.gz`` (mode ``0600``) and flushes it to the disk before it removes the
plain file: while both are there, readers take the plain one (``audit/files.py``), and a crash
leaves the plain file, compressed again at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from obs_pipeline.audit.files import COMPRESSED_SUFFIX, rotated_files, rotated_name, rotation_time

__all__ = ["Maintenance", "Rotation", "compress", "expired", "rotate", "sync_directory"]

#: How often retention is applied even when nothing rotates.
RETENTION_INTERVAL = 3600.0
#: How many trails the hourly retention pass (and the shutdown's) looks at: the most recently used.
MAX_KNOWN = 10_000
_CHUNK = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class Rotation:
    """The ``rotation`` block."""

    max_size: int | None = None  # bytes; None: no size rotation
    daily: bool = False  # rotate when the UTC date changes
    compress: bool = True  # gzip rotated files

    def due(self, size: int, incoming: int, started: datetime, now: datetime) -> bool:
        """Whether a live file of ``size`` bytes started on ``started`` rotates before ``incoming`` more bytes."""
        if size <= 0:
            return False
        if self.max_size is not None and size + incoming > self.max_size:
            return True
        return self.daily and started.astimezone(UTC).date() != now.astimezone(UTC).date()


def rotate(live: Path, now: datetime, *, sync_dir: bool) -> Path:
    """Rename ``live`` to its rotated name at ``now`` (a microsecond later while that name is taken).

    Raises:
        OSError: the rename failed (the live file stays where it is).
    """
    when = now
    target = rotated_name(live, when)
    while target.exists() or target.with_name(target.name + COMPRESSED_SUFFIX).exists():
        when += timedelta(microseconds=1)
        target = rotated_name(live, when)
    live.rename(target)
    if sync_dir:
        sync_directory(live.parent)
    return target


def sync_directory(directory: Path) -> None:
    """Flush a directory's entries (a rename, a new file) to the disk; not possible everywhere."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def compress(path: Path) -> Path:
    """Gzip ``path`` to ``path.gz`` (``0600``, flushed), then remove ``path``; the ``.gz`` path.

    Raises:
        OSError: reading, writing or flushing failed; ``path`` is kept and a partial ``.gz`` removed.
    """
    target = path.with_name(path.name + COMPRESSED_SUFFIX)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, path.open("rb") as source:
            with gzip.GzipFile(filename=path.name, mode="wb", fileobj=raw, mtime=0) as out:
                shutil.copyfileobj(source, out, _CHUNK)
            raw.flush()
            os.fsync(raw.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            target.unlink()
        raise
    path.unlink()
    sync_directory(path.parent)
    return target


def expired(live: Path, retention_days: float, now: datetime) -> list[Path]:
    """The rotated files of ``live`` rotated more than ``retention_days`` before ``now`` (never ``live``)."""
    limit = now - timedelta(days=retention_days)
    out: list[Path] = []
    for path in rotated_files(live):
        when = rotation_time(live, path)
        if when is not None and when < limit:
            out.append(path)
            other = (path.with_name(path.name.removesuffix(COMPRESSED_SUFFIX)) if path.name.endswith(COMPRESSED_SUFFIX)
                     else path.with_name(path.name + COMPRESSED_SUFFIX))
            if other.exists():  # a compression cut short left both forms
                out.append(other)
    return out


class Maintenance:
    """Compresses rotated files and applies retention, in a worker thread, for every trail it is told of.

    :meth:`run` is the exporter's supervised background task; :meth:`notice` (from the event loop)
    wakes it after a rotation or when a trail is opened.
    """

    def __init__(self, rotation: Rotation | None, retention_days: float | None, log: logging.LoggerAdapter[logging.Logger] | logging.Logger,
                 on_removed: Callable[[int], None]) -> None:
        self.rotation = rotation
        self.retention_days = retention_days
        self.log = log
        self.on_removed = on_removed
        self._pending: set[Path] = set()  # live paths whose rotated files need a look
        #: The trails seen, most recent last, at most :data:`MAX_KNOWN` (a ``{session_id}`` template
        #: makes a file per session: the hourly pass must not grow with every session ever seen).
        self._known: OrderedDict[Path, None] = OrderedDict()
        self._wake = asyncio.Event()
        self._lock = threading.Lock()  # one tend at a time: the task's, or the shutdown's
        self._closed = False  # set by drain: the task's passes touch no file after it

    @property
    def needed(self) -> bool:
        """Whether there is any work of this kind configured."""
        return bool((self.rotation is not None and self.rotation.compress) or self.retention_days)

    def notice(self, live: Path) -> None:
        """Look at ``live``'s rotated files soon."""
        if self.needed:
            self._pending.add(live)
            self._known[live] = None
            self._known.move_to_end(live)
            while len(self._known) > MAX_KNOWN:
                self._known.popitem(last=False)
            self._wake.set()

    async def run(self) -> None:
        """Work through what :meth:`notice` queued; apply retention to every known trail hourly."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RETENTION_INTERVAL)
            self._wake.clear()
            pending = self._pending or set(self._known)  # nothing queued: the hourly pass
            self._pending = set()
            for live in sorted(pending):
                await asyncio.to_thread(self._tend_unless_closed, live)

    async def drain(self, deadline: float | None) -> None:
        """At shutdown: do what is queued, until ``deadline`` (``time.monotonic()``); the rest waits for the next start."""
        # Every known trail, not just the queued ones: a tend in flight holds the lock, so this
        # waits for it and then picks up whatever it had not reached.
        self._closed = True  # the task is cancelled only after this returns: its next pass must not run
        pending, self._pending = sorted(self._known), set()
        if not pending or not self.needed:
            return
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.to_thread(self._tend_all, pending), timeout)

    def _tend_all(self, lives: list[Path]) -> None:
        for live in lives:
            self.tend(live)

    def tend(self, live: Path) -> None:
        """Compress ``live``'s plain rotated files, then remove the expired ones. Logs, never raises."""
        with self._lock:
            self._tend(live)

    def _tend_unless_closed(self, live: Path) -> None:
        """The task's :meth:`tend`: nothing once :meth:`drain` began (a pass it started before is waited for)."""
        with self._lock:
            if not self._closed:
                self._tend(live)

    def _tend(self, live: Path) -> None:
        # A directory that cannot be listed (its mode changed, say) is logged and tried again at the
        # next pass: this runs in the exporter's supervised task, where raising stops the pipeline.
        try:
            self._compress_and_expire(live)
        except OSError as exc:
            self.log.warning("cannot look at the rotated audit files of %s: %s; trying again later", live,
                             exc.strerror or type(exc).__name__)

    def _compress_and_expire(self, live: Path) -> None:
        if self.rotation is not None and self.rotation.compress:
            for path in rotated_files(live):
                if path.name.endswith(COMPRESSED_SUFFIX):
                    continue
                try:
                    compress(path)
                except OSError as exc:
                    self.log.warning("cannot compress rotated audit file %s: %s; left uncompressed", path,
                                     exc.strerror or type(exc).__name__)
        if self.retention_days:
            removed = 0
            for path in expired(live, self.retention_days, datetime.now(UTC)):
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    self.log.warning("cannot remove expired audit file %s: %s", path, exc.strerror or type(exc).__name__)
                    continue
                removed += 1
            if removed:
                self.log.info("removed %d audit file(s) older than %g days (retention_days)", removed, self.retention_days)
                self.on_removed(removed)
