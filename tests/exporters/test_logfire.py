"""The logfire exporter: the region from the token, what Logfire's ingest gets, and the disabled exporter.

Logfire's cloud is the one thing played by a stand-in: a real aiohttp server on loopback
(:class:`tests.exporters.otlp_peers.HttpPeer`) reached through ``endpoint``. Everything else
(the region choice, the URLs) is checked on the exporter itself, without the network.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from pathlib import Path

import pytest
from opentelemetry.proto.logs.v1.logs_pb2 import LogsData
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from obs_pipeline.batch import Batch
from obs_pipeline.commands.validate import validate_files
from obs_pipeline.components import Kind, PartialSuccess, get_factory
from obs_pipeline.config import check_config
from obs_pipeline.delivery import RetrySettings
from obs_pipeline.errors import PermanentError
from obs_pipeline.exporters import logfire
from obs_pipeline.exporters.logfire import LogfireExporter, base_url, region_of
from obs_pipeline.signals import Signal
from obs_pipeline.telemetry.logs import TextFormatter
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.testing import RecordingHost, make_settings, parse_config
from tests.enginekit import queued, traces
from tests.exporters.otlp_peers import Answer, HttpPeer

EU_TOKEN = "pylf_v1_eu_0123456789abcdefABCDEF0123456789abcdef"
US_TOKEN = "pylf_v1_us_0123456789abcdefABCDEF0123456789abcdef"
LEGACY_TOKEN = "0123456789abcdefABCDEF0123456789abcdef"  # made before tokens named a region


def make(token: str, metrics: SelfMetrics | None = None, **body: object) -> LogfireExporter:
    factory = get_factory(Kind.EXPORTER, "logfire")
    created = factory.create(make_settings("logfire", Kind.EXPORTER, metrics=metrics),
                             parse_config(factory, {"token": token, **body}))
    assert isinstance(created, LogfireExporter)
    return created


def counted(metrics: SelfMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(f"obs_pipeline_exporter_{name}_items_total", labels) or 0.0


class TestRegion:
    @pytest.mark.parametrize(("token", "region"), [
        (EU_TOKEN, "eu"), (US_TOKEN, "us"), (LEGACY_TOKEN, "us"),
        ("pylf_v2_eu_4f3c2b1a-0000-4000-8000-000000000000_abcdef", "eu"),  # a newer shape, with an org id
        ("pylf_v1_ap_0123456789abcdef", "us"),  # a region we do not know: the SDK's default
        ("pylf_v1_EU_0123456789abcdef", "us"),  # regions are lower case in the token format
    ])
    def test_the_region_is_read_from_the_token(self, token, region):
        assert region_of(token) == region

    @pytest.mark.parametrize(("token", "base"), [
        (EU_TOKEN, "https://logfire-eu.pydantic.dev"),
        (US_TOKEN, "https://logfire-us.pydantic.dev"),
        (LEGACY_TOKEN, "https://logfire-us.pydantic.dev"),
    ])
    def test_the_exporter_sends_to_its_regions_url(self, token, base):
        """The URL the exporter will POST each signal to (nothing is sent to check it)."""
        exporter = make(token)
        assert exporter.urls == {
            Signal.TRACES: f"{base}/v1/traces", Signal.METRICS: f"{base}/v1/metrics", Signal.LOGS: f"{base}/v1/logs",
        }
        assert base_url(exporter.cfg) == base

    def test_endpoint_overrides_the_region(self):
        exporter = make(EU_TOKEN, endpoint="https://logfire.internal.example.com/")
        assert exporter.urls[Signal.TRACES] == "https://logfire.internal.example.com/v1/traces"


class TestIngest:
    async def test_each_signal_is_posted_with_the_raw_token_and_a_protobuf_body(self):
        """Path per signal, Authorization: <token> (no Bearer), protobuf gzip body that decodes to what was sent."""
        peer = await HttpPeer().start()
        try:
            exporter = make(EU_TOKEN, endpoint=peer.url)
            await exporter.start(RecordingHost())
            spans = traces(3)
            logs = LogsData()
            logs.resource_logs.add().scope_logs.add().log_records.add().body.string_value = "hello"
            assert await exporter.export(Batch(Signal.TRACES, spans)) is None
            assert await exporter.export(Batch(Signal.LOGS, logs)) is None
            assert await exporter.export(Batch(Signal.METRICS, wire=b"", items=0)) is None
            await exporter.shutdown()
            first, second, third = await peer.wait_for(3)
        finally:
            await peer.stop()
        assert [first.path, second.path, third.path] == ["/v1/traces", "/v1/logs", "/v1/metrics"]
        for request in (first, second, third):
            assert request.headers["Authorization"] == EU_TOKEN
            assert request.headers["Content-Type"] == "application/x-protobuf"
            assert request.headers["Content-Encoding"] == "gzip"
        assert TracesData.FromString(first.body) == spans
        assert LogsData.FromString(second.body) == logs

    async def test_a_rejected_token_is_permanent(self):
        peer = await HttpPeer().start()
        peer.answer(Answer(status=401))
        try:
            exporter = make(US_TOKEN, endpoint=peer.url)
            await exporter.start(RecordingHost())
            with pytest.raises(PermanentError, match="HTTP 401") as info:
                await exporter.export(Batch(Signal.TRACES, traces(1)))
            await exporter.shutdown()
        finally:
            await peer.stop()
        assert US_TOKEN not in str(info.value)

    async def test_retries_and_partial_success_are_the_otlp_exporters(self):
        """429 is retried after Retry-After, as for otlp; the items arrive once."""
        metrics = SelfMetrics()
        peer = await HttpPeer().start()
        peer.answer(Answer(status=429, headers={"Retry-After": "1"}))
        try:
            q = queued(make(US_TOKEN, metrics, endpoint=peer.url), metrics,
                       retry=RetrySettings(initial_interval=0.05, randomization_factor=0))
            await q.start(RecordingHost())
            q.reserve(2).commit(Batch(Signal.TRACES, traces(2)))
            first, second = await peer.wait_for(2)
            await q.shutdown(time.monotonic() + 5)
        finally:
            await peer.stop()
        assert second.at - first.at >= 0.95
        assert counted(metrics, "sent", exporter="logfire", signal="traces") == 2


class TestDisabled:
    async def test_an_empty_token_logs_one_line_at_start_and_sends_nothing(self, caplog):
        """One warning, through the component logger (so the text line reads "logfire: disabled, token not set")."""
        exporter = make("")
        with caplog.at_level(logging.DEBUG, logger="obs_pipeline"):
            await exporter.start(RecordingHost())
        (record,) = [r for r in caplog.records if r.name.startswith("obs_pipeline")]
        assert record.levelno == logging.WARNING
        assert record.getMessage() == "disabled, token not set"
        assert TextFormatter().format(record).endswith(" logfire: disabled, token not set")
        assert exporter.sender is None, "no session is opened"
        assert await exporter.export(Batch(Signal.TRACES, traces(4))) == PartialSuccess(4, "disabled, token not set", reason="disabled")
        await exporter.shutdown()

    async def test_metrics_show_nothing_sent_and_every_item_rejected(self):
        """Through the engine's queue: sent stays 0, failed{reason="disabled"} counts every item; the run goes on."""
        metrics = SelfMetrics()
        q = queued(make("", metrics), metrics)
        await q.start(RecordingHost())
        for i in range(3):
            q.reserve(2).commit(Batch(Signal.TRACES, traces(2, start=2 * i)))
        q.reserve(1).commit(Batch(Signal.LOGS, wire=LogsData().SerializeToString(), items=1))
        deadline = time.monotonic() + 5
        while counted(metrics, "failed", exporter="logfire", signal="traces", reason="disabled") < 6:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await q.shutdown(time.monotonic() + 5)
        assert counted(metrics, "sent", exporter="logfire", signal="traces") == 0
        assert counted(metrics, "sent", exporter="logfire", signal="logs") == 0
        assert counted(metrics, "failed", exporter="logfire", signal="logs", reason="disabled") == 1
        assert counted(metrics, "failed", exporter="logfire", signal="traces", reason="permanent_error") == 0


