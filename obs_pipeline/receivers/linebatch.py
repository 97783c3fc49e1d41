r"""Lines of text (JSON objects, OTLP/JSON, plain text) decoded into one OTLP message per signal.

Shared by the line-oriented receivers (stdin, and file_tail later), so both read the same
formats the same way:

* ``json``: a JSON object becomes one log record. Its body is the whole object as an AnyValue
  kvlist (typed: ints, doubles, bools, strings, null, nested lists and objects); ``timestamp``,
  ``time`` or ``ts`` (ISO-8601, naive = UTC, or epoch s/ms/µs/ns) sets ``time_unix_nano``;
  ``level``, ``severity``, ``lvl`` or ``levelname`` (the first usable in that order, then the same
  names in any case: ``Level``, ``LEVEL``) set the severity; ``status: "error"`` (any case) sets ERROR (17) when no severity
  field gave a number; hex ``trace_id``/``span_id`` set the ids (all-zero or malformed ids are
  ignored). A line that is OTLP/JSON (``resourceSpans`` … at the top) is decoded as that signal.
* ``otlp_json``: every line must be OTLP/JSON.
* ``text``: the line (UTF-8) is the body of a log record.

A UTF-8 byte order mark at the start of a line is dropped. JSON is parsed with orjson; a line
orjson refuses, or one with an integer it would turn into a lossy double, is parsed again with
the standard library's ``json``, with these conversions (each kind counted, and listed in the
record's ``obs_pipeline.decoding.repaired`` attribute):

* ``lone_surrogate``: a ``\uD83D`` escape without its pair (a string cut mid-emoji) becomes U+FFFD;
* ``non_finite_number``: ``1e400``, ``-1e400``, ``NaN``, ``Infinity`` become the string they were
  written as (a double would be ``inf``, which JSON cannot carry and which loses the literal);
* ``big_integer``: an integer outside int64 becomes its decimal string (every digit kept);
* ``nested_as_json``: body levels past :data:`MAX_BODY_DEPTH` are kept as their JSON text.

Records made from ``json`` and ``text`` lines get a ``log.record.uid`` attribute when the
batch is given a source (see :func:`record_uid`). Errors (:class:`MalformedLine`,
:class:`NoPipeline`) carry a reason that never quotes the line.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Container, Iterator
from typing import Any

import orjson
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, LogsData

from obs_pipeline import otlp_json
from obs_pipeline.audit import line as audit_line
from obs_pipeline.signals import Message, Signal, count_items, merge_into
from obs_pipeline.timestamps import parse_timestamp

FORMATS = ("json", "otlp_json", "text")
TIMESTAMP_FIELDS = ("timestamp", "time", "ts")
SEVERITY_FIELDS = ("level", "severity", "lvl", "levelname")  # in this order; then in any case
STATUS_FIELD = "status"  # "error" (any case) means SEVERITY_ERROR when no severity field gave a number
SEVERITY_ERROR = 17
#: Body levels below this many are AnyValues; what is deeper is kept as its JSON text (a string).
#: protobuf parsers refuse messages nested past 100 levels, every JSON level costs three
#: (AnyValue → KeyValueList → KeyValue) and a log body starts at level 4.
MAX_BODY_DEPTH = 24
BOM = b"\xef\xbb\xbf"
REPAIRED_ATTRIBUTE = audit_line.REPAIRED_ATTRIBUTE
RECORD_UID_ATTRIBUTE = "log.record.uid"
LONE_SURROGATE = "lone_surrogate"
NON_FINITE_NUMBER = "non_finite_number"
BIG_INTEGER = "big_integer"
NESTED_AS_JSON = "nested_as_json"
TOO_DEEP = "too_deep"  # deeper than even the standard library's encoder goes: replaced by a marker
TRUNCATED = "[truncated: nesting too deep to keep as JSON]"
#: Integer literals longer than this are kept as text unparsed (Python refuses past 4,300 digits).
MAX_INTEGER_DIGITS = 4000

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UINT64_MAX = 2**64 - 1
_HEX = {16: re.compile(r"[0-9a-fA-F]{32}"), 8: re.compile(r"[0-9a-fA-F]{16}")}
# Integers orjson would read as a lossy double: 20 digits pass u64, a negative 19 may pass i64.
# Found by mapping every digit to 0 (translate + find: 0.5 µs a line, a regex took 4.4 µs); a
# false hit (digits in a string or a fraction) only costs the slower parse.
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else b if b == 0x2D else 0x78 for b in range(256))
_LOSSY_RUNS = (b"0" * 20, b"-" + b"0" * 19)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")

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


def _count(counts: dict[str, int] | None, reason: str) -> None:
    if counts is not None:
        counts[reason] = counts.get(reason, 0) + 1


def set_any_value(target: AnyValue, value: Any, depth: int = 0, counts: dict[str, int] | None = None) -> None:
    """Store a JSON value in ``target`` with its type (null is an empty AnyValue).

    Conversions (an integer outside int64 becomes its decimal string; levels from
    :data:`MAX_BODY_DEPTH` on become their JSON text) are counted in ``counts`` by reason.
    """
    if isinstance(value, str):
        target.string_value = value
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            target.int_value = value
        else:
            target.string_value = str(value)
            _count(counts, BIG_INTEGER)
    elif isinstance(value, float):
        target.double_value = value
    elif value is None:
        target.SetInParent()
    elif depth >= MAX_BODY_DEPTH:
        text = _json_text(value)
        target.string_value = TRUNCATED if text is None else text
        _count(counts, TOO_DEEP if text is None else NESTED_AS_JSON)
    elif isinstance(value, dict):
        kvlist = target.kvlist_value
        kvlist.SetInParent()
        add_pair = kvlist.values.add
        for key, item in value.items():
            set_any_value(add_pair(key=key).value, item, depth + 1, counts)
    elif isinstance(value, list):
        array = target.array_value
        array.SetInParent()
        add_value = array.values.add
        for item in value:
            set_any_value(add_value(), item, depth + 1, counts)
    else:
        target.string_value = str(value)


def _json_text(value: Any) -> str | None:
    """``value`` as compact JSON; None when it is nested too deep for both encoders."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # deeper than orjson's 255 levels, or an integer past 64 bits
        pass
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (RecursionError, ValueError):
        return None


