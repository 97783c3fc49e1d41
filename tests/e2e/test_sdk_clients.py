"""The official OpenTelemetry SDK, as an agent uses it, sending to a real ``obs-pipeline run``."""

from __future__ import annotations

import collections

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.e2e.harness import PipelineProcess, metric_value

pytestmark = pytest.mark.e2e


class CountingExporter(SpanExporter):
    """Wraps the SDK exporter to remember which spans the pipeline acknowledged."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.acked: list[str] = []
        self.failed = 0

    def export(self, spans):
        result = self.inner.export(spans)
        if result is SpanExportResult.SUCCESS:
            self.acked += [f"{s.context.trace_id:032x}:{s.context.span_id:016x}" for s in spans]
        else:
            self.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _agent_session(provider: TracerProvider, session: str, turns: int) -> None:
    """One agent run: invoke_agent around chats with token usage, tool calls and one failed chat."""
    tracer = provider.get_tracer("agent.runtime", "1.0")
    with tracer.start_as_current_span("invoke_agent support-agent", kind=SpanKind.INTERNAL, attributes={
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support-agent",
        "gen_ai.conversation.id": session,
    }):
        for turn in range(turns):
            with tracer.start_as_current_span("chat claude-sonnet-4-5", kind=SpanKind.CLIENT, attributes={
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
                "gen_ai.request.model": "claude-sonnet-4-5", "gen_ai.response.model": "claude-sonnet-4-5",
                "gen_ai.usage.input_tokens": 1000 + turn, "gen_ai.usage.output_tokens": 100 + turn,
                "gen_ai.conversation.id": session,
            }):
                pass
            with tracer.start_as_current_span("execute_tool shell_exec", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "shell_exec",
                "gen_ai.conversation.id": session,
            }):
                pass
        with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
            "gen_ai.conversation.id": session, "error.type": "rate_limit_exceeded",
        }) as span:
            span.set_status(Status(StatusCode.ERROR, "429 Too Many Requests"))


def _check_audit(lines: list[dict], acked: list[str], session: str, service: str) -> None:
    ours = [line for line in lines if line.get("session_id") == session and line.get("service") == service]
    counts = collections.Counter(line["event_id"] for line in ours)
    assert sorted(counts) == sorted(acked), "every acknowledged span must be in the audit file"
    assert max(counts.values()) == 1, "and exactly once"
    by_type = collections.defaultdict(list)
    for line in ours:
        by_type[line["event_type"]].append(line)
    chats_ok = [c for c in by_type["chat"] if c["result"] == "allow"]
    assert len(chats_ok) == 3
    first = min(chats_ok, key=lambda c: c["detail"]["tokens"]["input"])
    assert first["category"] == "llm"
    assert first["detail"]["model"] == "claude-sonnet-4-5"
    assert first["detail"]["provider"] == "anthropic"
    assert first["detail"]["tokens"] == {"input": 1000, "output": 100}
    assert first["detail"]["duration_ms"] >= 0
    assert len(first["trace_id"]) == 32
    assert len(first["span_id"]) == 16
    assert first["event_id"] == f"{first['trace_id']}:{first['span_id']}"
    tools = by_type["execute_tool"]
    assert len(tools) == 3
    assert all(t["category"] == "tool" for t in tools)
    assert all(t["detail"]["tool"] == "shell_exec" for t in tools)
    (agent,) = by_type["invoke_agent"]
    assert agent["category"] == "agent"
    assert agent["result"] == "allow"
    (failed,) = [c for c in by_type["chat"] if c["result"] == "error"]
    assert failed["detail"]["message"] == "429 Too Many Requests"
    assert failed["detail"]["error_type"] == "rate_limit_exceeded"
    assert first["timestamp"].endswith("Z")
    assert "T" in first["timestamp"]


class TestSdkClients:
    def test_spans_over_grpc_and_http_arrive_exactly_once_with_the_right_fields(self, pipeline_factory):
        """GenAI spans from the SDK's gRPC and HTTP exporters each appear once in the audit log, mapped."""
        pipe: PipelineProcess = pipeline_factory().start()
        results = {}
        for transport, exporter in (
            ("grpc", GrpcSpanExporter(endpoint=f"127.0.0.1:{pipe.grpc_port}", insecure=True)),
            ("http", HttpSpanExporter(endpoint=f"http://127.0.0.1:{pipe.http_port}/v1/traces")),
        ):
            counting = CountingExporter(exporter)
            provider = TracerProvider(resource=Resource.create({"service.name": f"agent-{transport}"}))
            provider.add_span_processor(BatchSpanProcessor(counting, max_export_batch_size=5))
            _agent_session(provider, f"session-{transport}", turns=3)
            provider.shutdown()
            assert counting.failed == 0
            assert len(counting.acked) == 8
            results[transport] = counting.acked
        page = pipe.metrics()
        assert pipe.stop() == 0, pipe.stderr()
        lines = pipe.audit_lines()
        for transport, acked in results.items():
            _check_audit(lines, acked, f"session-{transport}", f"agent-{transport}")
        assert metric_value(page, "obs_pipeline_receiver_accepted_items_total", transport="grpc", signal="traces") == 8
        assert metric_value(page, "obs_pipeline_receiver_accepted_items_total", transport="http", signal="traces") == 8
        assert "Traceback" not in pipe.stderr()
        assert "totals: accepted 16, refused 0, sent 16, failed 0, dropped 0 items" in pipe.stderr()

    def test_log_records_over_grpc_and_http_become_audit_lines(self, pipeline_factory):
        """SDK log records (an audit event with a structured body) arrive in the audit log."""
        pipe: PipelineProcess = pipeline_factory().start()
        for transport, exporter in (
            ("grpc", GrpcLogExporter(endpoint=f"127.0.0.1:{pipe.grpc_port}", insecure=True)),
            ("http", HttpLogExporter(endpoint=f"http://127.0.0.1:{pipe.http_port}/v1/logs")),
        ):
            provider = LoggerProvider(resource=Resource.create({"service.name": f"agent-{transport}"}))
            provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
            logger = provider.get_logger("agent.audit")
            logger.emit(body={
                "session_id": f"s-{transport}", "task_id": "task-9", "event_type": "policy_violation",
                "category": "security", "result": "deny",
                "detail": {"tool": "shell_exec", "message": "Blocked command: rm -rf /"},
            })
            provider.shutdown()
        assert pipe.stop() == 0, pipe.stderr()
        lines = {line["session_id"]: line for line in pipe.audit_lines()}
        for transport in ("grpc", "http"):
            line = lines[f"s-{transport}"]
            assert line["task_id"] == "task-9"
            assert line["event_type"] == "policy_violation"
            assert line["category"] == "security"
            assert line["result"] == "deny"
            assert line["detail"]["tool"] == "shell_exec"
            assert line["service"] == f"agent-{transport}"
