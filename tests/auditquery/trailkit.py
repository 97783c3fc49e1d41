"""Hand-built audit trails: lines made with the audit line's own builder, written as the exporter writes them."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from obs_pipeline.audit.files import rotated_name
from obs_pipeline.audit.line import build

T1, T2, T3 = "a" * 31 + "1", "b" * 31 + "2", "c" * 31 + "3"


def span_id(name: str) -> str:
    """A 16-hex span id made from a short name."""
    return name.encode().hex().ljust(16, "0")[:16]


def span(ts: str, trace: str, name: str, *, parent: str | None = None, event_type: str, category: str,
         session: str | None = None, result: str = "allow", detail: dict[str, Any] | None = None,
         agent: str | None = None, user: str | None = None, service: str = "support") -> dict[str, Any]:
    sid = span_id(name)
    return dict(build(timestamp=f"2026-03-17T{ts}.000000Z", session_id=session, task_id=None, event_type=event_type,
                      category=category, result=result, detail=detail or {}, event_id=f"{trace}:{sid}",
                      trace_id=trace, span_id=sid, parent_span_id=span_id(parent) if parent else None,
                      user_id=user, agent=agent, service=service))


def log(ts: str, trace: str | None, at: str | None, *, event_type: str, category: str, result: str = "allow",
        detail: dict[str, Any] | None = None, session: str | None = None, event_id: str) -> dict[str, Any]:
    return dict(build(timestamp=f"2026-03-17T{ts}.000000Z", session_id=session, task_id=None, event_type=event_type,
                      category=category, result=result, detail=detail or {}, event_id=event_id, trace_id=trace,
                      span_id=span_id(at) if at else None, parent_span_id=None, user_id=None, agent=None,
                      service="support"))


def chat(ts: str, trace: str, name: str, parent: str, model: str, tokens: tuple[int, int],  # noqa: PLR0917
         cost: float | None, **extra: Any) -> dict[str, Any]:
    detail: dict[str, Any] = {"model": model, "provider": extra.pop("provider", "anthropic"),
                              "tokens": {"input": tokens[0], "output": tokens[1]}, "duration_ms": 1200.0}
    if cost is None:
        detail["unpriced"] = True
    else:
        detail["cost_usd"] = cost
    detail.update(extra.pop("detail", {}))
    return span(ts, trace, name, parent=parent, event_type="chat", category="llm", detail=detail, **extra)


def tool(ts: str, trace: str, name: str, parent: str, tool_name: str, **extra: Any) -> dict[str, Any]:
    detail = {"tool": tool_name, "duration_ms": 15.0, **extra.pop("detail", {})}
    return span(ts, trace, name, parent=parent, event_type="execute_tool", category="tool", detail=detail, **extra)


def session_one_turn_one() -> list[dict[str, Any]]:
    """Turn 1 of s1, in write order (children end, and are written, before their parent)."""
    return [
        chat("10:00:01", T1, "c1", "a", "claude-sonnet-4-5", (100, 20), 0.01,
             detail={"input": [{"role": "user", "parts": [{"type": "text", "content": "find the invoice"}]}],
                     "output": "Searching."}),
        tool("10:00:02", T1, "x1", "a", "search", detail={"input": '{"q": "invoice"}', "output": "3 results"}),
        chat("10:00:03", T1, "c2", "a", "claude-sonnet-4-5", (200, 30), 0.02),
        log("10:00:03", T1, "c2", event_type="secret_redacted", category="security", result="redacted",
            detail={"rules": ["aws_access_key"], "locations": ["gen_ai.input.messages"], "count": 1},
            event_id="log:sec1"),
        span("10:00:00", T1, "a", event_type="invoke_agent", category="agent", session="s1", agent="planner",
             user="u1"),
    ]


def session_one_turn_two() -> list[dict[str, Any]]:
    """Turn 2 of s1: a sub-agent, an unpriced failed call, a denied tool call, a budget deny."""
    return [
        chat("10:05:02", T2, "c3", "b2", "mystery-model", (50, 5), None, provider="acme", result="error",
             detail={"error_type": "RateLimitError"}),
        tool("10:05:03", T2, "x2", "b2", "shell", result="deny", detail={"decision": "deny"}),
        span("10:05:01", T2, "b2", parent="b", event_type="invoke_agent", category="agent", agent="coder"),
        log("10:05:04", T2, "b", event_type="budget_exceeded", category="budget", result="deny",
            detail={"budget_id": "session-cap", "scope_value": "s1", "spend": 5.2, "limit": 5.0},
            event_id="log:bud1"),
        span("10:05:00", T2, "b", event_type="invoke_agent", category="agent", session="s1", agent="planner",
             user="u1"),
    ]


def session_two() -> list[dict[str, Any]]:
    """s2: one turn, one priced call (written twice: a retried batch)."""
    call = chat("11:00:01", T3, "c4", "d", "gpt-4o", (1000, 100), 0.5, provider="openai")
    return [
        call,
        span("11:00:00", T3, "d", event_type="invoke_agent", category="agent", session="s2", agent="helper",
             user="u2"),
        call,
    ]


def dumps(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def write_trail(live: Path, *, garbage: bool = False) -> Path:
    """Rotated gzip (turn 1), rotated plain (turn 2, maybe a garbage line), live (s2). Returns ``live``."""
    live.parent.mkdir(parents=True, exist_ok=True)
    oldest = rotated_name(live, datetime(2026, 3, 17, 10, 1, tzinfo=UTC))
    with gzip.open(oldest.with_name(oldest.name + ".gz"), "wb") as out:
        out.write(dumps(session_one_turn_one()))
    middle = dumps(session_one_turn_two())
    if garbage:
        first, rest = middle.split(b"\n", 1)
        middle = first + b"\n" + b"this is not json\n" + rest
    rotated_name(live, datetime(2026, 3, 17, 10, 6, tzinfo=UTC)).write_bytes(middle)
    live.write_bytes(dumps(session_two()))
    return live
