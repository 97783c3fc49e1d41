"""The prometheus exporter as a component: its endpoint, its lifecycle, what export does with each signal."""

from __future__ import annotations

import asyncio
import logging
import socket
import urllib.request

import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import MetricsData

from obs_pipeline.batch import Batch
from obs_pipeline.components import Kind
from obs_pipeline.errors import PermanentError, StartupError
from obs_pipeline.exporters.prometheus import FACTORY
from obs_pipeline.otlp_view import TracesView
from obs_pipeline.signals import Signal
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.testing import RecordingHost, make_settings, parse_config
from tests.exporters.builders import logs, traces

CHAT = {"name": "chat", "attrs": {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                                  "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 42}}


def _exporter(body=None, metrics=None):
    cfg = parse_config(FACTORY, {"endpoint": "127.0.0.1:0", **(body or {})})
    return FACTORY.create(make_settings("prometheus", Kind.EXPORTER, metrics or SelfMetrics()), cfg)


async def _get(port: int, path: str = "/metrics") -> tuple[int, str, str]:
    def fetch() -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                return resp.status, resp.headers["Content-Type"], resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, "", ""
    return await asyncio.to_thread(fetch)


class TestEndpoint:
    async def test_metrics_are_served_in_the_text_format(self):
        """GET /metrics: 200, the Prometheus text format, the derived series after an export."""
        exporter = _exporter()
        await exporter.start(RecordingHost())
        try:
            await exporter.export(Batch(Signal.TRACES, traces(CHAT)))
            status, content_type, body = await _get(exporter.port)
        finally:
            await exporter.shutdown()
        assert status == 200
        assert content_type.startswith("text/plain; version=0.0.4")
        assert 'agent_llm_tokens_total{model="gpt-4o",provider="openai",type="input"} 42.0' in body
        assert "# TYPE agent_llm_requests_total counter" in body
        assert "# TYPE agent_llm_duration_seconds histogram" in body

    async def test_other_paths_are_not_found(self):
        """Only /metrics."""
        exporter = _exporter()
        await exporter.start(RecordingHost())
        try:
            assert (await _get(exporter.port, "/"))[0] == 404
        finally:
            await exporter.shutdown()

    async def test_a_port_in_use_fails_the_start_clearly(self):
        """Another listener on the port: a StartupError that names the endpoint, and nothing left bound."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            exporter = _exporter({"endpoint": f"127.0.0.1:{port}"})
            with pytest.raises(StartupError, match=f"prometheus: cannot listen on 127.0.0.1:{port}: address already in use"):
                await exporter.start(RecordingHost())
        await exporter.shutdown()

    async def test_the_endpoint_is_released_at_shutdown(self):
        """After shutdown (twice) the port is free again."""
        exporter = _exporter()
        await exporter.start(RecordingHost())
        port = exporter.port
        await exporter.shutdown()
        await exporter.shutdown()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))

    async def test_it_logs_where_it_listens(self, caplog):
        """One info line with the URL to scrape."""
        exporter = _exporter()
        with caplog.at_level(logging.INFO):
            await exporter.start(RecordingHost())
        await exporter.shutdown()
        assert f"serving metrics for Prometheus on http://127.0.0.1:{exporter.port}/metrics" in caplog.messages


class TestExport:
    async def test_every_signal(self):
        """Traces and logs are derived, metrics added; each export returns None (all delivered)."""
        exporter = _exporter()
        data = MetricsData()
        data.resource_metrics.add().scope_metrics.add().metrics.add(name="queue.size").gauge.data_points.add(as_int=3)
        assert await exporter.export(Batch(Signal.TRACES, traces(CHAT))) is None
        assert await exporter.export(Batch(Signal.LOGS, logs({"event_name": "agent.max_iterations"}))) is None
        assert await exporter.export(Batch(Signal.METRICS, data)) is None
        registry = exporter.registry
        assert registry.get_sample_value("agent_llm_requests_total", {"provider": "openai", "model": "gpt-4o", "status": "ok"}) == 1
        assert registry.get_sample_value("agent_max_iterations_total", {}) == 1
        assert registry.get_sample_value("queue_size", {}) == 3

    async def test_bytes_that_are_not_otlp_are_a_permanent_error(self):
        """Retrying garbage cannot help."""
        exporter = _exporter()
        with pytest.raises(PermanentError, match="not valid OTLP traces"):
            await exporter.export(Batch.from_wire(Signal.TRACES, b"\xff\xff\xff\xff"))

    async def test_items_that_cannot_be_derived_are_one_warning(self, caplog):
        """A span whose attribute does not decode: the batch is delivered, one warning names the error class."""
        view = TracesView.FromString(traces(CHAT, CHAT).SerializeToString())
        view.resource_spans[0].scope_spans[0].spans[0].attributes.append(b"\n\x15gen_ai.operation.name\x12\x09\n\x07")
        exporter = _exporter()
        with caplog.at_level(logging.WARNING):
            assert await exporter.export(Batch.from_wire(Signal.TRACES, view.SerializeToString())) is None
        warnings = [m for m in caplog.messages if "could not be derived" in m]
        assert len(warnings) == 1
        assert warnings[0].startswith("1 of 2 items could not be derived (DecodeError at obs_pipeline/")

    async def test_a_large_batch_lets_the_loop_run(self):
        """Deriving yields between chunks, so the endpoint and receivers keep answering."""
        exporter = _exporter()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        await exporter.export(Batch(Signal.TRACES, traces(*[CHAT] * 5000)))
        task.cancel()
        assert ticks >= 4
        assert exporter.registry.get_sample_value(
            "agent_llm_requests_total", {"provider": "openai", "model": "gpt-4o", "status": "ok"}) == 5000

    async def test_the_overflow_counter_is_one_of_our_own_metrics(self):
        """obs_pipeline_exporter_series_overflow_total moves in the pipeline's own registry."""
        metrics = SelfMetrics()
        exporter = _exporter({"max_series_per_metric": 1, "default_rules": False, "metrics": [{"name": "m", "labels": {"n": "gen_ai.request.model"}}]},
                             metrics)
        spans = [{"name": "s", "attrs": {"gen_ai.request.model": f"m{i}"}} for i in range(4)]
        await exporter.export(Batch(Signal.TRACES, traces(*spans)))
        assert metrics.registry.get_sample_value("obs_pipeline_exporter_series_overflow_total", {"exporter": "prometheus"}) == 3
