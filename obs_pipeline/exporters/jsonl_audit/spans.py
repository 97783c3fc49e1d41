"""Spans -> audit lines: the exporter's hot path.

Target: a few µs per span, in the same league as parsing it (``python-limits.md``: touching
attribute values through the protobuf classes is what costs, ~0.3 µs per attribute). So:

* the batch's wire bytes (or, without them, each resource group serialized once) are parsed
  into a :mod:`obs_pipeline.otlp_view` message, where each attribute is one ``bytes`` object (a serialized
  ``KeyValue``) made in C; a batch from the ``batch`` processor is never parsed as OTLP at all;
* a short serialized ``KeyValue`` is looked up in the encoder's KeyValue cache, which remembers
  which slot it fills and with what value: repeated attributes (model, provider, agent, tool,
  session) cost one dict lookup, with no protobuf access at all; a long one (a prompt) is never
  hashed, since it cannot be in the cache;
* not cached: a key it does not want is recognized from the key bytes and skipped (prompts are
  never decoded); a token count is looked up by its value bytes (or decoded from its varint);
  anything unusual goes through the real ``KeyValue`` parser (:func:`_classify`);
* what other processors wrote for the audit (:mod:`.derived`: cost, redaction and budget
  attributes; :mod:`.content`: prompt and completion content) is recognized by key like the
  GenAI slots, kept aside while the attributes are walked and read once per span that has any:
  the cost's double by hand, content through :class:`~.content.SpanContent`, the rare rest
  (redaction, budget events) by :func:`~.derived.derive`, which also makes the security and
  budget lines written after the span's own;
* status and events are decoded only for the spans that have them;
* ids are checked (16 and 8 bytes, not all zero) with two ``len`` and two comparisons; a span
  with invalid ids takes a slower path (:func:`_ids_of_invalid`) that writes them as null;
* strings are capped where they are read (:func:`_classify`, once per distinct ``KeyValue``): a
  value cut to its cap comes back with its slot moved by ``CUT``, so the loop flags the span,
  and only a flagged span pays for :func:`~obs_pipeline.audit.line.mark_cut`;
* each span becomes one small dict in the audit key order (:func:`obs_pipeline.audit.line.build`
  written out as a literal, which saves 2% of the loop; a test holds it to
  :data:`~obs_pipeline.audit.line.KEYS`), serialized by ``orjson``;
* a span whose mapping raises anyway gets a minimal :func:`error_line` and the batch goes on
  (the ``try`` around each span costs nothing until something raises).

Measured in ``bench/audit_mapping.py`` as a ratio to a bare ``TracesData.FromString``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status, TracesData

from obs_pipeline import genai
from obs_pipeline.audit import line as audit
from obs_pipeline.batch import Batch
from obs_pipeline.exporters.jsonl_audit.content import CONTENT_NAMES, Content, ContentPolicy, SpanContent
from obs_pipeline.exporters.jsonl_audit.derived import COST_AMOUNT, cost_of, derive, key_names
from obs_pipeline.genai.attributes import (
    IN,
    INT_SLOTS,
    N_WANTED,
    SLOTS,
    ResourceContext,
    Value,
    decision_result,
    read_value,
    resource_context,
    resource_context_of,
)
from obs_pipeline.genai.attributes import tokens as tokens_of
from obs_pipeline.otlp_view import ResourceSpansView, TracesView
from obs_pipeline.signals import Signal
from obs_pipeline.timestamps import THREE_DIGITS, SecondPrefixes, format_ns

__all__ = ["CHUNK_SPANS", "SpanEncoder", "encode_traces", "error_line"]

STATUS_CODE_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR
#: Spans encoded between two chances for the event loop to run (gRPC, health): about 5 ms.
CHUNK_SPANS = 1024
#: Longest serialized ``KeyValue`` (or ``Status``) that is cached; longer ones are never looked up.
MAX_CACHED = 256
#: Entries after which a cache starts again, so memory stays small.
MAX_KV_ENTRIES = 20_000
MAX_INT_ENTRIES = 50_000
MAX_STATUS_ENTRIES = 4096

#: The UTF-8 key of each slot name, to classify a serialized KeyValue without parsing it.
_BYTES_SLOTS: dict[bytes, int] = {key.encode(): slot for key, slot in SLOTS.items()}
_UNWANTED: tuple[int, Value] = (-1, None)
#: Slots of attributes other processors wrote for the audit line, above every real slot (and
#: alias and cut slot): the loop tells them apart with one comparison and spans without any pay
#: nothing. ``DERIVED`` (redaction, budget, unpriced, system instructions): the ``KeyValue`` is
#: kept aside for :func:`.derived.derive`; ``COST``: the amount, read by hand; from
#: ``CONTENT``: prompt and completion content (:class:`.content.SpanContent`).
DERIVED = 1 << 20
COST = DERIVED + 1
CONTENT = DERIVED + 8
_DOUBLE = struct.Struct("<d")
#: Added to the slot (canonical or alias) of a value cut to its cap, so the loop can flag the span.
CUT = 2 * N_WANTED
_CUT_TYPES = (audit.Cut, audit.CutList)
_ZERO_TRACE = bytes(audit.TRACE_ID_BYTES)
_ZERO_SPAN = bytes(audit.SPAN_ID_BYTES)

#: A resource group as the encoder reads it: its view, and its context (or why that failed).
_Group = tuple[Any, ResourceContext | Exception]


def _classify(raw: bytes, kv_cache: dict[bytes, tuple[int, Value]]) -> tuple[int, Value]:
    """``(slot, value)`` of a serialized ``KeyValue`` read with the real parser; caches strings."""
    kv = KeyValue.FromString(raw)
    slot = SLOTS.get(kv.key)
    if slot is None:
        return _UNWANTED
    value = read_value(slot % N_WANTED, kv.value)
    if isinstance(value, _CUT_TYPES):  # longer than any cached KeyValue: never cached
        return slot + CUT, value
    hit = (slot, value)
    if slot not in INT_SLOTS and len(raw) <= MAX_CACHED:
        kv_cache[raw] = hit
    return hit


def _int_value(raw: bytes, key_end: int, int_values: dict[bytes, int]) -> int | None:
    """The count of a token-count ``KeyValue`` not seen before; remembered by its value bytes.

    A negative value is not a count: None (not remembered; rare enough to decode each time).

    The usual layout after the key, ``12 <len> 18 <varint>``, is decoded by hand when the varint
    is the only thing there (every byte but the last has the continuation bit, at most 10 bytes);
    anything else (a double, a string, extra fields) goes through the real parser.
    """
    tail = raw[key_end:]
    size = len(tail)
    if 3 < size <= 13 and tail[0] == 0x12 and tail[2] == 0x18 and tail[1] == size - 2 and tail[-1] < 0x80:
        value = 0
        shift = 0
        for byte in tail[3:-1]:
            if byte < 0x80:
                break  # not one varint (the field twice, say): the parser decides below
            value |= (byte & 0x7F) << shift
            shift += 7
        else:
            value |= tail[-1] << shift
            if value >= 1 << 63:
                value &= 0xFFFF_FFFF_FFFF_FFFF  # as protobuf does: 10 varint bytes can carry 70 bits
                if value >= 1 << 63:  # negative as an int64: not a count
                    return None
            int_values[tail] = value
            return value
    return _parsed_int_value(raw, key_end, int_values)


def _parsed_int_value(raw: bytes, key_end: int, int_values: dict[bytes, int]) -> int | None:
    """As :func:`_int_value`, always through the real ``KeyValue`` parser."""
    parsed = read_value(IN, KeyValue.FromString(raw).value)
    if type(parsed) is int and parsed >= 0:  # a negative count (a buggy SDK) is absent, never written
        int_values[raw[key_end:]] = parsed
        return parsed
    return None


def _exception_type(raw_events: Iterable[bytes]) -> tuple[str | None, str | None]:
    """``(exception.type, exception.message)`` of the first ``exception`` event, capped (error spans only)."""
    for raw in raw_events:
        if b"exception." not in raw:
            continue
        event = Span.Event.FromString(raw)
        if event.name == genai.EXCEPTION_EVENT:
            found: dict[str, str] = {}
            for kv in event.attributes:
                if kv.key in (genai.EXCEPTION_TYPE, genai.EXCEPTION_MESSAGE) and kv.value.string_value:
                    found.setdefault(kv.key, kv.value.string_value)
            kind, message = found.get(genai.EXCEPTION_TYPE), found.get(genai.EXCEPTION_MESSAGE)
            return (None if kind is None else audit.cap(kind),
                    None if message is None else audit.cap(message, audit.TEXT_CHARS))
    return None, None


def _ids_of_invalid(span: Any) -> tuple[str | None, str | None, str]:
    """``(trace_id, span_id, event_id)`` of a span whose trace or span id is missing or invalid.

    A valid one of the two is still written; the invalid one is None, and the event id is a
    content hash (``span:`` + 16 hex), the same for the same span however often it is sent.
    """
    trace_raw, span_raw = span.trace_id, span.span_id
    return (trace_raw.hex() if audit.valid_id(trace_raw, audit.TRACE_ID_BYTES) else None,
            span_raw.hex() if audit.valid_id(span_raw, audit.SPAN_ID_BYTES) else None,
            audit.content_id("span", span))


def _ids(span: Any) -> tuple[str | None, str | None, str, bool]:
    """``(trace_id, span_id, event_id, invalid)`` of a span: the line's ids, and whether some were invalid."""
    trace_raw, span_raw = span.trace_id, span.span_id
    if audit.valid_id(trace_raw, audit.TRACE_ID_BYTES) and audit.valid_id(span_raw, audit.SPAN_ID_BYTES):
        trace_id, span_id = trace_raw.hex(), span_raw.hex()
        return trace_id, span_id, f"{trace_id}:{span_id}", False
    return (*_ids_of_invalid(span), True)


