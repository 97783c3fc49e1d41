"""A wire-compatible "view" of OTLP traces that keeps each attribute as raw bytes.

Why: reading attributes through the regular ``Span`` classes costs a Python wrapper and a
``.key`` access per attribute and another wrapper per value read (``python-limits.md``: touching
values is what costs). The audit line needs ~9 of a span's attributes, and their values repeat
across spans (model, provider, agent, session, token counts).

So the exporter serializes each resource group once (C speed; per group rather than the whole
batch, so a large batch never needs one large transient buffer) and parses it again into these
view messages,
whose ``attributes`` field (same field number as in OTLP) is ``repeated bytes``: each element is
one serialized ``KeyValue``, a plain ``bytes`` object made in C. Those bytes are a perfect cache
key: :mod:`.spans` remembers, per distinct ``KeyValue``, which audit slot it fills and with what
value, so a repeated attribute costs one dict lookup instead of several protobuf accesses.
``status`` and ``events`` stay raw too; they are decoded only for the few spans that need them.

Field numbers follow ``opentelemetry/proto/trace/v1/trace.proto`` and
``resource/v1/resource.proto``; fields not declared here are kept as unknown fields, untouched.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "obs_pipeline.audit_view"

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
        name="obs_pipeline/audit_view.proto", package=_PACKAGE, syntax="proto3",
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
