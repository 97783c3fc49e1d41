"""Two real ``obs-pipeline run`` processes sharing one real redis-server, fed by the OpenTelemetry SDK."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from tests.e2e.harness import PipelineProcess, free_port, metric_value
from tests.processors.budget.redis_kit import needs_redis, redis_server

pytestmark = [pytest.mark.e2e, needs_redis]
__all__ = ["redis_server"]

PER_CALL = 0.0125  # gpt-4o, 1000 input + 1000 output tokens: $2.50 + $10.00 per million


class Hooks(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        Hooks.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def pipeline(workdir, redis_url: str, hook_url: str) -> PipelineProcess:
    workdir.mkdir()
    proc = PipelineProcess(workdir)
    proc.endpoint_port = free_port()
    cfg = proc.default_config()
    cfg["processors"] = {
        "cost": {},
        "budget": {
            "budgets": [{"id": "session-cap", "scope": "session", "limit_usd": 0.5, "window": "session",
                         "warn_at": [0.5]}],
            "state": redis_url,
            "endpoint": f"127.0.0.1:{proc.endpoint_port}",
            "actions": ["annotate", "audit", "webhook"],
            "webhook": {"url": hook_url},
        },
        "batch": {"timeout": "50ms"},
    }
    cfg["service"]["pipelines"] = {
        "traces": {"receivers": ["otlp"], "processors": ["cost", "budget", "batch"], "exporters": ["jsonl_audit"]},
    }
    proc.config = cfg
    proc.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return proc


def decision(proc: PipelineProcess) -> dict:
    url = f"http://127.0.0.1:{proc.endpoint_port}/v1/budgets/session-cap/run-1"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def chat(provider: TracerProvider) -> None:
    tracer = provider.get_tracer("agent.runtime")
    with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes={
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o", "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 1000,
        "gen_ai.conversation.id": "run-1",
    }):
        pass


def test_two_pipelines_share_one_budget_exactly(tmp_path, redis_server):
    """Combined spend is exact, the exceed event fires once, and both endpoints flip with the exceeding span."""
    Hooks.received = []
    hooks = ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{hooks.server_address[1]}/budget-events"
    a = pipeline(tmp_path / "a", redis_server.url, hook_url)
    b = pipeline(tmp_path / "b", redis_server.url, hook_url)
    providers = []
    try:
        for proc in (a, b):
            proc.start()
            provider = TracerProvider(resource=Resource.create({"service.name": "agent"}))
            provider.add_span_processor(SimpleSpanProcessor(
                OTLPSpanExporter(endpoint=f"127.0.0.1:{proc.grpc_port}", insecure=True)))
            providers.append(provider)
        for i in range(39):  # 39 x $0.0125 = $0.4875: under the $0.50 limit
            chat(providers[i % 2])
        assert decision(a)["allowed"] is True
        assert decision(b)["spend"] == pytest.approx(39 * PER_CALL, abs=1e-9)
        chat(providers[1])  # the 40th call reaches $0.50: each SimpleSpanProcessor export returns after the ack
        assert decision(a)["allowed"] is False
        assert decision(b)["state"] == "exceeded"
        for i in range(10):
            chat(providers[i % 2])
        assert decision(a)["spend"] == pytest.approx(50 * PER_CALL, abs=1e-9)
        pages = [proc.metrics() for proc in (a, b)]
        exceeded = sum(metric_value(p, "obs_pipeline_budget_events_total", event="exceeded") for p in pages)
        warned = sum(metric_value(p, "obs_pipeline_budget_events_total", event="warning") for p in pages)
        assert (exceeded, warned) == (1, 1)
        status = subprocess.run([sys.executable, "-m", "obs_pipeline", "budget", "status", "--config",
                                 str(a.config_path), "--json"], capture_output=True, text=True, timeout=30, check=True)
        row = json.loads(status.stdout)["budgets"][0]
        assert (row["scope_value"], row["state"], row["store"]) == ("run-1", "exceeded", "redis")
        assert row["spend"] == pytest.approx(50 * PER_CALL, abs=1e-9)
        for provider in providers:
            provider.shutdown()
        providers = []
        assert a.stop() == 0
        assert b.stop() == 0
        events = [h["event"] for h in Hooks.received]
        assert sorted(events) == ["budget_crossed", "threshold_crossed"]
        marked = [line for proc in (a, b) for line in proc.audit_lines()]
        assert len([line for line in marked if line.get("category") == "llm"]) == 50
        budget_lines = [line for line in marked if line.get("category") == "budget"]
        assert sorted(line["result"] for line in budget_lines) == ["allow", "deny"]  # one warning, one exceed
        deny = next(line for line in budget_lines if line["result"] == "deny")
        assert (deny["session_id"], deny["detail"]["spend"], deny["detail"]["limit"]) == ("run-1", 0.5, 0.5)
    finally:
        for provider in providers:
            provider.shutdown()
        a.kill()
        b.kill()
        hooks.shutdown()
