"""Which files make up one audit trail, and in what order: the live file and its rotated files.

The one naming rule shared by the writer (rotation, retention), ``audit verify`` and the reading
commands. For a live file ``dir/<stem><suffix>`` (``audit/audit.jsonl``), a rotated file is
``dir/<stem>-<UTC time>Z<suffix>`` with the time as ``YYYYmmddTHHMMSSffffff`` (fixed width, so
names sort in time order), plus ``.gz`` once compressed: ``audit/audit-20261201T231500123456Z.jsonl.gz``.
A rotation that is compressing has both the plain and the ``.gz`` name for a moment; the plain
file is then the complete one and the only one listed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["COMPRESSED_SUFFIX", "ROTATED_STAMP", "audit_files", "rotated_files", "rotated_name", "rotation_time"]

COMPRESSED_SUFFIX = ".gz"
_TIME_FORMAT = "%Y%m%dT%H%M%S%f"
_TIME_PATTERN = r"\d{8}T\d{12}"
#: The regular expression (source text) of what a rotation inserts before the live file's suffix.
ROTATED_STAMP = rf"-{_TIME_PATTERN}Z"


def _parts(live: Path) -> tuple[str, str]:
    """(stem, suffix) of ``live``: ``audit.jsonl`` -> ("audit", ".jsonl"); no suffix -> (name, "")."""
    return live.stem if live.suffix else live.name, live.suffix


def rotated_name(live: Path, when: datetime) -> Path:
    """The uncompressed name the live file ``live`` gets when rotated at ``when``."""
    stem, suffix = _parts(live)
    stamp = when.astimezone(UTC).strftime(_TIME_FORMAT)
    return live.with_name(f"{stem}-{stamp}Z{suffix}")


def _pattern(live: Path) -> re.Pattern[str]:
    stem, suffix = _parts(live)
    return re.compile(
        rf"{re.escape(stem)}-(?P<time>{_TIME_PATTERN})Z{re.escape(suffix)}(?P<gz>{re.escape(COMPRESSED_SUFFIX)})?"
    )


def rotation_time(live: Path, rotated: Path) -> datetime | None:
    """When ``rotated`` was rotated away from ``live``, or None when it is not one of its files."""
    match = _pattern(live).fullmatch(rotated.name)
    if match is None:
        return None
    return datetime.strptime(match["time"], _TIME_FORMAT).replace(tzinfo=UTC)


def rotated_files(live: Path) -> list[Path]:
    """The rotated files of ``live``, oldest first (a missing directory has none)."""
    pattern = _pattern(live)
    chosen: dict[str, Path] = {}
    try:
        names = [entry.name for entry in live.parent.iterdir()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    for name in names:
        match = pattern.fullmatch(name)
        if match is None:
            continue
        stamp = match["time"]
        if match["gz"] and stamp in chosen:
            continue  # the plain file of a rotation still compressing is the complete one
        chosen[stamp] = live.with_name(name)
    return [chosen[stamp] for stamp in sorted(chosen)]


def audit_files(live: Path) -> list[Path]:
    """Every file of the trail in write order: the rotated files, oldest first, then ``live`` if it exists."""
    files = rotated_files(live)
    if live.exists():
        files.append(live)
    return files
