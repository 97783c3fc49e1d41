"""What other processors wrote on a span or record, turned into audit detail and audit lines.

* cost (the ``cost`` processor): ``detail.cost_usd`` from ``gen_ai.usage.cost.amount``, and
  ``detail.unpriced: true`` from ``gen_ai.usage.cost.unpriced``;
* content (:mod:`.content`): ``detail.input`` / ``detail.output`` / ``detail.system``;
* redaction (the ``redaction`` processor): a ``security`` line after the record's own, naming the
  rule ids and locations that were masked (``redaction.masked.*``) or, in ``mode: detect``, would
  have been (``redaction.detected.*``), never a value;
* budgets (the ``budget`` processor): a ``budget`` line when the span carries ``budget.event``
  (``exceeded``: result ``deny``; ``warning``: ``allow``).

The span hot path never looks at these attributes unless the span has one: their keys are in
the encoder's key table (:func:`key_names`), the loop only collects their serialized
``KeyValue``s, and :func:`derive` runs for the few spans that had any.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Iterable
from typing import Any, Final

from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from obs_pipeline.audit import line as audit
from obs_pipeline.exporters.jsonl_audit.content import CONTENT_NAMES, Content, ContentPolicy, content_detail
from obs_pipeline.genai import COST_AMOUNT, COST_UNPRICED  # (re-exported: the cost processor writes them)

__all__ = [
    "BUDGET_EVENT", "COST_AMOUNT", "COST_UNPRICED", "EVENT_BUDGET_EXCEEDED", "EVENT_BUDGET_WARNING",
    "EVENT_SECRET_REDACTED", "cost_of", "derive", "derive_from", "key_names",
]

BUDGET_EVENT: Final = "budget.event"  # exceeded | warning (the budget processor, once per crossing)
_BUDGET_FIELDS: Final = (("budget.id", "budget_id"), ("budget.scope", "scope"), ("budget.scope_value", "scope_value"),
                         ("budget.window", "window"), ("budget.spend", "spend"), ("budget.limit", "limit"),
                         ("budget.threshold", "threshold"))
#: The redaction processor's summary attributes, (count, rules, keys), with the result of their
#: line: what was masked wins over what was only detected.
_SECURITY_GROUPS: Final = (
    (("redaction.masked.count", "redaction.masked.rules", "redaction.masked.keys"), audit.REDACTED),
    (("redaction.detected.count", "redaction.detected.rules", "redaction.detected.keys"), audit.DETECTED),
)
_SECURITY_KEYS: Final = frozenset(key for keys, _ in _SECURITY_GROUPS for key in keys)
_SECURITY_KEY_BYTES: Final = frozenset(key.encode() for key in _SECURITY_KEYS)
#: Distinct summaries remembered by :func:`_security_of`, each at most ``_SECURITY_CACHED_BYTES``
#: of attributes (a larger one is read each time), so the cache holds at most a few MB.
_SECURITY_CACHE_SIZE: Final = 1024
_SECURITY_CACHED_BYTES: Final = 2048
EVENT_SECRET_REDACTED: Final = "secret_redacted"  # noqa: S105 - an event type, not a secret
EVENT_BUDGET_EXCEEDED: Final = "budget_exceeded"
EVENT_BUDGET_WARNING: Final = "budget_warning"
_BUDGET_RESULT: Final = {"exceeded": (EVENT_BUDGET_EXCEEDED, audit.DENY), "warning": (EVENT_BUDGET_WARNING, audit.ALLOW)}

_ALWAYS: Final = frozenset({COST_AMOUNT, COST_UNPRICED, BUDGET_EVENT, *(name for name, _ in _BUDGET_FIELDS),
                            *_SECURITY_KEYS})


_WITH_CONTENT: Final = _ALWAYS | frozenset(CONTENT_NAMES)


def key_names(policy: ContentPolicy) -> frozenset[str]:
    """Every attribute this module reads under ``policy`` (content ones only when content is kept)."""
    return _ALWAYS if policy.mode is Content.NONE else _WITH_CONTENT


def _scalar(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind in ("string_value", "int_value", "double_value", "bool_value"):
        return getattr(value, kind)
    return None


def _strings(value: AnyValue) -> list[str]:
    """A string array (a single string is one item), each capped, at most ``MAX_LIST_ITEMS``."""
    if value.WhichOneof("value") == "string_value":
        items = [value.string_value]
    else:
        items = [text for v in value.array_value.values if (text := v.string_value)]
    return [audit.cap(item) for item in items[:audit.MAX_LIST_ITEMS]]


def _number(value: Any) -> float | int | None:
    """A finite number (a numeric string too), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return value
    return None


