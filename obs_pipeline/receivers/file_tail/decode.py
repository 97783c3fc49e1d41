"""Lines of a file decoded into OTLP messages, in one of the three formats.

* ``json`` without a mapping: the whole object is the log body, as the ``stdin`` receiver does
  (:func:`obs_pipeline.receivers.linebatch.fill_log_record`); an OTLP/JSON line keeps its signal.
* ``json`` with a mapping (a preset): the :class:`~.mapping.Mapper` body in the audit line's names.
* ``otlp_json``: one ``TracesData``/``LogsData``/``MetricsData`` per line (:mod:`obs_pipeline.otlp_json`).
* ``text``: the line is the body; with an RE2 ``pattern`` its named groups go through the mapping.

Invalid UTF-8 is replaced with U+FFFD and counted (``invalid_utf8``); a line cut at
``max_line_size`` becomes a record whose body is its text, marked ``truncated`` in
``obs_pipeline.decoding.repaired``. Every json/text record gets ``log.record.uid`` from the
file's identity and the line's byte offset, so a line read again after a crash keeps its
``event_id`` in the audit log, and ``log.file.name``.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from obs_pipeline import otlp_json
from obs_pipeline.receivers.file_tail.mapping import Mapped, Mapper
from obs_pipeline.receivers.linebatch import (
    BOM,
    RECORD_UID_ATTRIBUTE,
    REPAIRED_ATTRIBUTE,
    MalformedLine,
    NoPipeline,
    fill_log_record,
    loads,
    log_records,
    record_uid,
    set_any_value,
)
from obs_pipeline.signals import Message, Signal, count_items, merge_into

INVALID_UTF8 = "invalid_utf8"
TRUNCATED = "truncated"
UNMATCHED = "unmatched"
FILE_NAME_ATTRIBUTE = "log.file.name"


class Decoder:
    """How one receiver's lines become records: the format, its mapping and pattern."""

    def __init__(self, fmt: str, mapper: Mapper | None, pattern: Any, signals: Container[Signal]) -> None:
        self.format = fmt
        self.mapper = mapper
        self.pattern = pattern  # a compiled re2 pattern for text, or None
        self.signals = signals


class RecordBatch:
    """Decoded lines waiting to be handed on; ``ends`` holds each file's offset after its last line."""

    def __init__(self, decoder: Decoder, observed_ns: int) -> None:
        self.decoder = decoder
        self.observed_ns = observed_ns
        self.messages: dict[Signal, Message] = {}
        self.ends: dict[Any, int] = {}  # tracked file -> offset to commit once accepted
        self.lines = 0
        self.malformed = 0
        self.no_pipeline: dict[Signal, int] = {}
        self.repairs: dict[str, int] = {}
        self._records: Any = None
        self._file_key: Any = None

    def _record(self, uid_source: str, offset: int, file_name: str) -> LogRecord:
        if self._records is None:
            self._records = log_records(self.messages, self.decoder.signals)
        record: LogRecord = self._records.add()
        record.observed_time_unix_nano = self.observed_ns
        attrs = record.attributes
        attrs.add(key=RECORD_UID_ATTRIBUTE).value.string_value = record_uid(uid_source, 0, offset)
        attrs.add(key=FILE_NAME_ATTRIBUTE).value.string_value = file_name
        return record

    def _repair(self, reason: str) -> None:
        self.repairs[reason] = self.repairs.get(reason, 0) + 1

    def add(self, tracked: Any, data: bytes, *, offset: int, end: int, truncated: bool) -> None:
        """Decode one line of ``tracked`` (``data`` without newline, starting at ``offset``).

        Malformed lines and lines no pipeline takes are counted here, never raised.
        """
        self.ends[tracked] = end
        self.lines += 1
        if not data.strip():
            return
        try:
            self._add(tracked.uid_source, tracked.name, data.removeprefix(BOM), offset, truncated)
        except MalformedLine:
            self.malformed += 1
        except NoPipeline as exc:
            self.no_pipeline[exc.signal] = self.no_pipeline.get(exc.signal, 0) + exc.items

    def _add(self, uid_source: str, name: str, data: bytes, offset: int, truncated: bool) -> None:
        fmt = self.decoder.format
        repaired: list[str] = []
        if truncated:
            repaired.append(TRUNCATED)
        if fmt == "text" or truncated:
            try:
                text = data.decode()
            except UnicodeDecodeError:
                text = data.decode(errors="replace")
                repaired.append(INVALID_UTF8)
            self._add_text(uid_source, name, text, offset, repaired)
            return
        try:
            obj, counts = loads(data)
        except MalformedLine:
            try:
                data.decode()
            except UnicodeDecodeError:
                obj, counts = loads(data.decode(errors="replace").encode())
                counts[INVALID_UTF8] = 1
            else:
                raise
        signal = otlp_json.detect_signal(obj)
        if signal is not None:
            self._add_otlp(signal, obj)
            return
        if fmt == "otlp_json":
            raise MalformedLine("not OTLP/JSON")
        if not isinstance(obj, dict):
            raise MalformedLine("not a JSON object")
        record = self._record(uid_source, offset, name)
        if self.decoder.mapper is not None:
            _fill(record, self.decoder.mapper.apply(obj))
        else:
            fill_log_record(record, obj, self.observed_ns, counts)
        repaired.extend(counts)
        self._mark(record, repaired)

    def _add_text(self, uid_source: str, name: str, text: str, offset: int, repaired: list[str]) -> None:
        record = self._record(uid_source, offset, name)
        pattern, mapper = self.decoder.pattern, self.decoder.mapper
        match = pattern.fullmatch(text) if pattern is not None and TRUNCATED not in repaired else None
        if match is not None and mapper is not None:
            groups = {k: v for k, v in match.groupdict().items() if v is not None}
            _fill(record, mapper.apply(groups))
        else:
            if pattern is not None:
                self._repair(UNMATCHED)
            record.body.string_value = text
        self._mark(record, repaired)

    def _mark(self, record: LogRecord, repaired: list[str]) -> None:
        if repaired:
            values = record.attributes.add(key=REPAIRED_ATTRIBUTE).value.array_value.values
            for reason in sorted(set(repaired)):
                values.add(string_value=reason)
                self._repair(reason)

    def _add_otlp(self, signal: Signal, obj: dict[str, Any]) -> None:
        try:
            message = otlp_json.from_dict(signal, obj)
        except ValueError as exc:
            raise MalformedLine(str(exc)) from None
        if signal not in self.decoder.signals:
            raise NoPipeline(signal, count_items(signal, message))
        target = self.messages.get(signal)
        if target is None:
            self.messages[signal] = message
        else:
            merge_into(signal, target, message)


def _fill(record: LogRecord, mapped: Mapped) -> None:
    if mapped.time_ns:
        record.time_unix_nano = mapped.time_ns
    if mapped.severity_text:
        record.severity_text = mapped.severity_text
    if mapped.severity_number:
        record.severity_number = mapped.severity_number  # type: ignore[assignment]
    if mapped.trace_id:
        record.trace_id = mapped.trace_id
    if mapped.span_id:
        record.span_id = mapped.span_id
    event_type = mapped.body.get("event_type")
    if isinstance(event_type, str):
        record.event_name = event_type
    set_any_value(record.body, mapped.body)
