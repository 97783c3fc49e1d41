"""OTLP/JSON: the OTLP specification's JSON mapping of ``TracesData``/``MetricsData``/``LogsData``.

It is protobuf's canonical JSON mapping with one exception that ``google.protobuf.json_format``
gets wrong: trace and span ids (``traceId``, ``spanId``, ``parentSpanId`` in spans, span links,
log records and metric exemplars) are lowercase **hex**, not base64. So we convert the ids
between hex and base64 around ``ParseDict``/``MessageToDict`` and let protobuf do the rest, which
already accepts what the spec allows: lowerCamelCase or snake_case keys, enums as integers or
names, 64-bit integers as strings or numbers, unknown fields ignored.

Used by the OTLP/HTTP receiver (``application/json``), the stdin and file receivers (one
message per line) and JSON-writing exporters. This is not the hot path (JSON costs ~40 µs per
span either way); binary OTLP never comes through here.
"""

from __future__ import annotations

import base64
import functools
import re
from typing import Any

import orjson
from google.protobuf import json_format

from obs_pipeline.signals import Message, Signal, message_class

__all__ = ["decode", "detect_signal", "encode", "from_dict", "to_dict"]

# The id fields and their length in bytes, under both key spellings protobuf accepts.
_TRACE_ID = 16
_SPAN_ID = 8


def _both_spellings(spec: dict[str, Any]) -> dict[str, Any]:
    """Add the snake_case spelling of every lowerCamelCase key (recursively)."""
    out: dict[str, Any] = {}
    for key, sub in spec.items():
        converted = sub if isinstance(sub, int) else _both_spellings(sub)
        out[key] = converted
        out[re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), key)] = converted
    return out


_IDS = {"traceId": _TRACE_ID, "spanId": _SPAN_ID}
_POINTS = {"dataPoints": {"exemplars": _IDS}}
# Where ids live, as a tree of keys; a leaf is the id's length in bytes. A key whose JSON value is
# a list applies its subtree to every element.
_ID_PATHS: dict[Signal, dict[str, Any]] = {
    Signal.TRACES: _both_spellings({
        "resourceSpans": {"scopeSpans": {"spans": {**_IDS, "parentSpanId": _SPAN_ID, "links": _IDS}}},
    }),
    Signal.LOGS: _both_spellings({"resourceLogs": {"scopeLogs": {"logRecords": _IDS}}}),
    Signal.METRICS: _both_spellings({
        "resourceMetrics": {"scopeMetrics": {"metrics": {
            "gauge": _POINTS, "sum": _POINTS, "histogram": _POINTS,
            "exponentialHistogram": _POINTS, "summary": _POINTS,
        }}},
    }),
}

_TOP_KEYS: tuple[tuple[str, Signal], ...] = (
    ("resourceSpans", Signal.TRACES), ("resource_spans", Signal.TRACES),
    ("resourceLogs", Signal.LOGS), ("resource_logs", Signal.LOGS),
    ("resourceMetrics", Signal.METRICS), ("resource_metrics", Signal.METRICS),
)
_HEX = {16: re.compile(r"[0-9a-fA-F]{32}"), 8: re.compile(r"[0-9a-fA-F]{16}")}
_FIELD_IN_ERROR = re.compile(r"Failed to parse (\w+) field")
#: protobuf's nesting limit (the root message is level 0): deeper OTLP/JSON is refused, since no
#: protobuf parser could read the message back. The error names where, in a few path steps.
MAX_DEPTH = 100
JSON_MAX_DEPTH = 1024  # orjson's limit of arrays and objects nested in the JSON text itself
_PATH_STEPS_SHOWN = 5


class _IdError(ValueError):
    """An id that is not hex of the right length; ``path`` grows as the error travels up."""

    def __init__(self, key: str, size: int) -> None:
        self.path = [key]
        self.reason = f"must be {size * 2} hex characters (OTLP/JSON ids are hex, not base64)"
        super().__init__(self.reason)


def detect_signal(obj: Any) -> Signal | None:
    """The signal of an OTLP/JSON object, from its top-level key (``resourceSpans`` …), or None."""
    if isinstance(obj, dict):
        for key, signal in _TOP_KEYS:
            if key in obj:
                return signal
    return None


def _hex_to_b64(value: Any, size: int, key: str) -> Any:
    if value == "" or value is None:
        return value
    if not isinstance(value, str) or not _HEX[size].fullmatch(value):
        raise _IdError(key, size)
    return base64.b64encode(bytes.fromhex(value)).decode("ascii")


def _b64_to_hex(value: Any, _size: int, _key: str) -> Any:
    return base64.b64decode(value).hex() if value else value


