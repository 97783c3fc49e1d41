"""The hash chain (``hash_chain: true``): each audit line seals the one before it.

Every line gains three keys, after the line's own: ``seq`` (1, 2, 3... along the whole trail,
across rotated files and restarts), ``prev_hash`` (the ``hash`` of the line before it, 64 zeros
for the first line of a trail) and ``hash``: the SHA-256, in lower-case hex, of the RFC 8785
canonical JSON (:mod:`rfc8785`) of the line's object without ``hash``. ``docs/audit-line.md``
("Hash chain") defines it for third parties; :mod:`obs_pipeline.audit.verify` checks it.

RFC 8785 numbers are IEEE doubles, so an integer beyond ±(2**53 - 1) has no canonical form: such
an integer is written as its decimal text (a JSON string), as I-JSON (RFC 7493) advises, so any
verifier canonicalizes the line as it is written.

The chain is a :class:`~obs_pipeline.audit.hook.LineHook`: the writer seals each line in write
order. A batch whose write fails may have reached the file in part, so the writer does not
trust the state it sealed with: it reads it back from the file's tail first (:meth:`HashChain.resume`).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import rfc8785

from obs_pipeline.audit.files import audit_files

__all__ = ["GENESIS", "ChainState", "HashChain", "Resumed", "canonical", "fast_canonical", "line_hash", "resume_state"]

#: ``prev_hash`` of a trail's first line.
GENESIS = "0" * 64
_SAFE = 2**53 - 1
#: How much of a file's end is read at a time when looking for its last line.
_TAIL_BLOCK = 64 * 1024
#: How many of a compressed file's last lines are kept when looking for its last good one.
_GZ_TAIL_LINES = 256


@dataclass(frozen=True, slots=True)
class ChainState:
    """Where a chain stands: the last line's ``seq`` (0 before the first) and ``hash``."""

    seq: int = 0
    hash: str = GENESIS


@dataclass(frozen=True, slots=True)
class Resumed:
    """What :func:`resume_state` found: the state after the last good line, and what it skipped."""

    state: ChainState
    torn: int = 0  # lines after the last good line that are not audit lines (a crash mid-write)
    file: Path | None = None  # the file the last good line is in


def _safe(value: Any) -> Any:
    """``value`` with every integer outside the double-exact range turned into its decimal text."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -_SAFE <= value <= _SAFE else str(value)
    if isinstance(value, dict):
        return {key: _safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_safe(item) for item in value]
    return value


class _Slow(Exception):  # a signal, not an error: take rfc8785's own path
    """A value the fast serializer leaves to :mod:`rfc8785` (an unsafe integer, a type it does not know)."""


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be")


def _plain(value: Any) -> bool:
    """Whether ``value`` serializes the same in orjson and RFC 8785: a string, a safe integer, a boolean, null."""
    kind = type(value)
    return kind is str or value is None or kind is bool or (kind is int and -_SAFE <= value <= _SAFE)


def _fast(value: Any, out: list[bytes]) -> None:
    """Append the RFC 8785 form of ``value`` to ``out``; the same bytes as ``rfc8785.dumps`` (a test pins it).

    Strings and keys go through orjson, whose escaping is RFC 8785's (the short forms, a six-character
    escape for other controls, everything else as UTF-8); floats by :func:`_float`; keys are sorted
    by UTF-16 code units, as the RFC says.

    Raises:
        _Slow: a value this does not handle.
    """
    kind = type(value)
    if kind is str:
        out.append(orjson.dumps(value))
    elif kind is dict:
        ascii_keys = all(k.isascii() for k in value)
        if ascii_keys and all(_plain(item) for item in value.values()):
            # Only strings, safe integers, booleans and nulls under ASCII keys: orjson's sorted
            # output is RFC 8785's byte for byte (the leaves of most audit lines).
            out.append(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
            return
        out.append(b"{")
        for index, key in enumerate(sorted(value) if ascii_keys else sorted(value, key=_utf16)):
            if index:
                out.append(b",")
            out.append(orjson.dumps(key))
            out.append(b":")
            item = value[key]
            if type(item) is str:
                out.append(orjson.dumps(item))
            else:
                _fast(item, out)
        out.append(b"}")
    elif kind is int:
        if not -_SAFE <= value <= _SAFE:
            raise _Slow
        out.append(b"%d" % value)
    elif kind is list:
        out.append(b"[")
        for index, item in enumerate(value):
            if index:
                out.append(b",")
            _fast(item, out)
        out.append(b"]")
    elif value is None:
        out.append(b"null")
    elif value is True:
        out.append(b"true")
    elif value is False:
        out.append(b"false")
    elif kind is float:
        out.append(_float(value))
    else:
        raise _Slow


def _float(value: float) -> bytes:
    """ECMAScript's shortest form of a double, as RFC 8785 wants it; rfc8785's code for the rare cases.

    An integral value below 2**53 is its integer (``2280.0`` is ``2280``); otherwise Python's
    ``repr`` is the same shortest round-trip digits, and the same text while it has no exponent.
    """
    if value.is_integer():  # ES6 prints no ".0"; past 2**53 its digits are not Python's
        return b"%d" % int(value) if -_SAFE <= value <= _SAFE else rfc8785.dumps(value)
    text = repr(value)
    if "e" in text or "n" in text:  # an exponent, nan or inf: the forms differ
        return rfc8785.dumps(value)
    return text.encode()


def fast_canonical(record: dict[str, Any]) -> bytes:
    """:func:`canonical` of a line parsed by orjson (no ``hash`` key), without most of rfc8785's per-value cost.

    Raises:
        rfc8785.CanonicalizationError: a value has no canonical form.
    """
    out: list[bytes] = []
    try:
        _fast(record, out)
    except _Slow:
        return rfc8785.dumps(record)
    return b"".join(out)


def canonical(record: dict[str, Any]) -> bytes:
    """RFC 8785 canonical JSON of ``record`` without its ``hash`` key: what ``hash`` covers.

    Raises:
        rfc8785.CanonicalizationError: a value has no canonical form (an unsafe integer).
    """
    return rfc8785.dumps({key: value for key, value in record.items() if key != "hash"})


def line_hash(record: dict[str, Any]) -> str:
    """The ``hash`` a chained line ``record`` (as orjson parses it) must carry.

    Raises:
        rfc8785.CanonicalizationError: a value has no canonical form.
    """
    return hashlib.sha256(fast_canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


class HashChain:
    """A :class:`~obs_pipeline.audit.hook.LineHook` adding ``seq``, ``prev_hash`` and ``hash``. Not thread-safe."""

    def __init__(self, state: ChainState | None = None) -> None:
        self.state = state or ChainState()

    def seal(self, line: bytes) -> bytes:
        """``line`` (a serialized JSON object) with the chain keys appended; advances the state."""
        state = self.state
        seq = state.seq + 1
        record = orjson.loads(line)
        record["seq"] = seq
        record["prev_hash"] = state.hash
        try:
            digest = hashlib.sha256(fast_canonical(record)).hexdigest()
            sep = b"," if len(line.strip()) > 2 else b""
            sealed = b'%s%s"seq":%d,"prev_hash":"%s","hash":"%s"}' % (
                line.rstrip()[:-1], sep, seq, state.hash.encode(), digest.encode())
        except rfc8785.CanonicalizationError:
            record = _safe(record)
            digest = hashlib.sha256(rfc8785.dumps(record)).hexdigest()
            record["hash"] = digest
            sealed = orjson.dumps(record)
        self.state = ChainState(seq, digest)
        return sealed

    def resume(self, live: Path) -> Resumed:
        """Continue after the last good line of the trail of ``live`` (see :func:`resume_state`)."""
        found = resume_state(live)
        self.state = found.state
        return found


def _chained(raw: bytes) -> ChainState | None:
    """The state after ``raw`` when it is a complete chained line, else None."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict):
        return None
    seq, digest = record.get("seq"), record.get("hash")
    if isinstance(seq, int) and not isinstance(seq, bool) and isinstance(digest, str):
        return ChainState(seq, digest)
    return None


