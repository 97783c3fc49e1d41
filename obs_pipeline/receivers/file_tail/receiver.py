"""The ``file_tail`` receiver's loop: scan, read, hand on, and only then checkpoint.

One task does everything in turn, so nothing races: scan the globs (in a worker thread; see
:mod:`.files`), read every open file a chunk at a time round-robin, split and decode lines into
a batch, hand the batch to the pipeline, and when ``consume`` returned, advance the files'
committed offsets and write the checkpoint. A refusal (full queue) or a retryable export error
keeps the same batch and retries it after the suggested delay (capped at 1 s); nothing more is
read meanwhile (backpressure, never a drop). At shutdown a batch still refused is not committed,
so it is read again at the next start. File notifications (``watchfiles``: inotify on Linux)
wake the loop early; a poll every ``poll_interval`` (every second at least, with notifications)
is the fallback and catches what notifications miss (a deleted file still being written).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from obs_pipeline.batch import Batch
from obs_pipeline.components import Consumer, Host, Receiver, Settings
from obs_pipeline.errors import RefusedError, RetryableError, describe_exception
from obs_pipeline.receivers._common import Counters
from obs_pipeline.receivers.file_tail.checkpoint import FILE_NAME, Checkpoints, directory
from obs_pipeline.receivers.file_tail.config import Config
from obs_pipeline.receivers.file_tail.decode import Decoder, RecordBatch
from obs_pipeline.receivers.file_tail.files import KEEP_GENERATIONS, Tracked, Tracker
from obs_pipeline.receivers.file_tail.splitter import Line
from obs_pipeline.signals import Signal, count_items

CHUNK = 64 * 1024
MAX_RETRY_DELAY = 1.0
MIN_RETRY_DELAY = 0.01
WATCHED_POLL = 1.0  # with notifications, scan at least this often anyway (seconds)
TRANSPORT = "file"


class FileTailReceiver(Receiver):
    """Tails the files ``cfg.include`` matches; see the module docstring."""

    def __init__(self, settings: Settings, cfg: Config, consumers: Mapping[Signal, Consumer], decoder: Decoder) -> None:
        super().__init__(settings, consumers)
        self.cfg = cfg
        self.decoder = decoder
        self.counters = Counters(settings.metrics, self.id, TRANSPORT)
        m = settings.metrics
        self._lines_read = m.file_tail_lines_read.labels(receiver=self.id)
        self._files_open = m.file_tail_files_open.labels(receiver=self.id)
        self._files_tracked = m.file_tail_files_tracked.labels(receiver=self.id)
        self.tracker = Tracker(
            include=cfg.include, exclude=cfg.exclude, fingerprint_size=cfg.fingerprint_size,
            max_line_size=cfg.max_line_size, max_open=cfg.max_concurrent_files,
            start_at_end=cfg.start_at == "end", on_problem=self._problem, on_event=self._truncation,
        )
        self.checkpoints = Checkpoints(directory(settings.data_dir, self.id) / FILE_NAME, cfg.fingerprint_size)
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._watching = False
        self._task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._dirty = False
        self._warned_many = False
        self._save_failing = False

    async def on_start(self, host: Host) -> None:
        """Load the checkpoint, start the loop (and the watcher); returns at once."""
        try:
            entries = self.checkpoints.load()
        except ValueError:
            self.log.warning("checkpoint %s is not readable; set aside as .corrupt, starting afresh",
                             self.checkpoints.path)
            entries = None
        if entries is not None:  # not the very first start: files new since are read from their start
            self.tracker.restore(entries)
            self.tracker.start_at_end = False
        self._task = self.spawn(self._run(), "tail files")
        if self.cfg.watch == "auto":
            self._watch_task = self.spawn(self._watch(), "watch files")

    async def on_shutdown(self) -> None:
        """Stop at a line boundary, save where reading stands, close every file."""
        self._stopping.set()
        self._wake.set()
        for task in (self._watch_task, self._task):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._watch_task = None
        with contextlib.suppress(OSError):
            self._save()
        for t in list(self.tracker.files):
            self.tracker.close(t)
        self._files_open.set(0)

    # -- the loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping.is_set():
            first = self.tracker.first_scan
            try:
                await asyncio.to_thread(self.tracker.scan)
            except OSError as exc:
                self.log.warning("scan failed: %s; retrying at the next poll", describe_exception(exc))
            # Written after the first scan even with nothing read: where start_at: end started must
            # survive a crash, or lines written while down would be skipped as on a first start.
            self._dirty = self._dirty or first
            self._gauges()
            await self._read_all()
            if self._dirty and not self._stopping.is_set():
                await self._save_async()
            await self._sleep()

    def _gauges(self) -> None:
        self._files_open.set(self.tracker.open_count)
        self._files_tracked.set(len(self.tracker.files))
        if self.tracker.matched > self.cfg.max_concurrent_files and not self._warned_many:
            self._warned_many = True
            self.log.warning("%d files match; reading at most max_concurrent_files=%d at a time",
                             self.tracker.matched, self.cfg.max_concurrent_files)

    async def _sleep(self) -> None:
        timeout = max(self.cfg.poll_interval, WATCHED_POLL) if self._watching else self.cfg.poll_interval
        if any(t.splitter.pending for t in self.tracker.files):
            timeout = min(timeout, self.cfg.force_flush_period / 2)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    async def _read_all(self) -> None:
        """Read every file to its current end, handing on full batches as they fill."""
        batch = self._new_batch()
        progress = True
        while progress and not self._stopping.is_set():
            progress = False
            for t in list(self.tracker.files):
                if t.fd is None and t.backlog and self.tracker.open_count < self.cfg.max_concurrent_files:
                    self.tracker.ensure_open(t)
                lines = self._read_chunk(t) if t.fd is not None else []
                progress = progress or bool(lines)
                flushed = self._flush_idle(t)
                if flushed is not None:
                    lines.append(flushed)
                for line in lines:
                    batch.add(t, line.data, offset=line.start, end=line.end, truncated=line.truncated)
                    if batch.lines >= self.cfg.max_batch_lines:
                        if not await self._deliver(batch):
                            return  # stopping: what was not accepted is read again at the next start
                        batch = self._new_batch()
            self.tracker.limit_open()
            if any(t.truncated for t in self.tracker.files):
                self._wake.set()  # scan now: its copy (copytruncate) is where the rest of it is
                break
        if batch.lines and not self._stopping.is_set():
            await self._deliver(batch)
        for t in [t for t in self.tracker.files if t.unseen >= KEEP_GENERATIONS and self._read_to_end(t)]:
            self.tracker.forget(t)  # gone from every path and read to its end
            self._dirty = True

    def _read_to_end(self, t: Tracked) -> bool:
        """Whether nothing of ``t`` is left to read (a closed file that is gone cannot be read any more)."""
        if t.splitter.pending or t.committed != t.splitter.pos:
            return False
        if t.fd is None:
            return True
        try:
            return os.fstat(t.fd).st_size <= t.splitter.pos
        except OSError:
            return True

    def _read_chunk(self, t: Tracked) -> list[Line]:
        """The lines the next chunk of ``t`` completes (none at its end, or when it was truncated)."""
        assert t.fd is not None
        try:
            size = os.fstat(t.fd).st_size
            pos = t.splitter.pos
            if size < pos:
                t.truncated = True
                self._wake.set()  # the next scan looks for its copy
                return []
            if size == pos:
                return []
            chunk = os.pread(t.fd, min(CHUNK, size - pos), pos)
            if not self.tracker.same_file(t):  # rewritten since: what was read may not be its content
                t.truncated = True
                self._wake.set()
                return []
        except OSError as exc:
            self._problem(t.path, "io_error", log_it=True, error=exc)
            self.tracker.close(t)
            return []
        t.idle_since = time.monotonic()
        lines = t.splitter.feed(chunk)
        if t.fp_len < self.cfg.fingerprint_size:
            with contextlib.suppress(OSError):
                self.tracker.refresh_fingerprint(t)
        return lines

    def _flush_idle(self, t: Tracked) -> Line | None:
        """A partial last line, once the writer left it alone for ``force_flush_period`` (or the file is gone).

        Only at the file's end: a file with more to read, or one whose truncation is being followed
        (its rest may be in a copy), keeps its partial line.
        """
        if not t.splitter.pending or t.truncated or t.fd is None:
            return None
        gone = t.unseen >= KEEP_GENERATIONS
        if not gone and time.monotonic() - t.idle_since < self.cfg.force_flush_period:
            return None
        try:
            at_end = os.fstat(t.fd).st_size == t.splitter.pos and self.tracker.same_file(t)
        except OSError:
            return None
        return t.splitter.flush() if at_end else None

    def _new_batch(self) -> RecordBatch:
        return RecordBatch(self.decoder, time.time_ns())

    # -- handing on -----------------------------------------------------------------------------

    async def _deliver(self, batch: RecordBatch) -> bool:
        """Hand on ``batch``; commit its offsets once accepted. False when stopped while refused."""
        for signal, message in batch.messages.items():
            items = count_items(signal, message)
            if items and not await self._deliver_one(signal, message, items):
                return False
        self._count(batch)
        for t, end in batch.ends.items():
            t.committed = end
        self._dirty = True
        await self._save_async()
        return True

    async def _deliver_one(self, signal: Signal, message: Any, items: int) -> bool:
        consumer = self.consumers[signal]
        while True:
            try:
                await consumer.consume(Batch(signal, message, items=items))
            except (RefusedError, RetryableError) as exc:
                if self._stopping.is_set():
                    self.counters.refused(signal, "shutting_down", items)
                    self.log.info("shutdown: %d %s not accepted; they are read again at the next start",
                                  items, signal.value)
                    return False
                delay = min(max(exc.retry_after or MIN_RETRY_DELAY, MIN_RETRY_DELAY), MAX_RETRY_DELAY)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                continue
            except Exception as exc:  # a failing processor or exporter: retrying cannot help
                self.counters.refused(signal, "internal_error", items)
                self.log.error("dropped %d %s: %s in the pipeline", items, signal.value, describe_exception(exc))
                return True
            self.counters.accepted(signal).inc(items)
            return True

    def _count(self, batch: RecordBatch) -> None:
        self._lines_read.inc(batch.lines)
        if batch.malformed:
            self.counters.malformed(batch.malformed)
            self.counters.refused(Signal.LOGS, "malformed", batch.malformed)
        for signal, items in batch.no_pipeline.items():
            self.counters.refused(signal, "no_pipeline", items)
        if batch.repairs:
            self.counters.repaired(Signal.LOGS, batch.repairs)

    def _save(self) -> None:
        self.checkpoints.save(self.tracker.files)
        self._dirty = False

    async def _save_async(self) -> None:
        try:
            await asyncio.to_thread(self._save)
        except OSError as exc:
            if not self._save_failing:  # once per stretch of failures, not once per batch
                self.log.warning("cannot write the checkpoint %s: %s; lines may be read again after a restart",
                                 self.checkpoints.path, describe_exception(exc))
            self._save_failing = True
        else:
            if self._save_failing:
                self.log.info("checkpoint written again")
            self._save_failing = False

    # -- events ---------------------------------------------------------------------------------

    def _problem(self, path: str, kind: str, log_it: bool, error: BaseException | None = None) -> None:
        self.settings.metrics.file_tail_file_errors.labels(receiver=self.id, reason=kind).inc()
        if log_it:
            self.log.warning("skipped %s: %s%s", path, kind.replace("_", " "),
                             f" ({describe_exception(error)})" if error is not None else "")

    def _truncation(self, kind: str) -> None:
        self.settings.metrics.file_tail_truncations.labels(receiver=self.id, kind=kind).inc()

    async def _watch(self) -> None:
        roots, recursive = watch_roots(self.tracker.include)
        if not roots:
            return
        try:
            import watchfiles  # noqa: PLC0415 - only when notifications are on

            self._watching = True
            async for _changes in watchfiles.awatch(
                *roots, stop_event=self._stopping, debounce=50, step=20, watch_filter=None,
                recursive=recursive, ignore_permission_denied=True,
            ):
                self._wake.set()
        except Exception as exc:
            self.log.warning("file notifications unavailable (%s); polling every %ss",
                             describe_exception(exc), self.cfg.poll_interval)
        finally:
            self._watching = False


def watch_roots(patterns: list[str]) -> tuple[list[str], bool]:
    """The existing directories to watch, and whether to watch them recursively.

    A pattern's root is its directory part before the first wildcard; a wildcard in a directory
    part needs a recursive watch.
    """
    roots: set[str] = set()
    recursive = False
    for pattern in patterns:
        parts = Path(pattern).parts
        fixed: list[str] = []
        for part in parts[:-1]:
            if glob.has_magic(part):
                recursive = True
                break
            fixed.append(part)
        root = str(Path(*fixed)) if fixed else "."
        if Path(root).is_dir():
            roots.add(root)
    return sorted(roots), recursive