def _decide(detail: dict[str, Any], decision: Value, guardrail: Value) -> str | None:
    """Record a tool-call decision or guardrail action in ``detail``; ``deny`` when it says no."""
    if decision is not None:
        detail["decision"] = decision
    if guardrail is not None:
        detail["guardrail_action"] = guardrail
    return decision_result(decision, guardrail)


def error_line(span: Any, service: str | None, exc: BaseException) -> bytes:
    """The minimal line of a (view) span whose mapping raised ``exc``, so no span is silently lost.

    Only what cannot fail: the start time, the span name, the status (when it decodes), the ids
    and the resource's service.
    """
    result = audit.ALLOW
    try:
        if span.status and Status.FromString(span.status).code == STATUS_CODE_ERROR:
            result = audit.ERROR
    except Exception:  # noqa: S110 - the status is what we are unsure of: "allow"
        pass
    trace_id, span_id, event_id, invalid = _ids(span)
    return orjson.dumps(audit.error_line(
        timestamp=format_ns(span.start_time_unix_nano), event_type=span.name, result=result, error=exc,
        event_id=event_id, trace_id=trace_id, span_id=span_id, service=service, invalid_ids=invalid,
    ))


def _groups_of_wire(wire: bytes) -> list[_Group]:
    """Resource groups read from the batch's bytes alone: the view, and the raw resource attributes.

    Raises:
        google.protobuf.message.DecodeError: the bytes are not valid traces.
    """
    groups: list[_Group] = []
    for view in TracesView.FromString(wire).resource_spans:
        try:
            context: ResourceContext | Exception = resource_context_of(
                KeyValue.FromString(raw) for raw in view.resource.attributes)
        except Exception as exc:  # each of its spans still gets a line
            context = exc
        groups.append((view, context))
    return groups


