"""The otlp receiver over HTTP: real aiohttp servers and clients on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from obs_pipeline.errors import StartupError
from obs_pipeline.receivers.otlp import FACTORY
from obs_pipeline.signals import Signal
from obs_pipeline.testing import (
    CapturingConsumer,
    RecordingHost,
    RefusingConsumer,
    make_settings,
    parse_config,
)
from tests.receivers.conftest import sample

FIXTURE_LINES = Path("/work/shared/fixtures/otlp_traces.jsonl").read_bytes().splitlines()
PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
GZIP_PROTOBUF = {**PROTOBUF, "Content-Encoding": "gzip"}


@contextlib.asynccontextmanager
async def running(consumers, metrics, **http_options):
    """An otlp receiver serving HTTP on a free loopback port, and a client session for it."""
    cfg = parse({"protocols": {"http": {"endpoint": "127.0.0.1:0", **http_options}}})
    receiver = FACTORY.create(make_settings("otlp", metrics=metrics), cfg, consumers)
    await receiver.start(RecordingHost())
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{receiver.http_port}") as session:
            yield receiver, session
    finally:
        await receiver.shutdown()


@dataclass
class Answer:
    """A whole HTTP answer, read."""

    status: int
    content_type: str
    headers: dict[str, str]
    body: bytes

    def status_message(self) -> Status:
        """The body as a protobuf ``google.rpc.Status``."""
        return Status.FromString(self.body)


def parse(body):
    """The typed config of ``body``, schema defaults filled in as the config layer does."""
    return parse_config(FACTORY, body)


async def post(session: aiohttp.ClientSession, path: str, body: bytes, headers: dict[str, str]) -> Answer:
    """POST ``body`` and read the whole answer."""
    async with session.post(path, data=body, headers=headers) as response:
        return Answer(response.status, response.content_type, dict(response.headers), await response.read())


def traces_request(n: int = 2, name_size: int = 0) -> bytes:
    request = trace_service_pb2.ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i in range(n):
        scope.spans.add(name=f"span-{i}" + "x" * name_size, trace_id=b"\x01" * 16, span_id=(i + 1).to_bytes(8, "big"))
    return request.SerializeToString()


def span_names(consumer: CapturingConsumer) -> list[str]:
    return [s.name for m in consumer.messages for rs in m.resource_spans for ss in rs.scope_spans for s in ss.spans]


def accepted(metrics, signal: str = "traces") -> float:
    return sample(metrics, "receiver_accepted_items", receiver="otlp", transport="http", signal=signal)


class TestExport:
    async def test_sdk_spans_arrive_intact(self, metrics):
        """Spans from the OTel SDK's HTTP exporter arrive with their names, attributes and ids."""
        consumer = CapturingConsumer()
        async with running({Signal.TRACES: consumer}, metrics) as (receiver, _session):
            def send() -> int:
                exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{receiver.http_port}/v1/traces", timeout=10)
                provider = TracerProvider()
                provider.add_span_processor(SimpleSpanProcessor(exporter))
                with provider.get_tracer("tests.http").start_as_current_span(
                    "execute_tool", attributes={"gen_ai.tool.name": "lookup_order"},
                ) as span:
                    span_id = span.get_span_context().span_id
                provider.shutdown()
                return span_id

            span_id = await asyncio.to_thread(send)
            await consumer.wait_for_items(1)
        span = consumer.messages[0].resource_spans[0].scope_spans[0].spans[0]
        assert span.name == "execute_tool"
        assert span.span_id == span_id.to_bytes(8, "big")
        assert span.attributes[0].key == "gen_ai.tool.name"
        assert span.attributes[0].value.string_value == "lookup_order"
        assert accepted(metrics) == 1

    async def test_protobuf_success_answer(self, metrics):
        """Success is 200 with an empty ExportTraceServiceResponse in protobuf."""
        consumer = CapturingConsumer()
        async with running({Signal.TRACES: consumer}, metrics) as (_receiver, session):
            answer = await post(session, "/v1/traces", traces_request(2), PROTOBUF)
        assert answer.status == 200
        assert answer.content_type == "application/x-protobuf"
        assert trace_service_pb2.ExportTraceServiceResponse.FromString(answer.body) == \
            trace_service_pb2.ExportTraceServiceResponse()
        assert span_names(consumer) == ["span-0", "span-1"]
        assert accepted(metrics) == 2

    async def test_json_with_hex_ids(self, metrics):
        """OTLP/JSON bodies (hex ids, charset parameter) decode to the right ids; the answer is JSON."""
        consumer = CapturingConsumer()
        async with running({Signal.TRACES: consumer}, metrics) as (_receiver, session):
            answer = await post(session, "/v1/traces", FIXTURE_LINES[0],
                                {"Content-Type": "application/json; charset=utf-8"})
        assert answer.status == 200
        assert answer.content_type == "application/json"
        assert orjson.loads(answer.body) == {}
        first = consumer.messages[0].resource_spans[0].scope_spans[0].spans[0]
        assert first.trace_id == bytes.fromhex("db5b5fab8f4d3e27dda1494c73cf256d")
        assert first.span_id == bytes.fromhex("c7fde805ec99108d")
        assert accepted(metrics) == 4

    @pytest.mark.parametrize(("encoding", "compress"), [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data, wbits=-15)),
    ], ids=["gzip", "deflate-zlib", "deflate-raw"])
    async def test_compressed_bodies(self, metrics, encoding, compress):
        """gzip and deflate (zlib-wrapped or raw) bodies are inflated before parsing."""
        consumer = CapturingConsumer()
        async with running({Signal.TRACES: consumer}, metrics) as (_receiver, session):
            answer = await post(session, "/v1/traces", compress(traces_request(3)),
                                {**PROTOBUF, "Content-Encoding": encoding})
        assert answer.status == 200
        assert consumer.items == 3

    async def test_logs_and_metrics_arrive(self, metrics):
        """/v1/logs and /v1/metrics hand their data to their own consumers."""
        logs, points = CapturingConsumer(), CapturingConsumer()
        log_request = logs_service_pb2.ExportLogsServiceRequest()
        log_request.resource_logs.add().scope_logs.add().log_records.add().body.string_value = "hello"
        metric_request = metrics_service_pb2.ExportMetricsServiceRequest()
        gauge = metric_request.resource_metrics.add().scope_metrics.add().metrics.add(name="queue.depth").gauge
        gauge.data_points.add(as_double=1.5)
        async with running({Signal.LOGS: logs, Signal.METRICS: points}, metrics) as (_receiver, session):
            statuses = [(await post(session, path, body.SerializeToString(), PROTOBUF)).status
                        for path, body in (("/v1/logs", log_request), ("/v1/metrics", metric_request))]
        assert statuses == [200, 200]
        assert logs.messages[0].resource_logs[0].scope_logs[0].log_records[0].body.string_value == "hello"
        assert points.messages[0].resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].as_double == 1.5
        assert accepted(metrics, "logs") == 1
        assert accepted(metrics, "metrics") == 1


