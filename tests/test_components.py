"""Every registered component type keeps the lifecycle contract (STYLE rule 9) and counts (rule 16).

One config that declares every built-in type is loaded through the real config layer, so each
type is exercised with exactly what ``run`` would build.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

from obs_pipeline.batch import Batch
from obs_pipeline.components import Kind, get_factory, known_types
from obs_pipeline.config import ComponentConfig, load_config
from obs_pipeline.signals import Signal, count_items
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.testing import (
    CapturingConsumer,
    RecordingHost,
    make_processor_settings,
    make_settings,
    parse_config,
)
from tests.enginekit import traces


def _every_type_config(tmp: Path, destination=None) -> Path:
    grpc_port, http_port = (destination.grpc_port, destination.http_port) if destination else (4317, 4318)
    config = {
        "receivers": {
            "otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}},
            "stdin": None,
            "file_tail": {"include": [str(tmp / "tail" / "*.log")]},
        },
        "processors": {"batch": None, "cost": None, "redaction": None, "sampling": None,
                       "budget": {"endpoint": "127.0.0.1:0",
                                  "budgets": [{"id": "cap", "scope": "session", "limit_usd": 1}]}},
        "exporters": {
            "jsonl_audit": {"path": str(tmp / "audit.jsonl")}, "debug": None,
            "prometheus": {"endpoint": "127.0.0.1:0"},
            # The network exporters send to a real otlp receiver (the otlp_destination fixture).
            "otlp": {"endpoint": f"127.0.0.1:{grpc_port}", "tls": {"insecure": True}},
            "otlp_grpc": {"endpoint": f"127.0.0.1:{grpc_port}", "tls": {"insecure": True}},
            "otlp_http": {"endpoint": f"http://127.0.0.1:{http_port}"},
            "otlphttp": {"endpoint": f"http://127.0.0.1:{http_port}"},
            "logfire": {"token": "pylf_v1_us_compliance", "endpoint": f"http://127.0.0.1:{http_port}"},
        },
        "service": {
            "pipelines": {
                "traces": {"receivers": ["otlp", "stdin"], "processors": ["batch"], "exporters": ["jsonl_audit", "debug"]},
            },
            "telemetry": {"metrics": {"enabled": False}, "health": {"enabled": False}},
        },
    }
    path = tmp / "every.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
async def otlp_destination():
    """A real otlp receiver on loopback (ports chosen by the OS) for the network exporters to send to."""
    factory = get_factory(Kind.RECEIVER, "otlp")
    cfg = parse_config(factory, {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}})
    receiver = factory.create(make_settings("otlp/destination"), cfg, dict.fromkeys(Signal, CapturingConsumer()))
    await receiver.start(RecordingHost())
    yield receiver
    await receiver.shutdown()


@pytest.fixture
def components(tmp_path: Path, otlp_destination) -> dict[tuple[Kind, str], ComponentConfig]:
    loaded = load_config(_every_type_config(tmp_path, otlp_destination))
    # An exporter and a receiver may share an ID (otlp), so the sections are not merged by ID.
    everything = [*loaded.receivers.values(), *loaded.processors.values(), *loaded.exporters.values()]
    return {(cc.kind, cc.id.type): cc for cc in everything}


def _settings(cc: ComponentConfig, metrics: SelfMetrics, tmp_path: Path):
    if cc.kind is Kind.PROCESSOR:
        return make_processor_settings(str(cc.id), metrics=metrics, data_dir=tmp_path)
    return make_settings(str(cc.id), kind=cc.kind, metrics=metrics, data_dir=tmp_path)


ALL_TYPES = [(kind, t) for kind in Kind for t in known_types(kind)]


class TestRegistry:
    def test_the_compliance_config_declares_every_registered_type(self, components):
        """A new component type must be added here, so it cannot skip the lifecycle tests."""
        assert set(components) == set(ALL_TYPES)

    @pytest.mark.parametrize(("kind", "type_"), ALL_TYPES, ids=[f"{k.singular}-{t}" for k, t in ALL_TYPES])
    def test_factory_declares_its_type_kind_signals_and_an_existing_schema(self, kind, type_):
        """The factory's declaration matches its registration and its schema file exists."""
        factory = get_factory(kind, type_)
        assert factory.type == type_
        assert factory.kind is kind
        assert factory.signals
        assert factory.schema_path.is_file()
        assert factory.description


