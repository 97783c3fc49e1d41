"""A real Prometheus server scrapes a real ``obs-pipeline run`` that the OpenTelemetry SDK sends to.

Spans, log records and metrics go in through the SDK's OTLP/gRPC exporters; Prometheus (the
Debian package's binary, which ``scripts/test`` installs when it runs as root) scrapes the
prometheus exporter every second on loopback, and its HTTP API must answer with exactly what was
sent: the derived agent metrics and the OTLP metrics, cumulative and delta.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.e2e.harness import PipelineProcess, free_port

pytestmark = pytest.mark.e2e

PROMETHEUS = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
SERVICE = "e2e-agent"
SESSION = "sess-e2e-7f3a"


class PrometheusServer:
    """A ``prometheus`` process on a free loopback port, scraping one target every second."""

    def __init__(self, workdir: Path, target: str) -> None:
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "obs", "static_configs": [{"targets": [target]}]}],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = workdir / "prometheus.log"
        self._log = self.log.open("wb")
        assert PROMETHEUS is not None
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=workdir,
        )

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
            return json.loads(resp.read())

    def wait_ready(self, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited ({self.proc.returncode}):\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"prometheus not ready after {timeout}s:\n{self.log.read_text()}")

    def query(self, promql: str) -> dict[frozenset[tuple[str, str]], float]:
        """An instant query: labels (without __name__) -> value."""
        answer = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        assert answer["status"] == "success", answer
        return {frozenset((k, v) for k, v in r["metric"].items() if k != "__name__"): float(r["value"][1])
                for r in answer["data"]["result"]}

    def series_labels(self, match: str) -> list[dict[str, str]]:
        return self._get("/api/v1/series?" + urllib.parse.urlencode({"match[]": match}))["data"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def prometheus_binary() -> str:
    if PROMETHEUS is None:
        pytest.skip("the prometheus binary is not installed and could not be: ./scripts/test installs Debian's "
                    "prometheus package when it runs as root (apt-get install prometheus)")
    return PROMETHEUS


@pytest.fixture
def pipeline(pipeline_factory) -> Iterator[tuple[PipelineProcess, int]]:
    """obs-pipeline run: otlp -> batch -> jsonl_audit + prometheus (traces, logs), otlp -> prometheus (metrics)."""
    proc = pipeline_factory()
    port = free_port()
    config = proc.config
    config["exporters"]["prometheus"] = {"endpoint": f"127.0.0.1:{port}", "const_labels": {"env": "e2e"}}
    pipelines = config["service"]["pipelines"]
    for signal in ("traces", "logs"):
        pipelines[signal]["exporters"].append("prometheus")
    pipelines["metrics"] = {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["prometheus"]}
    proc.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc.start()
    yield proc, port
    assert proc.stop() == 0, proc.stderr()


def _send_agent_run(endpoint: str) -> None:
    """One agent turn: three chats with usage and cost, a failed chat, three tool calls, a confirmation, a bailout."""
    resource = Resource.create({"service.name": SERVICE})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    tracer = tracer_provider.get_tracer("agent.runtime")
    with tracer.start_as_current_span("invoke_agent helper", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "helper", "gen_ai.conversation.id": SESSION}):
        for turn in range(3):
            with tracer.start_as_current_span("chat claude-sonnet-4-5", kind=SpanKind.CLIENT, attributes={
                    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
                    "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.usage.input_tokens": 1000 + turn,
                    "gen_ai.usage.output_tokens": 100 + turn, "gen_ai.usage.cost.amount": 0.25,
                    "gen_ai.conversation.id": SESSION, "user.id": "user-42"}):
                time.sleep(0.01)
            with tracer.start_as_current_span("execute_tool shell_exec", attributes={
                    "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "shell_exec"}) as span:
                if turn == 2:
                    span.add_event("agent.confirmation", {"agent.confirmation.outcome": "approved"})
        with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes={
                "gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o",
                "error.type": "rate_limit_exceeded"}) as span:
            span.set_status(Status(StatusCode.ERROR, "429"))
    tracer_provider.shutdown()

    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True)))
    logger = logger_provider.get_logger("agent.runtime")
    logger.emit(event_name="agent.confirmation", attributes={"agent.confirmation.outcome": "denied"})
    logger.emit(event_name="agent.max_iterations", attributes={"agent.iterations": 25})
    logger_provider.shutdown()


def _send_metrics(endpoint: str) -> None:
    """OTLP metrics: a cumulative counter and histogram, delta counters (one split by session), a gauge."""
    resource = Resource.create({"service.name": SERVICE})
    cumulative = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True),
                                               export_interval_millis=3_600_000)
    delta = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=endpoint, insecure=True,
                           preferred_temporality={Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}),
        export_interval_millis=3_600_000)
    cumulative_provider = MeterProvider(resource=resource, metric_readers=[cumulative])
    cumulative_meter = cumulative_provider.get_meter("demo.sdk", "1.0")
    delta_provider = MeterProvider(resource=resource, metric_readers=[delta])
    delta_meter = delta_provider.get_meter("demo.delta")
    requests = cumulative_meter.create_counter("demo.requests", unit="1", description="requests served")
    latency = cumulative_meter.create_histogram("demo.latency", unit="s")
    cumulative_meter.create_observable_gauge("demo.queue", [lambda _options: [Observation(7)]], unit="{item}")
    calls = delta_meter.create_counter("demo.delta.calls")
    tokens = delta_meter.create_counter("demo.session.tokens", unit="{token}")
    for step in ((3, 4, "s-1"), (2, 6, "s-2")):
        requests.add(step[0], {"route": "a"})
        calls.add(step[1], {"route": "a"})
        tokens.add(10 * step[1], {"gen_ai.conversation.id": step[2]})
        cumulative.force_flush()
        delta.force_flush()
    for seconds in (0.2, 0.7, 3.0):
        latency.record(seconds, {"route": "a"})
    cumulative.force_flush()
    cumulative_provider.shutdown()
    delta_provider.shutdown()


def _wait_for(server: PrometheusServer, expected: dict[str, float], timeout: float = 40.0) -> dict[str, Any]:
    """Query until every PromQL expression in ``expected`` has one series of that value; what was last seen."""
    seen: dict[str, Any] = {}
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        seen = {q: server.query(q) for q in expected}
        if all(len(v) == 1 and next(iter(v.values())) == pytest.approx(expected[q]) for q, v in seen.items()):
            return seen
        time.sleep(0.5)
    wrong = {q: v for q, v in seen.items() if not (len(v) == 1 and next(iter(v.values())) == pytest.approx(expected[q]))}
    raise AssertionError(f"Prometheus did not see what was sent: {wrong}\n{server.log.read_text()}")


def test_prometheus_scrapes_the_derived_and_received_metrics(prometheus_binary, pipeline, tmp_path):
    """Series and values in a real Prometheus equal what the SDK sent, for derived and OTLP metrics."""
    proc, port = pipeline
    server = PrometheusServer(tmp_path / "prometheus", f"127.0.0.1:{port}")
    try:
        server.wait_ready()
        endpoint = f"127.0.0.1:{proc.grpc_port}"
        _send_agent_run(endpoint)
        _send_metrics(endpoint)
        claude = 'provider="anthropic",model="claude-sonnet-4-5"'
        gpt = 'provider="openai",model="gpt-4o"'
        job = f'exported_job="{SERVICE}"'  # the data's job label, renamed by Prometheus beside its own
        expected = {
            'up{job="obs"}': 1,
            f'agent_llm_requests_total{{{claude},status="ok",env="e2e"}}': 3,
            f'agent_llm_requests_total{{{gpt},status="error"}}': 1,
            f'agent_llm_tokens_total{{{claude},type="input"}}': 3003,
            f'agent_llm_tokens_total{{{claude},type="output"}}': 303,
            f"agent_llm_cost_usd_total{{{claude}}}": 0.75,
            f'agent_llm_errors_total{{{gpt},error_type="rate_limit_exceeded"}}': 1,
            f"agent_llm_duration_seconds_count{{{claude}}}": 3,
            f'agent_llm_duration_seconds_bucket{{{claude},le="+Inf"}}': 3,
            'agent_tool_calls_total{tool="shell_exec",status="ok"}': 3,
            'agent_tool_duration_seconds_count{tool="shell_exec"}': 3,
            "agent_turns_total": 1,
            "agent_turn_duration_seconds_count": 1,
            'agent_confirmations_total{outcome="approved"}': 1,
            'agent_confirmations_total{outcome="denied"}': 1,
            "agent_max_iterations_total": 1,
            f'demo_requests_total{{{job},route="a",otel_scope_name="demo.sdk",otel_scope_version="1.0"}}': 5,
            f'demo_latency_seconds_count{{{job},route="a"}}': 3,
            f'demo_latency_seconds_sum{{{job},route="a"}}': 3.9,
            f'demo_latency_seconds_bucket{{{job},route="a",le="5.0"}}': 3,
            f'demo_latency_seconds_bucket{{{job},route="a",le="0.0"}}': 0,
            f"demo_queue{{{job}}}": 7,
            f'demo_delta_calls_total{{{job},route="a"}}': 10,
            f"demo_session_tokens_total{{{job}}}": 100,
        }
        _wait_for(server, expected)
        # The cardinality guard: neither the session nor the user id is in any series Prometheus stored.
        labels = server.series_labels('{job="obs"}')
        assert labels, "Prometheus stored no series of the target"
        assert not [s for s in labels if SESSION in s.values() or "user-42" in s.values() or "s-1" in s.values()]
        assert {"agent_llm_requests_total", "demo_requests_total"} <= {s["__name__"] for s in labels}
    finally:
        server.stop()
