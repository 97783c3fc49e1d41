"""Which audit trails to read, and reading them line by line in bounded memory.

A *trail* is one live audit file and its rotated files (:func:`obs_pipeline.audit.files.audit_files`:
rotated ones oldest first, ``.gz`` ones too, then the live file). A ``jsonl_audit`` path with
placeholders (``audit/{resource.tenant.id}/audit.jsonl``, ``audit-{session_id}.jsonl``) makes
one trail per value; :func:`trails_of` finds them all by turning each placeholder into a
wildcard, and keeps the value each placeholder took in the file's name, because that is where a
line's tenant is: the line itself carries no resource attributes but ``service.name``.

Reading never stops at a bad spot: a line that does not parse, a truncated ``.gz``, a file that
cannot be opened or vanished (retention) is reported through ``report`` with the file and line
and the rest is read. Reports never quote a line's text (it may be telemetry).
"""

from __future__ import annotations

import glob
import heapq
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from obs_pipeline.audit.checkpoints import CHECKPOINT_SUFFIX
from obs_pipeline.audit.files import COMPRESSED_SUFFIX, ROTATED_STAMP, audit_files
from obs_pipeline.audit.reader import BadLine, read_entries
from obs_pipeline.auditquery.quick import QuickCheck, quick_entries
from obs_pipeline.exporters.jsonl_audit.paths import PathTemplate, TemplateError

__all__ = ["TENANT_PLACEHOLDERS", "Line", "Report", "Trail", "file_lines", "iter_lines", "trail_lines", "trails_of"]

#: Called with one human-readable problem (a skipped line, an unreadable file).
Report = Callable[[str], None]

#: Placeholders whose value is the tenant (``path: audit/{resource.tenant.id}.jsonl``).
TENANT_PLACEHOLDERS = ("resource.tenant.id", "resource.tenant", "tenant.id", "tenant_id", "tenant")

_ROTATED_PART = ROTATED_STAMP


@dataclass(frozen=True, slots=True)
class Trail:
    """One live file (which may not exist yet) and the placeholder values its path was made with."""

    live: Path
    values: dict[str, str] = field(default_factory=dict)

    @property
    def tenant(self) -> str | None:
        """The tenant this trail belongs to, when its path has a tenant placeholder."""
        for name in TENANT_PLACEHOLDERS:
            if name in self.values:
                return self.values[name]
        return None

    def files(self) -> list[Path]:
        """The trail's files in write order (rotated, oldest first, then the live file)."""
        return audit_files(self.live)


@dataclass(frozen=True, slots=True)
class Line:
    """One audit line as read: the object, its exact bytes, and where it was found."""

    record: dict[str, Any]
    raw: bytes  # the line as written, without its newline
    file: Path
    number: int  # 1-based line number in ``file``
    tenant: str | None = None

    @property
    def detail(self) -> dict[str, Any]:
        """``detail``, or an empty dict when the line has none (or not an object)."""
        detail = self.record.get("detail")
        return detail if isinstance(detail, dict) else {}

    def text(self, key: str) -> str | None:
        """A top-level key's value when it is a non-empty string, else None."""
        value = self.record.get(key)
        return value if isinstance(value, str) and value else None

    @property
    def timestamp(self) -> str:
        """The line's timestamp as written (RFC 3339, ``Z``: sorts as text), or ``""``."""
        value = self.record.get("timestamp")
        return value if isinstance(value, str) else ""


def _template_regexes(parts: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str], list[str]]:
    """(live regex, rotated regex, placeholder names) of a parsed template's ``parts``, over full path strings."""
    names: list[str] = []
    pieces: list[str] = []
    for index, part in enumerate(parts):
        if index % 2 == 0:
            pieces.append(re.escape(part))
        elif part in names:
            pieces.append(f"(?P=g{names.index(part)})")
        else:
            pieces.append(f"(?P<g{len(names)}>[^/]+?)")
            names.append(part)
    tail = parts[-1]
    live = "".join(pieces)
    # The rotated form: the time goes between the name's stem and its last suffix.
    suffix = Path("_" + tail.rsplit("/", 1)[-1]).suffix  # "_": a tail of ".jsonl" alone is a suffix, not a name
    if suffix and live.endswith(re.escape(suffix)):
        rotated = live[: -len(re.escape(suffix))] + _ROTATED_PART + re.escape(suffix)
    else:
        rotated = live + _ROTATED_PART
    return re.compile(live), re.compile(rotated + f"(?:{re.escape(COMPRESSED_SUFFIX)})?"), names


