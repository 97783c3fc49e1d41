"""Check a hash-chained audit trail (``obs-pipeline audit verify``): plain functions, no printing.

The trail is every file of :func:`~obs_pipeline.audit.files.audit_files`, read in write order
with :func:`~obs_pipeline.audit.reader.read_entries`. Each line's ``hash`` is recomputed
(:func:`~obs_pipeline.audit.chain.line_hash`) and must follow the line before it (``seq`` one
more, ``prev_hash`` its ``hash``). The first break is named by file and line, and the walk stops
there: after a break every line is suspect.

What each kind of damage looks like: an edited line no longer matches its own ``hash``; an
inserted, deleted or moved line breaks ``prev_hash`` (and ``seq``) where it was; a missing
rotated file or a truncated one leaves a gap at the next file's first line. Two attacks keep a
consistent chain and are found only with the checkpoint key (:mod:`.checkpoints`): a chain
recomputed after an edit (a signed ``hash`` no longer matches), and lines cut from the end (the
trail ends before a signed ``seq``).

Not breaks, but reported (each torn line by file and line): torn lines (a crash mid-write: the
start of a JSON object that does not parse, and the chain continues after it with the next
``seq``), lines written before ``hash_chain`` was turned on, and a trail that begins after ``seq``
1 (its oldest files were removed by ``retention_days``, or deleted: the two look the same). Any
other line that is not an audit line (other text, a whole JSON value without the chain keys, a
"torn" line after which ``seq`` jumps) is an insertion, so a break.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import rfc8785

from obs_pipeline.audit.chain import GENESIS, line_hash
from obs_pipeline.audit.checkpoints import checkpoint_path, read_checkpoints
from obs_pipeline.audit.files import audit_files
from obs_pipeline.audit.reader import BadLine, read_entries

__all__ = ["Break", "Report", "verify_trail"]

_HEX64 = frozenset("0123456789abcdef")
#: Lines between two calls of a ``progress`` callback.
PROGRESS_EVERY = 10_000
#: Torn lines named one by one in the notes; past this many, only counted (memory stays bounded).
TORN_NOTES = 100
Progress = Callable[[Path, int], None]


@dataclass(frozen=True, slots=True)
class Break:
    """Where the chain first fails, and why. Never quotes the line (it may hold telemetry)."""

    file: Path
    line: int  # 1-based line number in ``file`` (0: the file as a whole)
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {self.reason}"


@dataclass(slots=True)
class Report:
    """The outcome of :func:`verify_trail`."""

    files: list[Path] = field(default_factory=list)
    lines: int = 0  # chained lines checked
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints: int = 0  # signed checkpoints checked against the trail
    notes: list[str] = field(default_factory=list)  # findings that are not breaks
    torn: list[tuple[Path, int]] = field(default_factory=list)  # file and line of each torn line (the first TORN_NOTES)
    torn_count: int = 0  # every torn line skipped
    broken: Break | None = None

    @property
    def intact(self) -> bool:
        """No break found."""
        return self.broken is None


def _is_hash(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX64


class _Walk:
    """The state of one walk along the trail."""

    def __init__(self, report: Report, signed: dict[int, tuple[str, int]]) -> None:
        self.report = report
        self.signed = signed  # seq -> (hash, checkpoint line)
        self.seq: int | None = None
        self.hash = GENESIS
        self.unchained = 0
        self.pending: tuple[Path, int] | None = None  # a torn line the next line must continue the chain after
        self.last: tuple[Path, int] | None = None  # file and line of the last chained line
        self.file_start = False
        self.progress: Progress | None = None

    def line(self, path: Path, number: int, record: dict[str, Any]) -> str | None:
        """Check one line; the reason it breaks the chain, or None."""
        seq, prev, digest = record.get("seq"), record.get("prev_hash"), record.get("hash")
        if seq is None and prev is None and digest is None:
            if self.seq is None:
                self.unchained += 1
                return None
            return "a line without a hash inside the chain (inserted, or written with hash_chain off)"
        if not (isinstance(seq, int) and not isinstance(seq, bool) and _is_hash(prev) and _is_hash(digest)):
            return "the seq, prev_hash or hash key is missing or malformed"
        try:
            recomputed = line_hash(record)
        except rfc8785.CanonicalizationError:
            return "the line has no canonical form (a value no writer of ours produces)"
        if recomputed != digest:
            return "the line was changed after it was written (its hash does not match its content)"
        reason = self._link(seq, prev)
        if reason is not None:
            return reason
        signed = self.signed.get(seq)
        if signed is not None:
            if signed[0] != digest:
                return (f"the chain was rewritten at or before this line: its hash differs from the one signed "
                        f"in checkpoint line {signed[1]}")
            self.report.checkpoints += 1
        self.seq, self.hash, self.last = seq, digest, (path, number)
        self.report.lines += 1
        self.report.last_seq = seq
        return None

    def _link(self, seq: int, prev: str) -> str | None:
        """Why a line with ``seq`` and ``prev`` cannot follow the line before it, or None."""
        at_boundary, self.file_start = self.file_start, False
        if self.seq is None:
            self.report.first_seq = seq
            if seq == 1 and prev != GENESIS:
                return "the first line's prev_hash is not the genesis value (64 zeros)"
            if seq != 1:
                self.report.notes.append(
                    f"the trail begins at seq {seq}: the {seq - 1} lines before it are not here "
                    "(removed by retention_days, or deleted; the two look the same)")
            return None
        expected = self.seq + 1
        if seq == expected and prev == self.hash:
            return None
        if seq <= self.seq:
            return f"seq {seq} after seq {self.seq}: lines were reordered, duplicated or inserted"
        if seq > expected:
            gap = f"seq jumps from {self.seq} to {seq}: {seq - expected} line{'s' if seq - expected > 1 else ''} missing"
            if at_boundary:
                return f"{gap} at the start of this file (a rotated file is missing, or the one before was truncated)"
            return f"{gap} (deleted or moved)"
        return "prev_hash is not the previous line's hash: a line was inserted, deleted or replaced here"


def _signed_states(live: Path, key: bytes, report: Report) -> dict[int, tuple[str, int]] | Break:
    """The signed checkpoints of the trail, or the break a bad or missing side file is."""
    path = checkpoint_path(live)
    signed: dict[int, tuple[str, int]] = {}
    torn = 0
    try:
        for point in read_checkpoints(path, key):
            if point.torn:  # signs nothing: skipping it is no weaker than a deleted checkpoint line
                torn += 1
                continue
            if not point.valid or point.seq is None or point.hash is None:
                return Break(path, point.number, "the checkpoint's HMAC does not match (forged or edited, or another key)")
            signed[point.seq] = (point.hash, point.number)
    except FileNotFoundError:
        return Break(path, 0, "the checkpoint file is missing (a key was given, so the trail must have one)")
    except OSError as exc:
        return Break(path, 0, f"the checkpoint file cannot be read: {exc.strerror or type(exc).__name__}")
    if torn:
        report.notes.append(f"{torn} torn line(s) in the checkpoint file skipped (a crash mid-write leaves one)")
    if not signed:
        report.notes.append("the checkpoint file holds no checkpoint yet")
    return signed


def verify_trail(live: Path, key: bytes | None = None, progress: Progress | None = None) -> Report:
    """Check the trail whose live file is ``live``; with ``key``, against its signed checkpoints too.

    ``progress`` is called with the file and the lines checked so far, every
    :data:`PROGRESS_EVERY` lines (for a command to show on stderr). Memory stays one line.
    Never raises for what it finds: an unreadable file is a break, like any other damage.
    """
    report = Report(files=audit_files(live))
    signed: dict[int, tuple[str, int]] = {}
    if key is not None:
        got = _signed_states(live, key, report)
        if isinstance(got, Break):
            report.broken = got
            return report
        signed = got
    if not report.files:
        report.broken = Break(live, 0, "no audit file is there")
        return report
    walk = _Walk(report, signed)
    walk.progress = progress
    for path in report.files:
        broken = _walk_file(walk, path)
        if broken is not None:
            report.broken = broken
            return report
    _finish(walk, report, key is not None)
    return report


def _walk_file(walk: _Walk, path: Path) -> Break | None:
    bad: list[BadLine] = []
    walk.file_start = True
    try:
        for entry in read_entries(path, bad.append):
            if bad or walk.pending is not None:  # rare: after a line the reader skipped
                broken = _skipped(walk, path, bad) or _after_torn(walk, entry.record)
                if broken is not None:
                    return broken
            reason = walk.line(path, entry.number, entry.record)
            if walk.progress is not None and walk.report.lines and not walk.report.lines % PROGRESS_EVERY:
                walk.progress(path, walk.report.lines)
            if reason is not None:
                return Break(path, entry.number, reason)
    except OSError as exc:
        return Break(path, 0, f"cannot be read: {exc.strerror or type(exc).__name__}")
    return _skipped(walk, path, bad)


def _skipped(walk: _Walk, path: Path, bad: list[BadLine]) -> Break | None:
    """Account for the lines the reader skipped before the next one: a torn line is noted, anything else breaks."""
    for skipped in bad:
        if skipped.reason.startswith("compressed"):
            return Break(path, skipped.number, "the compressed file is truncated or corrupt")
        if not skipped.torn:
            what = "a JSON value that is not an object" if skipped.reason == "not a JSON object" else "not JSON"
            return Break(path, skipped.number, f"a line that is not an audit line ({what}, and not a write cut short "
                                               "by a crash): inserted")
        walk.report.torn_count += 1
        if len(walk.report.torn) < TORN_NOTES:
            walk.report.torn.append((path, skipped.number))
        walk.pending = (path, skipped.number)
    bad.clear()
    return None


def _after_torn(walk: _Walk, record: dict[str, Any]) -> Break | None:
    """The break a torn line is when the chain does not go on after it with the next ``seq``, or None."""
    pending, walk.pending = walk.pending, None
    if pending is None or walk.seq is None:
        return None
    seq = record.get("seq")
    if isinstance(seq, int) and not isinstance(seq, bool) and seq != walk.seq + 1:
        return Break(pending[0], pending[1], f"a line that does not parse, after which seq jumps from {walk.seq} to "
                                             f"{seq}: inserted or replaced, not a write cut short by a crash")
    return None


def _finish(walk: _Walk, report: Report, keyed: bool) -> None:
    """The checks after the last line: a cut tail (with the key), a trail without a chain, the notes."""
    last_seq = walk.seq or 0
    if keyed and walk.signed and max(walk.signed) > last_seq:
        beyond = max(walk.signed)
        path, number = walk.last or (report.files[-1], 0)
        report.broken = Break(path, number, f"the trail ends at seq {last_seq}, but checkpoint line "
                                            f"{walk.signed[beyond][1]} signed seq {beyond}: its tail was cut")
        return
    if walk.seq is None:
        report.broken = Break(report.files[-1], 0, "no line carries a hash: hash_chain is off for this trail")
        return
    if walk.unchained:
        report.notes.append(f"{walk.unchained} line(s) before the chain starts carry no hash (written with hash_chain off)")
    report.notes.extend(f"{path}:{number}: a torn line skipped (a write cut short by a crash; the chain goes on after it)"
                        for path, number in report.torn)
    if report.torn_count > len(report.torn):
        report.notes.append(f"{report.torn_count - len(report.torn)} more torn line(s) skipped")
