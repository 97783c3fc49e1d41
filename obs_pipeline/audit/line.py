"""The audit line (DESIGN §5): its keys in order, its vocabulary, and the one builder.

Every producer of audit lines (the log path of ``jsonl_audit``, the minimal :func:`error_line`
of a span or log record whose mapping failed, and next ``audit``/``replay``) builds the line with
:func:`build`, so the key order, which readers and the coming hash chain rely on, is written
once: :data:`KEYS` is read off :class:`AuditLine`, the builder's return type. The one exception
is the span hot path, which writes the same dict out as a literal; a test holds it to :data:`KEYS`.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final, Protocol, TypedDict

__all__ = [
    "AGENT", "ALLOW", "BUDGET", "CATEGORIES", "CONFIG", "DENY", "ERROR", "KEYS", "LLM", "OTHER", "RESULTS",
    "SECURITY", "TOOL", "AuditLine", "build", "content_id", "error_line",
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
    trace_id: str | None
    span_id: str | None
    service: str | None


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
DENY: Final = "deny"  # a tool-call decision or a guardrail said no
ERROR: Final = "error"
RESULTS: Final = (ALLOW, DENY, ERROR)


def build(*, timestamp: str, session_id: str | None, task_id: str | None, event_type: str, category: str,
          result: str, detail: dict[str, Any], event_id: str, trace_id: str | None, span_id: str | None,
          service: str | None) -> AuditLine:
    """The audit line of one event, keys in :data:`KEYS` order.

    Keyword-only: eleven fields, several of them ``str | None`` side by side (session and task,
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
        "service": service,
    }


def error_line(*, timestamp: str, event_type: str, result: str, error: BaseException, event_id: str,
               trace_id: str | None, span_id: str | None, service: str | None) -> AuditLine:
    """The minimal line of a record whose mapping raised ``error``, so no record is silently lost.

    ``detail.mapping_error`` names the exception's class, never its message (which could quote
    a value); session and task are unknown, the category is ``other``.
    """
    return build(timestamp=timestamp, session_id=None, task_id=None, event_type=event_type, category=OTHER,
                 result=result, detail={"mapping_error": type(error).__name__}, event_id=event_id,
                 trace_id=trace_id, span_id=span_id, service=service)


class _Serializable(Protocol):
    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...  # noqa: N802 - protobuf's name


def content_id(kind: str, message: _Serializable) -> str:
    """A stable ``event_id`` for a record without usable ids: ``<kind>:`` + 16 hex of its SHA-256.

    The same record (same serialized content) always gets the same id, so a replayed or retried
    record can be deduplicated downstream.
    """
    digest = hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()
    return f"{kind}:{digest[:16]}"
