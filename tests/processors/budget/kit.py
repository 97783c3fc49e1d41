"""Spans and a processor harness for the budget tests."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Self

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, TracesData

from obs_pipeline.batch import Batch
from obs_pipeline.processors import budget as budget_module
from obs_pipeline.signals import Signal
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.testing import CapturingConsumer, RecordingHost, make_processor_settings, parse_config

_ids = itertools.count(1)


def value(v: Any) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    return AnyValue(string_value=str(v))


def span(cost: float | None = None, *, unpriced: bool = False, **attrs: Any) -> Span:
    """A chat span with a cost (as the cost processor writes it) and attributes (dots as __)."""
    n = next(_ids)
    s = Span(name="chat m", trace_id=n.to_bytes(16, "big"), span_id=n.to_bytes(8, "big"))
    s.attributes.append(KeyValue(key="gen_ai.operation.name", value=value("chat")))
    if cost is not None:
        s.attributes.append(KeyValue(key="gen_ai.usage.cost.amount", value=value(float(cost))))
    if unpriced:
        s.attributes.append(KeyValue(key="gen_ai.usage.cost.unpriced", value=value(True)))
    for key, v in attrs.items():
        s.attributes.append(KeyValue(key=key.replace("__", "."), value=value(v)))
    return s


def batch(*spans: Span, resource: dict[str, Any] | None = None) -> Batch:
    rs = ResourceSpans()
    for key, v in (resource or {}).items():
        rs.resource.attributes.append(KeyValue(key=key, value=value(v)))
    rs.scope_spans.add().spans.extend(spans)
    msg = TracesData(resource_spans=[rs])
    return Batch(Signal.TRACES, msg)


def attrs(s: Span) -> dict[str, Any]:
    out = {}
    for kv in s.attributes:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind else None
    return out


def spans_of(b: Batch) -> list[Span]:
    return [sp for rs in b.message.resource_spans for ss in rs.scope_spans for sp in ss.spans]


class Harness:
    """A started budget processor feeding a CapturingConsumer."""

    def __init__(self, tmp: Path, body: dict[str, Any], metrics: SelfMetrics | None = None) -> None:
        body = {"endpoint": None, **body}
        self.cfg = parse_config(budget_module.FACTORY, body)
        self.metrics = metrics or SelfMetrics()
        self.sink = CapturingConsumer()
        self.settings = make_processor_settings("budget", metrics=self.metrics, data_dir=tmp)
        self.proc = budget_module.FACTORY.create(self.settings, self.cfg, self.sink)
        self.host = RecordingHost()

    async def __aenter__(self) -> Self:
        await self.proc.start(self.host)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.proc.shutdown()

    async def send(self, *spans: Span, resource: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Send one batch; the attributes of its spans as they came out."""
        await self.proc.consume(batch(*spans, resource=resource))
        return [attrs(s) for s in spans_of(self.sink.batches[-1])]

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, {"processor": "budget", **labels}) or 0.0
