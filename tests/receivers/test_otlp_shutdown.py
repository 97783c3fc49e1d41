"""Shutdown of the otlp receiver: requests in flight get their real answer, within the grace given."""

from __future__ import annotations

import asyncio
import time

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from obs_pipeline.receivers.otlp import FACTORY
from obs_pipeline.signals import Signal
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.testing import CapturingConsumer, RecordingHost, make_settings, parse_config


def _request(spans: int) -> bytes:
    req = trace_service_pb2.ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    for i in range(spans):
        ss.spans.add(name=f"s{i}", trace_id=b"\x01" * 16, span_id=(i + 1).to_bytes(8, "big"))
    return req.SerializeToString()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return status, await reader.readexactly(length)


class TestHttpShutdown:
    async def test_a_body_still_uploading_at_shutdown_gets_its_real_answer(self):
        """Half the body is sent, shutdown starts, the rest arrives: 200, the spans are delivered."""
        consumer = CapturingConsumer()
        receiver = FACTORY.create(
            make_settings("otlp", metrics=SelfMetrics()),
            parse_config(FACTORY, {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}),
            {Signal.TRACES: consumer},
        )
        await receiver.start(RecordingHost())
        body = _request(5)
        reader, writer = await asyncio.open_connection("127.0.0.1", receiver.http_port)
        writer.write(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2],
        )
        await writer.drain()
        await asyncio.sleep(0.1)  # the handler is running, reading the body
        began = time.monotonic()
        stopping = asyncio.ensure_future(receiver.shutdown())
        await asyncio.sleep(0.2)
        writer.write(body[len(body) // 2:])
        await writer.drain()
        status, _answer = await asyncio.wait_for(_read_response(reader), 5)
        await stopping
        writer.close()
        assert status == 200
        assert consumer.items == 5
        assert time.monotonic() - began < 3, "the drain does not wait a fixed grace period once the request is answered"

    async def test_the_grace_for_requests_in_flight_is_what_the_receiver_is_given(self):
        """A client that never finishes its upload holds shutdown only for the grace given, not 10 s."""
        receiver = FACTORY.create(
            make_settings("otlp", metrics=SelfMetrics()),
            parse_config(FACTORY, {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}),
            {Signal.TRACES: CapturingConsumer()},
        )
        await receiver.start(RecordingHost())
        body = _request(5)
        _reader, writer = await asyncio.open_connection("127.0.0.1", receiver.http_port)
        writer.write(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:10],
        )
        await writer.drain()
        await asyncio.sleep(0.1)
        began = time.monotonic()
        await receiver.shutdown(deadline=began + 0.5)
        writer.close()
        assert time.monotonic() - began < 2.5

    async def test_a_new_request_on_a_kept_alive_connection_during_the_drain_gets_503(self):
        """While one upload is being waited for, another request on an open connection is told to retry."""
        import aiohttp  # noqa: PLC0415

        metrics = SelfMetrics()
        receiver = FACTORY.create(
            make_settings("otlp", metrics=metrics),
            parse_config(FACTORY, {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}),
            {Signal.TRACES: CapturingConsumer()},
        )
        await receiver.start(RecordingHost())
        body = _request(1)
        headers = {"Content-Type": "application/x-protobuf"}
        async with aiohttp.ClientSession(f"http://127.0.0.1:{receiver.http_port}") as session:
            async with session.post("/v1/traces", data=body, headers=headers) as first:
                assert first.status == 200
            _reader, writer = await asyncio.open_connection("127.0.0.1", receiver.http_port)
            writer.write(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                         b"Content-Length: 100\r\n\r\n" + b"\x0a")
            await writer.drain()
            await asyncio.sleep(0.1)
            stopping = asyncio.ensure_future(receiver.shutdown(deadline=time.monotonic() + 3.0))
            await asyncio.sleep(0.1)
            async with session.post("/v1/traces", data=body, headers=headers) as during:
                assert during.status == 503
                assert during.headers["Retry-After"] == "1"
            assert metrics.registry.get_sample_value("obs_pipeline_receiver_draining_requests_total", {
                "receiver": "otlp", "transport": "http"}) == 1, "the refusal is counted, not invisible"
            writer.close()
            await stopping

    async def test_a_stuck_upload_at_the_deadline_is_cut_off_and_the_cleanup_still_runs(self, caplog):
        """An upload that never finishes: shutdown ends within its deadline and logs the cut-off request."""
        receiver = FACTORY.create(
            make_settings("otlp", metrics=SelfMetrics()),
            parse_config(FACTORY, {"protocols": {"http": {"endpoint": "127.0.0.1:0"}}}),
            {Signal.TRACES: CapturingConsumer()},
        )
        await receiver.start(RecordingHost())
        reader, writer = await asyncio.open_connection("127.0.0.1", receiver.http_port)
        writer.write(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                     b"Content-Length: 1000\r\n\r\n\x0a")
        await writer.drain()
        await asyncio.sleep(0.1)
        began = time.monotonic()
        await asyncio.wait_for(receiver.shutdown(deadline=began + 2.5), 3.0)
        status, _answer = await asyncio.wait_for(_read_response(reader), 1)
        writer.close()
        assert time.monotonic() - began < 2.7
        assert status == 408, "a body that never finished gets an answer that says so, not a closed socket"
        assert "still in flight after" in caplog.text, "the cut-off is said, because the cleanup ran"