def record_uid(source: str, run_ns: int, lineno: int) -> str:
    """The ``log.record.uid`` of line ``lineno`` of a run: 32 lowercase hex digits.

    The first 128 bits of SHA-256 over the source (``stdin``, or a file path), the time the
    reader started (ns) and the line number, so it is the same for the same (run, line) and
    differs between identical lines and between runs over the same input.
    """
    return hashlib.sha256(f"{source}\n{run_ns}\n{lineno}".encode()).hexdigest()[:32]


def loads(line: bytes) -> tuple[Any, dict[str, int]]:
    """Parse one JSON line (without a BOM), falling back to the standard library for what orjson refuses.

    Returns the value and the conversions made, by reason (see the module docstring).

    Raises:
        MalformedLine: it is not JSON (or not UTF-8).
    """
    first_error = None
    shape = line.translate(_DIGITS_AS_ZERO)
    if _LOSSY_RUNS[0] not in shape and _LOSSY_RUNS[1] not in shape:
        try:
            return orjson.loads(line), {}
        except orjson.JSONDecodeError as exc:
            first_error = exc
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedLine("invalid UTF-8") from None
    counts: dict[str, int] = {}

    def keep_literal(literal: str) -> str:
        counts[NON_FINITE_NUMBER] = counts.get(NON_FINITE_NUMBER, 0) + 1
        return literal

    def number(literal: str) -> float | str:
        value = float(literal)
        return keep_literal(literal) if math.isinf(value) else value

    def integer(literal: str) -> int | str:
        if len(literal) > MAX_INTEGER_DIGITS:
            counts[BIG_INTEGER] = counts.get(BIG_INTEGER, 0) + 1
            return literal
        return int(literal)

    try:
        obj = json.loads(text, parse_float=number, parse_int=integer, parse_constant=keep_literal)
    except json.JSONDecodeError as exc:
        pos = first_error.pos if first_error is not None else exc.pos
        raise MalformedLine(f"not valid JSON (at character {pos})") from None
    except RecursionError:
        raise MalformedLine("not valid JSON: nested too deeply") from None
    if _SURROGATE_ESCAPE.search(line):
        try:
            obj = _replace_surrogates(obj, counts)
        except RecursionError:
            raise MalformedLine("not valid JSON: nested too deeply") from None
    return obj, counts


def _replace_surrogates(value: Any, counts: dict[str, int]) -> Any:
    """``value`` with every lone surrogate in its strings and keys replaced by U+FFFD."""
    if isinstance(value, str):
        if value.isascii():
            return value
        fixed, found = _SURROGATE.subn("\ufffd", value)
        if found:
            counts[LONE_SURROGATE] = counts.get(LONE_SURROGATE, 0) + 1
        return fixed
    if isinstance(value, dict):
        return {_replace_surrogates(k, counts): _replace_surrogates(v, counts) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_surrogates(item, counts) for item in value]
    return value


def _hex_id(value: Any, size: int) -> bytes | None:
    if isinstance(value, str) and _HEX[size].fullmatch(value):
        raw = bytes.fromhex(value)
        if any(raw):
            return raw
    return None


def _fields(obj: dict[str, Any], names: tuple[str, ...]) -> Iterator[Any]:
    """The values of the fields ``names``: spelled as given first, in that order; then in any other case."""
    for name in names:
        if name in obj:
            yield obj[name]
    others = []
    for key, value in obj.items():  # only reached when no field as spelled was usable
        lower = key.lower()
        if lower != key and lower in names:
            others.append((names.index(lower), value))
    others.sort(key=lambda hit: hit[0])  # stable: one name in two spellings keeps the object's order
    for _rank, value in others:
        yield value


