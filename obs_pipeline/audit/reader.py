"""Reading an audit file back: for ``audit verify``, ``replay`` and the bench's delivery check.

The writer guarantees at most one broken line per crash (``exporters/jsonl_audit/writer.py``):
each batch is one ``write()``, and a file that does not end with a newline gets one before the
next batch. So a reader skips what does not parse, and says where, instead of giving up on the
file: a partial last line (no newline, cut mid-object) and an unparsable or non-object line are
reported as a :class:`BadLine` with its 1-based line number. Blank lines are skipped silently.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import orjson

from obs_pipeline.audit.files import COMPRESSED_SUFFIX

__all__ = ["BadLine", "Entry", "iter_entries", "read_entries"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One parsed audit line."""

    number: int  # 1-based line number in the file
    record: dict[str, Any]  # the line's object, keys in file order
    raw: bytes  # the line's exact bytes, without the newline (what a hash chain covers)


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that is not an audit line. Never carries the line's text: it may hold telemetry."""

    number: int  # 1-based line number in the file
    reason: str  # "partial last line", "not JSON", "not a JSON object"
    size: int  # its length in bytes
    #: Whether it can be a write cut short by a crash: the start of a JSON object (``{"``) that does
    #: not parse. Anything else (other text, a whole JSON value that is not an audit line) was put
    #: there by something other than our writer: ``audit verify`` counts it as an insertion.
    torn: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        return f"line {self.number}: {self.reason} ({self.size} bytes); skipped"


def iter_entries(lines: Iterable[bytes], on_bad: Callable[[BadLine], None] | None = None) -> Iterator[Entry]:
    """The audit lines of ``lines`` (each with its newline, as a binary file yields them), in order.

    Args:
        lines: a binary file or any iterable of byte lines.
        on_bad: called with each line that is skipped; None skips them without a word.
    """
    for number, line in enumerate(lines, 1):
        complete = line.endswith(b"\n")
        raw = line[:-1] if complete else line
        if not raw.strip():
            continue
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            if on_bad is not None:
                on_bad(BadLine(number, "not JSON" if complete else "partial last line", len(raw),
                               torn=raw.startswith(b'{"')))
            continue
        if not isinstance(record, dict):
            if on_bad is not None:
                on_bad(BadLine(number, "not a JSON object", len(raw)))
            continue
        yield Entry(number, record, raw)


def _screened(lines: Iterable[bytes], keep: Callable[[bytes], bool]) -> Iterator[bytes]:
    """``lines``, with each line ``keep`` rejects handed on as a blank line (numbers kept, nothing parsed)."""
    for line in lines:
        yield line if keep(line) else b"\n"


def read_entries(path: str | os.PathLike[str], on_bad: Callable[[BadLine], None] | None = None,
                 keep: Callable[[bytes], bool] | None = None) -> Iterator[Entry]:
    """:func:`iter_entries` of the file at ``path``, read as it is iterated (memory stays one line).

    A ``.gz`` file (a compressed rotated file, :mod:`obs_pipeline.audit.files`) is decompressed as
    it is read; a compressed file cut short yields what it holds and then one :class:`BadLine`
    ("compressed file is truncated") after its last whole line.

    Args:
        path: the file.
        on_bad: as for :func:`iter_entries`.
        keep: a first look at each raw line (with its newline); a line it rejects is neither parsed
            nor yielded, and still counts for the line numbers (``auditquery.quick``).

    A plain rotated file that is gone when opened but has its ``.gz`` beside it was compressed
    since it was listed (a live pipeline rotating while ``audit verify`` or a query runs): the
    ``.gz``, complete before the plain file is removed, is read instead.

    Raises:
        OSError: the file cannot be opened or read.
    """
    stream: BinaryIO
    if os.fspath(path).endswith(COMPRESSED_SUFFIX):
        number = 0

        def counted(lines: Iterable[bytes]) -> Iterator[bytes]:
            nonlocal number
            for line in lines:
                number += 1
                yield line

        with gzip.open(path, "rb") as compressed:
            lines = counted(compressed)
            try:
                yield from iter_entries(lines if keep is None else _screened(lines, keep), on_bad)
            except (EOFError, gzip.BadGzipFile, zlib.error):
                if on_bad is not None:
                    on_bad(BadLine(number + 1, "compressed file is truncated or corrupt", 0))
        return
    try:
        stream = open(path, "rb")  # noqa: PTH123, SIM115 - os.PathLike or str, as given; closed below
    except FileNotFoundError:
        twin = os.fspath(path) + COMPRESSED_SUFFIX
        if not os.path.exists(twin):  # noqa: PTH110 - as above
            raise
        yield from read_entries(twin, on_bad, keep)
        return
    with stream:
        yield from iter_entries(stream if keep is None else _screened(stream, keep), on_bad)
