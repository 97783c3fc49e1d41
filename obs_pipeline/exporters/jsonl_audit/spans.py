"""Spans -> audit lines: the exporter's hot path.

Target: a few µs per span, in the same league as parsing it (``python-limits.md``: touching
attribute values through the protobuf classes is what costs, ~0.3 µs per attribute). So:

* each resource group is serialized and re-parsed into a :mod:`~.view` message, where each
  attribute is one ``bytes`` object (a serialized ``KeyValue``) made in C;
* a serialized ``KeyValue`` is looked up in :data:`_KV_CACHE`, which remembers which slot it
  fills and with what value: repeated attributes (model, provider, agent, tool, session) cost one
  dict lookup, with no protobuf access at all;
* not cached: a key it does not want is recognized from the key bytes and skipped (prompts are
  never decoded); a token count is looked up by its value bytes in :data:`_INT_VALUES` (or
  decoded from its varint); anything unusual goes through the real ``KeyValue`` parser
  (:func:`_classify`);
* status and events are decoded only for the spans that have them;
* each span becomes one small dict in the audit key order, serialized by ``orjson``;
* a span whose mapping raises anyway gets a minimal :func:`error_line` and the batch goes on
  (the ``try`` around each span costs nothing until something raises).

Measured in ``bench/audit_mapping.py`` as a ratio to a bare ``TracesData.FromString``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from obs_pipeline import genai
from obs_pipeline.exporters.jsonl_audit.common import (
    IN,
    INT_SLOTS,
    N_WANTED,
    SECOND_PREFIX,
    SLOTS,
    STATUS_CODE_ERROR,
    THREE_DIGITS,
    content_id,
    format_ns,
    read_value,
    resource_context,
    second_prefix,
)
from obs_pipeline.exporters.jsonl_audit.common import tokens as tokens_of
from obs_pipeline.exporters.jsonl_audit.view import ResourceSpansView, TracesView

#: Lines encoded between two chances for the event loop to run (gRPC, health): about 5 ms.
CHUNK_LINES = 1024

#: Serialized ``KeyValue`` (at most ``_MAX_CACHED`` bytes) -> ``(slot, value)``, for wanted
#: string attributes only: unwanted ones may be unique per span (ids, urls) and token counts
#: have too many values. Cleared when it passes ``_MAX_CACHE_ENTRIES``, so memory stays small.
_KV_CACHE: dict[bytes, tuple[int, Any]] = {}
_MAX_CACHED = 256
_MAX_CACHE_ENTRIES = 20_000
#: The serialized value part of a token-count ``KeyValue`` (everything after the key) -> int.
#: Shared by all token keys; a few bytes per entry.
_INT_VALUES: dict[bytes, int] = {}
_MAX_INT_VALUES = 50_000
#: The UTF-8 key of each slot name, to classify a serialized KeyValue without parsing it.
_BYTES_SLOTS: dict[bytes, int] = {key.encode(): slot for key, slot in SLOTS.items()}
_STATUS_CACHE: dict[bytes, tuple[int, str]] = {}
_UNWANTED: tuple[int, Any] = (-1, None)


def _classify(raw: bytes) -> tuple[int, Any]:
    """``(slot, value)`` of a serialized ``KeyValue`` read with the real parser; caches strings."""
    kv = KeyValue.FromString(raw)
    slot = SLOTS.get(kv.key)
    if slot is None:
        return _UNWANTED
    hit = (slot, read_value(slot % N_WANTED, kv.value))
    if slot not in INT_SLOTS and len(raw) <= _MAX_CACHED:
        _KV_CACHE[raw] = hit
    return hit


def _int_value(raw: bytes, key_end: int) -> int | None:
    """The integer of a token-count ``KeyValue`` not seen before; remembered by its value bytes.

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
                if value >= 1 << 63:
                    value -= 1 << 64
            _INT_VALUES[tail] = value
            return value
    parsed: int | None = read_value(IN, KeyValue.FromString(raw).value)
    if parsed is not None:
        _INT_VALUES[tail] = parsed
    return parsed


