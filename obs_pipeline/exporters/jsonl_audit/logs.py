"""Log records -> audit lines.

JSON inputs (the stdin receiver; a file_tail receiver is planned) arrive as log records whose
body is the JSON object as an ``AnyValue`` kvlist. Agent runtimes that already write audit lines
(``missy_audit.jsonl``) must come out essentially unchanged, so the audit fields are *lifted*
from the body first, and only what the body lacks is derived from the record (attributes,
severity, ids, times).

Which body fields feed which audit field is data, a :class:`LogPreset`: audit field -> body
paths tried in order (dotted paths reach into nested objects). :data:`DEFAULT_PRESET` reads the
audit line's own names (plus ``decision`` for ``result``, ``msg`` for ``message``); it is the only
one in use: presets are not configurable yet. A preset for another framework is the same
structure with other paths and value maps, for example::

    LogPreset("agent_os_audit", fields={**DEFAULT_PRESET.fields, "result": ("decision",),
              "session_id": ("context.session_id",), "event_type": ("action",), "event_id": ("id",)})

Body keys that no field consumed go into ``detail``, so nothing the source wrote is lost; nor
is a lifted value of the wrong type: the line's text fields are strings or null whatever the body
holds (:func:`_lifted_text`), and a value that cannot be one is kept as ``detail.source_<field>``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, LogsData

from obs_pipeline import genai
from obs_pipeline.audit import line as audit
from obs_pipeline.exporters.jsonl_audit.content import Content, ContentPolicy
from obs_pipeline.exporters.jsonl_audit.derived import derive_from
from obs_pipeline.genai.attributes import (
    AGENT,
    DECISION,
    ERROR_TYPE,
    EXCEPTION_MESSAGE,
    EXCEPTION_TYPE,
    FINISH_REASONS,
    GUARDRAIL,
    OPERATION,
    PROVIDER,
    REQUEST_MODEL,
    RESPONSE_MODEL,
    SESSION,
    TASK,
    TOOL,
    USER,
    ResourceContext,
    Value,
    any_value_to_json,
    category,
    decision_result,
    read_wanted,
    resource_context,
    str_fallback,
    tokens,
)
from obs_pipeline.timestamps import format_ns, parse_timestamp

#: The event type of a record that names none (no event name, no operation).
EVENT_TYPE = "log"
SEVERITY_ERROR = 17  # SeverityNumber.SEVERITY_NUMBER_ERROR: ERROR and above mean result "error"
_ERROR_TEXTS = frozenset({"ERROR", "ERR", "FATAL", "CRITICAL", "CRIT", "ALERT", "EMERGENCY", "EMERG"})

#: The audit fields a preset may fill from the body. ``message`` lands in ``detail.message``.
LIFTABLE = ("timestamp", "session_id", "task_id", "event_type", "category", "result", "detail",
            "message", "event_id", "trace_id", "span_id", "parent_span_id", "user_id", "agent", "service")
#: Lifted fields that must be words (a number there is no category): anything but a string is
#: kept as ``detail.source_<field>`` and the field is derived as if the body had none.
_WORD_FIELDS = frozenset({"event_type", "category", "result"})
#: Lifted ids that must be OTLP ids in hex (32 digits for a trace, 16 for a span), not all zero.
_HEX_IDS: Mapping[str, re.Pattern[str]] = MappingProxyType({
    "trace_id": re.compile(r"(?!0{32})[0-9a-fA-F]{32}"),
    "span_id": re.compile(r"(?!0{16})[0-9a-fA-F]{16}"),
    "parent_span_id": re.compile(r"(?!0{16})[0-9a-fA-F]{16}"),
})


@dataclass(frozen=True)
class LogPreset:
    """How a JSON log body maps onto the audit line.

    Attributes:
        name: the preset's name, as a config would refer to it.
        fields: audit field (one of :data:`LIFTABLE`) -> body paths tried in order; the first
            present, non-empty value wins. ``a.b`` looks inside nested objects.
        values: audit field -> value translation (``{"result": {"ok": "allow"}}``); values not
            listed pass unchanged.
    """

    name: str
    fields: Mapping[str, tuple[str, ...]]
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    _paths: dict[str, tuple[tuple[str, ...], ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = set(self.fields) - set(LIFTABLE)
        if unknown:
            raise ValueError(f"preset {self.name}: unknown audit fields {sorted(unknown)}")
        paths = {name: tuple(tuple(p.split(".")) for p in paths) for name, paths in self.fields.items()}
        object.__setattr__(self, "_paths", paths)  # frozen: set once, here

    def lift(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Split ``body`` into the audit fields found and the remaining top-level keys."""
        found: dict[str, Any] = {}
        consumed: set[str] = set()
        for name, candidates in self._paths.items():
            for path in candidates:
                value = _get_path(body, path)
                if value is None or value == "":
                    continue
                table = self.values.get(name)
                found[name] = table.get(value, value) if table and isinstance(value, str) else value
                if len(path) == 1:
                    consumed.add(path[0])
                break
        rest = {k: v for k, v in body.items() if k not in consumed}
        return found, rest


