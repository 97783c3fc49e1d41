"""A span or log record written as readable YAML <-> OTLP, for ``obs-pipeline test``.

The readable form is the one a user writes in a tests file and the one a failing case is shown
in, so both directions live here and agree::

    span:
      name: chat gpt-4o
      attributes: {gen_ai.operation.name: chat, gen_ai.usage.input_tokens: 12}
      resource: {service.name: my-agent}
      scope: {name: my.instrumentation, attributes: {...}}
      events: [{name: exception, attributes: {exception.message: ...}}]
      links: [{trace_id: <32 hex>, span_id: <16 hex>, attributes: {...}}]
      status: {code: error, message: ...}

    log:
      body: any YAML value (a mapping is a kvlist, a list an array)
      attributes: {...}
      resource: {...}
      severity: ERROR            # or severity_number: 17
      event_name: gen_ai.client.inference.operation.details

Values: a string, integer, float, boolean, list (array) or mapping (kvlist); ``{$bytes: <base64>}``
is a bytes value. Ids are hex; missing ones get fixed, valid defaults so a case is reproducible.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, LogsData
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status, TracesData

from obs_pipeline.signals import Signal

__all__ = [
    "BYTES_KEY",
    "LOG_KEYS",
    "SPAN_KEYS",
    "Path",
    "RecordError",
    "build_message",
    "from_any_value",
    "log_to_readable",
    "records_of",
    "span_to_readable",
    "to_any_value",
]

#: The one-key mapping that stands for a bytes value (base64 text).
BYTES_KEY = "$bytes"
#: Keys a ``span:`` mapping may hold.
SPAN_KEYS = frozenset({"name", "kind", "attributes", "resource", "scope", "events", "links", "status", "trace_id",
                       "span_id", "parent_span_id", "start_time_unix_nano", "end_time_unix_nano"})
#: Keys a ``log:`` mapping may hold.
LOG_KEYS = frozenset({"body", "attributes", "resource", "scope", "severity", "severity_number", "event_name",
                      "trace_id", "span_id", "time_unix_nano"})

_DEFAULT_TRACE = "0af7651916cd43dd8448eb211c80319c"
_DEFAULT_SPAN = "b7ad6b7169203331"
_DEFAULT_START = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
_DEFAULT_DURATION = 1_500_000_000
_STATUS_CODES = {"unset": 0, "ok": 1, "error": 2}
_STATUS_NAMES = {v: k for k, v in _STATUS_CODES.items()}
_KINDS = {"unspecified": 0, "internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
_KIND_NAMES = {v: k for k, v in _KINDS.items()}
_SEVERITY = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "WARNING": 13, "ERROR": 17, "FATAL": 21}


#: Where a value sits inside a readable record: ``("span", "status", "code")``, ``("log", "body", 0)``.
Path = tuple[str | int, ...]


class RecordError(ValueError):
    """A readable record that cannot be built; ``path`` says where inside the record."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


# --- values ---------------------------------------------------------------------------------------

