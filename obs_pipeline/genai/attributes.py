"""Reading GenAI attributes one way: slots, value readers, and the fields derived from them.

The names and aliases live in :mod:`obs_pipeline.genai`; here they become *slots*: a precomputed
``dict[str, int]`` from every canonical name and alias to a position in a small list, so reading
a record's attributes is one dict lookup per attribute and no per-attribute objects. Every
component that reads GenAI data from ``KeyValue`` attributes (the audit line, debug, and next
cost, budgets, redaction, a Prometheus exporter) reads it through :func:`read_wanted`, so an
alias, a token count sent as a string or a renamed provider value is understood the same way
everywhere.

Precedence: the canonical name wins over any alias, whatever their order in the record.
"""

from __future__ import annotations

import math
from base64 import b64encode
from collections.abc import Iterable
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from obs_pipeline import genai
from obs_pipeline.audit import line

__all__ = [
    "AGENT", "CACHE_READ", "CACHE_WRITE", "DECISION", "ERROR_TYPE", "EXCEPTION_MESSAGE", "EXCEPTION_TYPE",
    "FINISH_REASONS", "GUARDRAIL", "IN", "INT64_MAX", "INT64_MIN", "INT_SLOTS", "N_INT", "N_WANTED", "OI_KIND",
    "OPERATION", "OUT", "PROVIDER", "REASONING", "REQUEST_MODEL", "RESPONSE_MODEL", "SESSION", "SLOTS", "TASK",
    "TL_KIND", "TOOL", "TOTAL", "USER", "WANTED", "ResourceContext", "Value", "any_value_to_json", "category",
    "cost_amount", "decision_result", "int_fallback", "normalize", "number", "read_value", "read_wanted", "resource_context",
    "resource_context_of", "str_fallback", "tokens",
]

#: The range of an OTLP ``int_value``; a token count outside it is not a count (and orjson
#: refuses integers beyond 64 bits).
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

#: What a slot holds: a token count, a string (cut to its cap: :class:`~obs_pipeline.audit.line.Cut`),
#: the finish reasons (a tuple of strings, or a :class:`~obs_pipeline.audit.line.CutList`), or None
#: when the record does not carry it.
Value = int | str | tuple[str, ...] | list[str] | None
#: ``(service.name, session id, task id, user id, agent name)`` of a resource.
ResourceContext = tuple[str | None, str | None, str | None, str | None, str | None]

#: Attributes read into slots, in slot order. Integer-valued ones come first, so a slot number
#: alone says which accessor reads it.
WANTED: tuple[str, ...] = (
    genai.USAGE_INPUT_TOKENS,
    genai.USAGE_OUTPUT_TOKENS,
    genai.USAGE_CACHE_READ_INPUT_TOKENS,
    genai.USAGE_CACHE_WRITE_INPUT_TOKENS,
    genai.USAGE_REASONING_OUTPUT_TOKENS,
    genai.USAGE_TOTAL_TOKENS,
    genai.OPERATION_NAME,
    genai.PROVIDER_NAME,
    genai.REQUEST_MODEL,
    genai.RESPONSE_MODEL,
    genai.CONVERSATION_ID,
    genai.TASK_ID,
    genai.AGENT_NAME,
    genai.TOOL_NAME,
    genai.ERROR_TYPE,
    genai.OPENINFERENCE_SPAN_KIND,
    genai.TRACELOOP_SPAN_KIND,
    genai.USER_ID,
    genai.TOOL_CALL_DECISION,
    genai.GUARDRAIL_ACTION,
    genai.EXCEPTION_TYPE,
    genai.EXCEPTION_MESSAGE,
    genai.FINISH_REASONS,
)
N_WANTED = len(WANTED)
N_INT = sum(1 for name in WANTED if name in genai.INT_ATTRIBUTES)
if not all(name in genai.INT_ATTRIBUTES for name in WANTED[:N_INT]):
    raise AssertionError("integer attributes must come first in WANTED")
(IN, OUT, CACHE_READ, CACHE_WRITE, REASONING, TOTAL, OPERATION, PROVIDER, REQUEST_MODEL, RESPONSE_MODEL,
 SESSION, TASK, AGENT, TOOL, ERROR_TYPE, OI_KIND, TL_KIND, USER, DECISION, GUARDRAIL, EXCEPTION_TYPE,
 EXCEPTION_MESSAGE, FINISH_REASONS) = range(N_WANTED)