def _get_path(body: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = body
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


DEFAULT_PRESET = LogPreset(
    "default",
    fields=MappingProxyType({
        "timestamp": ("timestamp",),
        "session_id": ("session_id",),
        "task_id": ("task_id",),
        "event_type": ("event_type",),
        "category": ("category",),
        "result": ("result", "decision"),
        "detail": ("detail",),
        "message": ("message", "msg"),
        "event_id": ("event_id",),
        "trace_id": ("trace_id",),
        "span_id": ("span_id",),
        "parent_span_id": ("parent_span_id",),
        "user_id": ("user_id",),
        "agent": ("agent",),
        "service": ("service",),
    }),
)


def encode_logs(data: LogsData, preset: LogPreset = DEFAULT_PRESET,
                errors: list[BaseException] | None = None, content: ContentPolicy | None = None) -> list[bytes]:
    """One serialized audit line (no newline) per log record of a ``LogsData``, in order.

    Every record gets exactly one line: one whose mapping raises (or whose resource cannot be
    read) gets an :func:`error_line`, and the exception is appended to ``errors`` when given. A
    record that carries what another processor wrote for the audit (:mod:`.derived`: cost,
    content under ``content``, redaction, budget events) gets its detail, and its security and
    budget lines right after its own. Without ``content`` no prompt content is kept.
    """
    policy = content or ContentPolicy(Content.NONE)
    out: list[bytes] = []
    for rl in data.resource_logs:
        try:
            resource = resource_context(rl.resource)
        except Exception as exc:  # each of its records still gets a line
            for sl in rl.scope_logs:
                for record in sl.log_records:
                    out.append(error_line(record, None, exc))
                    if errors is not None:
                        errors.append(exc)
            continue
        for sl in rl.scope_logs:
            for record in sl.log_records:
                try:
                    line = log_line(record, resource, preset)
                    more = derive_from(record.attributes, line, policy)  # type: ignore[arg-type]
                    out.append(orjson.dumps(line))
                    out += [orjson.dumps(extra) for extra in more]
                except Exception as exc:  # one bad record must not cost the batch
                    out.append(error_line(record, resource[0], exc))
                    if errors is not None:
                        errors.append(exc)
    return out


def error_line(record: LogRecord, service: str | None, exc: BaseException) -> bytes:
    """The minimal line of a log record whose mapping raised ``exc``, so no record is silently lost.

    Only what cannot fail: the record's time, its severity's result, its ids and the resource's
    service.
    """
    try:
        result = _result(record)
    except Exception:  # the severity is what we are unsure of
        result = audit.ALLOW
    try:
        event_id = _record_id(record)
    except Exception:
        event_id = audit.content_id("log", record)
    trace_id, span_id, invalid = _record_ids(record)
    return orjson.dumps(audit.error_line(
        timestamp=_record_time(record), event_type=EVENT_TYPE, result=result, error=exc, event_id=event_id,
        trace_id=trace_id, span_id=span_id, service=service, invalid_ids=invalid,
    ))


def log_line(record: LogRecord, resource: ResourceContext, preset: LogPreset = DEFAULT_PRESET) -> audit.AuditLine:
    """The audit line of one ``LogRecord``."""
    service, res_session, res_task, res_user, res_agent = resource
    vals = read_wanted(record.attributes)
    lifted: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    message: Any = None
    kind = record.body.WhichOneof("value")
    if kind == "kvlist_value":
        lifted, rest = preset.lift(any_value_to_json(record.body))
        message = lifted.get("message")
    elif kind == "string_value":
        message = record.body.string_value
    elif kind is not None:
        rest = {"body": any_value_to_json(record.body)}
    if isinstance(message, str):
        message = audit.cap(message, audit.TEXT_CHARS)

    detail = _detail(lifted.get("detail"), rest, message, vals)
    repaired = _repaired(record)
    if repaired:
        detail["repaired"] = repaired
    timestamp = _timestamp(lifted.get("timestamp"), record)
    if timestamp is None:  # the body's time is not a time: keep it, use the record's
        detail.setdefault("source_timestamp", lifted["timestamp"])
        timestamp = _record_time(record)
    texts = {name: _lifted_text(name, lifted.get(name), detail) for name in _TEXT_FIELDS}
    trace_id, span_id, invalid = _record_ids(record)
    for name, pattern in _HEX_IDS.items():  # the body's ids: hex of the right length, or not written
        text = texts[name]
        if text is not None:
            if pattern.fullmatch(text):
                texts[name] = text.lower()
            else:
                texts[name] = None
                detail.setdefault(f"source_{name}", lifted[name])
                invalid = True
    if invalid:
        detail["invalid_ids"] = True
    line = audit.build(
        timestamp=timestamp,
        session_id=texts["session_id"] or _str(vals[SESSION]) or res_session,
        task_id=texts["task_id"] or _str(vals[TASK]) or res_task,
        event_type=_event_type(record, texts["event_type"], vals),
        category=texts["category"] or category(vals),
        result=texts["result"] or decision_result(vals[DECISION], vals[GUARDRAIL]) or _result(record),
        detail=detail,
        event_id=texts["event_id"] or _record_id(record),
        trace_id=trace_id or (None if record.trace_id else texts["trace_id"]),
        span_id=span_id or (None if record.span_id else texts["span_id"]),
        parent_span_id=texts["parent_span_id"],
        user_id=texts["user_id"] or _str(vals[USER]) or res_user,
        agent=texts["agent"] or _str(vals[AGENT]) or res_agent,
        service=service or texts["service"],
    )
    audit.mark_cut(line)
    return line


#: The lifted fields written as text (all but ``timestamp``, ``detail`` and ``message``).
_TEXT_FIELDS = tuple(name for name in LIFTABLE if name not in ("timestamp", "detail", "message"))


def _lifted_text(name: str, value: Any, detail: dict[str, Any]) -> str | None:
    """A lifted field as the line's text, capped; None when absent or not text.

    A string is kept; a finite number is an id or a name written as a number: its decimal text
    (``42`` -> ``"42"``), except where a word belongs (event type, category, result). Anything
    else (a boolean, a list, an object, a number where a word belongs) is not text: it is kept as
    ``detail.source_<name>`` and the field is derived as if the body had none.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return audit.cap(value)
    if name not in _WORD_FIELDS and isinstance(value, (int, float)) and not isinstance(value, bool) and (
            isinstance(value, int) or math.isfinite(value)):
        return audit.cap(orjson.dumps(value).decode())
    detail.setdefault(f"source_{name}", value)
    return None


def _record_ids(record: LogRecord) -> tuple[str | None, str | None, bool]:
    """``(trace_id, span_id, invalid)`` of a record's own ids: hex when valid, else None.

    ``invalid`` is True when the record carries an id that is not valid (the wrong length, all
    zero bytes); an absent id is no error (a log outside any span).
    """
    trace_raw, span_raw = record.trace_id, record.span_id
    trace_ok = audit.valid_id(trace_raw, audit.TRACE_ID_BYTES)
    span_ok = audit.valid_id(span_raw, audit.SPAN_ID_BYTES)
    invalid = (bool(trace_raw) and not trace_ok) or (bool(span_raw) and not span_ok)
    return trace_raw.hex() if trace_ok else None, span_raw.hex() if span_ok else None, invalid


def _str(value: Value) -> str | None:
    """A string slot's value (string slots never hold an int; this says so to the type checker)."""
    return value if isinstance(value, str) else None


def _record_id(record: LogRecord) -> str:
    """``log:`` + the record's ``log.record.uid``, else a content hash of the whole record.

    The uid is what a source that reads lines sets (stdin: from the source, the line's position
    and the time it was read), so two identical lines are two events. Without one (OTLP records
    from SDKs) the hash includes the observed time, which an SDK sets once per record: a sender's
    retry of the same bytes keeps its id, while the same content logged twice does not.
    Not ``<trace>:<span>``: several log records can share one span.
    """
    for kv in record.attributes:
        if kv.key == genai.LOG_RECORD_UID:
            uid = kv.value.string_value or str_fallback(kv.value)
            if uid:
                return audit.cap("log:" + uid)
            break
    return audit.content_id("log", record)


def _repaired(record: LogRecord) -> list[str] | None:
    """The conversions the receiver made to decode the record (its ``REPAIRED_ATTRIBUTE``), if any."""
    for kv in record.attributes:
        if kv.key == audit.REPAIRED_ATTRIBUTE:
            values = kv.value.array_value.values
            return [audit.cap(v.string_value) for v in values[: audit.MAX_LIST_ITEMS]] or None
    return None


def _counts(found: dict[str, int] | None) -> dict[str, int] | None:
    """``found`` without negative counts (a buggy SDK's): never written as if they were usage."""
    if found is None or all(count >= 0 for count in found.values()):
        return found
    return {name: count for name, count in found.items() if count >= 0} or None


def _detail(own: Any, rest: dict[str, Any], message: Any, vals: list[Value]) -> dict[str, Any]:
    """The body's own ``detail``, then its other keys, then the message and GenAI attributes."""
    if isinstance(own, dict):
        detail = dict(own)
    elif own is not None:
        detail = {"value": own}
    else:
        detail = {}
    for key, value in rest.items():
        detail.setdefault(key, value)
    if message is not None:
        detail.setdefault("message", message)
    model = vals[RESPONSE_MODEL] or vals[REQUEST_MODEL]
    derived = (("model", model), ("provider", vals[PROVIDER]), ("tokens", _counts(tokens(vals))), ("tool", vals[TOOL]),
               ("error_type", vals[ERROR_TYPE] or vals[EXCEPTION_TYPE]),
               ("exception_message", vals[EXCEPTION_MESSAGE]), ("finish_reasons", vals[FINISH_REASONS]),
               ("decision", vals[DECISION]), ("guardrail_action", vals[GUARDRAIL]))
    for key, value in derived:
        if value is not None:
            detail.setdefault(key, value)
    return detail


def _event_type(record: LogRecord, lifted: str | None, vals: list[Value]) -> str:
    """``LogRecord.event_name``, else the ``event.name`` attribute, the body's, the operation, ``log``."""
    if record.event_name:
        return audit.cap(record.event_name)
    for kv in record.attributes:
        if kv.key == genai.EVENT_NAME and kv.value.string_value:
            return audit.cap(kv.value.string_value)
    return lifted or _str(vals[OPERATION]) or EVENT_TYPE


def _result(record: LogRecord) -> str:
    """``error`` for severity ERROR and above (number, or text when the number is unset), else ``allow``."""
    if record.severity_number >= SEVERITY_ERROR:
        return audit.ERROR
    if not record.severity_number and record.severity_text.upper() in _ERROR_TEXTS:
        return audit.ERROR
    return audit.ALLOW


def _timestamp(lifted: Any, record: LogRecord) -> str | None:
    """The body's timestamp normalized to RFC 3339 UTC (None if it is not a time), else the record's."""
    if lifted is None:
        return _record_time(record)
    try:
        ns = parse_timestamp(lifted)
    except (ValueError, ArithmeticError):  # "1" * 5000: int() refuses more than 4300 digits
        return None
    return format_ns(ns) if ns is not None else None


def _record_time(record: LogRecord) -> str:
    """The record's time, else its observed time, else now (a line always has a time)."""
    return format_ns(record.time_unix_nano or record.observed_time_unix_nano or time.time_ns())
