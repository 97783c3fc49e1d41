"""A wire-compatible "view" of OTLP traces that keeps each attribute as raw bytes.

Why: reading attributes through the regular ``Span`` classes costs a Python wrapper and a
``.key`` access per attribute and another wrapper per value read (touching values is what
costs). Exporters that read a handful of a span's attributes on every span (the audit line,
the prometheus derivation) parse a batch's wire bytes, or one resource group's serialization,
into these view messages instead: their ``attributes`` field (same field number as in OTLP) is
``repeated bytes``, each element one serialized ``KeyValue``, a plain ``bytes`` object made in C.
Those bytes are a perfect cache key, and an unwanted attribute is recognized by its key bytes
and skipped without being decoded. ``status`` and ``events`` stay raw too; they are decoded only
for the few spans that need them. One module for every reader, so the layout is written once.

Field numbers follow ``opentelemetry/proto/trace/v1/trace.proto`` and
``resource/v1/resource.proto``; fields not declared here are kept as unknown fields, untouched.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = ["ResourceSpansView", "TracesView"]

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "obs_pipeline.otlp_view"

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
        ("parent_span_id", 4, _F.TYPE_BYTES, False, ""),
        ("name", 5, _F.TYPE_STRING, False, ""),
        ("start_time_unix_nano", 7, _F.TYPE_FIXED64, False, ""),
        ("end_time_unix_nano", 8, _F.TYPE_FIXED64, False, ""),
        ("attributes", 9, _F.TYPE_BYTES, True, ""),  # serialized KeyValue each
        ("events", 11, _F.TYPE_BYTES, True, ""),  # serialized Span.Event each
        ("status", 15, _F.TYPE_BYTES, False, ""),  # serialized Status, b"" when unset
    ],
}


def _build() -> tuple[Any, Any]:
    """Register the view messages in a private descriptor pool; return the two top-level classes."""
    file = descriptor_pb2.FileDescriptorProto(
        name="obs_pipeline/otlp_view.proto", package=_PACKAGE, syntax="proto3",
    )
    for message_name, fields in _LAYOUT.items():
        message = file.message_type.add(name=message_name)
        for name, number, type_, repeated, type_name in fields:
            field = message.field.add(
                name=name, number=number, type=type_,
                label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
            )
            if type_name:
                field.type_name = f".{_PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    get = message_factory.GetMessageClass
    return (get(pool.FindMessageTypeByName(f"{_PACKAGE}.TracesView")),
            get(pool.FindMessageTypeByName(f"{_PACKAGE}.ResourceSpansView")))


#: ``TracesView.FromString(traces_data.SerializeToString())`` gives the raw-attribute view;
#: ``ResourceSpansView`` does the same for one ``ResourceSpans``.
TracesView, ResourceSpansView = _build()
