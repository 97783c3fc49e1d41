"""What one audit line says, in a few words: its kind, its subject, its figures, its content summary.

The keys read are the audit line's (``docs/audit-line.md``): ``detail.model``, ``provider``,
``tokens`` (``input`` includes the cached tokens, so it is never added to ``cache_read``),
``tool``, ``duration_ms``, ``message``, ``error_type``, ``exception_message``, ``decision``,
``guardrail_action``; the cost processor's ``cost_usd`` / ``unpriced``; content (``input``,
``output``: a string or a list of messages, maybe cut with ``truncated``/``original_length``);
a budget line's budget id, scope value, spend and limit; a security line's rules and count.
"""

from __future__ import annotations

from typing import Any, Final, TypeGuard

import orjson

from obs_pipeline.audit.line import AGENT, BUDGET, DENY, ERROR, LLM, SECURITY, TOOL
from obs_pipeline.auditquery.trail import Line

__all__ = ["KINDS", "SUMMARY_CHARS", "cost_of", "invalid_tokens_of", "is_problem", "kind_of", "subject", "summary",
           "text_of", "tokens_of"]

#: The kinds a replay can narrow to (``--kind``); everything else is ``other``.
KINDS: Final = (LLM, TOOL, AGENT, BUDGET, SECURITY)
#: The longest content summary shown in a table cell.
SUMMARY_CHARS: Final = 80
_TOKEN_KEYS: Final = ("input", "output", "cache_read", "cache_write", "reasoning", "total")


def kind_of(line: Line) -> str:
    """``llm``, ``tool``, ``agent``, ``budget``, ``security`` or ``other``: the line's category, coarsened."""
    category = line.record.get("category")
    return category if category in KINDS else "other"


def is_problem(line: Line) -> bool:
    """Whether ``--errors`` shows the line: its result is ``error`` or ``deny``."""
    return line.record.get("result") in (ERROR, DENY)


def cost_of(line: Line) -> float | None:
    """``detail.cost_usd`` when it is a number (a budget line's spend is not a cost)."""
    value = line.detail.get("cost_usd")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _count(value: Any) -> TypeGuard[int]:
    """Whether ``value`` is a token count: a non-negative integer (not a bool, a float, a negative)."""
    return type(value) is int and value >= 0


def tokens_of(line: Line) -> dict[str, int]:
    """``detail.tokens``, valid counts only: a negative or non-integer count (a buggy SDK) is never summed."""
    tokens = line.detail.get("tokens")
    if not isinstance(tokens, dict):
        return {}
    return {key: value for key in _TOKEN_KEYS if _count(value := tokens.get(key))}


def invalid_tokens_of(line: Line) -> int:
    """How many of ``detail.tokens``' counts :func:`tokens_of` leaves out as invalid (present, not a valid count)."""
    tokens = line.detail.get("tokens")
    if not isinstance(tokens, dict):
        return 0
    return sum(1 for key in _TOKEN_KEYS if tokens.get(key) is not None and not _count(tokens[key]))


def text_of(value: Any, limit: int = SUMMARY_CHARS, *, last: bool = False) -> str:
    """Content (a string, a message list, an object) as one line of at most ``limit`` characters.

    For a list of messages the text of one message is shown, the last one (``last``: the newest
    user turn of an input) or the first (an output's answer), prefixed with its role.
    """
    text = _flatten(value, last=last)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _flatten(value: Any, *, last: bool) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        if value[:1] in ("[", "{"):  # content: full keeps messages as their JSON text
            try:
                return _flatten(orjson.loads(value), last=last)
            except orjson.JSONDecodeError:
                return value  # cut to the limit: shown as it is
        return value
    if isinstance(value, list):
        messages = [item for item in value if item is not None]
        if not messages:
            return ""
        return _flatten(messages[-1] if last else messages[0], last=last)
    if isinstance(value, dict):
        for key in ("content", "text", "value", "result", "arguments", "parts"):
            if key in value:
                body = _flatten(value[key], last=False) if key != "parts" else _parts(value[key])
                role = value.get("role")
                return f"{role}: {body}" if isinstance(role, str) else body
    return orjson.dumps(value, default=str).decode()


def _parts(parts: Any) -> str:
    """The text of an OpenTelemetry GenAI message's parts (text parts, then tool calls by name)."""
    if not isinstance(parts, list):
        return _flatten(parts, last=False)
    texts: list[str] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("content"), str):
            texts.append(part["content"])
        elif part.get("type") == "tool_call" and isinstance(part.get("name"), str):
            texts.append(f"[tool call {part['name']}]")
        elif part.get("type") == "tool_call_response":
            texts.append(_flatten(part.get("response"), last=False))
    return " ".join(texts)


def subject(line: Line) -> str:
    """What the line is about: the model, the tool, the agent, the budget, else the event type."""
    detail = line.detail
    kind = kind_of(line)
    for key in {LLM: ("model",), TOOL: ("tool",), BUDGET: ("budget_id", "budget", "id")}.get(kind, ()):
        value = detail.get(key)
        if isinstance(value, str) and value:
            return value
    if kind == AGENT and line.text("agent"):
        return f"{line.record.get('event_type')} {line.text('agent')}"
    return str(line.record.get("event_type") or "")


def _money(value: Any) -> str:
    return f"${value:.4f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def summary(line: Line, limit: int = SUMMARY_CHARS) -> str:
    """A short text for a table cell: the error, else the content, else the figures that matter."""
    detail = line.detail
    kind = kind_of(line)
    if line.record.get("result") == ERROR or "error_type" in detail:
        parts = [str(detail[key]) for key in ("error_type", "exception_message", "message") if key in detail]
        if parts:
            return text_of(": ".join(parts), limit)
    if kind == BUDGET:
        return text_of(_budget_text(detail), limit)
    if kind == SECURITY:
        return text_of(_security_text(detail, str(line.record.get("result") or "")), limit)
    if "input" in detail or "output" in detail:
        shown = text_of(detail.get("input"), limit // 2, last=True)
        answer = text_of(detail.get("output"), limit // 2)
        return f"{shown} → {answer}" if answer else shown
    for key in ("decision", "guardrail_action", "message"):
        if key in detail:
            return text_of(f"{key}: {detail[key]}", limit)
    return ""


def _budget_text(detail: dict[str, Any]) -> str:
    spend, limit = detail.get("spend", detail.get("spend_usd")), detail.get("limit", detail.get("limit_usd"))
    scope = detail.get("scope_value", detail.get("scope"))
    parts = [f"{scope}" if scope is not None else "", f"{_money(spend)} of {_money(limit)}" if spend is not None else ""]
    state = detail.get("state", detail.get("warning"))
    if state is not None:
        parts.append(str(state))
    return " ".join(part for part in parts if part)


def _security_text(detail: dict[str, Any], result: str) -> str:
    """``2 redacted (aws-access-key, github-pat)``; ``detected`` in the redaction's shadow mode."""
    rules = detail.get("rules")
    count = detail.get("count")
    named = ", ".join(str(rule) for rule in rules) if isinstance(rules, list) else str(rules or "")
    verb = result if result in ("redacted", "detected") else "found"
    text = f"{count} {verb}" if count is not None else ""
    if named:
        text = f"{text} ({named})" if text else named
    for key in ("guardrail_action", "decision", "message"):
        if key in detail:
            text = f"{text} {key}: {detail[key]}".strip()
    return text
