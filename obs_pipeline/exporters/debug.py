"""``debug``: what passes through the pipeline, printed for a person at a terminal (stderr).

Modelled on the OpenTelemetry Collector's debug exporter:

* ``basic``: one summary line per batch (``traces: 12 spans, 2 resources``);
* ``normal``: one line per span, log record or metric, with the ids, duration, status and the
  key GenAI fields (model, provider, tokens, tool, agent, session); long values are shortened;
* ``detailed``: every field and attribute, indented under its resource and scope.

It prints telemetry values by design: it is a debugging aid and should not run on production
data that must stay private. Each batch is written with one ``write()`` in a worker thread, so a
slow terminal or a full pipe does not stall the event loop.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

import orjson
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, LogsData
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from obs_pipeline.batch import Batch
from obs_pipeline.components import Exporter, ExporterFactory, PartialSuccess, Settings
from obs_pipeline.genai import attributes as attrs
from obs_pipeline.signals import Signal
from obs_pipeline.timestamps import format_ns

TYPE = "debug"
DEFAULT_VERBOSITY = "basic"
VERBOSITIES = ("basic", "normal", "detailed")
NORMAL_VALUE_LIMIT = 80  # characters of a value shown at normal verbosity

_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}
_GROUP = {Signal.TRACES: "spans", Signal.LOGS: "logs", Signal.METRICS: "metrics"}
_SPAN_KIND = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


@dataclass(frozen=True, kw_only=True)
class Config:
    """The ``debug`` exporter's settings (``schemas/exporters/debug.schema.json``).

    ``timeout`` and ``sending_queue`` are the engine's (:class:`~obs_pipeline.delivery.DeliverySettings`).
    """

    verbosity: str = DEFAULT_VERBOSITY  # basic | normal | detailed


def parse(raw: dict[str, Any]) -> Config:
    """The validated config body, schema defaults filled in (an empty ``debug:`` is ``{}``) -> Config."""
    return Config(verbosity=raw["verbosity"])


class DebugExporter(Exporter):
    """Writes a human-readable rendering of each batch to ``stream`` (stderr by default)."""

    def __init__(self, settings: Settings, cfg: Config, stream: TextIO | None = None) -> None:
        super().__init__(settings)
        self.cfg = cfg
        self.stream = stream
        renderers: dict[str, Callable[[Batch], str]] = {
            "basic": render_basic, "normal": render_normal, "detailed": render_detailed,
        }
        self._render = renderers[cfg.verbosity]

    async def export(self, batch: Batch) -> PartialSuccess | None:
        """Render the batch and write it in one call, off the event loop."""
        text = self._render(batch)
        if text:
            await asyncio.to_thread(self._write, text)
        return None

    def _write(self, text: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(text)
        stream.flush()


# --- basic --------------------------------------------------------------------------------------

def render_basic(batch: Batch) -> str:
    """``traces: 12 spans, 2 resources`` (metrics also count metrics next to data points)."""
    data, items = batch.message, batch.items
    if isinstance(data, TracesData):
        return f"traces: {items} spans, {len(data.resource_spans)} resources\n"
    if isinstance(data, LogsData):
        return f"logs: {items} log records, {len(data.resource_logs)} resources\n"
    metrics = sum(len(sm.metrics) for rm in data.resource_metrics for sm in rm.scope_metrics)
    return f"metrics: {metrics} metrics, {items} data points, {len(data.resource_metrics)} resources\n"


# --- normal -------------------------------------------------------------------------------------

def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= NORMAL_VALUE_LIMIT else text[:NORMAL_VALUE_LIMIT - 1] + "…"


#: (label, slot) of the GenAI fields a person scans for, in the order printed.
_GENAI_FIELDS = (("op", attrs.OPERATION), ("provider", attrs.PROVIDER), ("session", attrs.SESSION),
                 ("agent", attrs.AGENT), ("tool", attrs.TOOL), ("error.type", attrs.ERROR_TYPE))


def _genai_fields(attributes: Iterable[KeyValue]) -> list[str]:
    """``key=value`` pairs of the GenAI fields a person scans for, read as the audit line reads them."""
    vals = attrs.read_wanted(attributes)
    out = [f"{label}={_short(vals[slot])}" for label, slot in _GENAI_FIELDS[:2] if vals[slot] is not None]
    model = vals[attrs.RESPONSE_MODEL] or vals[attrs.REQUEST_MODEL]
    if model is not None:
        out.append(f"model={_short(model)}")
    out += [f"{label}={_short(vals[slot])}" for label, slot in _GENAI_FIELDS[2:] if vals[slot] is not None]
    tokens_in, tokens_out = vals[attrs.IN], vals[attrs.OUT]
    if tokens_in is not None or tokens_out is not None:
        out.append(f"tokens={tokens_in if tokens_in is not None else '-'}/{tokens_out if tokens_out is not None else '-'}")
    return out


def render_normal(batch: Batch) -> str:
    """One line per span, log record or metric."""
    data = batch.message
    lines: list[str] = []
    if isinstance(data, TracesData):
        for rs in data.resource_spans:
            for ss in rs.scope_spans:
                lines.extend(_span_line(span) for span in ss.spans)
    elif isinstance(data, LogsData):
        for rl in data.resource_logs:
            for sl in rl.scope_logs:
                lines.extend(_log_line(record) for record in sl.log_records)
    else:
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                lines.extend(_metric_line(metric) for metric in sm.metrics)
    return "".join(line + "\n" for line in lines)


def _span_line(span: Span) -> str:
    duration = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
    parts = [f"span {span.name!r}", f"trace={span.trace_id.hex()}", f"span={span.span_id.hex()}"]
    if span.parent_span_id:
        parts.append(f"parent={span.parent_span_id.hex()}")
    parts.append(f"{duration:.1f}ms")
    status = _STATUS.get(span.status.code, str(span.status.code))
    if span.status.message:
        status += f"({_short(span.status.message)})"
    parts.append(f"status={status}")
    parts.extend(_genai_fields(span.attributes))
    return " ".join(parts)


def _log_line(record: LogRecord) -> str:
    when = record.time_unix_nano or record.observed_time_unix_nano
    parts = ["log", format_ns(when) if when else "-", record.severity_text or str(record.severity_number)]
    if record.event_name:
        parts.append(f"event={record.event_name}")
    if record.trace_id:
        parts.append(f"trace={record.trace_id.hex()} span={record.span_id.hex()}")
    if record.HasField("body"):
        body = attrs.any_value_to_json(record.body)
        parts.append(f"body={_short(body if isinstance(body, str) else _compact(body))}")
    parts.extend(_genai_fields(record.attributes))
    return " ".join(parts)


def _compact(value: Any) -> str:
    return orjson.dumps(value).decode()


def _metric_line(metric: Metric) -> str:
    kind = metric.WhichOneof("data") or "empty"
    points = len(getattr(metric, kind).data_points) if kind != "empty" else 0
    unit = f" [{metric.unit}]" if metric.unit else ""
    return f"metric {metric.name}{unit} {kind} points={points}"


# --- detailed -----------------------------------------------------------------------------------

def _any(value: AnyValue) -> str:
    """An AnyValue the way the collector prints it: ``Str(text)``, ``Int(3)``, ``Map({...})``."""
    kind = value.WhichOneof("value")
    if kind is None:
        return "Empty()"
    label = {"string_value": "Str", "int_value": "Int", "double_value": "Double", "bool_value": "Bool",
             "bytes_value": "Bytes", "array_value": "Slice", "kvlist_value": "Map"}.get(kind, kind)
    rendered = attrs.any_value_to_json(value)
    if kind in ("array_value", "kvlist_value"):
        rendered = _compact(rendered)
    return f"{label}({rendered})"


def _attributes(out: list[str], indent: str, attributes: Iterable[KeyValue]) -> None:
    for kv in attributes:
        out.append(f"{indent}-> {kv.key}: {_any(kv.value)}")


def _ts(unix_nano: int) -> str:
    return format_ns(unix_nano) if unix_nano else "-"


def render_detailed(batch: Batch) -> str:
    """Every resource, scope, item, field and attribute, indented."""
    out: list[str] = []
    signal, data = batch.signal, batch.message
    group = _GROUP[signal]
    for i, res_group in enumerate(getattr(data, f"resource_{group}")):
        out.append(f"ResourceGroup #{i}")
        if res_group.schema_url:
            out.append(f"  schema_url: {res_group.schema_url}")
        out.append("  Resource attributes:")
        _attributes(out, "    ", res_group.resource.attributes)
        for j, scope_group in enumerate(getattr(res_group, f"scope_{group}")):
            scope = scope_group.scope
            out.append(f"  Scope #{j}: {scope.name} {scope.version}".rstrip())
            _attributes(out, "    ", scope.attributes)
            if signal is Signal.TRACES:
                for k, span in enumerate(scope_group.spans):
                    _detail_span(out, k, span)
            elif signal is Signal.LOGS:
                for k, record in enumerate(scope_group.log_records):
                    _detail_log(out, k, record)
            else:
                for k, metric in enumerate(scope_group.metrics):
                    _detail_metric(out, k, metric)
    return "".join(line + "\n" for line in out)


def _detail_span(out: list[str], index: int, span: Span) -> None:
    out += [
        f"    Span #{index}",
        f"      Trace ID       : {span.trace_id.hex()}",
        f"      Parent ID      : {span.parent_span_id.hex()}",
        f"      ID             : {span.span_id.hex()}",
        f"      Name           : {span.name}",
        f"      Kind           : {_SPAN_KIND.get(span.kind, str(span.kind))}",
        f"      Start time     : {_ts(span.start_time_unix_nano)}",
        f"      End time       : {_ts(span.end_time_unix_nano)}",
        f"      Duration       : {(span.end_time_unix_nano - span.start_time_unix_nano) / 1e6:.3f}ms",
        f"      Status code    : {_STATUS.get(span.status.code, str(span.status.code))}",
        f"      Status message : {span.status.message}",
    ]
    if span.trace_state:
        out.append(f"      Trace state    : {span.trace_state}")
    out.append("      Attributes:")
    _attributes(out, "        ", span.attributes)
    for n, event in enumerate(span.events):
        out.append(f"      Event #{n}: {event.name} at {_ts(event.time_unix_nano)}")
        _attributes(out, "        ", event.attributes)
    for n, link in enumerate(span.links):
        out.append(f"      Link #{n}: trace {link.trace_id.hex()} span {link.span_id.hex()}")
        _attributes(out, "        ", link.attributes)


def _detail_log(out: list[str], index: int, record: LogRecord) -> None:
    out += [
        f"    LogRecord #{index}",
        f"      Timestamp      : {_ts(record.time_unix_nano)}",
        f"      Observed       : {_ts(record.observed_time_unix_nano)}",
        f"      Severity       : {record.severity_text} ({record.severity_number})",
        f"      Event name     : {record.event_name}",
        f"      Body           : {_any(record.body)}",
        f"      Trace ID       : {record.trace_id.hex()}",
        f"      Span ID        : {record.span_id.hex()}",
        f"      Flags          : {record.flags}",
        "      Attributes:",
    ]
    _attributes(out, "        ", record.attributes)


def _detail_metric(out: list[str], index: int, metric: Metric) -> None:
    kind = metric.WhichOneof("data")
    out += [
        f"    Metric #{index}",
        f"      Name           : {metric.name}",
        f"      Description    : {metric.description}",
        f"      Unit           : {metric.unit}",
        f"      Type           : {kind}",
    ]
    if kind is None:
        return
    body = getattr(metric, kind)
    for n, point in enumerate(body.data_points):
        out.append(f"      DataPoint #{n} at {_ts(point.time_unix_nano)} (start {_ts(point.start_time_unix_nano)})")
        _attributes(out, "        ", point.attributes)
        out.append(f"        Value: {_point_value(kind, point)}")


def _point_value(kind: str, point: Any) -> str:
    if kind in ("gauge", "sum"):
        return str(getattr(point, point.WhichOneof("value") or "as_int"))
    if kind == "histogram":
        return (f"count={point.count} sum={point.sum} bounds={list(point.explicit_bounds)} "
                f"buckets={list(point.bucket_counts)}")
    if kind == "exponential_histogram":
        return f"count={point.count} sum={point.sum} scale={point.scale} zero_count={point.zero_count}"
    quantiles = ", ".join(f"q{q.quantile}={q.value}" for q in point.quantile_values)
    return f"count={point.count} sum={point.sum} {quantiles}".rstrip()


FACTORY = ExporterFactory[Config](
    type=TYPE,
    signals=frozenset({Signal.TRACES, Signal.METRICS, Signal.LOGS}),
    schema="exporters/debug.schema.json",
    description="Prints what passes through the pipeline to stderr, for a person at a terminal.",
    parse=parse,
    create=DebugExporter,
)

__all__ = ["FACTORY", "TYPE", "Config", "DebugExporter", "parse", "render_basic", "render_detailed",
           "render_normal"]