class TestLifecycle:
    @pytest.mark.parametrize(("kind", "type_"), ALL_TYPES, ids=[f"{k.singular}-{t}" for k, t in ALL_TYPES])
    async def test_shutdown_without_start_is_safe_and_idempotent(self, components, tmp_path, kind, type_):
        """create → shutdown → shutdown never raises, for every type."""
        cc = components[(kind, type_)]
        settings = _settings(cc, SelfMetrics(), tmp_path)
        if kind is Kind.RECEIVER:
            component = cc.factory.create(settings, cc.config, {Signal.TRACES: CapturingConsumer()})
        elif kind is Kind.PROCESSOR:
            component = cc.factory.create(settings, cc.config, CapturingConsumer())
        else:
            component = cc.factory.create(settings, cc.config)
        await component.shutdown()
        await component.shutdown()

    @pytest.mark.parametrize("type_", known_types(Kind.PROCESSOR))
    async def test_processor_passes_a_batch_on_and_flushes_on_shutdown(self, components, tmp_path, type_):
        """start → one batch → shutdown → shutdown: the batch arrives downstream, whole."""
        cc = components[(Kind.PROCESSOR, type_)]
        sink = CapturingConsumer()
        metrics = SelfMetrics()
        proc = cc.factory.create(_settings(cc, metrics, tmp_path), cc.config, sink)
        await proc.start(RecordingHost())
        await proc.consume(Batch(Signal.TRACES, traces(5)))
        await proc.shutdown()
        await proc.shutdown()
        assert sink.items == 5
        assert metrics.registry.get_sample_value("obs_pipeline_processor_incoming_items_total", {
            "processor": type_, "pipeline": "traces"}) == 5, "every processor counts what it takes in"

    @pytest.mark.parametrize("type_", known_types(Kind.PROCESSOR))
    async def test_processor_output_carries_no_stale_wire_bytes(self, components, tmp_path, type_):
        """Whatever a processor hands on has no bytes, or bytes equal to its message's serialization."""
        cc = components[(Kind.PROCESSOR, type_)]
        sink = CapturingConsumer()
        proc = cc.factory.create(_settings(cc, SelfMetrics(), tmp_path), cc.config, sink)
        await proc.start(RecordingHost())
        for i in range(3):
            data = traces(4, start=i * 4)
            await proc.consume(Batch(Signal.TRACES, data, wire=data.SerializeToString()))
        await proc.consume(Batch(Signal.TRACES, traces(2, start=12)))
        await proc.shutdown()
        assert sink.items == 14
        for out in sink.batches:
            wire = out.wire
            assert wire is None or wire == out.message.SerializeToString()

    @pytest.mark.parametrize("type_", known_types(Kind.EXPORTER))
    async def test_exporter_exports_every_supported_signal_and_closes_twice(self, components, tmp_path, type_,
                                                                             monkeypatch):
        """start → export one batch per supported signal → shutdown twice, without errors."""
        monkeypatch.setattr("sys.stderr", io.StringIO())
        cc = components[(Kind.EXPORTER, type_)]
        exporter = cc.factory.create(_settings(cc, SelfMetrics(), tmp_path), cc.config)
        await exporter.start(RecordingHost())
        for signal in sorted(cc.factory.signals):
            data = traces(3) if signal is Signal.TRACES else _one_item(signal)
            assert count_items(signal, data) >= 1
            assert await exporter.export(Batch(signal, data)) is None
        await exporter.shutdown()
        await exporter.shutdown()

    async def test_receivers_bind_and_release_their_ports(self, components, tmp_path):
        """The otlp receiver starts on port 0, then shuts down twice; its ports are free again."""
        cc = components[(Kind.RECEIVER, "otlp")]
        receiver = cc.factory.create(_settings(cc, SelfMetrics(), tmp_path), cc.config,
                                     {Signal.TRACES: CapturingConsumer()})
        await receiver.start(RecordingHost())
        ports = [receiver.grpc_port, receiver.http_port]
        assert all(ports)
        await receiver.shutdown()
        await receiver.shutdown()
        import socket  # noqa: PLC0415

        for port in ports:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port))


def _one_item(signal: Signal):
    from obs_pipeline.signals import new_message  # noqa: PLC0415

    data = new_message(signal)
    if signal is Signal.LOGS:
        record = data.resource_logs.add().scope_logs.add().log_records.add()
        record.body.string_value = "hello"
    else:
        metric = data.resource_metrics.add().scope_metrics.add().metrics.add(name="m")
        metric.gauge.data_points.add(as_int=1)
    return data
