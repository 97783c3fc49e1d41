"""The ``cost`` processor in a running pipeline: the OpenTelemetry SDK sends, an OTLP/HTTP server receives.

otlp -> cost -> batch -> [otlp_http to a capture server in this test, prometheus]. What arrives
must carry the cost computed by hand; the prometheus exporter's ``agent_llm_cost_usd_total`` and
our own counters must agree with it.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

from tests.e2e.harness import PipelineProcess, free_port, metric_value
from tests.processors.cost.kit import values

pytestmark = pytest.mark.e2e
M = 1_000_000


class Capture(BaseHTTPRequestHandler):
    """Keeps every span POSTed to /v1/traces, by name."""

    spans: dict[str, dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest.FromString(body)
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    type(self).spans[span.name] = values(span.attributes)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()
        self.wfile.write(b"")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def capture() -> Iterator[tuple[int, dict[str, dict[str, Any]]]]:
    spans: dict[str, dict[str, Any]] = {}
    handler = type("Handler", (Capture,), {"spans": spans})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], spans
    server.shutdown()
    server.server_close()


def _config(proc: PipelineProcess, sink_port: int, prom_port: int) -> dict[str, Any]:
    config = proc.default_config()
    config["processors"] = {"cost": {"overrides": [{"model": "house-*", "input": 1.0, "output": 2.0}]},
                            "batch": {"timeout": "50ms"}}
    config["exporters"] = {"otlp_http": {"endpoint": f"http://127.0.0.1:{sink_port}"},
                           "prometheus": {"endpoint": f"127.0.0.1:{prom_port}"}}
    config["service"]["pipelines"] = {"traces": {"receivers": ["otlp"], "processors": ["cost", "batch"],
                                                 "exporters": ["otlp_http", "prometheus"]}}
    return config


def _send(endpoint: str) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "e2e-agent"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    tracer = provider.get_tracer("e2e.agent")
    with tracer.start_as_current_span("invoke_agent support", kind=SpanKind.INTERNAL, attributes={
        "gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 3000, "gen_ai.usage.output_tokens": 700,  # the run's total: not priced again
    }):
        for name, attributes in (
            ("chat gpt-4o", {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
                             "gen_ai.usage.input_tokens": 2000, "gen_ai.usage.cache_read.input_tokens": 1000,
                             "gen_ai.usage.output_tokens": 500}),
            ("chat house", {"gen_ai.provider.name": "openai", "gen_ai.request.model": "house-7b",
                            "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 200}),
            ("chat unknown", {"gen_ai.provider.name": "openai", "gen_ai.request.model": "nobody-knows-me",
                              "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 10}),
        ):
            with tracer.start_as_current_span(name, kind=SpanKind.CLIENT,
                                              attributes={"gen_ai.operation.name": "chat", **attributes}):
                pass
    provider.shutdown()


def _wait(spans: dict[str, Any], n: int, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while len(spans) < n and time.monotonic() < end:
        time.sleep(0.05)
    assert len(spans) >= n, sorted(spans)


def test_sdk_spans_arrive_priced(tmp_path: Path, capture: tuple[int, dict[str, dict[str, Any]]]) -> None:
    sink_port, spans = capture
    prom_port = free_port()
    proc = PipelineProcess(tmp_path)
    proc.config = _config(proc, sink_port, prom_port)
    proc.config_path.write_text(yaml.safe_dump(proc.config, sort_keys=False))
    proc.start()
    try:
        _send(f"127.0.0.1:{proc.grpc_port}")
        _wait(spans, 4)
        # gpt-4o: $2.50 in, $1.25 cached in, $10 out per MTok.
        gpt = (2000 - 1000) * 2.5 / M + 1000 * 1.25 / M + 500 * 10 / M  # $0.00875
        assert spans["chat gpt-4o"]["gen_ai.usage.cost.amount"] == pytest.approx(gpt)
        assert spans["chat gpt-4o"]["gen_ai.usage.cost.source"].startswith("genai-prices@")
        assert spans["chat gpt-4o"]["operation.cost"] == pytest.approx(gpt)
        house = 1000 * 1.0 / M + 200 * 2.0 / M  # the override: $1 in, $2 out
        assert spans["chat house"]["gen_ai.usage.cost.amount"] == pytest.approx(house)
        assert spans["chat house"]["gen_ai.usage.cost.source"] == "override"
        assert spans["chat unknown"]["gen_ai.usage.cost.unpriced"] is True
        assert "gen_ai.usage.cost.amount" not in spans["chat unknown"]
        assert not any(k.startswith("gen_ai.usage.cost") for k in spans["invoke_agent support"])

        page = proc.http_get(f"http://127.0.0.1:{prom_port}/metrics")[1]
        assert metric_value(page, "agent_llm_cost_usd_total", model="gpt-4o") == pytest.approx(gpt)
        ours = proc.metrics()
        assert metric_value(ours, "obs_pipeline_cost_priced_spans_total", source="genai-prices") == 1
        assert metric_value(ours, "obs_pipeline_cost_priced_spans_total", source="override") == 1
        assert metric_value(ours, "obs_pipeline_cost_unpriced_spans_total", reason="unknown_model") == 1
    finally:
        assert proc.stop() == 0
    assert "prices from genai-prices@" in proc.stderr()
