"""Small builders shared by the engine tests: settings, spans, and an exporter that records."""

from __future__ import annotations

import asyncio
from pathlib import Path

from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from obs_pipeline.batch import Batch
from obs_pipeline.components import ComponentID, Exporter, Kind, PartialSuccess, Settings
from obs_pipeline.delivery import DeliverySettings, QueueSettings, RetrySettings
from obs_pipeline.engine.queue import QueuedExporter
from obs_pipeline.errors import PermanentError, RetryableError
from obs_pipeline.signals import Message, Signal, count_items
from obs_pipeline.telemetry.logs import component_logger
from obs_pipeline.telemetry.metrics import SelfMetrics


def settings(kind: Kind, cid: str, metrics: SelfMetrics | None = None, data_dir: Path | None = None) -> Settings:
    """Settings for a component under test."""
    return Settings(
        id=ComponentID.parse(cid), kind=kind, metrics=metrics or SelfMetrics(),
        logger=component_logger(kind.singular, cid), data_dir=data_dir or Path("/nonexistent"),
    )


def traces(n: int, start: int = 0, service: str = "agent") -> TracesData:
    """``n`` spans named ``span-<i>`` with 8-byte span ids ``i``, under one resource."""
    data = TracesData()
    rs = data.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    ss = rs.scope_spans.add()
    for i in range(start, start + n):
        ss.spans.add(name=f"span-{i}", trace_id=b"\x01" * 16, span_id=i.to_bytes(8, "big"))
    return data


def tbatch(n: int, start: int = 0, service: str = "agent", *, wire: bool = False) -> Batch:
    """``traces(n, start, service)`` as a Batch (with its wire bytes when ``wire``)."""
    data = traces(n, start, service)
    return Batch(Signal.TRACES, data, wire=data.SerializeToString() if wire else None)


def queued(
    exporter: Exporter, metrics: SelfMetrics, queue: QueueSettings | None = None,
    retry: RetrySettings | None = None, timeout: float | None = None,
) -> QueuedExporter:
    """A queue around ``exporter`` with the given settings."""
    return QueuedExporter(exporter, metrics, DeliverySettings(
        queue=queue or QueueSettings(), retry=retry or RetrySettings(), timeout=timeout))


def put(q: QueuedExporter, data: Message, signal: Signal = Signal.TRACES) -> None:
    """Admit ``data`` into ``q`` as the fan-out does: reserve, then commit."""
    batch = Batch(signal, data)
    q.reserve(batch.items).commit(batch)


def span_names(batches: list[Message]) -> list[str]:
    """Every span name in ``batches``, in order."""
    return [s.name for b in batches for rs in b.resource_spans for ss in rs.scope_spans for s in ss.spans]


class RecordingExporter(Exporter):
    """Records what it is given; can be told to fail the next calls or to block."""

    def __init__(self, cid: str = "recorder", metrics: SelfMetrics | None = None) -> None:
        super().__init__(settings(Kind.EXPORTER, cid, metrics))
        self.batches: list[Message] = []
        self.fail_next: list[Exception] = []
        self.gate: asyncio.Event | None = None
        self.calls = 0
        self.shut_down = 0

    async def export(self, batch: Batch) -> PartialSuccess | None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            raise self.fail_next.pop(0)
        self.batches.append(batch.message)
        return None

    async def on_shutdown(self) -> None:
        self.shut_down += 1

    def items(self) -> int:
        return sum(count_items(Signal.TRACES, b) for b in self.batches)


__all__ = [
    "PermanentError",
    "QueueSettings",
    "RecordingExporter",
    "RetrySettings",
    "RetryableError",
    "put",
    "queued",
    "settings",
    "span_names",
    "tbatch",
    "traces",
]