def _status(raw: bytes) -> tuple[int, str]:
    """``(code, message)`` of a serialized ``Status``; short ones (``OK``) are cached."""
    found = _STATUS_CACHE.get(raw)
    if found is None:
        status = Status.FromString(raw)
        found = (status.code, status.message)
        if len(raw) <= _MAX_CACHED:
            if len(_STATUS_CACHE) > 4096:
                _STATUS_CACHE.clear()
            _STATUS_CACHE[raw] = found
    return found


def _exception_type(raw_events: Iterable[bytes]) -> str | None:
    """``exception.type`` of the first ``exception`` event (read for error spans only)."""
    for raw in raw_events:
        if b"exception.type" not in raw:
            continue
        event = Span.Event.FromString(raw)
        if event.name == "exception":
            for kv in event.attributes:
                if kv.key == "exception.type":
                    return kv.value.string_value or None
    return None


def error_line(span: Any, service: str | None, exc: BaseException) -> bytes:
    """The minimal line of a span whose mapping raised ``exc``, so no span is silently lost.

    Only what cannot fail: the start time, the span name, the status (when it decodes), the ids
    and the resource's service; ``detail.mapping_error`` names the exception's class, never a
    value (the message could quote one).
    """
    result = "allow"
    try:
        if span.status and _status(span.status)[0] == STATUS_CODE_ERROR:
            result = "error"
    except Exception:  # noqa: S110 - the status is what we are unsure of: "allow"
        pass
    trace_id = span.trace_id.hex()
    span_id = span.span_id.hex()
    return orjson.dumps({
        "timestamp": format_ns(span.start_time_unix_nano),
        "session_id": None,
        "task_id": None,
        "event_type": span.name,
        "category": "other",
        "result": result,
        "detail": {"mapping_error": type(exc).__name__},
        "event_id": f"{trace_id}:{span_id}" if trace_id and span_id else content_id("span", span),
        "trace_id": trace_id or None,
        "span_id": span_id or None,
        "service": service,
    })


def encode_traces(data: Any, wire: bytes | None = None, errors: list[BaseException] | None = None) -> list[bytes]:
    """One serialized audit line (no newline) per span of a ``TracesData``, in order."""
    return [line for chunk in iter_encode_traces(data, wire, errors=errors) for line in chunk]


