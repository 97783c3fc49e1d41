"""The audit line (DESIGN §5): its keys in order, its vocabulary, and the one builder.

Every producer of audit lines (the log path of ``jsonl_audit``, its derived security and budget
lines, and the minimal :func:`error_line` of a span or log record whose mapping failed) builds the
line with :func:`build`, so the key order, which readers rely on, is written once: :data:`KEYS` is read off :class:`AuditLine`, the builder's return type. The one exception
is the span hot path, which writes the same dict out as a literal; a test holds it to :data:`KEYS`.

The rules every producer shares live here too: which OTLP ids are valid (:func:`valid_id`), the
caps on string values (:func:`cap`, :data:`NAME_CHARS`, :data:`TEXT_CHARS`) and how a line says
that one of its values was cut (:func:`mark_cut`: ``detail.truncated_fields``).
"""

from __future__ import annotations

import hashlib
from typing import Any, Final, Protocol, TypedDict

__all__ = [
    "AGENT",
    "ALLOW",
    "BUDGET",
    "CATEGORIES",
    "CONFIG",
    "DENY",
    "DETECTED",
    "ERROR",
    "KEYS",
    "LLM",
    "MAX_LIST_ITEMS",
    "NAME_CHARS",
    "OTHER",
    "REDACTED",
    "REPAIRED_ATTRIBUTE",
    "RESULTS",
    "SECURITY",
    "SPAN_ID_BYTES",
    "TEXT_CHARS",
    "TEXT_KEYS",
    "TOOL",
    "TRACE_ID_BYTES",
    "AuditLine",
    "Cut",
    "CutList",
    "build",
    "cap",
    "content_id",
    "error_line",
    "mark_cut",
    "valid_id",
]


class AuditLine(TypedDict):
    """One audit line, keys in their written order (``orjson`` keeps a dict's order)."""

    timestamp: str  # RFC 3339 UTC, microseconds, ``Z``
    session_id: str | None
    task_id: str | None
    event_type: str  # the operation (``chat``), else the span/event name
    category: str  # one of CATEGORIES, or the source's own
    result: str  # one of RESULTS, or the source's own
    detail: dict[str, Any]  # only keys that have values
    event_id: str  # unique per event, stable across a sender's retry
    trace_id: str | None  # 32 hex digits, or None when absent or invalid
    span_id: str | None  # 16 hex digits, or None when absent or invalid
    parent_span_id: str | None  # 16 hex digits; None for a root span, and when absent or invalid
    user_id: str | None  # ``user.id`` and its aliases
    agent: str | None  # ``gen_ai.agent.name`` and its aliases
    service: str | None


#: The attribute a receiver sets on a record whose values it had to convert to decode it (a lone
#: surrogate, ``1e400``, a 30-digit integer): the kinds of conversion, sorted. The audit line
#: shows them in ``detail.repaired``, so a converted value never passes for what the source wrote.
REPAIRED_ATTRIBUTE: Final = "obs_pipeline.decoding.repaired"

#: The audit line's keys, in order.
KEYS: Final[tuple[str, ...]] = tuple(AuditLine.__annotations__)

# Categories: what kind of event it is.
LLM: Final = "llm"
TOOL: Final = "tool"
AGENT: Final = "agent"
SECURITY: Final = "security"
BUDGET: Final = "budget"
CONFIG: Final = "config"
OTHER: Final = "other"
CATEGORIES: Final = (LLM, TOOL, AGENT, SECURITY, BUDGET, CONFIG, OTHER)

# Results: what came of it.
ALLOW: Final = "allow"
DENY: Final = "deny"  # a tool-call decision, a guardrail or an exceeded budget said no
ERROR: Final = "error"
REDACTED: Final = "redacted"  # a security line: secrets were masked before any exporter saw them
DETECTED: Final = "detected"  # a security line: redaction in detect mode found secrets, left as they were
RESULTS: Final = (ALLOW, DENY, ERROR, REDACTED, DETECTED)

#: The line's keys whose value is a string or None, whatever the source wrote (``timestamp`` and
#: ``event_type``, ``category``, ``result``, ``event_id`` are always strings).
TEXT_KEYS: Final = ("session_id", "task_id", "event_type", "category", "result", "event_id", "trace_id",
                    "span_id", "parent_span_id", "user_id", "agent", "service")

# --- ids ------------------------------------------------------------------------------------------