def _derived_line(parent: dict[str, Any], *, event_type: str, category: str, result: str,
                  detail: dict[str, Any], suffix: str) -> dict[str, Any]:
    """A line about the same event as ``parent`` (its time, session, ids), keys in audit order."""
    return dict(audit.build(
        timestamp=parent["timestamp"], session_id=parent["session_id"], task_id=parent["task_id"],
        event_type=event_type, category=category, result=result, detail=detail,
        event_id=f"{parent['event_id']}:{suffix}", trace_id=parent["trace_id"], span_id=parent["span_id"],
        parent_span_id=parent["parent_span_id"], user_id=parent["user_id"], agent=parent["agent"],
        service=parent["service"],
    ))


def _security(parent: dict[str, Any], found: dict[str, AnyValue]) -> dict[str, Any] | None:
    """The security line of what was masked or, failing that, detected (None: neither)."""
    detail = _security_detail(found)
    return None if detail is None else _security_line(parent, *detail)


def _security_line(parent: dict[str, Any], result: str, rules: tuple[str, ...], locations: tuple[str, ...],
                   count: int) -> dict[str, Any]:
    """The ``security`` line after ``parent``; fresh lists, so no line shares the cached tuples."""
    detail = {"rules": list(rules), "locations": list(locations), "count": count}
    return _derived_line(parent, event_type=EVENT_SECRET_REDACTED, category=audit.SECURITY, result=result,
                         detail=detail, suffix=EVENT_SECRET_REDACTED)


#: ``(result, rules, locations, count)`` of a security line.
_Detail = tuple[str, tuple[str, ...], tuple[str, ...], int]


class _Misrouted(Exception):
    """Serialized attributes told apart by their first key whose parsed key (protobuf keeps the last) differs."""


def _first_by_key(attributes: Iterable[KeyValue], names: frozenset[str]) -> dict[str, AnyValue]:
    """The value of each attribute named in ``names``; the first wins when a key repeats."""
    found: dict[str, AnyValue] = {}
    for kv in attributes:
        if kv.key in names:
            found.setdefault(kv.key, kv.value)
    return found


def _security_detail(found: dict[str, AnyValue]) -> _Detail | None:
    """``(result, rules, locations, count)`` of the security line, or None (see :func:`_security`)."""
    for (count_key, rules_key, keys_key), result in _SECURITY_GROUPS:
        count_value, rules_value, keys_value = found.get(count_key), found.get(rules_key), found.get(keys_key)
        if count_value is None and rules_value is None and keys_value is None:
            continue
        rules = _distinct(rules_value)
        count = _number(_scalar(count_value)) if count_value is not None else None
        if not isinstance(count, int) or isinstance(count, bool):
            count = len(rules)
        if not count and not rules:
            return None
        return result, tuple(rules), tuple(_distinct(keys_value)), count
    return None


def _read_security(raws: tuple[bytes, ...]) -> _Detail | None:
    """:func:`_security_detail` of serialized summary attributes; :class:`_Misrouted` if one is not."""
    parsed = _parsed(raws)
    if any(kv.key not in _SECURITY_KEYS for kv in parsed):
        raise _Misrouted
    return _security_detail(_first_by_key(parsed, _SECURITY_KEYS))


#: :func:`_read_security` remembered by the attributes' bytes. Why: spans that had something
#: masked mostly repeat a few (rule, location) pairs, and parsing and reading them again was three
#: quarters of the security line's cost (8.2 -> 2.1 µs per redacting span). The result is
#: immutable, so a line built from it cannot change it; an exception is not remembered.
_security_of = functools.lru_cache(maxsize=_SECURITY_CACHE_SIZE)(_read_security)


def _distinct(value: AnyValue | None) -> list[str]:
    """The capped strings of ``value`` (:func:`_strings`), each once, in order ([] when absent)."""
    return [] if value is None else list(dict.fromkeys(_strings(value)))