def _groups_of_message(data: TracesData) -> Iterator[_Group]:
    """Resource groups of a parsed message: each serialized once, to read its view."""
    for rs in data.resource_spans:
        view = ResourceSpansView.FromString(rs.SerializeToString())
        try:
            context: ResourceContext | Exception = resource_context(rs.resource)
        except Exception as exc:
            context = exc
        yield view, context


class SpanEncoder:
    """Spans -> audit lines, with the value caches of one exporter (their lifetime is its lifetime).

    Not thread-safe; several exports of one exporter may interleave on the event loop (the
    caches are only ever read and filled, so that is fine).
    """

    def __init__(self, chunk: int = CHUNK_SPANS, content: ContentPolicy | None = None) -> None:
        self.chunk = chunk
        # Without a policy (tests, the bench, one-off use) no content is kept; the exporter passes its config's.
        self.content = content or ContentPolicy(Content.NONE)
        self.span_content = SpanContent(self.content, CONTENT)
        #: Key bytes -> slot: the GenAI slots, then those of :data:`DERIVED`, :data:`COST`, :data:`CONTENT`.
        self.key_slots: dict[bytes, int] = {
            **_BYTES_SLOTS,
            **{name.encode(): DERIVED for name in key_names(self.content) if name not in CONTENT_NAMES},
            **({genai.SYSTEM_INSTRUCTIONS.encode(): DERIVED} if self.content.mode is Content.FULL else {}),
            COST_AMOUNT.encode(): COST,
            **self.span_content.slots,
        }
        #: Serialized ``KeyValue`` (at most ``MAX_CACHED`` bytes) -> ``(slot, value)``, for wanted
        #: string attributes only: unwanted ones may be unique per span (ids, urls) and token
        #: counts have too many values.
        self.kv_cache: dict[bytes, tuple[int, Value]] = {}
        #: The serialized value part of a token-count ``KeyValue`` (after the key) -> int; shared
        #: by all token keys, a few bytes per entry.
        self.int_values: dict[bytes, int] = {}
        #: Serialized short ``Status`` (``OK``, a common error message) -> ``(code, message)``.
        self.status_cache: dict[bytes, tuple[int, str]] = {}
        self.prefixes = SecondPrefixes()

    def clear(self) -> None:
        """Forget every cached value (the bench's cold case)."""
        self.kv_cache.clear()
        self.int_values.clear()
        self.status_cache.clear()
        self.prefixes.known.clear()

    def encode(self, batch: Batch, errors: list[BaseException] | None = None) -> list[bytes]:
        """One serialized audit line (no newline) per span of ``batch``, in order."""
        return [line for chunk in self.iter_encode(batch, errors) for line in chunk]

    def _status(self, raw: bytes) -> tuple[int, str]:
        """``(code, message)`` of a serialized ``Status``, the message capped; short ones are cached."""
        found = self.status_cache.get(raw)
        if found is None:
            status = Status.FromString(raw)
            found = (status.code, audit.cap(status.message, audit.TEXT_CHARS))
            if len(raw) <= MAX_CACHED:
                if len(self.status_cache) >= MAX_STATUS_ENTRIES:
                    self.status_cache.clear()
                self.status_cache[raw] = found
        return found

    def _groups(self, batch: Batch) -> Iterable[_Group]:
        """The resource groups, from the wire bytes when the batch has them (no OTLP parse)."""
        if batch.wire is not None:
            try:
                return _groups_of_wire(batch.wire)
            except DecodeError:
                pass  # then the message decides: it parses, or raises DecodeError to the exporter
        message = batch.message
        if not isinstance(message, TracesData):
            raise TypeError(f"a {batch.signal.value} batch is not traces")
        return _groups_of_message(message)

    def iter_encode(self, batch: Batch, errors: list[BaseException] | None = None) -> Iterator[list[bytes]]:
        """The audit lines of ``batch`` in chunks of :attr:`chunk` spans, so a caller can yield between.

        Chunks are cut by span count, inside a resource group too: one group of 16k spans is 16
        chunks. ``batch`` is only read (it may be shared with other exporters). The per-span
        work is written out inline on purpose: a helper call per span or attribute costs more
        than the work itself. In particular the line dict is :func:`~obs_pipeline.audit.line.build`
        written out (a test asserts every path writes :data:`~obs_pipeline.audit.line.KEYS` in order).

        Every span gets exactly one line: one whose mapping raises (or whose resource cannot be
        read) gets an :func:`error_line`, and the exception is appended to ``errors`` when given.

        Raises:
            google.protobuf.message.DecodeError: the batch's bytes are not valid traces.
        """
        kv_cache, int_values = self.kv_cache, self.int_values
        if len(kv_cache) > MAX_KV_ENTRIES:
            kv_cache.clear()
        if len(int_values) > MAX_INT_ENTRIES:
            int_values.clear()
        chunk = self.chunk
        out: list[bytes] = []
        append = out.append
        left = chunk  # spans until the next chunk is handed out
        dumps = orjson.dumps
        cached = kv_cache.get
        slot_of_key = self.key_slots.get
        derived_slot, cost_slot, content_slot = DERIVED, COST, CONTENT
        unpack_double = _DOUBLE.unpack_from
        content = self.content
        span_content = self.span_content
        int_value_of = int_values.get
        cached_status = self.status_cache.get
        status_of = self._status
        int_slots = INT_SLOTS
        n_wanted = N_WANTED
        cut_slot = CUT
        max_cached = MAX_CACHED
        known_prefix = self.prefixes.known.get
        prefix_of = self.prefixes.of
        digits = THREE_DIGITS
        op_category = genai.OPERATION_CATEGORY
        allow, error = audit.ALLOW, audit.ERROR
        cut_text, name_chars, mark_cut, cap = audit.Cut, audit.NAME_CHARS, audit.mark_cut, audit.cap
        zero_trace, zero_span = _ZERO_TRACE, _ZERO_SPAN
        empty: list[Value] = [None] * n_wanted
        for rs, context in self._groups(batch):
            if isinstance(context, Exception):
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        append(error_line(span, None, context))
                        if errors is not None:
                            errors.append(context)
                continue
            service, res_session, res_task, res_user, res_agent = context
            res_cut = any(isinstance(value, cut_text) for value in context)  # then every span checks its line
            for ss in rs.scope_spans:
                for span in ss.spans:
                    if not left:
                        yield out
                        out = []
                        append = out.append
                        left = chunk
                    left -= 1
                    try:
                        vals = empty.copy()
                        cut = res_cut
                        extras = texts = cost = None
                        for raw in span.attributes:
                            hit = cached(raw) if len(raw) <= max_cached else None
                            if hit is not None:
                                slot, value = hit
                            elif raw and raw[0] == 0x0A and raw[1] < 0x80:  # key first, shorter than 128 bytes
                                key_end = 2 + raw[1]
                                wanted = slot_of_key(raw[2:key_end])
                                if wanted is None:
                                    continue  # not wanted: its value (maybe a long prompt) is never read
                                if wanted >= derived_slot:  # read after the loop, for this span only
                                    if wanted >= content_slot:
                                        if texts is None:
                                            texts = {wanted: raw}
                                        else:
                                            texts[wanted] = raw
                                    elif wanted == cost_slot:  # the cost processor's double, read by hand
                                        if len(raw) == key_end + 11 and raw[key_end + 1] == 9 and raw[key_end + 2] == 0x21:
                                            cost = unpack_double(raw, key_end + 3)[0]
                                            if cost - cost != 0.0:  # NaN or infinity: no cost
                                                cost = None
                                        else:
                                            cost = cost_of(raw, key_end)
                                    elif extras is None:
                                        extras = [raw]
                                    else:
                                        extras.append(raw)
                                    continue
                                slot = wanted
                                if slot in int_slots:
                                    value = int_value_of(raw[key_end:])
                                    if value is None:
                                        value = _int_value(raw, key_end, int_values)
                                else:
                                    slot, value = _classify(raw, kv_cache)
                            else:
                                slot, value = _classify(raw, kv_cache)
                            if slot < 0:
                                continue
                            if slot >= n_wanted:  # an alias: the canonical name wins
                                if slot >= cut_slot:  # a value cut to its cap (rare): flag the span
                                    cut = True
                                    slot -= cut_slot
                                    if slot < n_wanted:
                                        vals[slot] = value
                                        continue
                                slot -= n_wanted
                                if vals[slot] is not None:
                                    continue
                            vals[slot] = value
                        (t_in, t_out, t_cache_read, t_cache_write, t_reasoning, t_total, op, provider, request_model,
                         response_model, session, task, agent, tool, error_type, oi_kind, tl_kind, user, decision,
                         guardrail, exc_type, exc_message, finish_reasons) = vals

                        detail: dict[str, Any] = {}
                        model = response_model or request_model
                        if model:
                            detail["model"] = model
                        if provider:
                            detail["provider"] = provider
                        if t_cache_read is None and t_cache_write is None and t_reasoning is None:
                            if t_in is not None and t_out is not None:
                                detail["tokens"] = {"input": t_in, "output": t_out}
                            elif t_in is not None or t_out is not None or t_total is not None:
                                detail["tokens"] = tokens_of(vals)
                        else:
                            detail["tokens"] = tokens_of(vals)
                        if tool:
                            detail["tool"] = tool
                        start = span.start_time_unix_nano
                        end = span.end_time_unix_nano
                        if end >= start:
                            detail["duration_ms"] = (end - start) / 1_000_000
                        result = allow
                        if error_type is None:
                            error_type = exc_type
                        status = span.status
                        if status:
                            code, message = cached_status(status) or status_of(status)
                            if code == STATUS_CODE_ERROR:
                                result = error
                                if error_type is None or exc_message is None:
                                    event_error, event_message = _exception_type(span.events)
                                    error_type = error_type or event_error
                                    exc_message = exc_message or event_message
                                    if isinstance(error_type, cut_text) or isinstance(exc_message, cut_text):
                                        cut = True
                            if message:
                                detail["message"] = message
                                if message.__class__ is cut_text:
                                    cut = True
                        if error_type:
                            detail["error_type"] = error_type
                        if exc_message:
                            detail["exception_message"] = exc_message
                        if finish_reasons:
                            detail["finish_reasons"] = finish_reasons
                        if decision is not None or guardrail is not None:
                            result = _decide(detail, decision, guardrail) or result

                        # string slots hold str | None; a per-span isinstance would only tell mypy so
                        category = op_category.get(op) if op else None  # type: ignore[arg-type]
                        if category is None:
                            category = genai.category(None, oi_kind or tl_kind)  # type: ignore[arg-type]
                        if not op:
                            op = span.name
                            if len(op) > name_chars:
                                op = cap(op)
                                cut = True
                        second, nanos = divmod(start, 1_000_000_000)
                        millis, micros = divmod(nanos // 1000, 1000)
                        trace_raw = span.trace_id
                        span_raw = span.span_id
                        if (len(trace_raw) == 16 and len(span_raw) == 8  # valid: OTLP's sizes, not all zero
                                and trace_raw != zero_trace and span_raw != zero_span):
                            trace_id = trace_raw.hex()
                            span_id = span_raw.hex()
                            event_id = f"{trace_id}:{span_id}"
                        else:
                            trace_id, span_id, event_id = _ids_of_invalid(span)
                            detail["invalid_ids"] = True
                        parent_raw = span.parent_span_id
                        if not parent_raw:
                            parent_id = None
                        elif len(parent_raw) == 8 and parent_raw != zero_span:
                            parent_id = parent_raw.hex()
                        else:
                            parent_id = None
                            detail["invalid_ids"] = True
                        # audit.build(...) written out: the call costs 2% of this loop (bench/audit_mapping.py,
                        # "line dict, builder" vs "literal"); test_every_path_writes_the_key_order checks the order.
                        line = {
                            "timestamp": f"{known_prefix(second) or prefix_of(second)}.{digits[millis]}{digits[micros]}Z",
                            "session_id": session or res_session,
                            "task_id": task or res_task,
                            "event_type": op,
                            "category": category,
                            "result": result,
                            "detail": detail,
                            "event_id": event_id,
                            "trace_id": trace_id,
                            "span_id": span_id,
                            "parent_span_id": parent_id,
                            "user_id": user or res_user,
                            "agent": agent or res_agent,
                            "service": service,
                        }
                        if cut:
                            mark_cut(line)  # type: ignore[arg-type]
                        if cost is not None:
                            detail["cost_usd"] = cost
                        if texts is not None:
                            span_content(texts, detail)
                        if extras is None:
                            append(dumps(line))
                        else:  # cost, content, and the security and budget lines after this one
                            more = derive(extras, line, content)
                            append(dumps(line))
                            for extra in more:
                                append(dumps(extra))
                    except Exception as exc:  # one bad span must not cost the batch
                        append(error_line(span, service, exc))
                        if errors is not None:
                            errors.append(exc)
        yield out


def encode_traces(data: TracesData | None = None, wire: bytes | None = None,
                  errors: list[BaseException] | None = None, encoder: SpanEncoder | None = None) -> list[bytes]:
    """The audit lines of a ``TracesData`` (or of its bytes alone), with fresh caches unless ``encoder`` is given.

    For tests, the bench and one-off use; the exporter keeps one :class:`SpanEncoder`.
    """
    batch = Batch(Signal.TRACES, data, wire=wire)
    return (encoder or SpanEncoder()).encode(batch, errors)
