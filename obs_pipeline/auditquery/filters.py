"""Which lines a query keeps: the filters of ``audit``, ``cost`` and ``replay``, and the time bounds.

Sessions follow traces (``docs/audit-line.md``, "Sessions and traces"): instrumentations put the
conversation id on the top span of a turn only, so a tool call's line often has ``session_id``
null and shares its trace with a line that has it. ``--session`` therefore keeps a line whose
own session matches, *or* whose session is null and whose trace holds a line of that session;
finding those traces is a first pass over the trail (:func:`session_traces`), a set of trace ids.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from obs_pipeline.audit.line import DENY, SECURITY
from obs_pipeline.auditquery.quick import QuickCheck
from obs_pipeline.auditquery.trail import Line

__all__ = ["DEFAULT_DEDUPE_WINDOW", "Deduper", "Filter", "parse_when", "security_filter", "session_traces",
           "timestamp_text"]

_RELATIVE = re.compile(r"(\d+)(s|m|h|d|w)")
_RELATIVE_WHOLE = re.compile(r"(?:\d+(?:s|m|h|d|w))+")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

#: Event ids remembered to drop the copies a retried batch wrote (they land next to each other).
DEFAULT_DEDUPE_WINDOW = 100_000


def timestamp_text(when: datetime) -> str:
    """``when`` written as audit lines write their timestamps, so the two compare as text."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_when(text: str, now: datetime | None = None) -> str:
    """A ``--since``/``--until`` value -> the audit timestamp text it stands for.

    Accepts a relative age (``90s``, ``15m``, ``1h``, ``2d``, ``1w``, ``1h30m``: that long before
    ``now``) or an ISO 8601 date or time (``2026-03-17``, ``2026-03-17T10:30``, with an offset or
    ``Z``; naive means UTC, as in audit lines).

    Raises:
        ValueError: neither form.
    """
    value = text.strip()
    if _RELATIVE_WHOLE.fullmatch(value):
        seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _RELATIVE.findall(value))
        return timestamp_text((now or datetime.now(UTC)) - timedelta(seconds=seconds))
    try:
        when = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{text!r} is neither a time (2026-03-17T10:30Z) nor an age (15m, 1h, 2d)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return timestamp_text(when)


@dataclass(frozen=True, kw_only=True)
class Filter:
    """What a line must match; an empty field matches everything. Values within a field are alternatives.

    ``since`` and ``until`` are timestamp texts (:func:`parse_when`): ``since <= timestamp < until``.
    """

    categories: frozenset[str] = frozenset()
    results: frozenset[str] = frozenset()
    event_types: frozenset[str] = frozenset()
    sessions: frozenset[str] = frozenset()
    tenants: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    agents: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    since: str | None = None
    until: str | None = None
    security: bool = False  # ``audit security``: category security, or any deny

    def matches(self, line: Line, session_traces: frozenset[str] | set[str] = frozenset()) -> bool:
        """Whether ``line`` passes; ``session_traces`` are the traces of the sessions asked for."""
        record = line.record
        if self.since is not None or self.until is not None:
            stamp = line.timestamp
            if (self.since is not None and stamp < self.since) or (self.until is not None and stamp >= self.until):
                return False
        if self.security and record.get("category") != SECURITY and record.get("result") != DENY:
            return False
        checks = ((self.categories, "category"), (self.results, "result"), (self.event_types, "event_type"),
                  (self.services, "service"), (self.agents, "agent"), (self.users, "user_id"))
        for wanted, key in checks:
            if wanted and record.get(key) not in wanted:
                return False
        if self.tenants and line.tenant not in self.tenants:
            return False
        if self.sessions:
            session = record.get("session_id")
            if session is None:
                return record.get("trace_id") in session_traces
            return session in self.sessions
        return True

    def quick_check(self) -> QuickCheck:
        """The byte-level first look for this filter's values (not the session: its child lines lack it)."""
        return QuickCheck((self.categories, self.results, self.event_types, self.services, self.agents, self.users))

    def needs_traces(self) -> bool:
        """Whether :meth:`matches` needs :func:`session_traces` (a first pass) to be right."""
        return bool(self.sessions)


def session_traces(lines: Iterable[Line], sessions: frozenset[str]) -> set[str]:
    """The trace ids of every line whose ``session_id`` is one of ``sessions``."""
    found: set[str] = set()
    for line in lines:
        record = line.record
        if record.get("session_id") in sessions:
            trace = record.get("trace_id")
            if isinstance(trace, str):
                found.add(trace)
    return found


def security_filter(base: Filter) -> Filter:
    """``base`` narrowed to what ``audit security`` shows."""
    return replace(base, security=True)


class Deduper:
    """Drops a line whose ``event_id`` was seen among the last ``window`` ids (a retried batch's copies).

    Bounded: a retry rewrites lines written moments before, so a window of recent ids finds the
    copies without remembering every id of a large trail.
    """

    def __init__(self, window: int = DEFAULT_DEDUPE_WINDOW) -> None:
        self.window = window
        self._seen: set[int] = set()
        self._order: deque[int] = deque()
        self.dropped = 0

    def fresh(self, line: Line) -> bool:
        """Whether ``line`` is the first copy of its event in the window (lines without an id always are)."""
        event_id = line.record.get("event_id")
        if not isinstance(event_id, str):
            return True
        # Remembered by hash (an int is a fraction of the string's size); each tenant's trail is its own.
        seen = hash((line.tenant, event_id))
        if seen in self._seen:
            self.dropped += 1
            return False
        self._seen.add(seen)
        self._order.append(seen)
        if len(self._order) > self.window:
            self._seen.discard(self._order.popleft())
        return True

    def __call__(self, lines: Iterable[Line]) -> Iterator[Line]:
        """``lines`` without the copies."""
        fresh = self.fresh
        return (line for line in lines if fresh(line))
