"""A wire-compatible view of OTLP traces that keeps attributes, events and status as raw bytes.

The derivation reads a handful of a span's attributes (operation, provider, model, tokens, tool)
on every span. Through the regular ``Span`` classes each attribute costs a wrapper object and a
``.key`` access; here each is one ``bytes`` object made in C, so :mod:`.derive` can recognize an
attribute by its key bytes, skip the unwanted ones without decoding them, and cache the decoded
value of a repeated one by its bytes. A batch that still has its wire bytes (the ``batch``
processor's output) is read without ever being parsed as OTLP.

The same technique as the audit exporter's view (its own private copy, so the two exporters stay
independent). Field numbers follow ``opentelemetry/proto/trace/v1/trace.proto``; fields not
declared are kept as unknown fields, untouched.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = ["ResourceSpansView", "TracesView"]

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "obs_pipeline.prometheus_view"

# message -> [(field name, number, type, repeated, message type name or "")]
_LAYOUT: dict[str, list[tuple[str, int, int, bool, str]]] = {
    "TracesView": [("resource_spans", 1, _F.TYPE_MESSAGE, True, "ResourceSpansView")],
    "ResourceSpansView": [
        ("resource", 1, _F.TYPE_MESSAGE, False, "ResourceView"),
        ("scope_spans", 2, _F.TYPE_MESSAGE, True, "ScopeSpansView"),
    ],
    "ResourceView": [("attributes", 1, _F.TYPE_BYTES, True, "")],
    "ScopeSpansView": [("spans", 2, _F.TYPE_MESSAGE, True, "SpanView")],
    "SpanView": [
        ("trace_id", 1, _F.TYPE_BYTES, False, ""),
        ("span_id", 2, _F.TYPE_BYTES, False, ""),
        ("name", 5, _F.TYPE_STRING, False, ""),
        ("start_time_unix_nano", 7, _F.TYPE_FIXED64, False, ""),
        ("end_time_unix_nano", 8, _F.TYPE_FIXED64, False, ""),
        ("attributes", 9, _F.TYPE_BYTES, True, ""),  # one serialized KeyValue each
        ("events", 11, _F.TYPE_BYTES, True, ""),  # one serialized Span.Event each
        ("status", 15, _F.TYPE_BYTES, False, ""),  # serialized Status, b"" when unset
    ],
}


def _build() -> tuple[Any, Any]:
    """Register the view messages in a private descriptor pool; return the two top-level classes."""
    file = descriptor_pb2.FileDescriptorProto(name="obs_pipeline/prometheus_view.proto", package=_PACKAGE, syntax="proto3")
    for message_name, fields in _LAYOUT.items():
        message = file.message_type.add(name=message_name)
        for name, number, type_, repeated, type_name in fields:
            entry = message.field.add(name=name, number=number, type=type_,
                                      label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
            if type_name:
                entry.type_name = f".{_PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    get = message_factory.GetMessageClass
    return (get(pool.FindMessageTypeByName(f"{_PACKAGE}.TracesView")),
            get(pool.FindMessageTypeByName(f"{_PACKAGE}.ResourceSpansView")))


#: ``TracesView.FromString(wire)``: the raw view of a ``TracesData``; ``ResourceSpansView`` of one ``ResourceSpans``.
TracesView, ResourceSpansView = _build()
