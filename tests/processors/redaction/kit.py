"""Helpers of the redaction tests: one-span and one-log batches, and reading attributes back."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from obs_pipeline.batch import Batch
from obs_pipeline.processors.redaction import FACTORY, Redactor
from obs_pipeline.signals import Signal
from obs_pipeline.testing import parse_config
from tests.exporters.builders import set_value

__all__ = ["attrs", "first_span", "log_request", "plain", "redactor", "run", "set_value", "span_request"]


def redactor(**body: Any) -> Redactor:
    """A redactor built from a config body exactly as the config layer builds it."""
    return Redactor(parse_config(FACTORY, body))


def span_request(attrs: dict[str, Any] | None = None, **fields: Any) -> ExportTraceServiceRequest:
    """A request with one span holding ``attrs`` (and ``name`` etc. from ``fields``)."""
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(name=fields.pop("name", "chat gpt-4o"))
    for key, value in (attrs or {}).items():
        set_value(span.attributes.add(key=key).value, value)
    for key, value in fields.items():
        setattr(span, key, value)
    return request


def log_request(body: Any = None, attrs: dict[str, Any] | None = None) -> ExportLogsServiceRequest:
    """A request with one log record."""
    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    if body is not None:
        set_value(record.body, body)
    for key, value in (attrs or {}).items():
        set_value(record.attributes.add(key=key).value, value)
    return request


def run(r: Redactor, request: Any, signal: Signal = Signal.TRACES) -> Batch:
    """Pass ``request`` through ``r`` as a receiver would (from its wire bytes), settled."""
    out = r(Batch.from_wire(signal, request.SerializeToString()))
    return out.settled()


def first_span(batch: Batch) -> Any:
    """The batch's first span."""
    return batch.message.resource_spans[0].scope_spans[0].spans[0]


def attrs(holder: Any) -> dict[str, Any]:
    """A span's, event's or record's attributes as a dict of Python values."""
    return {kv.key: plain(kv.value) for kv in holder.attributes}


def plain(av: AnyValue) -> Any:
    """An AnyValue as a Python value."""
    which = av.WhichOneof("value")
    if which == "array_value":
        return [plain(v) for v in av.array_value.values]
    if which == "kvlist_value":
        return {kv.key: plain(kv.value) for kv in av.kvlist_value.values}
    return getattr(av, which) if which else None
