"""Reading audit trails back: the plain functions behind ``audit``, ``cost`` and ``replay``.

Modules, one job each: :mod:`.trail` (which files, read in order, problems reported),
:mod:`.source` (the trail from ``--path`` or ``--config``), :mod:`.filters` (what a line must
match, time bounds, sessions through traces, dropping retried copies), :mod:`.query` (the
filtered stream), :mod:`.describe` (what a line says, in a few words), :mod:`.cost` (spend by
key), :mod:`.replay` (sessions and turns), :mod:`.follow` (live files across rotation),
:mod:`.export` (CSV and JSON), :mod:`.render` (rich tables), :mod:`.progress` (stderr status).
Every read streams: memory is bounded by what is shown (a ``--limit``, one session's lines),
never by the trail's size.
"""

from __future__ import annotations

from obs_pipeline.auditquery.cost import GROUPS, CostReport, cost_report
from obs_pipeline.auditquery.filters import Deduper, Filter, parse_when
from obs_pipeline.auditquery.query import last, matching
from obs_pipeline.auditquery.replay import build_turns, list_sessions
from obs_pipeline.auditquery.source import SourceError, resolve_trails
from obs_pipeline.auditquery.trail import Line, Trail, iter_lines, trails_of

__all__ = ["GROUPS", "CostReport", "Deduper", "Filter", "Line", "SourceError", "Trail", "build_turns",
           "cost_report", "iter_lines", "last", "list_sessions", "matching", "parse_when", "resolve_trails",
           "trails_of"]
