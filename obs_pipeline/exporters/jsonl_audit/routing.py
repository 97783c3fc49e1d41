"""Split a batch by resource, for path templates that name ``{resource.<attribute>}``.

Only such templates pay for it (the batch is parsed, and one part encoded per resource); a
static path or a template of line keys only writes the batch as it came.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogsData
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from obs_pipeline.batch import Batch
from obs_pipeline.signals import Signal

__all__ = ["by_resource"]


def _text(value: Any) -> str | None:
    """An attribute value as path text: a string, or an integer's decimal text; anything else is absent."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return str(value.string_value)
    if kind == "int_value":
        return str(value.int_value)
    return None


def _attributes(resource: Any, keys: tuple[str, ...]) -> dict[str, str]:
    wanted = set(keys)
    out: dict[str, str] = {}
    for kv in resource.attributes:
        if kv.key in wanted and kv.key not in out:
            text = _text(kv.value)
            if text is not None:
                out[kv.key] = text
    return out


def by_resource(batch: Batch, keys: tuple[str, ...]) -> list[tuple[dict[str, str], Batch]]:
    """``batch`` as (the resource attributes ``keys`` name, the part of the batch from that resource)."""
    if not keys:
        return [({}, batch)]
    message = batch.message
    if batch.signal is Signal.TRACES and isinstance(message, TracesData):
        parts: list[tuple[dict[str, str], Batch]] = []
        for spans in message.resource_spans:
            traces = TracesData()
            traces.resource_spans.append(spans)
            parts.append((_attributes(spans.resource, keys), Batch(Signal.TRACES, traces)))
        return parts
    if batch.signal is Signal.LOGS and isinstance(message, LogsData):
        out: list[tuple[dict[str, str], Batch]] = []
        for records in message.resource_logs:
            logs = LogsData()
            logs.resource_logs.append(records)
            out.append((_attributes(records.resource, keys), Batch(Signal.LOGS, logs)))
        return out
    return [({}, batch)]