class TestBadRequests:
    async def test_malformed_protobuf_is_400_and_server_keeps_serving(self, metrics):
        """Garbage gets 400 with a protobuf Status, is counted, and the next request succeeds."""
        consumer = CapturingConsumer()
        async with running({Signal.TRACES: consumer}, metrics) as (_receiver, session):
            bad = await post(session, "/v1/traces", b"\x0a\xff\xff\xff\xff\x0f", PROTOBUF)
            good = await post(session, "/v1/traces", traces_request(1), PROTOBUF)
        assert bad.status == 400
        assert bad.content_type == "application/x-protobuf"
        assert bad.status_message().code == 3
        assert good.status == 200
        assert consumer.items == 1
        assert sample(metrics, "receiver_malformed_requests", receiver="otlp", transport="http") == 1

    async def test_malformed_json_is_400_with_json_status_that_does_not_echo_content(self, metrics):
        """A bad id in OTLP/JSON gets a JSON Status naming the field, not quoting the data."""
        obj = orjson.loads(FIXTURE_LINES[0])
        obj["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["traceId"] = "sk-leaked-secret"
        async with running({Signal.TRACES: CapturingConsumer()}, metrics) as (_receiver, session):
            bad_id = await post(session, "/v1/traces", orjson.dumps(obj), JSON)
            not_json = await post(session, "/v1/traces", b"{not json", JSON)
        assert (bad_id.status, not_json.status) == (400, 400)
        status = orjson.loads(bad_id.body)
        assert status["code"] == 3
        assert "resourceSpans[0].scopeSpans[0].spans[1].traceId" in status["message"]
        assert "sk-leaked" not in status["message"]

    async def test_oversize_body_is_413(self, metrics):
        """A body over max_request_body_size is refused with 413 and a Status body."""
        consumer = CapturingConsumer()
        async with running({Signal.TRACES: consumer}, metrics, max_request_body_size="1KiB") as (_r, session):
            big = await post(session, "/v1/traces", traces_request(2, name_size=2000), PROTOBUF)
            small = await post(session, "/v1/traces", traces_request(1), PROTOBUF)
        assert big.status == 413
        assert big.status_message().code == 8
        assert small.status == 200
        assert consumer.items == 1

    async def test_gzip_bomb_is_413(self, metrics):
        """A small gzip body that inflates past the limit is refused without inflating it all."""
        bomb = gzip.compress(b"\0" * (64 * 2**20))
        assert len(bomb) < 100 * 1024
        async with running({Signal.TRACES: CapturingConsumer()}, metrics, max_request_body_size="1MiB") as (_r, s):
            answer = await post(s, "/v1/traces", bomb, GZIP_PROTOBUF)
        assert answer.status == 413

    async def test_corrupt_gzip_is_400(self, metrics):
        """A gzip stream that is cut short is malformed data: 400."""
        body = gzip.compress(traces_request(3))[:-10]
        async with running({Signal.TRACES: CapturingConsumer()}, metrics) as (_receiver, session):
            answer = await post(session, "/v1/traces", body, GZIP_PROTOBUF)
        assert answer.status == 400

    @pytest.mark.parametrize("headers", [
        {"Content-Type": "text/plain"},
        {},
        {**PROTOBUF, "Content-Encoding": "br"},
    ], ids=["text-plain", "no-content-type", "brotli"])
    async def test_unsupported_media_is_415(self, metrics, headers):
        """An unknown Content-Type or Content-Encoding gets 415."""
        async with running({Signal.TRACES: CapturingConsumer()}, metrics) as (_receiver, session):
            answer = await post(session, "/v1/traces", traces_request(1), headers)
        assert answer.status == 415

    async def test_wrong_method_is_405_and_unknown_path_404(self, metrics):
        """GET on an OTLP path is 405; unknown paths and signals without a pipeline are 404."""
        async with running({Signal.TRACES: CapturingConsumer()}, metrics) as (_receiver, session):
            async with session.get("/v1/traces") as response:
                assert response.status == 405
                assert "POST" in response.headers["Allow"]
            unknown = await post(session, "/v1/profiles", b"", PROTOBUF)
            unwired = await post(session, "/v1/logs", b"", PROTOBUF)
        assert (unknown.status, unwired.status) == (404, 404)


class TestBackpressure:
    async def test_refusal_is_503_with_retry_after(self, metrics):
        """RefusedError becomes 503 with an integer Retry-After and a Status carrying RetryInfo."""
        consumer = RefusingConsumer("queue_full", retry_after=2.5)
        async with running({Signal.TRACES: consumer}, metrics) as (_receiver, session):
            answer = await post(session, "/v1/traces", traces_request(3), PROTOBUF)
        assert answer.status == 503
        assert answer.headers["Retry-After"] == "3"
        status = answer.status_message()
        assert status.code == 14
        retry = RetryInfo()
        assert status.details[0].Unpack(retry)
        assert retry.retry_delay.seconds == 2
        assert sample(metrics, "receiver_refused_items", receiver="otlp", transport="http", signal="traces",
                      reason="queue_full") == 3
        assert accepted(metrics) == 0

    async def test_short_retry_hint_is_at_least_one_second(self, metrics):
        """Retry-After is whole seconds, never 0; a JSON request gets a JSON Status."""
        body = b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"a"}]}]}]}'
        async with running({Signal.TRACES: RefusingConsumer(retry_after=0.01)}, metrics) as (_receiver, session):
            answer = await post(session, "/v1/traces", body, JSON)
        assert answer.status == 503
        assert answer.headers["Retry-After"] == "1"
        assert orjson.loads(answer.body)["code"] == 14


class TestLifecycle:
    async def test_address_in_use_is_startup_error(self, metrics, busy_port):
        """Binding a port that is taken fails start with a message that says so."""
        cfg = parse({"protocols": {"http": {"endpoint": f"127.0.0.1:{busy_port}"}}})
        receiver = FACTORY.create(make_settings("otlp", metrics=metrics), cfg, {Signal.TRACES: CapturingConsumer()})
        with pytest.raises(StartupError) as info:
            await receiver.start(RecordingHost())
        assert str(info.value) == f"otlp: cannot listen on 127.0.0.1:{busy_port}: address already in use"

    async def test_shutdown_is_idempotent_and_stops_listening(self, metrics):
        """After shutdown the port no longer answers; a second shutdown is a no-op."""
        async with running({Signal.TRACES: CapturingConsumer()}, metrics) as (receiver, _session):
            port = receiver.http_port
        await receiver.shutdown()
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectionError):
                await post(session, f"http://127.0.0.1:{port}/v1/traces", traces_request(1), PROTOBUF)
