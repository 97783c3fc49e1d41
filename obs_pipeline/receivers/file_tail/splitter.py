"""Bytes of one file into lines, each with the byte offsets where it starts and ends.

The offsets are what a checkpoint stores: the end of the last line the pipeline accepted. A
partial last line stays here until its newline arrives (or :meth:`LineSplitter.flush` is called
after ``force_flush_period``); a line longer than ``max_size`` keeps its first ``max_size`` bytes
and the rest is skipped up to the newline, so memory per file is bounded by ``max_size``.
Lines are only decoded once complete, so a multi-byte UTF-8 character cut by a read is whole.
"""

from __future__ import annotations

from typing import NamedTuple


class Line(NamedTuple):
    """One line: ``[start, end)`` in the file (``end`` past its newline), its bytes without newline."""

    start: int
    end: int
    data: bytes
    truncated: bool


class LineSplitter:
    """Splits the bytes of one file, read in order from ``offset``, into :class:`Line` values."""

    __slots__ = ("_partial", "_truncated", "line_start", "max_size", "pos")

    def __init__(self, max_size: int, offset: int) -> None:
        self.max_size = max_size
        self.pos = offset  # the offset of the next byte to be fed
        self.line_start = offset  # where the pending (partial) line starts
        self._partial = bytearray()
        self._truncated = False

    @property
    def pending(self) -> int:
        """Bytes fed after the last complete line (a partial line, possibly truncated)."""
        return self.pos - self.line_start

    def _take(self, chunk: bytes, start: int, stop: int) -> None:
        room = self.max_size - len(self._partial)
        if stop - start > room:
            self._truncated = True
            stop = start + max(room, 0)
        if stop > start:
            self._partial += chunk[start:stop]

    def _emit(self, end: int) -> Line:
        data = bytes(self._partial)
        if data.endswith(b"\r") and not self._truncated:
            data = data[:-1]
        line = Line(self.line_start, end, data, self._truncated)
        self._partial.clear()
        self._truncated = False
        self.line_start = end
        return line

    def feed(self, chunk: bytes) -> list[Line]:
        """The lines ``chunk`` completes, in order."""
        out: list[Line] = []
        base = self.pos
        start = 0
        find = chunk.find
        limit = self.max_size
        while (nl := find(b"\n", start)) >= 0:
            if not self._partial and not self._truncated and nl - start <= limit:  # the common case
                data = chunk[start:nl]
                if data.endswith(b"\r"):
                    data = data[:-1]
                out.append(Line(base + start, base + nl + 1, data, False))
                self.line_start = base + nl + 1
            else:
                self._take(chunk, start, nl)
                out.append(self._emit(base + nl + 1))
            start = nl + 1
        if start < len(chunk):
            self._take(chunk, start, len(chunk))
        self.pos = base + len(chunk)
        return out

    def flush(self) -> Line | None:
        """The partial line as a line of its own (the writer stopped mid-line), if there is one."""
        if self.pos == self.line_start:
            return None
        return self._emit(self.pos)

    def reset(self, offset: int) -> None:
        """Forget what is pending and continue from ``offset`` (a truncated file)."""
        self._partial.clear()
        self._truncated = False
        self.pos = self.line_start = offset
