"""The reads every command shares: the lines of some trails that pass a filter, streamed.

A ``--session`` filter costs a first pass (the session's traces, see :mod:`.filters`); problems
are reported once, by the second pass. Lines that a filter's values rule out by their bytes are
not parsed (:mod:`.quick`). ``recent`` keeps the last N with a bounded deque.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import TextIO

from obs_pipeline.auditquery.filters import Deduper, Filter, session_traces
from obs_pipeline.auditquery.progress import with_progress
from obs_pipeline.auditquery.quick import QuickCheck
from obs_pipeline.auditquery.trail import Line, Report, Trail, iter_lines

__all__ = ["last", "matching"]


def _quiet(_: str) -> None:
    """Drops the first pass's reports: the second pass says the same."""


def matching(trails: list[Trail], where: Filter, report: Report, *, progress: TextIO | None = None,
             dedupe: Deduper | None = None) -> Iterator[Line]:
    """The lines of ``trails`` that pass ``where``, in trail order.

    Args:
        trails: what to read (:func:`obs_pipeline.auditquery.source.resolve_trails`).
        where: the filter.
        report: told of every skipped line and unreadable file.
        progress: where a status goes during a long read in a terminal (None: nowhere).
        dedupe: drops the copies a retried batch wrote (same ``event_id``), for counting.
    """
    traces: frozenset[str] = frozenset()
    if where.needs_traces():
        first: Iterable[Line] = iter_lines(trails, _quiet, QuickCheck([where.sessions]))
        if progress is not None:
            first = with_progress(first, progress, "finding the session's traces")
        traces = frozenset(session_traces(first, where.sessions))
    lines: Iterable[Line] = iter_lines(trails, report, where.quick_check())
    if progress is not None:
        lines = with_progress(lines, progress)
    if dedupe is not None:
        lines = dedupe(lines)
    matches = where.matches
    return (line for line in lines if matches(line, traces))


def last(lines: Iterable[Line], limit: int) -> list[Line]:
    """The last ``limit`` of ``lines``, holding no more than that many at a time."""
    return list(deque(lines, maxlen=limit))
