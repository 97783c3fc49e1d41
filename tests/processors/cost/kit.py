"""Running the real ``cost`` processor on spans built from plain attribute dicts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Self

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from obs_pipeline.batch import Batch
from obs_pipeline.processors import cost
from obs_pipeline.signals import Signal
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.testing import CapturingConsumer, RecordingHost, make_processor_settings, parse_config

#: A start time after every price change used in the tests that are not about historic prices.
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def any_value(value: Any) -> AnyValue:
    """A Python value as an OTLP ``AnyValue``."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    return AnyValue(string_value=str(value))


def traces(*spans: dict[str, Any], scope: str = "test", start: datetime = NOW) -> TracesData:
    """One resource, one scope, a span per attribute dict (all starting at ``start``)."""
    data = TracesData()
    scope_spans = data.resource_spans.add().scope_spans.add()
    scope_spans.scope.name = scope
    ns = int(start.timestamp() * 1_000_000_000)
    for i, attributes in enumerate(spans):
        span = scope_spans.spans.add(name=f"span {i}", trace_id=bytes(16), span_id=(i + 1).to_bytes(8, "big"))
        span.start_time_unix_nano, span.end_time_unix_nano = ns, ns + 1_000_000
        span.attributes.extend(KeyValue(key=k, value=any_value(v)) for k, v in attributes.items())
    return data


def values(attributes: Any) -> dict[str, Any]:
    """A span's attributes as a dict of Python values."""
    out: dict[str, Any] = {}
    for kv in attributes:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind else None
    return out


class Run:
    """A started cost processor (config ``body``) with a capturing consumer and its own metrics."""

    def __init__(self, body: dict[str, Any] | None = None) -> None:
        self.metrics = SelfMetrics()
        self.sink = CapturingConsumer()
        cfg = parse_config(cost.FACTORY, body)
        self.processor = cost.FACTORY.create(make_processor_settings("cost", metrics=self.metrics), cfg, self.sink)

    async def __aenter__(self) -> Self:
        await self.processor.start(RecordingHost())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.processor.shutdown()

    async def send(self, batch: Batch) -> Batch:
        """Consume ``batch``; return what came out."""
        await self.processor.consume(batch)
        return self.sink.batches[-1]

    def sample(self, name: str, **labels: str) -> float:
        """A metric sample of this run (0 when absent)."""
        value = self.metrics.registry.get_sample_value(name, {"processor": "cost", "pipeline": "traces", **labels})
        return value or 0.0


def price_all(*spans: dict[str, Any], body: dict[str, Any] | None = None, scope: str = "test",
              start: datetime = NOW) -> list[dict[str, Any]]:
    """The attributes of ``spans`` after the cost processor."""
    async def go() -> list[dict[str, Any]]:
        async with Run(body) as run:
            out = await run.send(Batch(Signal.TRACES, traces(*spans, scope=scope, start=start)))
        return [values(s.attributes) for s in out.message.resource_spans[0].scope_spans[0].spans]
    return asyncio.run(go())


def price(attributes: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """The attributes of one span after the cost processor."""
    return price_all(attributes, **kwargs)[0]


def chat(provider: str | None, model: str, **tokens: int | float | str | bool) -> dict[str, Any]:
    """A ``chat`` span's attributes in the latest OTel names (``input=``, ``output=``, ``cache_read=``...)."""
    names = {"input": "gen_ai.usage.input_tokens", "output": "gen_ai.usage.output_tokens",
             "cache_read": "gen_ai.usage.cache_read.input_tokens",
             "cache_write": "gen_ai.usage.cache_write.input_tokens",
             "reasoning": "gen_ai.usage.reasoning.output_tokens", "total": "gen_ai.usage.total_tokens"}
    attributes: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model}
    if provider is not None:
        attributes["gen_ai.provider.name"] = provider
    attributes.update({names[k]: v for k, v in tokens.items()})
    return attributes