def _lines_backwards(path: Path) -> Iterator[bytes]:
    """The lines of a plain file from the last, each without its newline (the last may lack one)."""
    with path.open("rb") as f:
        end = f.seek(0, os.SEEK_END)
        rest = b""
        while end > 0:
            start = max(0, end - _TAIL_BLOCK)
            f.seek(start)
            block = f.read(end - start) + rest
            end = start
            parts = block.split(b"\n")
            rest = parts[0]
            yield from reversed(parts[1:])
        yield rest


def _gz_lines_backwards(path: Path) -> Iterator[bytes]:
    """The lines of a compressed file from the last, each without its newline.

    gzip cannot be read backwards: the file is decompressed once, keeping only its last
    :data:`_GZ_TAIL_LINES` lines (a rotated file can hold 100 MiB), and read again from the start
    only in the rare case that the caller looks further back than those.
    """
    tail: deque[bytes] = deque(maxlen=_GZ_TAIL_LINES)
    total = 0
    try:
        with gzip.open(path, "rb") as f:
            for line in f:
                tail.append(line)
                total += 1
    except (EOFError, gzip.BadGzipFile, zlib.error):
        pass
    yield from (line.rstrip(b"\n") for line in reversed(tail))
    if total <= len(tail):
        return
    older: deque[bytes] = deque()  # the caller went past the tail: every earlier line, newest first
    try:
        with gzip.open(path, "rb") as f:
            for _, line in zip(range(total - len(tail)), f, strict=False):
                older.appendleft(line.rstrip(b"\n"))
    except (EOFError, gzip.BadGzipFile, zlib.error):
        pass
    yield from older


def _last_good(path: Path) -> tuple[ChainState | None, int, bool]:
    """(state after the last good chained line or None, torn lines after it, whether the file holds any line).

    A file whose last good line has no chain keys (written with ``hash_chain`` off) holds lines
    but no state: the chain starts again from :data:`GENESIS`.
    """
    lines: Iterable[bytes] = _gz_lines_backwards(path) if path.name.endswith(".gz") else _lines_backwards(path)
    torn = 0
    first = True
    for raw in lines:
        if first and raw == b"":  # the newline that ends the file
            first = False
            continue
        first = False
        if not raw.strip():
            continue
        state = _chained(raw)
        if state is not None:
            return state, torn, True
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            torn += 1
            continue
        if isinstance(record, dict):
            return None, torn, True  # an unchained audit line: the chain starts afresh after it
        torn += 1
    return None, torn, False


def resume_state(live: Path) -> Resumed:
    """The chain state after the last good line of the trail whose live file is ``live``.

    Looks at the newest file first and goes back to older ones only while a file holds no
    line at all (just rotated, or nothing but a torn line). Counts the torn lines passed over.

    Raises:
        OSError: a file cannot be read.
    """
    torn = 0
    for path in reversed(audit_files(live)):
        state, skipped, has_lines = _last_good(path)
        torn += skipped
        if has_lines:
            return Resumed(state or ChainState(), torn, path)
    return Resumed(ChainState(), torn)