def iter_encode_traces(data: Any, wire: bytes | None = None, chunk: int = CHUNK_LINES,
                       errors: list[BaseException] | None = None) -> Iterator[list[bytes]]:
    """The audit lines of ``data`` in chunks of about ``chunk`` lines, so a caller can yield between.

    ``wire``, when given, is ``data``'s exact serialization: the raw-attribute view is parsed
    from it instead of re-serializing every resource group. ``data`` is only read: it may be
    shared with other exporters. The per-span work is written out inline on purpose: a helper
    call per span or attribute costs more than the work itself.

    Every span gets exactly one line: one whose mapping raises (or whose resource cannot be
    read) gets an :func:`error_line`, and the exception is appended to ``errors`` when given.
    """
    if len(_KV_CACHE) > _MAX_CACHE_ENTRIES:
        _KV_CACHE.clear()
    if len(_INT_VALUES) > _MAX_INT_VALUES:
        _INT_VALUES.clear()
    out: list[bytes] = []
    append = out.append
    dumps = orjson.dumps
    cached = _KV_CACHE.get
    classify = _classify
    slot_of_key = _BYTES_SLOTS.get
    int_values = _INT_VALUES.get
    cached_status = _STATUS_CACHE.get
    int_slots = INT_SLOTS
    n_wanted = N_WANTED
    prefixes = SECOND_PREFIX
    digits = THREE_DIGITS
    op_category = genai.OPERATION_CATEGORY
    empty: list[Any] = [None] * n_wanted
    views = None
    if wire is not None:
        try:
            views = TracesView.FromString(wire).resource_spans
        except Exception:  # not data's serialization after all: re-serialize
            views = None
        if views is not None and len(views) != len(data.resource_spans):
            views = None  # likewise: never pair spans with the wrong resource
    for index, rs_data in enumerate(data.resource_spans):
        if len(out) >= chunk:
            yield out
            out = []
            append = out.append
        rs = views[index] if views is not None else ResourceSpansView.FromString(rs_data.SerializeToString())
        try:
            service, res_session, res_task = resource_context(rs_data.resource)
        except Exception as exc:  # each of its spans still gets a line
            for ss in rs.scope_spans:
                for span in ss.spans:
                    append(error_line(span, None, exc))
                    if errors is not None:
                        errors.append(exc)
            continue
        for ss in rs.scope_spans:
            for span in ss.spans:
                try:
                    vals = empty.copy()
                    for raw in span.attributes:
                        hit = cached(raw)
                        if hit is not None:
                            slot, value = hit
                        elif raw and raw[0] == 0x0A and raw[1] < 0x80:  # key first, shorter than 128 bytes
                            key_end = 2 + raw[1]
                            wanted = slot_of_key(raw[2:key_end])
                            if wanted is None:
                                continue  # not wanted: its value (maybe a long prompt) is never read
                            slot = wanted
                            if slot in int_slots:
                                value = int_values(raw[key_end:])
                                if value is None:
                                    value = _int_value(raw, key_end)
                            else:
                                slot, value = classify(raw)
                        else:
                            slot, value = classify(raw)
                        if slot < 0:
                            continue
                        if slot >= n_wanted:  # an alias: the canonical name wins
                            slot -= n_wanted
                            if vals[slot] is not None:
                                continue
                        vals[slot] = value
                    (t_in, t_out, t_cache_read, t_cache_write, t_reasoning, op, provider, request_model,
                     response_model, session, task, agent, tool, error_type, oi_kind, tl_kind) = vals

                    detail: dict[str, Any] = {}
                    model = response_model or request_model
                    if model:
                        detail["model"] = model
                    if provider:
                        detail["provider"] = provider
                    if t_cache_read is None and t_cache_write is None and t_reasoning is None:
                        if t_in is not None and t_out is not None:
                            detail["tokens"] = {"input": t_in, "output": t_out}
                        elif t_in is not None or t_out is not None:
                            detail["tokens"] = tokens_of(vals)
                    else:
                        detail["tokens"] = tokens_of(vals)
                    if tool:
                        detail["tool"] = tool
                    if agent:
                        detail["agent"] = agent
                    start = span.start_time_unix_nano
                    end = span.end_time_unix_nano
                    if end >= start:
                        detail["duration_ms"] = (end - start) / 1_000_000
                    result = "allow"
                    status = span.status
                    if status:
                        code, message = cached_status(status) or _status(status)
                        if code == STATUS_CODE_ERROR:
                            result = "error"
                            if error_type is None:
                                error_type = _exception_type(span.events)
                        if message:
                            detail["message"] = message
                    if error_type:
                        detail["error_type"] = error_type

                    category = op_category.get(op) if op else None
                    if category is None:
                        category = genai.category(None, oi_kind or tl_kind)
                    second, nanos = divmod(start, 1_000_000_000)
                    millis, micros = divmod(nanos // 1000, 1000)
                    trace_id = span.trace_id.hex()
                    span_id = span.span_id.hex()
                    append(dumps({
                        "timestamp": f"{prefixes.get(second) or second_prefix(second)}.{digits[millis]}{digits[micros]}Z",
                        "session_id": session or res_session,
                        "task_id": task or res_task,
                        "event_type": op or span.name,
                        "category": category,
                        "result": result,
                        "detail": detail,
                        "event_id": f"{trace_id}:{span_id}" if trace_id and span_id else content_id("span", span),
                        "trace_id": trace_id or None,
                        "span_id": span_id or None,
                        "service": service,
                    }))
                except Exception as exc:  # one bad span must not cost the batch
                    append(error_line(span, service, exc))
                    if errors is not None:
                        errors.append(exc)
    yield out