def _budget(parent: dict[str, Any], found: dict[str, AnyValue]) -> dict[str, Any] | None:
    event = _scalar(found[BUDGET_EVENT]) if BUDGET_EVENT in found else None
    kind = _BUDGET_RESULT.get(event) if isinstance(event, str) else None
    if kind is None:
        return None
    event_type, result = kind
    detail: dict[str, Any] = {}
    for name, key in _BUDGET_FIELDS:
        if name in found:
            value = _scalar(found[name])
            if key in ("spend", "limit", "threshold"):
                value = _number(value)
            elif value is not None:
                value = audit.cap(str(value))
            if value is not None:
                detail[key] = value
    detail["trace_id"] = parent["trace_id"]
    budget_id = detail.get("budget_id") or ""
    return _derived_line(parent, event_type=event_type, category=audit.BUDGET, result=result, detail=detail,
                         suffix=f"{event_type}:{budget_id}")


_DOUBLE = struct.Struct("<d")


def cost_of(raw: bytes, key_end: int) -> float | int | None:
    """``gen_ai.usage.cost.amount`` of its serialized ``KeyValue`` (``key_end``: where the key ends).

    The cost processor's double (``12 09 21 <8 bytes>`` after the key) is read by hand; anything
    else (an int, a numeric string) through the real parser. None when it is not a finite number.
    """
    if len(raw) == key_end + 11 and raw[key_end] == 0x12 and raw[key_end + 1] == 9 and raw[key_end + 2] == 0x21:
        value: float | int | None = _DOUBLE.unpack_from(raw, key_end + 3)[0]
        return value if value - value == 0.0 else None  # type: ignore[operator]  # NaN and inf are not
    try:
        return _number(_scalar(KeyValue.FromString(raw).value))
    except DecodeError:
        return None


def derive_from(attributes: Iterable[KeyValue], line: dict[str, Any], policy: ContentPolicy) -> list[dict[str, Any]]:
    """Fill ``line``'s detail from the derived attributes among ``attributes``; return the extra lines.

    ``attributes`` holds only attributes of :func:`key_names` (others are ignored). The extra
    lines (security, then budget) go after ``line`` in the file.
    """
    found = _first_by_key(attributes, key_names(policy))
    if not found:
        return []
    detail = line["detail"]
    if COST_AMOUNT in found:
        amount = _number(_scalar(found[COST_AMOUNT]))
        if amount is not None:
            detail["cost_usd"] = amount
    if COST_UNPRICED in found and _scalar(found[COST_UNPRICED]) is True:
        detail["unpriced"] = True
    texts = {name: value.string_value for name, value in found.items() if name in CONTENT_NAMES}
    if texts:
        detail.update(content_detail(texts, policy))
    extra = [_security(line, found), _budget(line, found)]
    return [item for item in extra if item is not None]


def derive(raws: Iterable[bytes], line: dict[str, Any], policy: ContentPolicy) -> list[dict[str, Any]]:
    """:func:`derive_from` over serialized ``KeyValue``s (the span path); one that does not parse is skipped.

    The redaction summary's attributes, told by their first key's bytes, are read through the
    cache of :func:`_security_of`. When a key cannot be read by hand, or an attribute's parsed key
    is not the one it was told by (a repeated key field: protobuf keeps the last), everything takes
    the parsed path, so crafted bytes give the lines the parser gives.
    """
    security: list[bytes] = []
    rest: list[bytes] = []
    for raw in raws:
        if len(raw) < 2 or raw[0] != 0x0A or raw[1] >= 0x80:  # not key first with a one-byte length
            return derive_from(_parsed(raws), line, policy)
        (security if raw[2:2 + raw[1]] in _SECURITY_KEY_BYTES else rest).append(raw)
    parsed_rest = _parsed(rest)
    if any(kv.key in _SECURITY_KEYS for kv in parsed_rest):
        return derive_from(_parsed(raws), line, policy)
    more = derive_from(parsed_rest, line, policy) if parsed_rest else []
    if security:
        told = tuple(security)
        read = _security_of if sum(map(len, told)) <= _SECURITY_CACHED_BYTES else _read_security
        try:
            detail = read(told)
        except _Misrouted:
            return derive_from(_parsed(raws), line, policy)
        if detail is not None:
            more.insert(0, _security_line(line, *detail))  # the security line goes before the budget one
    return more


def _parsed(raws: Iterable[bytes]) -> list[KeyValue]:
    """The ``KeyValue`` of each of ``raws``; one that does not parse is skipped."""
    parsed = []
    for raw in raws:
        try:
            parsed.append(KeyValue.FromString(raw))
        except DecodeError:
            continue
    return parsed