#: Slots whose text is a message, capped at ``TEXT_CHARS``; other strings are names and ids (``NAME_CHARS``).
_MESSAGE_SLOTS = frozenset({EXCEPTION_MESSAGE})


def _build_slots() -> dict[str, int]:
    """Attribute name -> slot: ``i`` for the canonical ``WANTED[i]``, ``i + N_WANTED`` for its aliases."""
    slots = {name: i for i, name in enumerate(WANTED)}
    for alias, canonical_name in genai.ALIASES.items():
        if canonical_name in slots:
            slots[alias] = slots[canonical_name] + N_WANTED
    return slots


#: Every attribute name read into a slot, canonical or alias, with its slot.
SLOTS: dict[str, int] = _build_slots()
#: Slots (canonical and alias) whose value is an integer.
INT_SLOTS = frozenset(s for s in SLOTS.values() if s % N_WANTED < N_INT)


# --- values -------------------------------------------------------------------------------------

def any_value_to_json(value: AnyValue) -> Any:
    """An ``AnyValue`` as plain JSON data: kvlist -> dict, array -> list, bytes -> base64 text.

    For log bodies and the debug exporter; never called per span attribute on a hot path.
    """
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "kvlist_value":
        return {kv.key: any_value_to_json(kv.value) for kv in value.kvlist_value.values}
    if kind == "array_value":
        return [any_value_to_json(v) for v in value.array_value.values]
    if kind == "bytes_value":
        return b64encode(value.bytes_value).decode("ascii")
    if kind is None:
        return None
    return getattr(value, kind)


def str_fallback(value: AnyValue) -> str | None:
    """A number where a string was expected (an integer session id): its decimal text, else None.

    A boolean, an array or a map is no id nor name: None, as if absent.
    """
    kind = value.WhichOneof("value")
    if kind in ("int_value", "double_value"):
        return str(getattr(value, kind))
    return None


def int_fallback(value: AnyValue) -> int | None:
    """A token count sent as a double or a numeric string (some SDKs do): an int, else None.

    Never raises: what is not a finite number in the int64 range (``inf``, ``NaN``, ``"1e999"``,
    ``1e300``, 5000 digits) is not a count, and is treated as absent.
    """
    kind = value.WhichOneof("value")
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        number: float = value.double_value
    elif kind == "string_value":
        text = value.string_value
        try:
            count = int(text)  # exact for digits (a float would round past 2**53)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return None
        else:
            return count if INT64_MIN <= count <= INT64_MAX else None
    else:
        return None
    if not math.isfinite(number):
        return None
    count = int(number)
    return count if INT64_MIN <= count <= INT64_MAX else None


def number(value: AnyValue) -> float | None:
    """The number a value holds: a double, an int, or a numeric string (some SDKs send costs as text).

    None for anything else (absent, a boolean, bytes, an array, a map, text that is no number). No
    range check: NaN, infinities and negatives come back as they are, for the caller to judge
    (budgets count them as bad amounts; :func:`cost_amount` treats them as absent).
    """
    kind = value.WhichOneof("value")
    if kind == "double_value":
        return value.double_value
    if kind == "int_value":
        return float(value.int_value)
    if kind == "string_value":
        try:
            return float(value.string_value)
        except ValueError:
            return None
    return None


def cost_amount(value: AnyValue) -> float | None:
    """A cost (``gen_ai.usage.cost.amount`` or an alias): a finite, non-negative :func:`number`, else None."""
    amount = number(value)
    return amount if amount is not None and 0.0 <= amount < math.inf else None


def normalize(slot: int, value: str | None) -> str | None:
    """The current spelling of a provider or operation value (``gemini`` -> ``gcp.gemini``)."""
    if value is not None:
        if slot == PROVIDER:
            return genai.normalize_provider(value)
        if slot == OPERATION:
            return genai.normalize_operation(value)
    return value


def _reasons(value: AnyValue) -> tuple[str, ...] | list[str] | None:
    """``gen_ai.response.finish_reasons``: an array of strings (a single string is one reason).

    Each reason is capped at ``NAME_CHARS``, the list at ``MAX_LIST_ITEMS``; a cut list is a
    :class:`~obs_pipeline.audit.line.CutList`. Items that are not text (or numbers) are left out.
    """
    kind = value.WhichOneof("value")
    if kind == "array_value":
        items = value.array_value.values
        reasons = [r for r in (v.string_value or str_fallback(v) for v in items) if r]
    elif kind == "string_value":
        reasons = [value.string_value]
    else:
        return None
    if not reasons:
        return None
    capped = [line.cap(r) for r in reasons[:line.MAX_LIST_ITEMS]]
    if len(reasons) > line.MAX_LIST_ITEMS or any(isinstance(r, line.Cut) for r in capped):
        return line.CutList(capped)
    return tuple(capped)


def read_value(slot: int, value: AnyValue) -> Value:
    """The value of an ``AnyValue`` for ``slot`` (canonical slot number): an int, a string or the reasons.

    Strings are capped (``TEXT_CHARS`` for messages, else ``NAME_CHARS``): a cut one is a
    :class:`~obs_pipeline.audit.line.Cut`.
    """
    if slot < N_INT:
        return value.int_value or int_fallback(value)
    if slot == FINISH_REASONS:
        return _reasons(value)
    text = normalize(slot, value.string_value or str_fallback(value))
    if text is None:
        return None
    return line.cap(text, line.TEXT_CHARS if slot in _MESSAGE_SLOTS else line.NAME_CHARS)


def read_wanted(attributes: Iterable[KeyValue]) -> list[Value]:
    """The values of ``attributes`` by slot (None where absent); canonical beats alias.

    For resources, log records and debug. The audit span path has its own byte-level version
    that must agree with this one (a test compares them on random spans).
    """
    vals: list[Value] = [None] * N_WANTED
    get = SLOTS.get
    for kv in attributes:
        slot = get(kv.key)
        if slot is None:
            continue
        if slot >= N_WANTED:
            slot -= N_WANTED
            if vals[slot] is not None:
                continue
        vals[slot] = read_value(slot, kv.value)
    return vals


_TOKEN_SLOTS = (("input", IN), ("output", OUT), ("cache_read", CACHE_READ), ("cache_write", CACHE_WRITE),
                ("reasoning", REASONING))


def tokens(vals: list[Value]) -> dict[str, int] | None:
    """The ``tokens`` object (``{"input": 10, "output": 3}``): only the counts that were reported.

    ``total`` (``gen_ai.usage.total_tokens`` and its aliases) appears only when neither input nor
    output is reported: it is never split into input and output, nor written beside them.
    """
    found = {name: count for name, slot in _TOKEN_SLOTS if isinstance(count := vals[slot], int)}
    if "input" not in found and "output" not in found and isinstance(total := vals[TOTAL], int):
        found["total"] = total
    return found or None


def category(vals: list[Value]) -> str:
    """The audit category from the operation name, else the OpenInference/OpenLLMetry span kind."""
    operation, kind = vals[OPERATION], vals[OI_KIND] or vals[TL_KIND]
    return genai.category(operation if isinstance(operation, str) else None, kind if isinstance(kind, str) else None)


def decision_result(decision: Value, guardrail: Value) -> str | None:
    """``deny`` when the tool-call decision or the guardrail action says no (``genai.DENY_DECISIONS``), else None."""
    for value in (decision, guardrail):
        if isinstance(value, str) and value.lower() in genai.DENY_DECISIONS:
            return line.DENY
    return None


# --- resources ----------------------------------------------------------------------------------

def _text(value: Value) -> str | None:
    return value if isinstance(value, str) else None


def resource_context_of(attributes: Iterable[KeyValue]) -> ResourceContext:
    """``(service.name, session id, task id, user id, agent name)`` from a resource's attributes, capped."""
    attributes = list(attributes)
    service = None
    for kv in attributes:
        if kv.key == genai.SERVICE_NAME:
            service = line.cap(kv.value.string_value) if kv.value.string_value else None
            break
    vals = read_wanted(attributes)
    return service, _text(vals[SESSION]), _text(vals[TASK]), _text(vals[USER]), _text(vals[AGENT])


def resource_context(resource: Resource) -> ResourceContext:
    """:func:`resource_context_of` a ``Resource``: computed once per resource group."""
    return resource_context_of(resource.attributes)
