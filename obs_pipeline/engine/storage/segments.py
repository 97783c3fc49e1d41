r"""The disk queue's files: segments of checksummed records, their acknowledgement files, a lock.

Every method of :class:`SegmentFiles` does blocking file I/O. The disk queue
(:mod:`obs_pipeline.engine.storage.disk`) calls them from its two worker threads, never from
the event loop: the *writer* thread appends and fsyncs (:meth:`SegmentFiles.write`), the *reader*
thread opens, scans, reads, acknowledges and deletes. Each thread has file descriptors of its own.

A queue directory (one per exporter)::

    lock                        flock()ed while a process uses the queue; holds its pid
    00000000000000000007.seg    a segment: header, then records, appended in groups, each fsynced
    00000000000000000007.ack    which records of segment 7 are done (sent, or given up on for good)

Segment header, 8 bytes: ``b"OBSQ"``, format version (u16, little-endian, 1), 2 reserved bytes.
A file with another version is left alone (a newer obs-pipeline wrote it) and is not read.

Record, a 20-byte header then the payload (the batch's OTLP protobuf bytes)::

    magic    4  b"\xa9QR1" (where records start: lets a scan find the next record after damage)
    length   u32  payload bytes
    items    u32  spans, data points or log records in the payload
    signal   u8   1 traces, 2 metrics, 3 logs
    reserved 3
    crc32    u32  zlib.crc32 of bytes 4..16 of this header and the payload

A record whose checksum does not match, or bytes that do not form a whole record (a torn write at
a crash, a damaged file), are skipped: the scan looks for the next magic that starts a valid record
and counts each damaged stretch once. Nothing about a damaged file stops the queue from starting.

Acknowledgement file: 8-byte entries ``index u32, crc32(index) u32``, appended when a record is
done, synced (with the directory, after deletions) at most about a second later, and on close. A torn or damaged entry is ignored (its record
is sent again: a duplicate, never a loss). A segment is deleted, then its ``.ack`` file, once it is
sealed (no longer written to) and all its records are done; a crash between the two leaves an
``.ack`` file without a segment, which the next start deletes.

Segments are never appended to after a restart: a new process writes a new segment.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import time
import zlib
from array import array
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ACK",
    "RECORD_HEADER",
    "SEGMENT_HEADER",
    "FormatError",
    "Opened",
    "QueueLockedError",
    "ScannedSegment",
    "SegmentFiles",
    "SegmentWrite",
    "encode_record",
]

FORMAT_VERSION = 1
SEGMENT_MAGIC = b"OBSQ"
SEGMENT_HEADER = struct.Struct("<4sHH")
RECORD_MAGIC = b"\xa9QR1"
RECORD_HEADER = struct.Struct("<4sIIB3xI")
_CHECKED = struct.Struct("<IIB3x")  # the header bytes the checksum covers (4..16)
ACK = struct.Struct("<II")
_INDEX = struct.Struct("<I")
SIGNAL_CODES = (1, 2, 3)  # traces, metrics, logs: see the disk queue
MAX_PAYLOAD = 1 << 31
ACK_SYNC_INTERVAL = 1.0  # seconds: acknowledgement files are fsynced at most this far apart
NAME_DIGITS = 20
SEGMENT_SUFFIX = ".seg"
ACK_SUFFIX = ".ack"
IOV_MAX = 1024  # buffers per pwritev call (Linux's limit)
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})  # the disk (or our file size limit) is full


class QueueLockedError(OSError):
    """Another process holds the queue directory's lock."""


class FormatError(Exception):
    """A segment written in a format version this code does not read."""


def encode_record(payload: bytes, items: int, signal: int) -> tuple[bytes, bytes]:
    """The header of one record and its payload, ready to be written one after the other."""
    checked = _CHECKED.pack(len(payload), items, signal)
    crc = zlib.crc32(payload, zlib.crc32(checked))
    return RECORD_HEADER.pack(RECORD_MAGIC, len(payload), items, signal, crc), payload