#: OTLP's id sizes: an id of another length, or all zero bytes, is invalid (the OTLP spec).
TRACE_ID_BYTES: Final = 16
SPAN_ID_BYTES: Final = 8
_ZERO_TRACE: Final = bytes(TRACE_ID_BYTES)
_ZERO_SPAN: Final = bytes(SPAN_ID_BYTES)


def valid_id(raw: bytes, size: int) -> bool:
    """Whether ``raw`` is a valid OTLP trace (``size`` 16) or span (8) id: that long, not all zero."""
    return len(raw) == size and raw != (_ZERO_TRACE if size == TRACE_ID_BYTES else _ZERO_SPAN)


# --- string caps ----------------------------------------------------------------------------------

#: The longest string a line carries where a name or an id belongs (ids, names, model, provider,
#: tool, agent, category, result, event type, error type, finish reasons), in characters.
NAME_CHARS: Final = 1024
#: The longest messages (``detail.message``, ``detail.exception_message``).
TEXT_CHARS: Final = 4096
#: The most finish reasons kept.
MAX_LIST_ITEMS: Final = 64


class Cut(str):
    """A string value cut to its cap: written as the string, and named in ``detail.truncated_fields``."""

    __slots__ = ()


class CutList(list[Any]):
    """A list value cut to its cap (too many items, or an item cut): as :class:`Cut`."""


def cap(value: str, limit: int = NAME_CHARS) -> str:
    """``value``, or its first ``limit`` characters as a :class:`Cut` when it is longer."""
    return Cut(value[:limit]) if len(value) > limit else value


def _is_cut(value: Any) -> bool:
    return isinstance(value, (Cut, CutList))


def mark_cut(line: AuditLine) -> None:
    """Name every value of ``line`` cut to its cap in ``detail.truncated_fields`` (key names, in line order).

    Looks at the top-level values and at ``detail``'s own values (not inside nested objects,
    which the mapping never fills). Does nothing when nothing was cut.
    """
    detail = line["detail"]
    cut = [key for key, value in line.items() if key != "detail" and _is_cut(value)]
    cut += [key for key, value in detail.items() if _is_cut(value)]
    if cut:
        detail["truncated_fields"] = cut


def build(*, timestamp: str, session_id: str | None, task_id: str | None, event_type: str, category: str,
          result: str, detail: dict[str, Any], event_id: str, trace_id: str | None, span_id: str | None,
          parent_span_id: str | None, user_id: str | None, agent: str | None,
          service: str | None) -> AuditLine:
    """The audit line of one event, keys in :data:`KEYS` order.

    Keyword-only: fourteen fields, several of them ``str | None`` side by side (session and task,
    trace and span), are too easy to swap by position. The span hot path writes this dict out
    as a literal instead (the call costs 2% there, ``bench/audit_mapping.py``); a test holds
    every path to :data:`KEYS`.
    """
    return {
        "timestamp": timestamp,
        "session_id": session_id,
        "task_id": task_id,
        "event_type": event_type,
        "category": category,
        "result": result,
        "detail": detail,
        "event_id": event_id,
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent_span_id,
        "user_id": user_id,
        "agent": agent,
        "service": service,
    }


def error_line(*, timestamp: str, event_type: str, result: str, error: BaseException, event_id: str,
               trace_id: str | None, span_id: str | None, service: str | None,
               invalid_ids: bool = False) -> AuditLine:
    """The minimal line of a record whose mapping raised ``error``, so no record is silently lost.

    ``detail.mapping_error`` names the exception's class, never its message (which could quote
    a value); session, task, parent, user and agent are unknown, the category is ``other``.
    ``invalid_ids`` adds ``detail.invalid_ids`` (the record's ids were not written).
    """
    detail: dict[str, Any] = {"mapping_error": type(error).__name__}
    if invalid_ids:
        detail["invalid_ids"] = True
    line = build(timestamp=timestamp, session_id=None, task_id=None, event_type=cap(event_type),
                 category=OTHER, result=result, detail=detail, event_id=event_id, trace_id=trace_id,
                 span_id=span_id, parent_span_id=None, user_id=None, agent=None,
                 service=None if service is None else cap(service))
    mark_cut(line)
    return line


class _Serializable(Protocol):
    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...  # noqa: N802 - protobuf's name


def content_id(kind: str, message: _Serializable) -> str:
    """A stable ``event_id`` for a record without usable ids: ``<kind>:`` + 16 hex of its SHA-256.

    The same record (same serialized content) always gets the same id, so a replayed or retried
    record can be deduplicated downstream.
    """
    digest = hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()
    return f"{kind}:{digest[:16]}"