def _set_severity(record: LogRecord, obj: dict[str, Any]) -> None:
    """The severity from the first usable severity field, else ERROR for ``status: "error"``."""
    for severity in _fields(obj, SEVERITY_FIELDS):
        if isinstance(severity, str) and severity:
            record.severity_text = severity
            record.severity_number = SEVERITY_NUMBERS.get(severity.strip().lower(), 0)  # type: ignore[assignment]
            break
        if isinstance(severity, int) and not isinstance(severity, bool) and 1 <= severity <= 24:
            record.severity_number = severity  # type: ignore[assignment]
            break
    if not record.severity_number:
        for status in _fields(obj, (STATUS_FIELD,)):
            if isinstance(status, str):
                if status.strip().lower() == "error":
                    record.severity_number = SEVERITY_ERROR  # type: ignore[assignment]
                break


def fill_log_record(record: LogRecord, obj: dict[str, Any], observed_ns: int,
                    counts: dict[str, int] | None = None) -> None:
    """Turn one JSON object into ``record`` (see the module docstring for the mapping)."""
    record.observed_time_unix_nano = observed_ns
    for name in TIMESTAMP_FIELDS:
        if name in obj:
            ts = parse_timestamp(obj[name])
            if ts is not None:
                record.time_unix_nano = ts
                break
    _set_severity(record, obj)
    trace_id = _hex_id(obj.get("trace_id", obj.get("traceId")), 16)
    if trace_id is not None:
        record.trace_id = trace_id
    span_id = _hex_id(obj.get("span_id", obj.get("spanId")), 8)
    if span_id is not None:
        record.span_id = span_id
    set_any_value(record.body, obj, 0, counts)


def mark_repaired(record: LogRecord, counts: dict[str, int]) -> None:
    """List the kinds of conversion made (sorted) in the record's ``obs_pipeline.decoding.repaired``."""
    values = record.attributes.add(key=REPAIRED_ATTRIBUTE).value.array_value.values
    for reason in sorted(counts):
        values.add(string_value=reason)


def log_records(messages: dict[Signal, Message], signals: Container[Signal]) -> Any:
    """The repeated ``log_records`` field new records go into, in the batch's one ``LogsData`` (made on first use).

    Raises:
        NoPipeline: no logs pipeline takes this receiver's records.
    """
    if Signal.LOGS not in signals:
        raise NoPipeline(Signal.LOGS, 1)
    logs = messages.get(Signal.LOGS)
    if logs is None:
        logs = messages[Signal.LOGS] = LogsData()
    assert isinstance(logs, LogsData)
    return logs.resource_logs.add().scope_logs.add().log_records


class LineBatch:
    """Lines decoded so far into one message per signal; ``lines`` counts the lines it holds.

    With a ``source`` (``stdin``, a file path) and the reader's start time ``run_ns``, every
    record made from a ``json`` or ``text`` line gets a :func:`record_uid` from its line number.
    ``repairs`` counts the conversions made, by signal and reason.
    """

    def __init__(self, fmt: str, signals: Container[Signal], *, source: str | None = None, run_ns: int = 0) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown line format {fmt!r}")
        self.format = fmt
        self.signals = signals
        self.source = source
        self.run_ns = run_ns
        self.messages: dict[Signal, Message] = {}
        self.repairs: dict[Signal, dict[str, int]] = {}
        self.lines = 0
        self._records: Any = None  # the repeated log_records field plain lines go into

    def __bool__(self) -> bool:
        return self.lines > 0

    def _new_record(self, lineno: int | None) -> LogRecord:
        if self._records is None:
            self._records = log_records(self.messages, self.signals)
        record: LogRecord = self._records.add()
        if self.source is not None and lineno is not None:
            record.attributes.add(key=RECORD_UID_ATTRIBUTE).value.string_value = record_uid(
                self.source, self.run_ns, lineno)
        return record

    def _count(self, signal: Signal, counts: dict[str, int]) -> None:
        total = self.repairs.setdefault(signal, {})
        for reason, count in counts.items():
            total[reason] = total.get(reason, 0) + count

    def add(self, line: bytes, observed_ns: int, lineno: int | None = None) -> None:
        """Decode one line (without its newline) into the batch; ``lineno`` (from 1) makes its uid.

        Raises:
            MalformedLine: it does not fit the format.
            NoPipeline: no pipeline takes the line's signal; nothing was added.
        """
        line = line.removeprefix(BOM)
        if self.format == "text":
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedLine("invalid UTF-8") from None
            record = self._new_record(lineno)
            record.observed_time_unix_nano = observed_ns
            record.body.string_value = text
            self.lines += 1
            return
        obj, counts = loads(line)
        signal = otlp_json.detect_signal(obj)
        if signal is not None:
            self._add_otlp(signal, obj)
        elif self.format == "otlp_json":
            raise MalformedLine("not OTLP/JSON (no resourceSpans, resourceMetrics or resourceLogs at the top)")
        elif not isinstance(obj, dict):
            raise MalformedLine(f"not a JSON object (a JSON {_json_kind(obj)})")
        else:
            signal = Signal.LOGS
            record = self._new_record(lineno)
            fill_log_record(record, obj, observed_ns, counts)
            if counts:
                mark_repaired(record, counts)
        if counts:
            self._count(signal, counts)
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
