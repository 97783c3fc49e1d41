"""No secret leaves the process: the leak test of the redaction processor (issue 8).

An agent sends, with the official OpenTelemetry SDK over OTLP/gRPC, spans, log records and
metrics that carry a different secret in every place a secret can hide (span, resource and scope
attributes, event names and attributes, link attributes, the span name, the status message,
``exception.message`` and ``exception.stacktrace``, log bodies of every ``AnyValue`` shape, metric
data point attributes). A real ``obs-pipeline run`` with ``redaction`` first in every pipeline
sends everything on to the audit file, a real gRPC sink (the ``otlp`` exporter), the ``debug``
exporter and the ``prometheus`` exporter, logging at debug level. Then every byte that left
the process is searched, raw and base64-encoded: the audit file, the sink's payloads, stderr, both
``/metrics`` pages and the error answers to malformed requests that quote a secret.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from obs_pipeline.components import Kind, known_types
from tests.e2e.harness import PipelineProcess, free_ports

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif("redaction" not in known_types(Kind.PROCESSOR), reason="no redaction processor yet"),
]


def _secret(place: str) -> str:
    """A distinct OpenAI-format key per place, so a leak names where it came from."""
    tag = "".join(ch for ch in place.title() if ch.isalnum())
    return f"sk-proj-{tag}Leak{'Q7xZ' * 6}"[:48]


PLACES = ("span_attribute", "prompt_json", "resource", "scope", "event_name", "event_attribute", "link",
          "span_name", "status", "exception", "log_string", "log_bytes", "log_array", "log_kvlist", "log_nested",
          "log_attribute", "metric_point", "bad_request")
SECRETS = {place: _secret(place) for place in PLACES}
#: What a sender may write to pass for the redaction processor: a forged security line and metric label.
FORGED_SUMMARY = {"redaction.masked.count": 1000000, "redaction.masked.rules": ["spoofed-rule"],
                  "redaction.masked.keys": ["attributes.made_up"]}
SERVICES = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}


class Sink:
    """A real OTLP/gRPC server that keeps the raw bytes of every export it gets."""

    def __init__(self) -> None:
        self.payloads: list[tuple[str, bytes]] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers(tuple(
            grpc.method_handlers_generic_handler(service, {"Export": grpc.unary_unary_rpc_method_handler(
                self._export(signal), request_deserializer=None, response_serializer=None)})
            for signal, service in SERVICES.items()))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def _export(self, signal: str) -> Any:
        def export(request: bytes, _context: Any) -> bytes:
            self.payloads.append((signal, request))
            return b""
        return export

    def signals(self) -> set[str]:
        return {signal for signal, _ in self.payloads}


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink()
    server.server.start()
    yield server
    server.server.stop(None)


def _config(pipe: PipelineProcess, sink: Sink, prometheus_port: int) -> dict[str, Any]:
    config = pipe.default_config()
    config["processors"] = {"redaction": {}, "batch": {"timeout": "50ms"}}
    config["exporters"] = {
        "jsonl_audit": {"path": str(pipe.audit_path), "content": "full"},
        "otlp": {"endpoint": f"127.0.0.1:{sink.port}", "tls": {"insecure": True}},
        "debug": {"verbosity": "detailed"},
        "prometheus": {"endpoint": f"127.0.0.1:{prometheus_port}"},
    }
    chain = {"receivers": ["otlp"], "processors": ["redaction", "batch"]}
    config["service"]["pipelines"] = {
        "traces": {**chain, "exporters": ["jsonl_audit", "otlp", "debug", "prometheus"]},
        "logs": {**chain, "exporters": ["jsonl_audit", "otlp", "debug", "prometheus"]},
        "metrics": {**chain, "exporters": ["otlp", "debug", "prometheus"]},
    }
    config["service"]["telemetry"]["logs"] = {"level": "debug", "format": "text"}
    return config


def _send_traces(endpoint: str) -> None:
    s = SECRETS
    provider = TracerProvider(resource=Resource.create({
        "service.name": "leaky-agent", "deployment.note": f"deployed with {s['resource']}"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    tracer = provider.get_tracer("agent.runtime", "1.0", attributes={"scope.note": f"built with {s['scope']}"})
    with tracer.start_as_current_span("invoke_agent", attributes={"gen_ai.operation.name": "invoke_agent"}) as parent:
        linked = parent.get_span_context()
    prompt = json.dumps([{"role": "user", "parts": [{"type": "text", "content": f"my key is {s['prompt_json']}"}]}])
    with tracer.start_as_current_span(
        f"chat {s['span_name']}", kind=SpanKind.CLIENT,
        links=[Link(linked, attributes={"link.note": f"follows {s['link']}"})],
        attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": 42, "note": f"the key {s['span_attribute']} works",
                    "gen_ai.input.messages": prompt},
    ) as span:
        span.add_event(f"retrying with {s['event_name']}", attributes={"detail": f"header {s['event_attribute']}"})
        try:
            raise RuntimeError(f"auth failed for {s['exception']}")
        except RuntimeError as exc:
            span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"401 for {s['status']}"))
    with tracer.start_as_current_span("execute_tool forged", attributes=FORGED_SUMMARY):
        pass  # no secret here: the agent only claims one was masked
    provider.shutdown()


def _send_logs(endpoint: str) -> None:
    s = SECRETS
    provider = LoggerProvider(resource=Resource.create({"service.name": "leaky-agent"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True)))
    logger = provider.get_logger("agent.logs")
    bodies: list[Any] = [
        f"calling the API with {s['log_string']}",
        s["log_bytes"].encode(),
        ["first", f"then {s['log_array']}", 3],
        {"event_type": "tool_output", "output": f"env OPENAI_API_KEY={s['log_kvlist']}"},
        {"detail": {"steps": [{"shell": {"stdout": f"export KEY={s['log_nested']}"}}]}},
    ]
    for body in bodies:
        logger.emit(body=body, attributes={"note": f"logged {s['log_attribute']}"})
    provider.shutdown()


def _send_metrics(endpoint: str) -> None:
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True),
                                           export_interval_millis=60_000)
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "leaky-agent"}))
    counter = provider.get_meter("agent.metrics").create_counter("agent_calls")
    counter.add(1, {"call.note": f"called with {SECRETS['metric_point']}"})
    provider.shutdown()  # exports once more, now


def _post(url: str, body: bytes, content_type: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait(predicate: Any, what: str, pipe: PipelineProcess, within: float = 20.0) -> None:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} never happened:\n{pipe.stderr()[-4000:]}")


def _leaks(where: str, data: bytes) -> list[str]:
    """``where: place`` for each secret found in ``data``, raw, base64-encoded or its first 20 characters."""
    found = []
    for place, secret in SECRETS.items():
        forms = (secret.encode(), base64.b64encode(secret.encode()), secret[:20].encode())
        if any(form in data for form in forms):
            found.append(f"{where}: {place}")
    return found


def _run(pipe: PipelineProcess, sink: Sink, *, redaction: bool) -> tuple[list[str], bytes, bytes]:
    """Send everything, read every way out; ``(leaks, audit file, stderr)``."""
    (prometheus_port,) = free_ports(1)
    pipe.config = _config(pipe, sink, prometheus_port)
    if not redaction:
        for spec in pipe.config["service"]["pipelines"].values():
            spec["processors"] = ["batch"]
    pipe.config_path.write_text(json.dumps(pipe.config))
    pipe.start()
    endpoint = f"127.0.0.1:{pipe.grpc_port}"
    _send_traces(endpoint)
    _send_logs(endpoint)
    _send_metrics(endpoint)
    _wait(lambda: len(pipe.audit_lines()) >= 7 and sink.signals() == set(SERVICES), "delivery to the audit file and sink",
          pipe)
    bad = b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "' + SECRETS["bad_request"].encode() + b'"}]}]}]}'
    status, answer = _post(f"http://127.0.0.1:{pipe.http_port}/v1/traces", bad, "application/json")
    assert status == 400
    pages = {
        "self /metrics": pipe.http_get(f"http://127.0.0.1:{pipe.metrics_port}/metrics")[1].encode(),
        "prometheus /metrics": pipe.http_get(f"http://127.0.0.1:{prometheus_port}/metrics")[1].encode(),
    }
    assert b"agent_calls" in pages["prometheus /metrics"], "the metric itself got through"
    assert pipe.stop() == 0, pipe.stderr()[-4000:]
    audit = pipe.audit_path.read_bytes()
    stderr = pipe.stderr_path.read_bytes()
    leaks = _leaks("audit file", audit) + _leaks("error answer", answer) + _leaks("stderr", stderr)
    leaks += [leak for signal, payload in sink.payloads for leak in _leaks(f"otlp sink ({signal})", payload)]
    leaks += [leak for name, page in pages.items() for leak in _leaks(name, page)]
    return leaks, audit, stderr


def test_no_secret_leaves_the_process(pipeline_factory: Any, sink: Sink) -> None:
    """Every place of issue 8 point 2, every way out of the process: not one secret, not one prefix of one."""
    pipe: PipelineProcess = pipeline_factory()
    leaks, audit, stderr = _run(pipe, sink, redaction=True)
    assert leaks == []

    # The data still got through, masked, and the redactions are accounted for.
    assert b"[REDACTED:" in audit
    assert b"DEBUG" in stderr or b"debug" in stderr, "debug logging was on"
    assert b"[REDACTED:" in stderr, "the debug exporter printed the masked records"
    lines = pipe.audit_lines()
    security = [line for line in lines if line["category"] == "security" and line["event_type"] == "secret_redacted"]
    assert security, "a security line per redacting span or record"
    assert all(set(line["detail"]) == {"rules", "locations", "count"} for line in security)
    locations = {loc for line in security for loc in line["detail"]["locations"]}
    for place in ("name", "status.message"):
        assert place in locations, (place, sorted(locations))
    chat = next(line for line in lines if line["event_type"] == "chat")
    assert chat["detail"]["input"]["text"].startswith("[{"), "the prompt is still JSON"
    json.loads(chat["detail"]["input"]["text"])
    # A sender's own summary is renamed, not trusted: no security line, no metric label from it.
    assert all("spoofed-rule" not in line["detail"]["rules"] for line in security)
    assert b"spoofed-rule" not in audit
    assert any(b"redaction.claimed.masked.count" in payload for _, payload in sink.payloads), "kept aside, renamed"
    forged = KeyValue(key="redaction.masked.count", value=AnyValue(int_value=1000000)).SerializeToString()
    assert not any(forged in payload for _, payload in sink.payloads)


def test_the_search_finds_what_leaks_without_redaction(pipeline_factory: Any, sink: Sink) -> None:
    """The control: the same run without ``redaction`` leaks through every way out the test watches."""
    pipe: PipelineProcess = pipeline_factory()
    leaks, _, _ = _run(pipe, sink, redaction=False)
    ways = {leak.split(":")[0].split(" (")[0] for leak in leaks}
    assert {"audit file", "otlp sink", "stderr", "prometheus /metrics"} <= ways, sorted(leaks)
    sink_places = {leak.split(": ")[1] for leak in leaks if leak.startswith("otlp sink")}
    assert sink_places == set(PLACES) - {"bad_request"}, "every place reaches the sink unmasked"
    forged = [line for line in pipe.audit_lines() if line["category"] == "security"
              and "spoofed-rule" in line["detail"]["rules"]]
    assert [line["detail"]["count"] for line in forged] == [1000000], "without redaction the forged line passes"
