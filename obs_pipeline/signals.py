"""The three OTLP signals and the few operations the engine needs on each.

The pipeline carries ``TracesData``, ``MetricsData`` and ``LogsData``. These have the same wire
layout as the collector service requests (``ExportTraceServiceRequest`` …), so a receiver parses
request bytes straight into them and an exporter serializes them straight out: no conversion.
Everything here works on the protobuf objects; nothing builds per-item dicts.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogsData, ResourceLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric, MetricsData, ResourceMetrics
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, TracesData

Message = TracesData | MetricsData | LogsData  # the OTLP classes ship stubs (types-protobuf for their base)


class Signal(enum.StrEnum):
    """A telemetry signal; its value is the pipeline-ID prefix in the config."""

    TRACES = "traces"
    METRICS = "metrics"
    LOGS = "logs"


_MESSAGE_CLASS: dict[Signal, type[Message]] = {Signal.TRACES: TracesData, Signal.METRICS: MetricsData, Signal.LOGS: LogsData}
_RESOURCE_FIELD = {Signal.TRACES: "resource_spans", Signal.METRICS: "resource_metrics", Signal.LOGS: "resource_logs"}
_SCOPE_FIELD = {Signal.TRACES: "scope_spans", Signal.METRICS: "scope_metrics", Signal.LOGS: "scope_logs"}
_ITEM_FIELD = {Signal.TRACES: "spans", Signal.METRICS: "metrics", Signal.LOGS: "log_records"}
_RESOURCE_CLASS: dict[Signal, type] = {
    Signal.TRACES: ResourceSpans,
    Signal.METRICS: ResourceMetrics,
    Signal.LOGS: ResourceLogs,
}


def message_class(signal: Signal) -> type[Message]:
    """The protobuf class that carries ``signal`` through the pipeline."""
    return _MESSAGE_CLASS[signal]


def new_message(signal: Signal) -> Message:
    """An empty message for ``signal``."""
    return _MESSAGE_CLASS[signal]()


def parse(signal: Signal, payload: bytes) -> Message:
    """Parse OTLP protobuf bytes (a service request or a ``*Data`` message).

    Raises:
        google.protobuf.message.DecodeError: the bytes are not a valid message.
    """
    message = _MESSAGE_CLASS[signal]()
    message.ParseFromString(payload)
    return message


def resources(signal: Signal, data: Message) -> Any:
    """The repeated ``resource_*`` field of ``data``."""
    return getattr(data, _RESOURCE_FIELD[signal])


def _metric_points(metric: Metric) -> int:
    kind = metric.WhichOneof("data")
    if kind is None:
        return 0
    return len(getattr(metric, kind).data_points)


def count_items(_signal: Signal, data: Message) -> int:
    """Spans, metric data points or log records in ``data``: the unit of every item counter.

    The message's class says which; the signal argument stays for the callers' symmetry.
    """
    if isinstance(data, TracesData):
        return sum(len(ss.spans) for rs in data.resource_spans for ss in rs.scope_spans)
    if isinstance(data, LogsData):
        return sum(len(sl.log_records) for rl in data.resource_logs for sl in rl.scope_logs)
    return sum(_metric_points(m) for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics)


def _item_weight(signal: Signal, item: Any) -> int:
    return _metric_points(item) if signal is Signal.METRICS else 1


def merge_into(signal: Signal, target: Message, source: Message) -> None:
    """Append every resource group of ``source`` to ``target`` (a copy; ``source`` is untouched)."""
    resources(signal, target).extend(resources(signal, source))


def copy(data: Message) -> Message:
    """A deep copy, for a pipeline whose processors mutate data it shares with another."""
    if isinstance(data, TracesData):
        traces = TracesData()
        traces.CopyFrom(data)
        return traces
    if isinstance(data, LogsData):
        logs = LogsData()
        logs.CopyFrom(data)
        return logs
    metrics = MetricsData()
    metrics.CopyFrom(data)
    return metrics


def split(signal: Signal, data: Message, max_items: int) -> list[Message]:
    """Split ``data`` into messages of at most ``max_items`` items, keeping resource and scope.

    A metric is never split across messages, so one metric with more points than ``max_items``
    travels alone. Order is preserved.
    """
    if max_items <= 0 or count_items(signal, data) <= max_items:
        return [data]
    out: list[Message] = []
    current = new_message(signal)
    current_items = 0
    for res_group, scope_group, chunk, weight in _chunks(signal, data, max_items):
        if current_items and current_items + weight > max_items:
            out.append(current)
            current, current_items = new_message(signal), 0
        target_res = resources(signal, current).add()
        target_res.resource.CopyFrom(res_group.resource)
        target_res.schema_url = res_group.schema_url
        target_scope = getattr(target_res, _SCOPE_FIELD[signal]).add()
        target_scope.scope.CopyFrom(scope_group.scope)
        target_scope.schema_url = scope_group.schema_url
        getattr(target_scope, _ITEM_FIELD[signal]).extend(chunk)
        current_items += weight
    if current_items:
        out.append(current)
    return out


def _chunks(signal: Signal, data: Message, max_items: int) -> Iterator[tuple[Any, Any, list[Any], int]]:
    """Yield (resource group, scope group, items, weight) runs of at most ``max_items`` each."""
    for res_group in resources(signal, data):
        for scope_group in getattr(res_group, _SCOPE_FIELD[signal]):
            chunk: list[Any] = []
            weight = 0
            for item in getattr(scope_group, _ITEM_FIELD[signal]):
                w = _item_weight(signal, item)
                if chunk and weight + w > max_items:
                    yield res_group, scope_group, chunk, weight
                    chunk, weight = [], 0
                chunk.append(item)
                weight += w
            if chunk:
                yield res_group, scope_group, chunk, weight
