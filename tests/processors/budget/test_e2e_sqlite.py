"""One real ``obs-pipeline run`` with the default SQLite state, restarted: spend and fired warnings survive."""

from __future__ import annotations

import json
import urllib.request

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.e2e.harness import PipelineProcess, free_port

pytestmark = pytest.mark.e2e


def send(proc: PipelineProcess, cost: float, n: int) -> None:
    """n chat spans that already carry a provider-reported cost (as an instrumentation writes it)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{proc.http_port}/v1/traces")))
    tracer = provider.get_tracer("agent")
    for _ in range(n):
        with tracer.start_as_current_span("chat", attributes={
            "gen_ai.operation.name": "chat", "gen_ai.usage.cost.amount": cost, "session.id": "s-9",
        }):
            pass
    provider.shutdown()


def test_a_restart_keeps_spend_and_fired_warnings(tmp_path):
    proc = PipelineProcess(tmp_path)
    port = free_port()
    proc.config["processors"]["budget"] = {
        "budgets": [{"id": "cap", "scope": "session", "limit_usd": 1, "warn_at": [0.5, 0.9]}],
        "endpoint": f"127.0.0.1:{port}",
    }
    proc.config["service"]["pipelines"]["traces"]["processors"] = ["budget", "batch"]
    proc.config_path.write_text(yaml.safe_dump(proc.config, sort_keys=False))
    try:
        proc.start()
        send(proc, 0.2, 3)  # $0.60: the 50% warning fires
        assert proc.stop() == 0
        assert (tmp_path / "data" / "processors" / "budget" / "budget.sqlite3").exists()
        proc.start()
        send(proc, 0.2, 1)  # $0.80: no new warning
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/budgets/cap/s-9", timeout=5) as resp:
            answer = json.loads(resp.read())
        assert (answer["spend"], answer["state"], answer["allowed"]) == (pytest.approx(0.8), "warning", True)
        send(proc, 0.2, 1)  # $1.00: exceeded
        assert proc.stop() == 0
    finally:
        proc.kill()
    events = [line for line in proc.audit_lines() if line.get("category") == "budget"]
    # The 50% warning fired once, before the restart; at $1.00 the exceed passes over the 90% warning.
    assert [(e["result"], e["detail"].get("threshold"), e["detail"]["spend"]) for e in events] == [
        ("allow", 0.5, pytest.approx(0.6)), ("deny", None, pytest.approx(1.0))]
    spans = [line for line in proc.audit_lines() if line.get("category") == "llm"]
    assert len(spans) == 5