def to_any_value(value: Any, path: Path) -> AnyValue:
    """A YAML value as an OTLP ``AnyValue`` (mapping -> kvlist, list -> array, ``{$bytes: ..}`` -> bytes)."""
    out = AnyValue()
    if isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise RecordError(path, "an integer outside the int64 range")
        out.int_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, Mapping) and set(value) == {BYTES_KEY}:
        try:
            out.bytes_value = base64.b64decode(str(value[BYTES_KEY]), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RecordError(path, f"{BYTES_KEY} must be base64 text") from exc
    elif isinstance(value, Mapping):
        out.kvlist_value.values.extend(_kv(str(k), v, (*path, str(k))) for k, v in value.items())
    elif isinstance(value, list):
        out.array_value.values.extend(to_any_value(v, (*path, i)) for i, v in enumerate(value))
    elif value is None:
        pass  # an empty AnyValue: OTLP's null
    else:
        raise RecordError(path, f"cannot be a telemetry value ({type(value).__name__})")
    return out


def from_any_value(value: AnyValue) -> Any:
    """An ``AnyValue`` in the readable form (the inverse of :func:`to_any_value`)."""
    kind = value.WhichOneof("value")
    if kind == "kvlist_value":
        return {kv.key: from_any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "array_value":
        return [from_any_value(v) for v in value.array_value.values]
    if kind == "bytes_value":
        return {BYTES_KEY: base64.b64encode(value.bytes_value).decode("ascii")}
    if kind is None:
        return None
    return getattr(value, kind)


def _kv(key: str, value: Any, path: Path) -> KeyValue:
    return KeyValue(key=key, value=to_any_value(value, path))


def _attributes(raw: Any, path: Path) -> list[KeyValue]:
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        raise RecordError(path, "must be a mapping of attribute names to values")
    return [_kv(str(k), v, (*path, str(k))) for k, v in raw.items()]


def _attrs_readable(attributes: Any) -> dict[str, Any]:
    return {kv.key: from_any_value(kv.value) for kv in attributes}


def _hex_id(raw: Any, size: int, default: str, path: Path) -> bytes:
    text = default if raw is None else str(raw)
    try:
        value = bytes.fromhex(text)
    except ValueError as exc:
        raise RecordError(path, f"must be {size * 2} hex digits") from exc
    if len(value) != size:
        raise RecordError(path, f"must be {size * 2} hex digits")
    return value


def _int(raw: Any, default: int, path: Path) -> int:
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise RecordError(path, "must be a non-negative integer")
    return raw


def _check_keys(raw: Mapping[str, Any], allowed: frozenset[str], path: Path) -> None:
    unknown = sorted(set(map(str, raw)) - allowed)
    if unknown:
        raise RecordError((*path, unknown[0]), f"unknown key; expected one of {', '.join(sorted(allowed))}")


# --- spans ----------------------------------------------------------------------------------------

def _span(raw: Mapping[str, Any]) -> Span:
    _check_keys(raw, SPAN_KEYS, ("span",))
    span = Span(
        name=str(raw.get("name", "span")),
        trace_id=_hex_id(raw.get("trace_id"), 16, _DEFAULT_TRACE, ("span", "trace_id")),
        span_id=_hex_id(raw.get("span_id"), 8, _DEFAULT_SPAN, ("span", "span_id")),
        start_time_unix_nano=_int(raw.get("start_time_unix_nano"), _DEFAULT_START, ("span", "start_time_unix_nano")),
    )
    span.end_time_unix_nano = _int(raw.get("end_time_unix_nano"), span.start_time_unix_nano + _DEFAULT_DURATION,
                                   ("span", "end_time_unix_nano"))
    if raw.get("parent_span_id") is not None:
        span.parent_span_id = _hex_id(raw["parent_span_id"], 8, "", ("span", "parent_span_id"))
    kind = str(raw.get("kind", "internal")).lower()
    if kind not in _KINDS:
        raise RecordError(("span", "kind"), f"must be one of {', '.join(_KINDS)}")
    span.kind = _KINDS[kind]  # type: ignore[assignment]  # protobuf's enum type is an int at run time
    span.attributes.extend(_attributes(raw.get("attributes"), ("span", "attributes")))
    for i, event in enumerate(raw.get("events") or []):
        where: Path = ("span", "events", i)
        if not isinstance(event, Mapping):
            raise RecordError(where, "must be a mapping with name and attributes")
        span.events.add(name=str(event.get("name", "")), time_unix_nano=span.start_time_unix_nano,
                        attributes=_attributes(event.get("attributes"), (*where, "attributes")))
    for i, link in enumerate(raw.get("links") or []):
        where = ("span", "links", i)
        if not isinstance(link, Mapping):
            raise RecordError(where, "must be a mapping with trace_id, span_id and attributes")
        span.links.add(trace_id=_hex_id(link.get("trace_id"), 16, _DEFAULT_TRACE, (*where, "trace_id")),
                       span_id=_hex_id(link.get("span_id"), 8, "00f067aa0ba902b7", (*where, "span_id")),
                       attributes=_attributes(link.get("attributes"), (*where, "attributes")))
    status = raw.get("status")
    if status is not None:
        if not isinstance(status, Mapping):
            raise RecordError(("span", "status"), "must be a mapping with code and message")
        code = str(status.get("code", "unset")).lower()
        if code not in _STATUS_CODES:
            raise RecordError(("span", "status", "code"), "must be unset, ok or error")
        span.status.CopyFrom(Status(code=_STATUS_CODES[code], message=str(status.get("message", ""))))  # type: ignore[arg-type]
    return span


def span_to_readable(span: Span, resource: Any, scope: Any) -> dict[str, Any]:
    """A span (with its resource and scope) in the readable form a failing case is shown in."""
    out: dict[str, Any] = {"name": span.name, "attributes": _attrs_readable(span.attributes)}
    if resource.attributes:
        out["resource"] = _attrs_readable(resource.attributes)
    if scope.name or scope.attributes:
        out["scope"] = {"name": scope.name, "attributes": _attrs_readable(scope.attributes)}
    if span.events:
        out["events"] = [{"name": e.name, "attributes": _attrs_readable(e.attributes)} for e in span.events]
    if span.links:
        out["links"] = [{"attributes": _attrs_readable(link.attributes)} for link in span.links]
    if span.status.code or span.status.message:
        out["status"] = {"code": _STATUS_NAMES.get(span.status.code, str(span.status.code)),
                         "message": span.status.message}
    return out


# --- logs -----------------------------------------------------------------------------------------

def _log(raw: Mapping[str, Any]) -> LogRecord:
    _check_keys(raw, LOG_KEYS, ("log",))
    record = LogRecord(time_unix_nano=_int(raw.get("time_unix_nano"), _DEFAULT_START, ("log", "time_unix_nano")))
    record.observed_time_unix_nano = record.time_unix_nano
    if "body" in raw:
        record.body.CopyFrom(to_any_value(raw["body"], ("log", "body")))
    record.attributes.extend(_attributes(raw.get("attributes"), ("log", "attributes")))
    if raw.get("event_name") is not None:
        record.event_name = str(raw["event_name"])
    severity = raw.get("severity")
    if severity is not None:
        text = str(severity).upper()
        record.severity_text = str(severity)
        record.severity_number = _SEVERITY.get(text, 0)  # type: ignore[assignment]  # an int at run time
    if raw.get("severity_number") is not None:
        record.severity_number = _int(raw["severity_number"], 0, ("log", "severity_number"))  # type: ignore[assignment]
    if raw.get("trace_id") is not None:
        record.trace_id = _hex_id(raw["trace_id"], 16, "", ("log", "trace_id"))
    if raw.get("span_id") is not None:
        record.span_id = _hex_id(raw["span_id"], 8, "", ("log", "span_id"))
    return record


def log_to_readable(record: LogRecord, resource: Any, scope: Any) -> dict[str, Any]:
    """A log record (with its resource and scope) in the readable form."""
    out: dict[str, Any] = {}
    if record.HasField("body"):
        out["body"] = from_any_value(record.body)
    out["attributes"] = _attrs_readable(record.attributes)
    if resource.attributes:
        out["resource"] = _attrs_readable(resource.attributes)
    if scope.name or scope.attributes:
        out["scope"] = {"name": scope.name, "attributes": _attrs_readable(scope.attributes)}
    if record.event_name:
        out["event_name"] = record.event_name
    if record.severity_text or record.severity_number:
        out["severity"] = record.severity_text or str(record.severity_number)
    return out


# --- messages -------------------------------------------------------------------------------------

def _scope_parts(raw: Any, path: Path) -> tuple[str, list[KeyValue]]:
    if raw is None:
        return "", []
    if not isinstance(raw, Mapping):
        raise RecordError(path, "must be a mapping with name and attributes")
    return str(raw.get("name", "")), _attributes(raw.get("attributes"), (*path, "attributes"))


def build_message(signal: Signal, raw: Mapping[str, Any]) -> TracesData | LogsData:
    """The one-record OTLP message of a readable ``span:`` or ``log:`` mapping.

    Raises:
        RecordError: a key or value that cannot be built, with its path inside the record.
    """
    word = "span" if signal is Signal.TRACES else "log"
    resource = _attributes(raw.get("resource"), (word, "resource"))
    scope_name, scope_attributes = _scope_parts(raw.get("scope"), (word, "scope"))
    if signal is Signal.TRACES:
        traces = TracesData()
        rs = traces.resource_spans.add()
        rs.resource.attributes.extend(resource)
        ss = rs.scope_spans.add()
        ss.scope.name = scope_name
        ss.scope.attributes.extend(scope_attributes)
        ss.spans.append(_span(raw))
        return traces
    logs = LogsData()
    rl = logs.resource_logs.add()
    rl.resource.attributes.extend(resource)
    sl = rl.scope_logs.add()
    sl.scope.name = scope_name
    sl.scope.attributes.extend(scope_attributes)
    sl.log_records.append(_log(raw))
    return logs


def records_of(message: Any) -> list[dict[str, Any]]:
    """Every span or log record of an OTLP message, in the readable form, in order."""
    out: list[dict[str, Any]] = []
    if isinstance(message, TracesData):
        for rs in message.resource_spans:
            for ss in rs.scope_spans:
                out += [span_to_readable(span, rs.resource, ss.scope) for span in ss.spans]
    elif isinstance(message, LogsData):
        for rl in message.resource_logs:
            for sl in rl.scope_logs:
                out += [log_to_readable(record, rl.resource, sl.scope) for record in sl.log_records]
    return out

