"""The graph: wiring, and that a mutating processor can never be bypassed by stale wire bytes."""

from __future__ import annotations

import time
from pathlib import Path

from obs_pipeline.components import ComponentID, Factory, Kind, Processor, Receiver
from obs_pipeline.config import ComponentConfig, PipelineConfig, PipelineSpec, TelemetryConfig
from obs_pipeline.engine.graph import Graph
from obs_pipeline.signals import Message, Signal
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.testing import RecordingHost
from tests.enginekit import RecordingExporter, traces


class Redact(Processor):
    """A mutating processor that (wrongly) forwards whatever bytes it was given."""

    async def consume(self, data: Message, wire: bytes | None = None) -> None:
        data.resource_spans[0].scope_spans[0].spans[0].name = "[REDACTED]"
        await self.next.consume(data, wire)


class WireRecorder(RecordingExporter):
    def __init__(self, cid: str) -> None:
        super().__init__(cid)
        self.wires: list[bytes | None] = []

    async def export_wire(self, signal: Signal, data: Message, wire: bytes | None) -> None:
        self.wires.append(wire)
        await self.export(signal, data)


def _factory(kind: Kind, type_: str, create, mutates: bool = False) -> Factory:
    return Factory(type=type_, kind=kind, signals=frozenset(Signal), schema="x", description="test",
                   parse=lambda raw: raw, create=create, mutates_data=mutates)


def _graph() -> tuple[Graph, dict[str, WireRecorder]]:
    exporters: dict[str, WireRecorder] = {}

    def make_exporter(settings, _cfg):
        exporters[str(settings.id)] = WireRecorder(str(settings.id))
        return exporters[str(settings.id)]

    receiver = _factory(Kind.RECEIVER, "fake", lambda s, _c, consumers: Receiver(s, consumers))
    redaction = _factory(Kind.PROCESSOR, "redaction", lambda s, _c, sig, pid, nxt: Redact(s, sig, pid, nxt),
                         mutates=True)
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
        await receiver.consumers[Signal.TRACES].consume(data, wire)
        await graph.shutdown(deadline=time.monotonic() + 2)
        plain, redacted = exporters["rec/plain"], exporters["rec/redacted"]
        assert plain.wires == [wire]
        assert plain.batches[0].resource_spans[0].scope_spans[0].spans[0].name == "span-0"
        assert redacted.wires == [None]
        assert redacted.batches[0].resource_spans[0].scope_spans[0].spans[0].name == "[REDACTED]"