def _decode(data: bytes | memoryview, pos: int) -> tuple[int, int, int] | None:
    """``(size, items, signal)`` of the valid record at ``pos`` of ``data``, or None."""
    end = len(data)
    if pos + RECORD_HEADER.size > end:
        return None
    magic, length, items, signal, crc = RECORD_HEADER.unpack_from(data, pos)
    if magic != RECORD_MAGIC or signal not in SIGNAL_CODES or length > MAX_PAYLOAD:
        return None
    start = pos + RECORD_HEADER.size
    if start + length > end:
        return None
    checked = zlib.crc32(memoryview(data)[pos + 4: pos + 16])
    if zlib.crc32(memoryview(data)[start: start + length], checked) != crc:
        return None
    return RECORD_HEADER.size + length, items, signal


def segment_name(number: int, suffix: str = SEGMENT_SUFFIX) -> str:
    """``00000000000000000007.seg``: names sort in number order."""
    return f"{number:0{NAME_DIGITS}d}{suffix}"


@dataclass
class ScannedSegment:
    """What a start found in one segment file: its valid records and which of them are done."""

    number: int
    offsets: array[int] = field(default_factory=lambda: array("Q"))
    sizes: array[int] = field(default_factory=lambda: array("I"))
    items: array[int] = field(default_factory=lambda: array("I"))
    done: bytearray = field(default_factory=bytearray)
    file_bytes: int = 0
    damaged: int = 0  # stretches of bytes that were not a valid record, skipped
    torn_tail: bool = False  # the last of them ran to the end of the file (a write cut short)


def scan_segment(number: int, data: bytes) -> ScannedSegment:
    """Find every valid record of a segment file's bytes (after the header), skipping damage.

    Raises:
        FormatError: the header names a format version this code does not read.
    """
    found = ScannedSegment(number, file_bytes=len(data))
    pos = SEGMENT_HEADER.size
    if len(data) < SEGMENT_HEADER.size:
        found.damaged, found.torn_tail = (1, True) if data else (0, False)
        return found
    magic, version, _reserved = SEGMENT_HEADER.unpack_from(data, 0)
    if magic == SEGMENT_MAGIC and version != FORMAT_VERSION:
        raise FormatError(f"format version {version}")
    end = len(data)
    if magic != SEGMENT_MAGIC:  # the header and whatever follows it up to the first valid record: one stretch
        found.damaged += 1
        pos = _resync(data, 0)
        found.torn_tail = pos >= end
    while pos < end:
        decoded = _decode(data, pos)
        if decoded is None:
            found.damaged += 1
            pos = _resync(data, pos + 1)
            found.torn_tail = pos >= end
            continue
        size, items, _signal = decoded
        found.offsets.append(pos)
        found.sizes.append(size)
        found.items.append(items)
        pos += size
    found.done = bytearray(len(found.offsets))
    return found


def _resync(data: bytes, pos: int) -> int:
    """The offset of the next valid record at or after ``pos`` (the end of ``data`` if there is none)."""
    while True:
        pos = data.find(RECORD_MAGIC, pos)
        if pos < 0:
            return len(data)
        if _decode(data, pos) is not None:
            return pos
        pos += 1


@dataclass
class Opened:
    """What :meth:`SegmentFiles.open` found."""

    next_number: int  # above every segment file in the directory, left-alone ones included
    segments: list[ScannedSegment] = field(default_factory=list)  # with records not done, in number order
    damaged: list[tuple[int, int, bool]] = field(default_factory=list)  # (segment, damaged stretches, torn tail)
    left_alone: list[str] = field(default_factory=list)  # segments of another format version, not read


@dataclass
class SegmentWrite:
    """Records to append to one segment, at the offset the queue planned (0: a new segment)."""

    number: int
    offset: int
    records: list[tuple[bytes, int, int]]  # payload, items, signal code


