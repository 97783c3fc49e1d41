"""The disk queue: an exporter's sending queue kept in segment files (``sending_queue.storage: disk``).

The files are :mod:`.segments`'; this is the event-loop side, which owns all the state and hands
blocking I/O to two threads of its own (a writer, and a reader that also acknowledges and deletes).

Admission follows the fan-out's reserve -> persist -> commit. :meth:`DiskQueue.enqueue` checks the
size cap (``max_size``: refused with ``queue_full`` when it would be passed), :meth:`DiskQueue.persist`
returns once the batch is written *and fsynced*, so the sender is acknowledged only for data that
survives a crash; :meth:`DiskQueue.commit` makes it deliverable, :meth:`DiskQueue.release` drops a
batch that another exporter of the pipeline refused (marked done on disk, never sent). A write that
fails (a full disk: ``disk_full``; any other I/O error: ``disk_error``) refuses its batches,
retryably, and is cut off the file, so what was stored before stays whole.

Group commit: one write is in flight at a time. Batches that arrive while it is being written and
fsynced wait and go together in the next write, with one fsync for all of them, so concurrent
senders share the cost of the fsync and throughput holds.

Delivery: consumers :meth:`DiskQueue.take` records in the order they were written, so what a
previous run stored goes first, in its order. A record is marked done (:meth:`DiskQueue.done`)
only after its final outcome; a record that is not done when the process stops (in flight at a
crash, or kept at shutdown) is sent again by the next start. With the batch still in memory the
consumer gets it from there (up to ``queue_size`` items are kept); otherwise it is read back.

Space: a segment is deleted once it no longer grows and all its records are done. The segment
being written is retired early when all its records are done and it has reached a quarter of the
segment size, or when the cap needs the room.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import os
import urllib.parse
from array import array
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from hashlib import blake2b
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge

from obs_pipeline.batch import Batch
from obs_pipeline.engine.storage.segments import (
    ACK_SYNC_INTERVAL,
    FULL_ERRNOS,
    RECORD_HEADER,
    SEGMENT_HEADER,
    QueueLockedError,
    ScannedSegment,
    SegmentFiles,
    SegmentWrite,
)
from obs_pipeline.errors import RefusedError, StartupError, describe_exception
from obs_pipeline.signals import Signal
from obs_pipeline.telemetry.logs import ComponentLogger

__all__ = ["DiskQueue", "Record", "Ticket", "queue_directory"]

SIGNAL_CODES = {Signal.TRACES: 1, Signal.METRICS: 2, Signal.LOGS: 3}
CODE_SIGNALS = {code: signal for signal, code in SIGNAL_CODES.items()}
MAX_SEGMENT = 16 << 20
MIN_SEGMENT = 4 << 10
READ_AHEAD = 4 << 20  # bytes read back at once, the record a consumer waits for and those right after it
RETIRE_SHARE = 4  # a fully done segment being written is retired once it holds 1/4 of a segment
FULL_RETRY_AFTER = 1.0  # seconds, the hint a refused sender gets
MAX_NAME = 120  # longer exporter IDs get a shortened directory name with a hash

_T = TypeVar("_T")


def queue_directory(data_dir: Path, exporter_id: str) -> Path:
    """``<data_dir>/exporters/<id>``, the ID percent-encoded (``otlp/backend`` -> ``otlp%2Fbackend``).

    Percent-encoding keeps different IDs in different directories; an ID too long for a file name
    is cut and given a hash of the whole.
    """
    name = urllib.parse.quote(exporter_id, safe="")
    if len(name) > MAX_NAME:
        name = f"{name[:MAX_NAME - 17]}-{blake2b(exporter_id.encode(), digest_size=8).hexdigest()}"
    return data_dir / "exporters" / name


class _State(enum.Enum):
    WRITING = "writing"  # waiting for its group, or being written
    STORED = "stored"  # written and synced, not committed yet
    COMMITTED = "committed"
    RELEASED = "released"  # the batch is not coming: discard it (when it is written)


class Ticket:
    """One batch on its way into the queue: enqueued, persisted, then committed or released."""

    __slots__ = ("batch", "future", "offset", "payload", "ref", "size", "state")

    def __init__(self, batch: Batch, payload: bytes, future: asyncio.Future[None]) -> None:
        self.batch = batch
        self.payload = payload
        self.size = RECORD_HEADER.size + len(payload)
        self.future = future
        self.state = _State.WRITING
        self.offset = 0
        self.ref: tuple[_Segment, int] | None = None


@dataclass(eq=False)
class _Segment:
    number: int
    offsets: array[int] = field(default_factory=lambda: array("Q"))
    sizes: array[int] = field(default_factory=lambda: array("I"))
    items: array[int] = field(default_factory=lambda: array("I"))
    done: bytearray = field(default_factory=bytearray)
    file_bytes: int = 0
    done_count: int = 0
    writing: int = 0  # records planned into it whose write has not landed
    sealed: bool = False  # no more records will be appended
    deleted: bool = False

    @property
    def finished(self) -> bool:
        return self.sealed and not self.writing and not self.deleted and self.done_count == len(self.offsets)


@dataclass(frozen=True, eq=False)
class Record:
    """A stored batch handed to a consumer: report its final outcome with :meth:`DiskQueue.done`."""

    batch: Batch
    segment: _Segment
    index: int


_PENDING = object()  # the next record is written but its batch is not committed yet


class DiskQueue:
    """The disk-backed queue of one exporter. See the module docstring."""

    def __init__(
        self, directory: Path, *, max_size: int, memory_items: int, log: ComponentLogger,
        corrupt: Counter, stored_bytes: Gauge, segment_size: int | None = None,
    ) -> None:
        self.directory = directory
        self._max_size = max_size
        self._segment_size = segment_size or max(MIN_SEGMENT, min(MAX_SEGMENT, max_size // 16))
        self._memory_items = memory_items
        self.log = log
        self._corrupt = corrupt
        self._stored_gauge = stored_bytes
        self._files = SegmentFiles(directory)
        self._segments: dict[int, _Segment] = {}  # in number order
        self._active: _Segment | None = None  # the segment being appended to
        self._next_number = 1
        self._cursor = (0, 0)  # (segment number, index): where take() looks next
        self._pending: set[tuple[int, int]] = set()  # written, not committed or released yet
        self._cache: dict[tuple[int, int], Batch] = {}
        self._reading: dict[tuple[int, int], asyncio.Future[None]] = {}  # being read ahead
        # Whether every record not taken yet is in memory, so a new one may be kept there too (else it
        # would take the room of the records that go first, and be read back anyway).
        self._in_memory = True
        self._cached_items = 0
        self._writes: list[Ticket] = []  # waiting for the next group
        self._in_flight = 0  # records of the group being written
        self.group_writes = 0  # writes (each one fsync) so far: how well group commit groups
        self._bytes = 0  # on disk, plus enqueued and being written: what the cap is checked against
        self._stored = 0  # on disk
        self._live_records = 0  # on disk and not done
        self.live_items = 0  # committed (or stored by a previous run) and not done: waiting or in flight
        self._changed = asyncio.Event()
        self._write_wake = asyncio.Event()
        self._stopping = False
        self._closed = False
        self._failing: str | None = None  # the last write error, logged once until a write succeeds
        self._writer: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._write_task: asyncio.Task[None] | None = None
        self._sync_timer: asyncio.TimerHandle | None = None

    # -- lifecycle ------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Lock the directory and load what a previous run stored (nothing is sent yet).

        Raises:
            StartupError: the directory cannot be used (another process has it, or an OS error).
        """
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="disk-queue-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="disk-queue-reader")
        try:
            opened = await self._run(self._reader, self._files.open)
        except OSError as exc:
            await self._run(self._reader, self._files.close)
            self._shutdown_threads()
            reason = exc.strerror or type(exc).__name__
            what = reason if isinstance(exc, QueueLockedError) else f"cannot be used: {reason}"
            raise StartupError(f"sending_queue: the disk queue directory {self.directory} {what}") from exc
        self._next_number = opened.next_number
        for number, stretches, torn in opened.damaged:
            self._corrupt.inc(stretches)
            self.log.warning("disk queue segment %d: skipped %d damaged stretch(es) that were not whole records%s",
                             number, stretches, " (the last one a write cut short at the end)" if torn else "")
        for name in opened.left_alone:
            self.log.error("disk queue: %s is of a format this version does not read: left alone, not sent", name)
        for scanned in opened.segments:
            self._load(scanned)
        self._in_memory = not self._segments
        self._cursor = (next(iter(self._segments), self._next_number), 0)
        self._stored_gauge.set(self._stored)

    def _load(self, scanned: ScannedSegment) -> None:
        seg = _Segment(scanned.number, scanned.offsets, scanned.sizes, scanned.items, scanned.done,
                       file_bytes=scanned.file_bytes, done_count=sum(scanned.done), sealed=True)
        self._segments[seg.number] = seg
        self._stored += seg.file_bytes
        self._bytes += seg.file_bytes
        for index, done in enumerate(seg.done):
            if not done:
                self._live_records += 1
                self.live_items += seg.items[index]

    def start(self, spawn: Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]) -> None:
        """Start the writer task (``spawn`` supervises it: the exporter's)."""
        self._write_task = spawn(self._write_loop(), "disk queue writer")

    def stop_taking(self) -> None:
        """Shutdown began: :meth:`take` returns None once nothing is ready to be taken."""
        self._stopping = True
        self._changed.set()

    async def close(self) -> None:
        """Finish the write in flight, refuse what waits, sync acknowledgements, close the files."""
        if self._closed:
            return
        self._closed = True
        if self._sync_timer is not None:
            self._sync_timer.cancel()  # close syncs
        self.stop_taking()
        self._write_wake.set()
        if self._write_task is not None:
            await asyncio.gather(self._write_task, return_exceptions=True)
        for ticket in self._writes:
            self._refuse(ticket, RefusedError("shutting_down"))
        self._writes.clear()
        try:
            if self._reader is not None:
                # Shielded: a caller's deadline must not cancel this half done and leave the lock held.
                await asyncio.shield(self._run(self._reader, self._files.close))
        finally:
            self._shutdown_threads()

    def _shutdown_threads(self) -> None:
        for pool in (self._writer, self._reader):
            if pool is not None:
                pool.shutdown(wait=False)

    # -- admission ----------------------------------------------------------------------------------

    def has_room(self) -> bool:
        """Whether a batch may be reserved: the cap is not reached yet, or nothing is stored."""
        return not self._stopping and (self._bytes < self._max_size or self._empty())

    def enqueue(self, batch: Batch) -> Ticket:
        """Queue ``batch`` for the next write.

        Raises:
            RefusedError: ``queue_full`` (it would pass ``max_size``), ``shutting_down``.
        """
        if self._stopping:
            raise RefusedError("shutting_down")
        payload = batch.serialized()
        size = RECORD_HEADER.size + len(payload)
        if self._bytes + size > self._max_size and not self._empty():
            raise RefusedError("queue_full", retry_after=FULL_RETRY_AFTER)
        ticket = Ticket(batch, payload, asyncio.get_running_loop().create_future())
        self._writes.append(ticket)
        self._bytes += ticket.size
        self._write_wake.set()
        return ticket

    async def persist(self, ticket: Ticket) -> None:
        """Return once the batch is written and synced.

        Raises:
            RefusedError: the write failed (``disk_full``, ``disk_error``) or the queue closed first.
        """
        await asyncio.shield(ticket.future)

    def commit(self, ticket: Ticket) -> None:
        """The persisted batch is admitted: it may be delivered now."""
        assert ticket.state is _State.STORED, "commit needs a persisted batch"
        assert ticket.ref is not None
        ticket.state = _State.COMMITTED
        seg, index = ticket.ref
        self._pending.discard((seg.number, index))
        self.live_items += seg.items[index]
        self._changed.set()

    def release(self, ticket: Ticket) -> None:
        """The batch is not coming (another exporter refused it): never send it."""
        if ticket.state is _State.WRITING:
            ticket.state = _State.RELEASED  # discarded when its write lands
        elif ticket.state is _State.STORED:
            ticket.state = _State.RELEASED
            assert ticket.ref is not None
            seg, index = ticket.ref
            self._pending.discard((seg.number, index))
            self._uncache((seg.number, index), seg.items[index])
            self._changed.set()
            self._finish(seg, index, counted=False)

    def _empty(self) -> bool:
        return not self._live_records and not self._writes and not self._in_flight

    # -- the writer ---------------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            if not self._writes:
                if self._closed:
                    return
                self._write_wake.clear()
                await self._write_wake.wait()
                continue
            group: list[Ticket] = []
            for ticket in self._writes:
                if ticket.state is _State.RELEASED:  # given up before it was written: nothing to do
                    self._bytes -= ticket.size
                    ticket.future.set_result(None)
                else:
                    group.append(ticket)
            self._writes = []
            if group:
                plan, places = self._plan(group)
                self._in_flight = len(group)
                self.group_writes += 1
                try:
                    written, error, seal = await self._run(self._writer, self._files.write, plan)
                finally:
                    self._in_flight = 0
                self._landed(group, places, written, error, seal=seal)

    def _plan(self, group: list[Ticket]) -> tuple[list[SegmentWrite], list[_Segment]]:
        """Place each ticket in the segment being written, or in a new one when that one is full."""
        self._retire_done_active()
        plan: list[SegmentWrite] = []
        places: list[_Segment] = []
        seg = self._active
        end = seg.file_bytes if seg is not None else 0
        for ticket in group:
            if seg is None or seg.sealed or (end > SEGMENT_HEADER.size and end + ticket.size > self._segment_size):
                if seg is not None:
                    seg.sealed = True
                    if seg.finished:
                        self._delete_later(seg)
                seg = _Segment(self._next_number)
                self._next_number += 1
                plan.append(SegmentWrite(seg.number, 0, []))
                end = SEGMENT_HEADER.size
            elif not plan or plan[-1].number != seg.number:
                plan.append(SegmentWrite(seg.number, end, []))
            plan[-1].records.append((ticket.payload, ticket.batch.items, SIGNAL_CODES[ticket.batch.signal]))
            ticket.offset = end
            end += ticket.size
            seg.writing += 1
            places.append(seg)
        self._active = seg
        return plan, places

    def _retire_done_active(self) -> None:
        """Seal the segment being written when all its records are done and its space is worth taking back."""
        seg = self._active
        if seg is None or seg.writing or seg.done_count != len(seg.offsets) or not seg.offsets:
            return
        if seg.file_bytes * RETIRE_SHARE >= self._segment_size or self._bytes > self._max_size:
            seg.sealed = True
            self._active = None
            self._delete_later(seg)

    def _landed(self, group: list[Ticket], places: list[_Segment], written: int, error: OSError | None,
                *, seal: bool) -> None:
        failed_seg: _Segment | None = None
        for position, (ticket, seg) in enumerate(zip(group, places, strict=True)):
            seg.writing -= 1
            if position >= written:
                failed_seg = failed_seg or seg
                self._bytes -= ticket.size
                self._refuse(ticket, _refusal(error))
                continue
            if seg.number not in self._segments:
                self._segments[seg.number] = seg
                seg.file_bytes = SEGMENT_HEADER.size
                self._stored += SEGMENT_HEADER.size
                self._bytes += SEGMENT_HEADER.size
            index = len(seg.offsets)
            seg.offsets.append(ticket.offset)
            seg.sizes.append(ticket.size)
            seg.items.append(ticket.batch.items)
            seg.done.append(0)
            seg.file_bytes += ticket.size
            self._stored += ticket.size
            self._live_records += 1
            ticket.ref = (seg, index)
            if ticket.state is _State.RELEASED:
                self._finish(seg, index, counted=False)
            else:
                ticket.state = _State.STORED
                self._pending.add((seg.number, index))
                if self._in_memory and self._cached_items + ticket.batch.items <= self._memory_items:
                    self._cache[(seg.number, index)] = ticket.batch
                    self._cached_items += ticket.batch.items
                else:
                    self._in_memory = False  # read back when its turn comes
            ticket.future.set_result(None)
        if failed_seg is not None and (seal or failed_seg.number not in self._segments):
            failed_seg.sealed = True  # cut off (a new one was removed): the next write starts a new segment
            if self._active is failed_seg:
                self._active = None
        for seg in {id(s): s for s in places}.values():
            if seg.finished:
                self._delete_later(seg)
        self._report_write(error)
        self._stored_gauge.set(self._stored)
        self._changed.set()

    def _report_write(self, error: OSError | None) -> None:
        if error is None:
            if self._failing is not None:
                self.log.info("the disk queue can write again")
            self._failing = None
            return
        what = errno.errorcode.get(error.errno or 0, type(error).__name__)
        if self._failing != what:
            self.log.error("cannot write to the disk queue (%s: %s): refusing data until it can", what,
                           os.strerror(error.errno) if error.errno else "I/O error")
        self._failing = what

    def _refuse(self, ticket: Ticket, error: RefusedError) -> None:
        if ticket.future.done():
            return
        if ticket.state is _State.RELEASED:
            ticket.future.set_result(None)  # nobody waits for it any more
        else:
            ticket.future.set_exception(error)

    # -- delivery -----------------------------------------------------------------------------------

    async def take(self) -> Record | None:
        """The next record in write order; waits for one. None once :meth:`stop_taking` and nothing is ready."""
        while True:
            head = self._head()
            if head is None and not self._reading:
                self._in_memory = True  # everything written was taken: memory may hold new records again
            if not isinstance(head, tuple):
                if self._stopping:
                    return None
                self._changed.clear()
                await self._changed.wait()
                continue
            seg, index = head
            self._cursor = (seg.number, index + 1)
            ref = (seg.number, index)
            while ref not in self._cache and ref in self._reading:  # another consumer's read ahead has it
                await asyncio.wait([self._reading[ref]])
            batch = self._cache.get(ref)
            if batch is not None:
                self._uncache(ref, seg.items[index])
                return Record(batch, seg, index)
            record = await self._read(seg, index)
            if record is not None:
                return record

    async def _read(self, seg: _Segment, index: int) -> Record | None:
        """Read the record at ``index`` back, and the ones after it into the cache while they fit (read ahead)."""
        assert self._reader is not None
        indexes = self._ahead(seg, index)
        reading: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for i in indexes[1:]:
            self._reading[(seg.number, i)] = reading
        try:
            got = await self._run(self._reader, self._files.read_many, seg.number,
                                  [(seg.offsets[i], seg.sizes[i]) for i in indexes])
        except OSError as exc:
            # Leaving it would stall the queue (its segment never finishes, its space never frees):
            # give the record up, counted with the damaged ones, and go on with the next.
            self.log.error("cannot read a record of disk queue segment %d (%s): given up and counted as corrupt",
                           seg.number, exc.strerror or type(exc).__name__)
            got = [None]
        finally:
            for i in indexes[1:]:
                self._reading.pop((seg.number, i), None)
            reading.set_result(None)
        for i, record in zip(indexes[1:], got[1:], strict=False):
            if record is not None and not seg.done[i]:  # a damaged one is counted when its turn comes
                self._cache[(seg.number, i)] = Batch.from_wire(CODE_SIGNALS[record[2]], record[0], items=record[1])
                self._cached_items += seg.items[i]
        if not got:
            return None
        if got[0] is None:
            self._corrupt.inc()
            self.log.error("a record of disk queue segment %d no longer matches its checksum: skipped", seg.number)
            self._finish(seg, index, counted=True)
            return None
        payload, items, code = got[0]
        return Record(Batch.from_wire(CODE_SIGNALS[code], payload, items=items), seg, index)

    def _ahead(self, seg: _Segment, index: int) -> list[int]:
        """``index`` and the records right after it that may be read with it.

        Adjacent in the file (no damaged stretch between), not done, not pending, not in memory, within
        :data:`READ_AHEAD` bytes and the memory bound.
        """
        indexes = [index]
        size, items = seg.sizes[index], self._cached_items
        for i in range(index + 1, len(seg.offsets)):
            ref = (seg.number, i)
            if (seg.offsets[i] != seg.offsets[i - 1] + seg.sizes[i - 1]
                    or seg.done[i] or ref in self._pending or ref in self._cache or ref in self._reading
                    or size + seg.sizes[i] > READ_AHEAD or items + seg.items[i] > self._memory_items):
                break
            indexes.append(i)
            size += seg.sizes[i]
            items += seg.items[i]
        return indexes

    def _head(self) -> tuple[_Segment, int] | object | None:
        number, index = self._cursor
        while True:
            seg = self._segments.get(number)
            if seg is None or index >= len(seg.offsets):
                if seg is not None and (not seg.sealed or seg.writing):
                    break
                later = [n for n in self._segments if n > number]
                if not later:
                    break
                number, index = later[0], 0
                continue
            if seg.done[index]:
                index += 1
                continue
            self._cursor = (number, index)
            return _PENDING if (number, index) in self._pending else (seg, index)
        self._cursor = (number, index)
        return None

    async def done(self, record: Record) -> None:
        """The record's final outcome is known (sent, or given up on and counted): mark it done on disk.

        Returns once the mark is written (not synced: a crash of the process keeps it, a power loss
        may lose the last second of marks, whose records are then sent again).
        """
        future = self._finish(record.segment, record.index, counted=True)
        if future is not None:
            await asyncio.wait([future])  # a failure is logged by the future's callback, not raised

    def _finish(self, seg: _Segment, index: int, *, counted: bool) -> asyncio.Future[Any] | None:
        """Mark a record done in memory, and on disk in the reader thread (deleting the segment after its last)."""
        if seg.done[index]:
            return None
        seg.done[index] = 1
        seg.done_count += 1
        self._live_records -= 1
        if counted:
            self.live_items -= seg.items[index]
        if seg.finished:
            return self._delete_later(seg)
        self._sync_soon()
        return self._background(self._files.ack, seg.number, [index])

    def _delete_later(self, seg: _Segment) -> asyncio.Future[Any] | None:
        seg.deleted = True
        self._segments.pop(seg.number, None)
        self._stored -= seg.file_bytes
        self._bytes -= seg.file_bytes
        self._stored_gauge.set(self._stored)
        self._sync_soon()
        return self._background(self._files.delete, seg.number)

    def _sync_soon(self) -> None:
        """Sync done marks and deletions within about a second (a power loss then repeats at most that much)."""
        if self._sync_timer is None and not self._closed:
            self._sync_timer = asyncio.get_running_loop().call_later(ACK_SYNC_INTERVAL, self._sync_now)

    def _sync_now(self) -> None:
        self._sync_timer = None
        if not self._closed:
            self._background(self._files.sync_acks)

    def _uncache(self, ref: tuple[int, int], items: int) -> None:
        if self._cache.pop(ref, None) is not None:
            self._cached_items -= items

    # -- threads ------------------------------------------------------------------------------------

    def _background(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any] | None:
        """Run ``fn`` in the reader thread; a failure is logged (records are sent again, never lost).

        After :meth:`close` nothing is scheduled (the threads are gone): the mark stays in memory
        only, and the record is sent again on the next start, which is the documented duplicate.
        """
        if self._closed or self._reader is None:
            return None
        future = asyncio.get_running_loop().run_in_executor(self._reader, fn, *args)
        future.add_done_callback(self._log_failure)
        return future

    def _log_failure(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            self.log.warning("disk queue bookkeeping failed (%s): finished records may be sent again after a "
                             "restart", describe_exception(error))

    @staticmethod
    async def _run(pool: ThreadPoolExecutor | None, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)


def _refusal(error: OSError | None) -> RefusedError:
    if error is not None and error.errno in FULL_ERRNOS:
        return RefusedError("disk_full", retry_after=FULL_RETRY_AFTER)
    return RefusedError("disk_error", retry_after=FULL_RETRY_AFTER)
