"""The graph: wiring, and that a mutating processor can never be bypassed by stale wire bytes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from obs_pipeline.batch import Batch
from obs_pipeline.components import (
    ComponentID,
    ExporterFactory,
    Kind,
    PartialSuccess,
    Processor,
    ProcessorFactory,
    Receiver,
    ReceiverFactory,
)
from obs_pipeline.config import ComponentConfig, PipelineConfig, PipelineSpec, TelemetryConfig
from obs_pipeline.engine.graph import Graph
from obs_pipeline.signals import Signal
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.testing import RecordingHost
from tests.enginekit import RecordingExporter, traces


class Redact(Processor):
    """A mutating processor that changes the batch in place and hands the same batch on."""

    async def consume(self, batch: Batch) -> None:
        batch.mutable().resource_spans[0].scope_spans[0].spans[0].name = "[REDACTED]"
        await self.next.consume(batch)


class WireRecorder(RecordingExporter):
    def __init__(self, cid: str) -> None:
        super().__init__(cid)
        self.wires: list[bytes | None] = []

    async def export(self, batch: Batch) -> PartialSuccess | None:
        self.wires.append(batch.wire)
        return await super().export(batch)


def _factory(kind: Kind, type_: str, create, mutates: bool = False) -> Any:
    common = {"type": type_, "signals": frozenset(Signal), "schema": "x", "description": "test",
              "parse": lambda raw: raw, "create": create}
    if kind is Kind.RECEIVER:
        return ReceiverFactory(**common)
    if kind is Kind.PROCESSOR:
        return ProcessorFactory(**common, mutates_data=mutates)
    return ExporterFactory(**common)


def _graph() -> tuple[Graph, dict[str, WireRecorder]]:
    exporters: dict[str, WireRecorder] = {}

    def make_exporter(settings, _cfg):
        exporters[str(settings.id)] = WireRecorder(str(settings.id))
        return exporters[str(settings.id)]

    receiver = _factory(Kind.RECEIVER, "fake", lambda s, _c, consumers: Receiver(s, consumers))
    redaction = _factory(Kind.PROCESSOR, "redaction", lambda s, _c, nxt: Redact(s, nxt), mutates=True)
    exporter = _factory(Kind.EXPORTER, "rec", make_exporter)
    rid, pid = ComponentID("fake"), ComponentID("redaction")
    plain, redacted = ComponentID("rec", "plain"), ComponentID("rec", "redacted")
    config = PipelineConfig(
        source=Path("test.yaml"),
        receivers={rid: ComponentConfig(rid, Kind.RECEIVER, receiver, {})},
        processors={pid: ComponentConfig(pid, Kind.PROCESSOR, redaction, {})},
        exporters={e: ComponentConfig(e, Kind.EXPORTER, exporter, {}) for e in (plain, redacted)},
        pipelines=(
            PipelineSpec("traces/plain", Signal.TRACES, (rid,), (), (plain,)),
            PipelineSpec("traces/redacted", Signal.TRACES, (rid,), (pid,), (redacted,)),
        ),
        telemetry=TelemetryConfig("info", "text", None, None),
        data_dir=Path("/nonexistent"), shutdown_timeout=1.0, warnings=(),
    )
    return Graph(config, SelfMetrics()), exporters


class TestWireBytesAndMutation:
    async def test_exporters_after_a_mutating_processor_never_get_the_original_bytes(self):
        """One receiver, two pipelines: the plain one keeps the request bytes, the redacting one cannot."""
        graph, exporters = _graph()
        await graph.start(RecordingHost())
        data = traces(1)
        wire = data.SerializeToString()
        (receiver,) = graph.receivers.values()
        await receiver.consumers[Signal.TRACES].consume(Batch(Signal.TRACES, data, wire=wire))
        await graph.shutdown(deadline=time.monotonic() + 2)
        plain, redacted = exporters["rec/plain"], exporters["rec/redacted"]
        assert plain.wires == [wire]
        assert plain.batches[0].resource_spans[0].scope_spans[0].spans[0].name == "span-0"
        assert redacted.wires == [None]
        assert redacted.batches[0].resource_spans[0].scope_spans[0].spans[0].name == "[REDACTED]"


def test_each_processor_is_told_the_types_ahead_of_it_in_its_pipeline():
    """``settings.upstream``: what already happened to the data (a second redaction trusts the first's summary)."""
    seen: dict[tuple[str, str], tuple[str, ...]] = {}

    def make(settings, _cfg, nxt):
        seen[(settings.pipeline, str(settings.id))] = settings.upstream
        return Redact(settings, nxt)

    receiver = _factory(Kind.RECEIVER, "fake", lambda s, _c, consumers: Receiver(s, consumers))
    exporter = _factory(Kind.EXPORTER, "rec", lambda s, _c: WireRecorder(str(s.id)))
    processor = {t: _factory(Kind.PROCESSOR, t, make) for t in ("redaction", "cost", "batch")}
    rid, eid = ComponentID("fake"), ComponentID("rec")
    ids = [ComponentID("redaction"), ComponentID("cost"), ComponentID("redaction", "2"), ComponentID("batch")]
    config = PipelineConfig(
        source=Path("test.yaml"),
        receivers={rid: ComponentConfig(rid, Kind.RECEIVER, receiver, {})},
        processors={p: ComponentConfig(p, Kind.PROCESSOR, processor[p.type], {}) for p in ids},
        exporters={eid: ComponentConfig(eid, Kind.EXPORTER, exporter, {})},
        pipelines=(
            PipelineSpec("traces", Signal.TRACES, (rid,), tuple(ids), (eid,)),
            PipelineSpec("logs", Signal.LOGS, (rid,), (ids[2], ids[0]), (eid,)),
        ),
        telemetry=TelemetryConfig("info", "text", None, None),
        data_dir=Path("/nonexistent"), shutdown_timeout=1.0, warnings=(),
    )
    Graph(config, SelfMetrics())
    assert seen == {
        ("traces", "redaction"): (), ("traces", "cost"): ("redaction",),
        ("traces", "redaction/2"): ("redaction", "cost"), ("traces", "batch"): ("redaction", "cost", "redaction"),
        ("logs", "redaction/2"): (), ("logs", "redaction"): ("redaction",),
    }