def _live_of_rotated(path: str, rotated: re.Pattern[str]) -> str | None:
    """The live path a rotated file's name was made from (the time and ``.gz`` taken out)."""
    if rotated.fullmatch(path) is None:
        return None
    name = path.removesuffix(COMPRESSED_SUFFIX)
    return re.sub(_ROTATED_PART + r"(?=[^/-]*$)", "", name, count=1)


def trails_of(path: str | os.PathLike[str]) -> list[Trail]:
    """The trails of an audit path: itself, or one per existing value of its placeholders.

    A path without placeholders is one trail, whether or not it exists (reading a missing one
    reports it). A template is globbed: every live, rotated or checkpoint file its wildcards
    match counts, so a tenant whose live file has rotated away (or was deleted) is still found,
    and ``audit verify`` reports a trail whose files are gone but whose checkpoints remain.
    """
    text = os.path.expanduser(os.fspath(path))  # noqa: PTH111 - the path is a template string here
    try:
        template = PathTemplate.parse(text)  # the writer's own grammar: {{ }}, { tenant }, aliases
    except TemplateError:
        return [Trail(Path(text))]  # not a template the writer takes: a file name with a brace
    if template.static:
        return [Trail(Path(template.parts[0]))]
    live_re, rotated_re, names = _template_regexes(template.parts)
    pattern = "*".join(glob.escape(literal) for literal in template.parts[::2])
    directory, slash, _ = pattern.rpartition("/")
    candidates = glob.glob(directory + slash + "*")  # noqa: PTH207 - a pattern string, wildcards in any part
    lives: dict[str, Trail] = {}
    for candidate in sorted(candidates):
        live = _live_of_rotated(candidate, rotated_re) or candidate.removesuffix(CHECKPOINT_SUFFIX)
        match = live_re.fullmatch(live)
        if match is None or live in lives:
            continue
        values = {name: match[f"g{index}"] for index, name in enumerate(names)}
        lives[live] = Trail(Path(live), values)
    return [lives[key] for key in sorted(lives)]


def _bad_line_reporter(file: Path, report: Report) -> Callable[[BadLine], None]:
    return lambda bad: report(f"{file}: {bad}")


def file_lines(file: Path, tenant: str | None, report: Report, quick: QuickCheck | None = None) -> Iterator[Line]:
    """Every line of one file of a trail; a file that cannot be read is reported and skipped.

    With ``quick``, lines it rules out are not parsed (:mod:`obs_pipeline.auditquery.quick`).
    """
    number = 0
    on_bad = _bad_line_reporter(file, report)
    entries = read_entries(file, on_bad) if not quick else quick_entries(file, quick, on_bad)
    try:
        for entry in entries:
            number = entry.number
            yield Line(entry.record, entry.raw, file, entry.number, tenant)
    except FileNotFoundError:
        report(f"{file}: removed while reading (retention?); skipped")
    except OSError as exc:
        after = f" after line {number}" if number else ""
        report(f"{file}: cannot read{after}: {exc.strerror or type(exc).__name__}; skipped")


def trail_lines(trail: Trail, report: Report, quick: QuickCheck | None = None) -> Iterator[Line]:
    """Every line of ``trail``, file after file in write order; problems go to ``report``."""
    files = trail.files()
    if not files:
        where = trail.live.parent
        missing = "" if where.is_dir() else f" (the directory {where} does not exist)"
        report(f"{trail.live}: no audit file{missing}")
        return
    for file in files:
        yield from file_lines(file, trail.tenant, report, quick)


def iter_lines(trails: Iterable[Trail], report: Report, quick: QuickCheck | None = None) -> Iterator[Line]:
    """The lines of every trail; several trails are merged by timestamp, each kept in file order.

    One trail is read as it is (write order). Several (one per tenant) are interleaved by
    timestamp with a lazy merge, so memory stays one line per trail.
    """
    listed = list(trails)
    if len(listed) == 1:
        yield from trail_lines(listed[0], report, quick)
        return
    yield from heapq.merge(*(trail_lines(trail, report, quick) for trail in listed),
                           key=lambda line: line.timestamp)
