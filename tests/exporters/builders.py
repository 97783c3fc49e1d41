"""Builders for exporter tests: OTLP batches from plain Python data."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogsData
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

T0 = 1_773_743_445_123_456_789  # 2026-03-17T10:30:45.123456789Z
TRACE = bytes.fromhex("db5b5fab8f4d3e27dda1494c73cf256d")
SPAN = bytes.fromhex("73ab48767734d7c1")


def set_value(target: Any, value: Any) -> None:
    """Fill an ``AnyValue`` from plain Python data (dict -> kvlist, list -> array)."""
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif isinstance(value, dict):
        target.kvlist_value.SetInParent()
        for key, sub in value.items():
            kv = target.kvlist_value.values.add(key=key)
            if sub is not None:
                set_value(kv.value, sub)
    elif isinstance(value, list):
        target.array_value.SetInParent()
        for sub in value:
            set_value(target.array_value.values.add(), sub)


def add_attributes(attributes: Any, items: dict[str, Any]) -> None:
    for key, value in items.items():
        set_value(attributes.add(key=key).value, value)


def traces(*spans: dict[str, Any], resource: dict[str, Any] | None = None) -> TracesData:
    """A TracesData with one resource and the given spans (dicts of Span fields + ``attrs``)."""
    data = TracesData()
    rs = data.resource_spans.add()
    add_attributes(rs.resource.attributes, {"service.name": "my-agent"} if resource is None else resource)
    ss = rs.scope_spans.add()
    for given in spans:
        fields = dict(given)
        attrs = fields.pop("attrs", {})
        status = fields.pop("status", None)
        events = fields.pop("events", [])
        span = ss.spans.add(**{"trace_id": TRACE, "span_id": SPAN, "name": "span",
                               "start_time_unix_nano": T0, "end_time_unix_nano": T0 + 12_500_000, **fields})
        add_attributes(span.attributes, attrs)
        if status:
            span.status.code, span.status.message = status
        for name, event_attrs in events:
            event = span.events.add(name=name, time_unix_nano=T0)
            add_attributes(event.attributes, event_attrs)
    return data


def logs(*records: dict[str, Any], resource: dict[str, Any] | None = None) -> LogsData:
    """A LogsData with the given records (dicts of LogRecord fields + ``body`` and ``attrs``)."""
    data = LogsData()
    rl = data.resource_logs.add()
    add_attributes(rl.resource.attributes, {"service.name": "my-agent"} if resource is None else resource)
    sl = rl.scope_logs.add()
    for given in records:
        fields = dict(given)
        body = fields.pop("body", None)
        attrs = fields.pop("attrs", {})
        record = sl.log_records.add(**fields)
        if body is not None:
            set_value(record.body, body)
        add_attributes(record.attributes, attrs)
    return data


CHAT = {
    "name": "chat claude-sonnet-4-5",
    "start_time_unix_nano": T0,
    "end_time_unix_nano": T0 + 2_280_000_000,
    "attrs": {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.response.model": "claude-sonnet-4-5-20250929",
        "gen_ai.usage.input_tokens": 2400, "gen_ai.usage.output_tokens": 310,
        "gen_ai.usage.cache_read.input_tokens": 1800, "gen_ai.request.temperature": 0.2,
        "gen_ai.conversation.id": "conv-0", "gen_ai.input.messages": "x" * 600,
    },
}