class SegmentFiles:
    """The files of one queue directory. See the module docstring for which thread calls what."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock_fd: int | None = None
        self._dir_fd: int | None = None
        self._write_fds: dict[int, int] = {}  # writer thread
        self._read_fds: dict[int, int] = {}  # reader thread
        self._ack_fds: dict[int, int] = {}  # reader thread
        self._ack_dirty: set[int] = set()
        self._dir_dirty = False  # segments deleted since the last sync
        self._ack_synced = time.monotonic()

    # -- reader thread: open, scan, read, acknowledge, delete, close --------------------------------

    def open(self) -> Opened:
        """Create and lock the directory; scan what a previous run stored.

        Segments with nothing left to send, and ``.ack`` files whose segment is gone, are deleted.

        Raises:
            QueueLockedError: another process uses this directory.
            OSError: the directory cannot be created, locked or read.
        """
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock()
        self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        names = {p.name for p in self.directory.iterdir()}
        numbers = sorted(int(n[:NAME_DIGITS]) for n in names if _is_numbered(n, SEGMENT_SUFFIX))
        opened = Opened(next_number=max(numbers, default=0) + 1)
        for name in names:
            if _is_numbered(name, ACK_SUFFIX) and int(name[:NAME_DIGITS]) not in numbers:
                self._unlink(name)
        for number in numbers:
            data = (self.directory / segment_name(number)).read_bytes()
            try:
                scanned = scan_segment(number, data)
            except FormatError as exc:
                opened.left_alone.append(f"{segment_name(number)} ({exc})")
                continue
            if scanned.damaged:
                opened.damaged.append((number, scanned.damaged, scanned.torn_tail))
            self._read_acks(scanned)
            if all(scanned.done):
                self.delete(number)
            else:
                opened.segments.append(scanned)
        return opened

    def read(self, number: int, offset: int, size: int) -> tuple[bytes, int, int] | None:
        """``(payload, items, signal code)`` of one record, or None when it no longer checks out.

        Raises:
            OSError: the file cannot be read.
        """
        return self.read_many(number, [(offset, size)])[0]

    def read_many(self, number: int, places: list[tuple[int, int]]) -> list[tuple[bytes, int, int] | None]:
        """Records of one segment by ``(offset, size)``, in offset order, with one read of the stretch they span.

        Returns ``(payload, items, signal code)`` for each, or None for one that no longer checks out.

        Raises:
            OSError: the file cannot be read.
        """
        fd = self._read_fds.get(number)
        if fd is None:
            fd = os.open(self.directory / segment_name(number), os.O_RDONLY | os.O_CLOEXEC)
            self._read_fds[number] = fd
        start = places[0][0]
        data = os.pread(fd, places[-1][0] + places[-1][1] - start, start)
        view = memoryview(data)
        records: list[tuple[bytes, int, int] | None] = []
        for offset, size in places:
            pos = offset - start
            decoded = _decode(view[pos: pos + size], 0)
            if decoded is None or decoded[0] != size:
                records.append(None)
            else:
                records.append((bytes(view[pos + RECORD_HEADER.size: pos + size]), decoded[1], decoded[2]))
        return records

    def ack(self, number: int, indexes: list[int]) -> None:
        """Mark records of segment ``number`` done; fsync acknowledgements at most a second apart.

        Raises:
            OSError: the acknowledgement file cannot be written (the records are sent again after a restart).
        """
        fd = self._ack_fds.get(number)
        if fd is None:
            path = self.directory / segment_name(number, ACK_SUFFIX)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._ack_fds[number] = fd
        os.write(fd, b"".join(ACK.pack(i, zlib.crc32(_INDEX.pack(i))) for i in indexes))
        self._ack_dirty.add(number)
        if time.monotonic() - self._ack_synced >= ACK_SYNC_INTERVAL:
            self.sync_acks()

    def sync_acks(self) -> None:
        """Sync every acknowledgement file written, and the directory if segments were deleted, since the last sync.

        Raises:
            OSError: a sync failed.
        """
        for number in sorted(self._ack_dirty):
            fd = self._ack_fds.get(number)
            if fd is not None:
                os.fdatasync(fd)
        self._ack_dirty.clear()
        if self._dir_dirty and self._dir_fd is not None:
            os.fsync(self._dir_fd)
        self._dir_dirty = False
        self._ack_synced = time.monotonic()

    def delete(self, number: int) -> None:
        """Delete a segment whose records are all done: the segment first, then its ``.ack`` file."""
        for fds in (self._read_fds, self._ack_fds):
            fd = fds.pop(number, None)
            if fd is not None:
                os.close(fd)
        self._ack_dirty.discard(number)
        self._unlink(segment_name(number))
        self._unlink(segment_name(number, ACK_SUFFIX))
        self._dir_dirty = True

    def close(self) -> None:
        """Sync acknowledgements, close every file, release the lock. Never raises."""
        with contextlib.suppress(OSError):
            self.sync_acks()
        for fds in (self._read_fds, self._ack_fds, self._write_fds):
            for fd in fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            fds.clear()
        for held in (self._dir_fd, self._lock_fd):
            if held is not None:
                with contextlib.suppress(OSError):
                    os.close(held)  # closing the lock file's descriptor releases the flock
        self._dir_fd = self._lock_fd = None

    # -- writer thread ------------------------------------------------------------------------------

    def write(self, plan: list[SegmentWrite]) -> tuple[int, OSError | None, bool]:
        """Append each segment's records at its planned offset and fsync it, one segment after the other.

        Returns ``(records written and synced, the error that stopped the rest or None, whether the
        segment that failed must not be written to again)``. A failed append is truncated back,
        so the file keeps only whole records; if that or the fsync fails, the segment is to be
        sealed (what the file holds past its last good sync is unknown).
        """
        written = 0
        for part in plan:
            fd, offset = self._write_fds.get(part.number), part.offset
            new = offset == 0
            chunks: list[bytes] = [SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, 0)] if new else []
            for payload, items, signal in part.records:
                chunks.extend(encode_record(payload, items, signal))
            try:
                if fd is None:
                    assert new, "only a new segment has no open file"
                    fd = self._create(part.number)
                _pwrite_all(fd, chunks, offset)
            except OSError as exc:
                return written, exc, self._undo(part.number, fd, offset)
            try:
                os.fdatasync(fd)
                if new:
                    assert self._dir_fd is not None
                    os.fsync(self._dir_fd)  # the new file's name survives a power loss too
            except OSError as exc:
                self._undo(part.number, fd, offset)
                return written, exc, True
            written += len(part.records)
        return written, None, False

    def _create(self, number: int) -> int:
        for old in list(self._write_fds):  # only the newest segment is written to
            os.close(self._write_fds.pop(old))
        fd = os.open(self.directory / segment_name(number), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._write_fds[number] = fd
        return fd

    def _undo(self, number: int, fd: int | None, offset: int) -> bool:
        """Cut a failed append off; a new segment that holds nothing is removed. True: seal the segment."""
        if fd is None:
            return False
        try:
            if offset == 0:
                os.close(self._write_fds.pop(number))
                self._unlink(segment_name(number))
            else:
                os.ftruncate(fd, offset)
        except OSError:
            return True
        return False

    # -- helpers ----------------------------------------------------------------------------------

    def _lock(self) -> None:
        fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise QueueLockedError(errno.EWOULDBLOCK, f"in use by another process (pid {holder or '?'})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _read_acks(self, scanned: ScannedSegment) -> None:
        path = self.directory / segment_name(scanned.number, ACK_SUFFIX)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        count = len(scanned.offsets)
        for pos in range(0, len(data) - ACK.size + 1, ACK.size):
            index, crc = ACK.unpack_from(data, pos)
            if index < count and zlib.crc32(_INDEX.pack(index)) == crc:
                scanned.done[index] = 1

    def _unlink(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / name).unlink()


def _is_numbered(name: str, suffix: str) -> bool:
    return len(name) == NAME_DIGITS + len(suffix) and name.endswith(suffix) and name[:NAME_DIGITS].isdigit()


def _pwrite_all(fd: int, chunks: list[bytes], offset: int) -> None:
    """Write all ``chunks`` one after the other at ``offset``, without joining them (``pwritev``).

    A short write (at a size limit) goes on with the rest until it fails.
    """
    pending = [memoryview(c) for c in chunks if c]
    while pending:
        done = os.pwritev(fd, pending[:IOV_MAX], offset)
        if not done:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        offset += done
        while pending and done >= len(pending[0]):
            done -= len(pending[0])
            pending.pop(0)
        if done:
            pending[0] = pending[0][done:]