def _config(tmp_path: Path, token_line: str, extra: str = "") -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "receivers:\n  otlp:\nexporters:\n  logfire:\n"
        f"    token: {token_line}\n{extra}"
        "service:\n  pipelines:\n    traces: {receivers: [otlp], exporters: [logfire]}\n")
    return path


class TestConfig:
    def test_an_unset_variable_with_an_empty_default_is_valid_and_quiet(self, tmp_path):
        """No warning either: the exporter's one line at start is the only word about it (run would repeat one)."""
        path = _config(tmp_path, "${env:LOGFIRE_TOKEN:-}")
        config, problems = check_config(path, {})
        assert config is not None
        assert problems == []
        assert not config.exporters[next(iter(config.exporters))].config.token

    def test_an_unset_variable_without_a_default_is_an_error(self, tmp_path):
        path = _config(tmp_path, "${env:LOGFIRE_TOKEN}")
        config, problems = check_config(path, {})
        assert config is None
        assert [(p.line, p.path) for p in problems] == [(5, "exporters.logfire.token")]

    def test_the_token_is_never_echoed(self, tmp_path):
        path = _config(tmp_path, "${env:LOGFIRE_TOKEN}", "    endpoint: not-a-url\n")
        for output_format in ("text", "json"):
            out = io.StringIO()
            assert validate_files([path], output_format, out=out, environ={"LOGFIRE_TOKEN": EU_TOKEN}) == 1
            assert EU_TOKEN not in out.getvalue()
            assert "exporters.logfire.endpoint" in out.getvalue()

    def test_a_bad_endpoint_at_its_line(self, tmp_path):
        path = _config(tmp_path, "x", "    endpoint: logfire.internal:443\n")
        config, problems = check_config(path, {})
        assert config is None
        assert [(p.line, p.path) for p in problems] == [(6, "exporters.logfire.endpoint")]

    def test_defaults(self):
        cfg = parse_config(logfire.FACTORY, {"token": EU_TOKEN})
        assert (cfg.endpoint, cfg.compression) == ("", "gzip")
        assert EU_TOKEN not in repr(cfg)


def test_a_token_that_cannot_be_a_header_value_is_a_config_error():
    """A non-ASCII character in the token is caught by validate, not retried at every send."""
    from obs_pipeline.exporters import logfire  # noqa: PLC0415
    from obs_pipeline.testing import parse_config  # noqa: PLC0415

    cfg = parse_config(logfire.FACTORY, {"token": "pylf_v1_us_abc\u00e9"})
    problems = logfire.check(cfg)
    assert [p.path for p in problems] == ["token"]
    assert "printable ASCII" in problems[0].message
    assert "abc" not in problems[0].message
