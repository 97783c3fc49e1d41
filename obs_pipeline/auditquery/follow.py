"""Following live audit files as lines arrive, across a rotation: ``replay tail``.

Each live file is followed *by its path*, ``tail -F`` style: when the writer rotates (renames
the live file and creates a new one), the old file is read to its end through the open
descriptor, then the new file at the path is opened and read from its start, so no line is lost
or read twice. Rotation is seen as a change of the path's inode (or device); a file truncated in
place (``copytruncate``) is read again from its start; a path that does not exist yet is waited
for. Only complete lines are handed out: a line still being written waits for its newline.

:class:`SessionFollower` then keeps one session's lines: a line without a session but of a
trace that has one is held (bounded) until the trace's session is known, since a turn's child
spans end, and are written, before the span that carries the session.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from obs_pipeline.audit.reader import BadLine, iter_entries
from obs_pipeline.auditquery.trail import Line, Report, Trail, file_lines

__all__ = ["POLL_SECONDS", "FollowedFile", "SessionFollower", "follow", "tail_session"]

POLL_SECONDS = 0.25
_CHUNK = 1 << 16
#: Traces whose lines wait for their session, at most (the oldest is forgotten first).
MAX_PENDING_TRACES = 10_000


@dataclass(slots=True)
class FollowedFile:
    """One path being followed: its open descriptor, identity, offset and the unfinished line."""

    path: Path
    tenant: str | None = None
    fd: int | None = None
    identity: tuple[int, int] | None = None
    number: int = 0
    partial: bytes = b""

    def open(self) -> bool:
        """Open the path now (False when it does not exist yet); a rotation later is followed."""
        return self._open()

    def _open(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return False
        stat = os.fstat(fd)
        self.fd, self.identity, self.number, self.partial = fd, (stat.st_dev, stat.st_ino), 0, b""
        return True

    def close(self) -> None:
        """Close the descriptor, if open."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _read(self) -> list[bytes]:
        """Complete lines read from the open descriptor (with their newlines)."""
        assert self.fd is not None
        data = b""
        while chunk := os.read(self.fd, _CHUNK):
            data += chunk
        if not data:
            return []
        data = self.partial + data
        cut = data.rfind(b"\n") + 1
        self.partial = data[cut:]
        return data[:cut].splitlines(keepends=True)

    def poll(self) -> list[bytes]:
        """The complete lines that arrived since the last poll, reopening the path after a rotation."""
        if self.fd is None and not self._open():
            return []
        lines = self._read()
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return lines  # renamed away, the new one not created yet: keep reading the old one
        assert self.fd is not None
        if (stat.st_dev, stat.st_ino) != self.identity:
            lines += self._read()  # what was written before the rename
            if self.partial:
                lines.append(self.partial)  # the rotated file is complete: its last line is what it is
            self.close()
            if self._open():
                lines += self._read()
        elif stat.st_size < os.lseek(self.fd, 0, os.SEEK_CUR):
            os.lseek(self.fd, 0, os.SEEK_SET)  # truncated in place: start again
            self.number, self.partial = 0, b""
            lines += self._read()
        return lines


def follow(files: list[FollowedFile], report: Report, *, stop: Callable[[], bool] = lambda: False,
           sleep: Callable[[float], None] | None = None, poll: float = POLL_SECONDS) -> Iterator[Line]:
    """Lines of ``files`` as they arrive, each file from its start, until ``stop()`` says so.

    ``sleep`` is called between polls that found nothing (``time.sleep`` by default; a test
    passes one that writes the next lines). Lines that do not parse are reported, not fatal.
    """
    if sleep is None:
        import time  # noqa: PLC0415

        sleep = time.sleep
    try:
        while not stop():
            got = False
            for followed in files:
                raw_lines = followed.poll()
                if not raw_lines:
                    continue
                got = True
                base = followed.number
                followed.number += len(raw_lines)

                def bad(item: BadLine, where: Path = followed.path, offset: int = base) -> None:
                    report(f"{where}: {BadLine(item.number + offset, item.reason, item.size)}")

                for entry in iter_entries(raw_lines, bad):
                    yield Line(entry.record, entry.raw, followed.path, base + entry.number, followed.tenant)
            if not got:
                sleep(poll)
    finally:
        for followed in files:
            followed.close()


class SessionFollower:
    """Keeps the lines of some sessions from a stream, releasing held child lines when their session shows."""

    def __init__(self, sessions: frozenset[str], max_pending: int = MAX_PENDING_TRACES) -> None:
        self.sessions = sessions
        self.max_pending = max_pending
        self.traces: set[str] = set()
        self.pending: OrderedDict[str, list[Line]] = OrderedDict()

    def feed(self, line: Line) -> list[Line]:
        """The lines to show now because of ``line`` (it, and the held lines of its trace)."""
        session = line.text("session_id")
        trace = line.text("trace_id")
        if session is not None:
            if session not in self.sessions:
                return []
            if trace is None:
                return [line]
            self.traces.add(trace)
            return [line, *sorted(self.pending.pop(trace, []), key=lambda held: held.timestamp)]
        if trace is None:
            return []
        if trace in self.traces:
            return [line]
        self.pending.setdefault(trace, []).append(line)
        self.pending.move_to_end(trace)
        while len(self.pending) > self.max_pending:
            self.pending.popitem(last=False)
        return []


def tail_session(trails: list[Trail], sessions: frozenset[str], report: Report, *,
                 stop: Callable[[], bool] = lambda: False, sleep: Callable[[float], None] | None = None,
                 poll: float = POLL_SECONDS) -> Iterator[Line]:
    """The lines of ``sessions``: first those already written (rotated files, then the live ones), then new ones.

    The live files are opened before the rotated ones are listed, and a rotated file that is one
    of them (a rotation in between) is skipped, so nothing is read twice or missed.
    """
    followed = [FollowedFile(trail.live, trail.tenant) for trail in trails]
    for each in followed:
        each.open()
    held = {each.identity for each in followed if each.identity is not None}
    keep = SessionFollower(sessions)

    def history() -> Iterable[Line]:
        for trail in trails:
            for file in trail.files():
                if file == trail.live or _identity(file) in held:
                    continue
                yield from file_lines(file, trail.tenant, report)

    for line in history():
        yield from keep.feed(line)
    for line in follow(followed, report, stop=stop, sleep=sleep, poll=poll):
        yield from keep.feed(line)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino
