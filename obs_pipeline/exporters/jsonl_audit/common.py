"""What span and log mapping share: the attribute slots, value readers, timestamps and ids.

The audit line (DESIGN §5) has a fixed key order: ``timestamp, session_id, task_id, event_type,
category, result, detail, event_id, trace_id, span_id, service``; ``detail`` holds only keys that
have values (``model``, ``provider``, ``tokens``, ``tool``, ``agent``, ``duration_ms``,
``message``, ``error_type``, plus a log's own detail fields).

The GenAI attribute names come from :mod:`obs_pipeline.genai`; here they become *slots*: a
precomputed ``dict[str, int]`` from every canonical name and alias to a position in a small list,
so reading a record's attributes is one dict lookup per attribute and no per-attribute objects.
"""

from __future__ import annotations

import hashlib
import math
import time
from base64 import b64encode
from collections.abc import Iterable
from typing import Any

from obs_pipeline import genai

STATUS_CODE_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR
#: The range of an OTLP ``int_value``; a token count outside it is not a count (and orjson
#: refuses integers beyond 64 bits).
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

#: Attributes the audit line reads, in slot order. Integer-valued ones come first, so a slot
#: number alone says which accessor reads it.
WANTED: tuple[str, ...] = (
    genai.USAGE_INPUT_TOKENS,
    genai.USAGE_OUTPUT_TOKENS,
    genai.USAGE_CACHE_READ_INPUT_TOKENS,
    genai.USAGE_CACHE_WRITE_INPUT_TOKENS,
    genai.USAGE_REASONING_OUTPUT_TOKENS,
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
)
N_WANTED = len(WANTED)
N_INT = sum(1 for name in WANTED if name in genai.INT_ATTRIBUTES)
if not all(name in genai.INT_ATTRIBUTES for name in WANTED[:N_INT]):
    raise AssertionError("integer attributes must come first in WANTED")
(IN, OUT, CACHE_READ, CACHE_WRITE, REASONING, OPERATION, PROVIDER, REQUEST_MODEL, RESPONSE_MODEL,
 SESSION, TASK, AGENT, TOOL, ERROR_TYPE, OI_KIND, TL_KIND) = range(N_WANTED)


def _build_slots() -> dict[str, int]:
    """Attribute name -> slot: ``i`` for the canonical ``WANTED[i]``, ``i + N_WANTED`` for its aliases."""
    slots = {name: i for i, name in enumerate(WANTED)}
    for alias, canonical_name in genai.ALIASES.items():
        if canonical_name in slots:
            slots[alias] = slots[canonical_name] + N_WANTED
    return slots


#: Every attribute name the audit line reads, canonical or alias, with its slot.
SLOTS: dict[str, int] = _build_slots()
#: Slots (canonical and alias) whose value is an integer.
INT_SLOTS = frozenset(s for s in SLOTS.values() if s % N_WANTED < N_INT)


# --- values -------------------------------------------------------------------------------------

def any_value_to_json(value: Any) -> Any:
    """An ``AnyValue`` as plain JSON data: kvlist -> dict, array -> list, bytes -> base64 text.

    For log bodies and the debug exporter; never called per span attribute on the hot path.
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


def str_fallback(value: Any) -> str | None:
    """A scalar where a string was expected (an integer session id): its text, else None."""
    kind = value.WhichOneof("value")
    if kind in ("int_value", "double_value", "bool_value"):
        return str(getattr(value, kind))
    return None


def int_fallback(value: Any) -> int | None:
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


def normalize(slot: int, value: str | None) -> str | None:
    """The current spelling of a provider or operation value (``gemini`` -> ``gcp.gemini``)."""
    if value is not None:
        if slot == PROVIDER:
            return genai.normalize_provider(value)
        if slot == OPERATION:
            return genai.normalize_operation(value)
    return value


def read_value(slot: int, value: Any) -> Any:
    """The value of an ``AnyValue`` for ``slot`` (canonical slot number): an int or a string."""
    if slot < N_INT:
        return value.int_value or int_fallback(value)
    return normalize(slot, value.string_value or str_fallback(value))


def read_wanted(attributes: Iterable[Any]) -> list[Any]:
    """The wanted values of ``attributes`` (``KeyValue`` objects) by slot; canonical beats alias.

    For resources and log records. The span hot path has its own byte-level version.
    """
    vals: list[Any] = [None] * N_WANTED
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


def tokens(vals: list[Any]) -> dict[str, int] | None:
    """The ``detail.tokens`` object from slot values: only the counts that were reported."""
    found = {name: vals[slot] for name, slot in _TOKEN_SLOTS if vals[slot] is not None}
    return found or None


_TOKEN_SLOTS = (("input", IN), ("output", OUT), ("cache_read", CACHE_READ), ("cache_write", CACHE_WRITE),
                ("reasoning", REASONING))


def category(vals: list[Any]) -> str:
    """The audit category from the operation name, else the OpenInference/OpenLLMetry span kind."""
    return genai.category(vals[OPERATION], vals[OI_KIND] or vals[TL_KIND])


# --- timestamps and ids -------------------------------------------------------------------------

SECOND_PREFIX: dict[int, str] = {}
#: ``"000"`` .. ``"999"``: two lookups format microseconds faster than ``:06d``.
THREE_DIGITS: tuple[str, ...] = tuple(f"{i:03d}" for i in range(1000))


def second_prefix(second: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of a Unix second, cached: a batch's records share few seconds."""
    text = SECOND_PREFIX.get(second)
    if text is None:
        if len(SECOND_PREFIX) > 4096:
            SECOND_PREFIX.clear()
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        SECOND_PREFIX[second] = text
    return text


def format_ns(unix_nano: int) -> str:
    """RFC 3339 UTC with microseconds and ``Z``: ``2026-03-17T10:30:45.123456Z``."""
    second, nanos = divmod(unix_nano, 1_000_000_000)
    return f"{second_prefix(second)}.{nanos // 1000:06d}Z"


def content_id(kind: str, message: Any) -> str:
    """A stable id for a record without usable ids: ``<kind>:`` + 16 hex of its SHA-256.

    The same record (same serialized content) always gets the same id, so a replayed or retried
    record can be deduplicated downstream.
    """
    digest = hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()
    return f"{kind}:{digest[:16]}"


# --- resources ----------------------------------------------------------------------------------

def resource_context(resource: Any) -> tuple[str | None, str | None, str | None]:
    """``(service.name, session id, task id)`` of a resource: computed once per resource group."""
    service = None
    for kv in resource.attributes:
        if kv.key == genai.SERVICE_NAME:
            service = kv.value.string_value or None
            break
    vals = read_wanted(resource.attributes)
    return service, vals[SESSION], vals[TASK]
