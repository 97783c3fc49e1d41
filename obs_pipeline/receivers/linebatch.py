"""Lines of text (JSON objects, OTLP/JSON, plain text) decoded into one OTLP message per signal.

Shared by the line-oriented receivers (stdin, and file_tail later), so both read the same
formats the same way:

* ``json``: a JSON object becomes one log record. Its body is the whole object as an AnyValue
  kvlist (typed: ints, doubles, bools, strings, null, nested lists and objects); ``timestamp``,
  ``time`` or ``ts`` (ISO-8601, naive = UTC, or epoch s/ms/µs/ns) sets ``time_unix_nano``;
  ``level``/``severity`` set the severity; hex ``trace_id``/``span_id`` set the ids. A line that
  is OTLP/JSON (``resourceSpans`` … at the top) is decoded as that signal instead.
* ``otlp_json``: every line must be OTLP/JSON.
* ``text``: the line (UTF-8) is the body of a log record.

Errors (:class:`MalformedLine`, :class:`NoPipeline`) carry a reason that never quotes the line.
"""

from __future__ import annotations

import re
from collections.abc import Container
from typing import Any

import orjson
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, LogsData

from obs_pipeline import otlp_json
from obs_pipeline.signals import Message, Signal, count_items, merge_into
from obs_pipeline.timestamps import parse_timestamp

FORMATS = ("json", "otlp_json", "text")
TIMESTAMP_FIELDS = ("timestamp", "time", "ts")
SEVERITY_FIELDS = ("level", "severity")
# Deeper JSON is kept as a JSON string: protobuf parsers refuse messages nested past ~100 levels
# and every JSON level costs three (AnyValue → KeyValueList → KeyValue).
MAX_BODY_DEPTH = 24

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UINT64_MAX = 2**64 - 1
_HEX = {16: re.compile(r"[0-9a-fA-F]{32}"), 8: re.compile(r"[0-9a-fA-F]{16}")}

# Severity names (lowercase) → OTel SeverityNumber (log data model: TRACE 1, DEBUG 5, INFO 9, WARN 13,
# ERROR 17, FATAL 21).
SEVERITY_NUMBERS = {
    "trace": 1, "debug": 5, "info": 9, "information": 9, "informational": 9, "notice": 10,
    "warn": 13, "warning": 13, "error": 17, "err": 17,
    "critical": 21, "crit": 21, "fatal": 21, "alert": 22, "emergency": 23, "emerg": 23, "panic": 23,
}


class MalformedLine(ValueError):
    """A line that does not fit the format. ``reason`` never quotes the line."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class NoPipeline(Exception):
    """A line decoded fine, but no pipeline takes its signal from this receiver."""

    def __init__(self, signal: Signal, items: int) -> None:
        self.signal = signal
        self.items = items
        super().__init__(f"no pipeline takes {signal.value} from this receiver")


def set_any_value(target: AnyValue, value: Any, depth: int = 0) -> None:
    """Store a JSON value in ``target`` with its type (null is an empty AnyValue)."""
    if isinstance(value, str):
        target.string_value = value
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            target.int_value = value
        else:
            target.string_value = str(value)
    elif isinstance(value, float):
        target.double_value = value
    elif value is None:
        target.SetInParent()
    elif depth >= MAX_BODY_DEPTH:
        target.string_value = orjson.dumps(value).decode()
    elif isinstance(value, dict):
        kvlist = target.kvlist_value
        kvlist.SetInParent()
        add_pair = kvlist.values.add
        for key, item in value.items():
            set_any_value(add_pair(key=key).value, item, depth + 1)
    elif isinstance(value, list):
        array = target.array_value
        array.SetInParent()
        add_value = array.values.add
        for item in value:
            set_any_value(add_value(), item, depth + 1)
    else:
        target.string_value = str(value)


def _hex_id(value: Any, size: int) -> bytes | None:
    if isinstance(value, str) and _HEX[size].fullmatch(value):
        raw = bytes.fromhex(value)
        if any(raw):
            return raw
    return None


def fill_log_record(record: LogRecord, obj: dict[str, Any], observed_ns: int) -> None:
    """Turn one JSON object into ``record`` (see the module docstring for the mapping)."""
    record.observed_time_unix_nano = observed_ns
    for name in TIMESTAMP_FIELDS:
        if name in obj:
            ts = parse_timestamp(obj[name])
            if ts is not None:
                record.time_unix_nano = ts
                break
    for name in SEVERITY_FIELDS:
        severity = obj.get(name)
        if isinstance(severity, str) and severity:
            record.severity_text = severity
            record.severity_number = SEVERITY_NUMBERS.get(severity.strip().lower(), 0)  # type: ignore[assignment]
            break
        if isinstance(severity, int) and not isinstance(severity, bool) and 1 <= severity <= 24:
            record.severity_number = severity  # type: ignore[assignment]
            break
    trace_id = _hex_id(obj.get("trace_id", obj.get("traceId")), 16)
    if trace_id is not None:
        record.trace_id = trace_id
    span_id = _hex_id(obj.get("span_id", obj.get("spanId")), 8)
    if span_id is not None:
        record.span_id = span_id
    set_any_value(record.body, obj)


class LineBatch:
    """Lines decoded so far into one message per signal; ``lines`` counts the lines it holds."""

    def __init__(self, fmt: str, signals: Container[Signal]) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown line format {fmt!r}")
        self.format = fmt
        self.signals = signals
        self.messages: dict[Signal, Message] = {}
        self.lines = 0
        self._records: Any = None  # the repeated log_records field plain lines go into

    def __bool__(self) -> bool:
        return self.lines > 0

    def _new_record(self) -> LogRecord:
        if Signal.LOGS not in self.signals:
            raise NoPipeline(Signal.LOGS, 1)
        if self._records is None:
            logs = self.messages.get(Signal.LOGS)
            if logs is None:
                logs = self.messages[Signal.LOGS] = LogsData()
            assert isinstance(logs, LogsData)
            self._records = logs.resource_logs.add().scope_logs.add().log_records
        record: LogRecord = self._records.add()
        return record

    def add(self, line: bytes, observed_ns: int) -> None:
        """Decode one line (without its newline) into the batch.

        Raises:
            MalformedLine: it does not fit the format.
            NoPipeline: no pipeline takes the line's signal; nothing was added.
        """
        if self.format == "text":
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedLine("invalid UTF-8") from None
            record = self._new_record()
            record.observed_time_unix_nano = observed_ns
            record.body.string_value = text
            self.lines += 1
            return
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            if "UTF-8" in str(exc):
                raise MalformedLine("invalid UTF-8") from None
            raise MalformedLine(f"not valid JSON (at character {exc.pos})") from None
        signal = otlp_json.detect_signal(obj)
        if signal is not None:
            self._add_otlp(signal, obj)
        elif self.format == "otlp_json":
            raise MalformedLine("not OTLP/JSON (no resourceSpans, resourceMetrics or resourceLogs at the top)")
        elif not isinstance(obj, dict):
            raise MalformedLine(f"not a JSON object (a JSON {_json_kind(obj)})")
        else:
            fill_log_record(self._new_record(), obj, observed_ns)
        self.lines += 1

    def _add_otlp(self, signal: Signal, obj: dict[str, Any]) -> None:
        try:
            message = otlp_json.from_dict(signal, obj)
        except ValueError as exc:
            raise MalformedLine(str(exc)) from None
        if signal not in self.signals:
            raise NoPipeline(signal, count_items(signal, message))
        target = self.messages.get(signal)
        if target is None:
            self.messages[signal] = message
        else:
            merge_into(signal, target, message)


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