def _walk(node: Any, spec: dict[str, Any], convert: Any) -> Any:
    """Return ``node`` with the ids under ``spec`` converted; copies only the dicts it changes.

    Values of the wrong shape are left alone for ``ParseDict`` to report.
    """
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] | None = None
    for key, sub in spec.items():
        if key not in node:
            continue
        value = node[key]
        try:
            if isinstance(sub, int):
                new = convert(value, sub, key)
            elif isinstance(value, list):
                new = []
                for index, item in enumerate(value):
                    try:
                        new.append(_walk(item, sub, convert))
                    except _IdError as exc:
                        exc.path.insert(0, f"[{index}].")
                        raise
            else:
                new = _walk(value, sub, convert)
        except _IdError as exc:
            if not isinstance(sub, int):
                exc.path.insert(0, key if isinstance(value, list) else key + ".")
            raise
        if new is not value:
            if out is None:
                out = dict(node)
            out[key] = new
    return node if out is None else out


def from_dict(signal: Signal, obj: Any) -> Message:
    """Build the ``signal`` message from a parsed OTLP/JSON object (not modified).

    Raises:
        ValueError: not an object, an id that is not hex, or a field of the wrong type. The
            message names the field path but never echoes the data.
    """
    if not isinstance(obj, dict):
        raise ValueError(f"OTLP/JSON {signal} must be a JSON object, not {type(obj).__name__}")
    try:
        converted = _walk(obj, _ID_PATHS[signal], _hex_to_b64)
    except _IdError as exc:
        raise ValueError(f"invalid OTLP/JSON {signal}: {''.join(exc.path)} {exc.reason}") from None
    try:
        message: Message = message_class(signal)()
        json_format.ParseDict(converted, message, ignore_unknown_fields=True, max_recursion_depth=MAX_DEPTH + 1)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        where_deep = _too_deep_at(converted) if "Message too deep" in str(exc) else None
        if where_deep is not None:
            raise ValueError(f"invalid OTLP/JSON {signal}: nesting deeper than {MAX_DEPTH} levels at "
                             f"{where_deep}") from None
        # ParseError texts quote the offending value; keep only the field path.
        fields = _FIELD_IN_ERROR.findall(str(exc))
        where = f" at {'.'.join(fields)}" if fields else ""
        raise ValueError(f"invalid OTLP/JSON {signal}: a value has the wrong type{where}") from None
    return message


@functools.cache
def _field_names() -> frozenset[str]:
    """Every OTLP/JSON field name (camelCase and proto spelling): the only keys a message may show."""
    names: set[str] = set()
    seen: set[str] = set()
    todo = [message_class(signal).DESCRIPTOR for signal in Signal]
    while todo:
        descriptor = todo.pop()
        if descriptor.full_name in seen:
            continue
        seen.add(descriptor.full_name)
        for field in descriptor.fields:
            names.update((field.name, field.json_name))
            if field.message_type is not None:
                todo.append(field.message_type)
    return frozenset(names)


def _too_deep_at(obj: dict[str, Any]) -> str | None:
    """Where the first object nested past :data:`MAX_DEPTH` is: its first few path steps, then ``…``.

    Keys that are not OTLP field names (a sender's own map keys) are shown as ``?``: messages
    name fields, never the sender's data.
    """
    known = _field_names()
    stack: list[tuple[Any, int, tuple[str, ...]]] = [(obj, 0, ())]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, list):
            stack.extend((item, depth, (*path[:-1], f"{path[-1]}[{i}]")) for i, item in reversed(list(enumerate(node))))
        elif isinstance(node, dict):
            if depth > MAX_DEPTH:
                shown = ".".join(path[:_PATH_STEPS_SHOWN])
                return shown + ("…" if len(path) > _PATH_STEPS_SHOWN else "")
            stack.extend((value, depth + 1, (*path, key if key in known else "?"))
                         for key, value in reversed(node.items()))
    return None


def decode(signal: Signal, raw: bytes | bytearray | memoryview | str | dict[str, Any]) -> Message:
    """Decode OTLP/JSON text (or an already parsed object) into a ``signal`` message.

    Raises:
        ValueError: not JSON, or not OTLP/JSON for ``signal`` (see :func:`from_dict`).
    """
    if isinstance(raw, dict):
        return from_dict(signal, raw)
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise ValueError(f"not valid JSON: nesting deeper than {JSON_MAX_DEPTH} levels") from None
        raise ValueError(f"not valid JSON (at character {exc.pos})") from None
    return from_dict(signal, obj)


def to_dict(signal: Signal, message: Message) -> dict[str, Any]:
    """The OTLP/JSON object of ``message``: camelCase keys, integer enums, hex ids.

    Fields at their default value are left out, 64-bit integers are strings (as the spec
    allows and the collector writes).
    """
    obj = json_format.MessageToDict(message, use_integers_for_enums=True)
    converted: dict[str, Any] = _walk(obj, _ID_PATHS[signal], _b64_to_hex)
    return converted


def encode(signal: Signal, message: Message) -> bytes:
    """Serialize ``message`` as OTLP/JSON (UTF-8, one line, no trailing newline)."""
    return orjson.dumps(to_dict(signal, message))
