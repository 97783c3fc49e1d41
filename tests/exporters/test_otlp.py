"""The otlp exporter over real loopback connections: an obs-pipeline otlp receiver, or a scripted peer.

The destination is the real ``otlp`` receiver (in this process) wherever it can play the part,
and a small real gRPC or HTTP server (:mod:`tests.exporters.otlp_peers`) where the destination
must answer what the receiver never does: a partial success, 429 with ``Retry-After``,
RESOURCE_EXHAUSTED with ``RetryInfo``, TLS. Retries and counting go through the engine's real
``QueuedExporter``.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Self

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from obs_pipeline.batch import Batch
from obs_pipeline.components import Kind, PartialSuccess, get_factory
from obs_pipeline.delivery import RetrySettings
from obs_pipeline.errors import PermanentError, RetryableError, StartupError
from obs_pipeline.exporters.otlp import OtlpExporter
from obs_pipeline.signals import Signal
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.testing import CapturingConsumer, RecordingHost, make_settings, parse_config
from tests.e2e.harness import free_port
from tests.enginekit import queued, traces
from tests.exporters.otlp_peers import Answer, GrpcPeer, HttpPeer, grpc_server_credentials, server_ssl_context
from tests.tlskit import Pki, make_pki

FAST_RETRY = RetrySettings(initial_interval=0.05, max_interval=0.2, max_elapsed_time=20, randomization_factor=0)


# --- helpers ------------------------------------------------------------------------------------

def exporter(body: dict[str, Any], metrics: SelfMetrics | None = None, type_: str = "otlp") -> OtlpExporter:
    factory = get_factory(Kind.EXPORTER, type_)
    created = factory.create(make_settings(type_, Kind.EXPORTER, metrics=metrics), parse_config(factory, body))
    assert isinstance(created, OtlpExporter)
    return created


def grpc_body(endpoint: str, **extra: Any) -> dict[str, Any]:
    return {"endpoint": endpoint, "tls": {"insecure": True}, **extra}


def http_body(url: str, **extra: Any) -> dict[str, Any]:
    return {"protocol": "http/protobuf", "endpoint": url, **extra}


class Destination:
    """A real obs-pipeline ``otlp`` receiver in this process, taking every signal."""

    def __init__(self, grpc_port: int = 0, http_port: int = 0) -> None:
        self.sink = CapturingConsumer()
        self.metrics = SelfMetrics()
        factory = get_factory(Kind.RECEIVER, "otlp")
        cfg = parse_config(factory, {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                                                   "http": {"endpoint": f"127.0.0.1:{http_port}"}}})
        self.receiver = factory.create(make_settings("otlp", metrics=self.metrics), cfg, dict.fromkeys(Signal, self.sink))

    async def __aenter__(self) -> Self:
        await self.receiver.start(RecordingHost())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.receiver.shutdown()

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.receiver.grpc_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.receiver.http_port}"

    def malformed(self, transport: str) -> float:
        value = self.metrics.registry.get_sample_value("obs_pipeline_receiver_malformed_requests_total",
                                                       {"receiver": "otlp", "transport": transport})
        return value or 0.0


def counted(metrics: SelfMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(f"obs_pipeline_exporter_{name}_items_total", labels) or 0.0


async def wait_until(predicate, within: float = 10.0) -> None:
    end = time.monotonic() + within
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def never_parsed(batch: Batch) -> bool:
    return batch._message is None


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


# --- the wire bytes -----------------------------------------------------------------------------

class TestWireBytes:
    @pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
    @pytest.mark.parametrize("compression", ["gzip", "none"])
    async def test_the_bytes_of_a_batch_never_parsed_arrive_as_they_are(self, protocol, compression):
        """A batch made from wire bytes is sent without a parse, and the receiver gets exactly those bytes."""
        wire = traces(3).SerializeToString()
        batch = Batch.from_wire(Signal.TRACES, wire, items=3)
        async with Destination() as dest:
            body = grpc_body(dest.grpc) if protocol == "grpc" else http_body(dest.http)
            exp = exporter({**body, "compression": compression})
            await exp.start(RecordingHost())
            try:
                assert await exp.export(batch) is None
            finally:
                await exp.shutdown()
            assert never_parsed(batch), "the exporter parsed the message it only had to forward"
            await dest.sink.wait_for_items(3)
            assert dest.sink.batches[0].wire == wire

    async def test_a_batch_without_bytes_is_serialized(self):
        """A batch a processor changed (no bytes) goes out as its message's serialization."""
        data = traces(2)
        async with Destination() as dest:
            exp = exporter(grpc_body(dest.grpc))
            await exp.start(RecordingHost())
            await exp.export(Batch(Signal.TRACES, data))
            await exp.shutdown()
            await dest.sink.wait_for_items(2)
            assert dest.sink.batches[0].wire == data.SerializeToString()

    @pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
    async def test_every_signal_reaches_the_receiver(self, protocol):
        from tests.test_components import _one_item  # noqa: PLC0415 - the compliance test's one-item messages

        async with Destination() as dest:
            exp = exporter(grpc_body(dest.grpc) if protocol == "grpc" else http_body(dest.http))
            await exp.start(RecordingHost())
            for signal in Signal:
                data = traces(1) if signal is Signal.TRACES else _one_item(signal)
                assert await exp.export(Batch(signal, data)) is None
            await exp.shutdown()
            await dest.sink.wait_for_items(3)
            assert {b.signal for b in dest.sink.batches} == set(Signal)


# --- gRPC ---------------------------------------------------------------------------------------

class TestGrpc:
    async def test_calls_the_export_method_of_each_signal_with_headers_as_metadata(self):
        peer = await GrpcPeer().start()
        try:
            exp = exporter(grpc_body(peer.endpoint, headers={"X-Api-Key": "k-123", "tenant": "acme"}))
            await exp.start(RecordingHost())
            await exp.export(Batch(Signal.TRACES, traces(1)))
            await exp.shutdown()
            (request,) = await peer.wait_for(1)
        finally:
            await peer.stop()
        assert request.path == "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        assert request.headers["x-api-key"] == "k-123"
        assert request.headers["tenant"] == "acme"
        assert request.headers["user-agent"].startswith("obs-pipeline/")

    async def test_invalid_argument_is_permanent_dropped_at_once_and_counted(self):
        """Bytes the receiver cannot decode: INVALID_ARGUMENT, one request only, counted permanent_error."""
        metrics = SelfMetrics()
        async with Destination() as dest:
            q = queued(exporter(grpc_body(dest.grpc), metrics), metrics, retry=FAST_RETRY)
            await q.start(RecordingHost())
            garbage = Batch.from_wire(Signal.TRACES, b"\xff\xff\xff not protobuf", items=4)
            q.reserve(4).commit(garbage)
            await wait_until(lambda: counted(metrics, "failed", exporter="otlp", signal="traces", reason="permanent_error") == 4)
            await asyncio.sleep(0.5)  # a retry would have come by now
            assert dest.malformed("grpc") == 1, "a permanent error must not be retried"
            await q.shutdown(time.monotonic() + 5)
        assert counted(metrics, "sent", exporter="otlp", signal="traces") == 0

    async def test_export_raises_permanent_error_for_invalid_argument(self):
        async with Destination() as dest:
            exp = exporter(grpc_body(dest.grpc))
            await exp.start(RecordingHost())
            with pytest.raises(PermanentError, match="gRPC INVALID_ARGUMENT"):
                await exp.export(Batch.from_wire(Signal.TRACES, b"\xff\xff", items=1))
            await exp.shutdown()

    async def test_resource_exhausted_with_retry_info_waits_for_the_hint(self):
        """RESOURCE_EXHAUSTED + RetryInfo(1.5s) is retried no sooner than 1.5s later, though the backoff is 50ms."""
        metrics = SelfMetrics()
        peer = await GrpcPeer().start()
        peer.answer(Answer(code=grpc.StatusCode.RESOURCE_EXHAUSTED, retry_delay=1.5))
        try:
            q = queued(exporter(grpc_body(peer.endpoint), metrics), metrics, retry=FAST_RETRY)
            await q.start(RecordingHost())
            q.reserve(2).commit(Batch(Signal.TRACES, traces(2)))
            first, second = await peer.wait_for(2)
            await wait_until(lambda: counted(metrics, "sent", exporter="otlp", signal="traces") == 2)
            await q.shutdown(time.monotonic() + 5)
        finally:
            await peer.stop()
        assert second.at - first.at >= 1.45

    async def test_resource_exhausted_without_retry_info_is_permanent(self):
        peer = await GrpcPeer().start()
        peer.answer(Answer(code=grpc.StatusCode.RESOURCE_EXHAUSTED))
        try:
            exp = exporter(grpc_body(peer.endpoint))
            await exp.start(RecordingHost())
            with pytest.raises(PermanentError, match="RESOURCE_EXHAUSTED"):
                await exp.export(Batch(Signal.TRACES, traces(1)))
            await exp.shutdown()
        finally:
            await peer.stop()

    async def test_destination_down_at_start_then_up_gets_everything(self):
        """Nothing listens at first (UNAVAILABLE, retried); once the receiver is up every item arrives."""
        metrics = SelfMetrics()
        port = free_port()
        q = queued(exporter(grpc_body(f"127.0.0.1:{port}"), metrics), metrics, retry=FAST_RETRY)
        await q.start(RecordingHost())
        for i in range(3):
            q.reserve(2).commit(Batch(Signal.TRACES, traces(2, start=2 * i)))
        await asyncio.sleep(0.8)  # several failed attempts
        assert counted(metrics, "sent", exporter="otlp", signal="traces") == 0
        async with Destination(grpc_port=port) as dest:
            await dest.sink.wait_for_items(6, within=15)
            await wait_until(lambda: counted(metrics, "sent", exporter="otlp", signal="traces") == 6)
            await q.shutdown(time.monotonic() + 5)
        assert sum(counted(metrics, "failed", exporter="otlp", signal="traces", reason=r)
                   for r in ("permanent_error", "retries_exhausted", "shutdown")) == 0

    async def test_partial_success_is_returned_and_counted(self):
        """rejected_spans and error_message become a PartialSuccess: sent 3, failed{rejected} 2, not retried."""
        response = ExportTraceServiceResponse()
        response.partial_success.rejected_spans = 2
        response.partial_success.error_message = "2 spans are too old\nforged line"
        metrics = SelfMetrics()
        peer = await GrpcPeer().start()
        peer.answer(Answer(body=response.SerializeToString()), Answer(body=response.SerializeToString()))
        try:
            exp = exporter(grpc_body(peer.endpoint), metrics)
            await exp.start(RecordingHost())
            assert await exp.export(Batch(Signal.TRACES, traces(5))) == PartialSuccess(2, "2 spans are too old forged line")
            await exp.shutdown()
            q = queued(exporter(grpc_body(peer.endpoint), metrics), metrics, retry=FAST_RETRY)
            await q.start(RecordingHost())
            q.reserve(5).commit(Batch(Signal.TRACES, traces(5)))
            await wait_until(lambda: counted(metrics, "sent", exporter="otlp", signal="traces") == 3)
            await q.shutdown(time.monotonic() + 5)
            assert len(peer.requests) == 2, "a partial success is not retried"
        finally:
            await peer.stop()
        assert counted(metrics, "failed", exporter="otlp", signal="traces", reason="rejected") == 2

    async def test_a_message_with_nothing_rejected_is_a_warning(self, caplog):
        response = ExportTraceServiceResponse()
        response.partial_success.error_message = "timestamps adjusted"
        peer = await GrpcPeer().start()
        peer.answer(Answer(body=response.SerializeToString()))
        try:
            exp = exporter(grpc_body(peer.endpoint))
            await exp.start(RecordingHost())
            with caplog.at_level(logging.WARNING, logger="obs_pipeline"):
                assert await exp.export(Batch(Signal.TRACES, traces(2))) is None
            await exp.shutdown()
        finally:
            await peer.stop()
        assert any("with a warning: timestamps adjusted" in r.getMessage() for r in caplog.records)


# --- HTTP ---------------------------------------------------------------------------------------

class TestHttp:
    @pytest.mark.parametrize("compression", ["gzip", "none"])
    async def test_post_path_content_type_encoding_and_headers(self, compression):
        peer = await HttpPeer().start()
        try:
            exp = exporter(http_body(peer.url, compression=compression, headers={"X-Api-Key": "k-123"}))
            await exp.start(RecordingHost())
            data = traces(2)
            await exp.export(Batch(Signal.TRACES, data))
            await exp.export(Batch(Signal.LOGS, wire=b"", items=0))
            await exp.shutdown()
            first, second = await peer.wait_for(2)
        finally:
            await peer.stop()
        assert (first.path, second.path) == ("/v1/traces", "/v1/logs")
        assert first.headers["Content-Type"] == "application/x-protobuf"
        assert first.headers["X-Api-Key"] == "k-123"
        assert first.headers["User-Agent"].startswith("obs-pipeline/")
        assert first.body == data.SerializeToString()
        if compression == "gzip":
            assert first.headers["Content-Encoding"] == "gzip"
            assert first.raw != first.body
            assert first.raw[:2] == b"\x1f\x8b"
        else:
            assert "Content-Encoding" not in first.headers
            assert first.raw == first.body

    async def test_a_large_body_is_compressed_too(self):
        """Big bodies are gzipped in a worker thread; the result is the same bytes."""
        data = traces(3000)
        assert data.ByteSize() > 64 * 1024
        peer = await HttpPeer().start()
        try:
            exp = exporter(http_body(peer.url))
            await exp.start(RecordingHost())
            await exp.export(Batch(Signal.TRACES, data))
            await exp.shutdown()
            (request,) = await peer.wait_for(1)
        finally:
            await peer.stop()
        assert request.body == data.SerializeToString()
        assert len(request.raw) < len(request.body)

    async def test_signal_endpoints_and_a_base_path(self):
        peer = await HttpPeer().start()
        try:
            exp = exporter(http_body(f"{peer.url}/otlp", traces_endpoint=f"{peer.url}/custom/traces"), type_="otlp")
            await exp.start(RecordingHost())
            await exp.export(Batch(Signal.TRACES, traces(1)))
            await exp.export(Batch(Signal.LOGS, wire=b"", items=0))
            await exp.shutdown()
            first, second = await peer.wait_for(2)
        finally:
            await peer.stop()
        assert (first.path, second.path) == ("/custom/traces", "/otlp/v1/logs")

    async def test_400_is_permanent_dropped_at_once_and_counted(self):
        """Bytes the receiver cannot decode: 400, one request only, counted permanent_error."""
        metrics = SelfMetrics()
        async with Destination() as dest:
            q = queued(exporter(http_body(dest.http), metrics), metrics, retry=FAST_RETRY)
            await q.start(RecordingHost())
            q.reserve(4).commit(Batch.from_wire(Signal.TRACES, b"\xff\xff\xff not protobuf", items=4))
            await wait_until(lambda: counted(metrics, "failed", exporter="otlp", signal="traces", reason="permanent_error") == 4)
            await asyncio.sleep(0.5)
            assert dest.malformed("http") == 1, "a permanent error must not be retried"
            await q.shutdown(time.monotonic() + 5)

    async def test_429_with_retry_after_is_honoured(self):
        """429 + Retry-After: 2 makes the next attempt wait 2s although the backoff is 50ms; then it is delivered."""
        metrics = SelfMetrics()
        peer = await HttpPeer().start()
        peer.answer(Answer(status=429, headers={"Retry-After": "2"}))
        try:
            q = queued(exporter(http_body(peer.url), metrics), metrics, retry=FAST_RETRY)
            await q.start(RecordingHost())
            q.reserve(3).commit(Batch(Signal.TRACES, traces(3)))
            first, second = await peer.wait_for(2)
            await wait_until(lambda: counted(metrics, "sent", exporter="otlp", signal="traces") == 3)
            await q.shutdown(time.monotonic() + 5)
        finally:
            await peer.stop()
        assert second.at - first.at >= 1.95
        assert len(peer.requests) == 2

    @pytest.mark.parametrize(("status", "error"), [(503, RetryableError), (502, RetryableError), (500, PermanentError),
                                                   (401, PermanentError), (301, PermanentError)])
    async def test_statuses(self, status, error):
        peer = await HttpPeer().start()
        peer.answer(Answer(status=status, headers={"Location": "http://elsewhere/"} if status == 301 else {}))
        try:
            exp = exporter(http_body(peer.url))
            await exp.start(RecordingHost())
            with pytest.raises(error, match=f"HTTP {status}"):
                await exp.export(Batch(Signal.TRACES, traces(1)))
            await exp.shutdown()
        finally:
            await peer.stop()
        assert len(peer.requests) == 1, "no redirect followed, no retry inside the exporter"

    async def test_partial_success_over_http(self):
        response = ExportTraceServiceResponse()
        response.partial_success.rejected_spans = 1
        response.partial_success.error_message = "one span too large"
        peer = await HttpPeer().start()
        peer.answer(Answer(body=response.SerializeToString()))
        try:
            exp = exporter(http_body(peer.url))
            await exp.start(RecordingHost())
            assert await exp.export(Batch(Signal.TRACES, traces(4))) == PartialSuccess(1, "one span too large")
            await exp.shutdown()
        finally:
            await peer.stop()

    async def test_a_success_body_that_is_not_otlp_is_success_with_one_warning(self, caplog):
        peer = await HttpPeer().start()
        peer.answer(Answer(body=b"<html>hello</html>"), Answer(body=b"<html>hello</html>"))
        try:
            exp = exporter(http_body(peer.url))
            await exp.start(RecordingHost())
            with caplog.at_level(logging.WARNING, logger="obs_pipeline"):
                assert await exp.export(Batch(Signal.TRACES, traces(1))) is None
                assert await exp.export(Batch(Signal.TRACES, traces(1))) is None
            await exp.shutdown()
        finally:
            await peer.stop()
        assert sum("not an OTLP traces response" in r.getMessage() for r in caplog.records) == 1

    async def test_destination_down_at_start_then_up_gets_everything(self):
        metrics = SelfMetrics()
        port = free_port()
        q = queued(exporter(http_body(f"http://127.0.0.1:{port}"), metrics), metrics, retry=FAST_RETRY)
        await q.start(RecordingHost())
        for i in range(3):
            q.reserve(2).commit(Batch(Signal.TRACES, traces(2, start=2 * i)))
        await asyncio.sleep(0.5)
        assert counted(metrics, "sent", exporter="otlp", signal="traces") == 0
        async with Destination(http_port=port) as dest:
            await dest.sink.wait_for_items(6, within=15)
            await wait_until(lambda: counted(metrics, "sent", exporter="otlp", signal="traces") == 6)
            await q.shutdown(time.monotonic() + 5)

    async def test_one_session_made_at_start_and_closed_at_shutdown(self):
        exp = exporter(http_body("http://127.0.0.1:9"))
        assert exp.sender is None
        await exp.start(RecordingHost())
        assert exp.sender is not None
        session = exp.sender.transport._session
        assert session is not None
        assert not session.closed
        await exp.shutdown()
        assert session.closed
        await exp.shutdown()


# --- TLS ----------------------------------------------------------------------------------------

class TestGrpcTls:
    async def _export(self, pki: Pki, tls: dict[str, Any], *, mutual: bool = False, endpoint_host: str = "127.0.0.1"):
        peer = await GrpcPeer(grpc_server_credentials(pki, mutual=mutual)).start()
        try:
            exp = exporter({"endpoint": f"{endpoint_host}:{peer.port}", "tls": tls})
            await exp.start(RecordingHost())
            try:
                return await asyncio.wait_for(exp.export(Batch(Signal.TRACES, traces(1))), 10)
            finally:
                await exp.shutdown()
        finally:
            await peer.stop()

    async def test_tls_with_the_ca(self, pki):
        assert await self._export(pki, {"ca_file": str(pki.ca_cert)}) is None

    async def test_mutual_tls(self, pki):
        tls = {"ca_file": str(pki.ca_cert), "cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}
        assert await self._export(pki, tls, mutual=True) is None

    async def test_mutual_tls_without_a_client_certificate_fails_retryably(self, pki):
        with pytest.raises(RetryableError, match="UNAVAILABLE"):
            await self._export(pki, {"ca_file": str(pki.ca_cert)}, mutual=True)

    async def test_a_server_signed_by_another_ca_fails(self, pki):
        with pytest.raises(RetryableError, match="UNAVAILABLE"):
            await self._export(pki, {"ca_file": str(pki.other_ca_cert)})

    async def test_server_name_override(self, pki):
        """The certificate is checked against the override, not the endpoint's host."""
        assert await self._export(pki, {"ca_file": str(pki.ca_cert), "server_name_override": "obs-pipeline.test"}) is None
        with pytest.raises(RetryableError):
            await self._export(pki, {"ca_file": str(pki.ca_cert), "server_name_override": "someone-else.test"})

    async def test_plaintext_to_a_tls_server_fails(self, pki):
        with pytest.raises(RetryableError):
            await self._export(pki, {"insecure": True})


class TestHttpTls:
    async def _export(self, pki: Pki, tls: dict[str, Any], *, mutual: bool = False):
        peer = await HttpPeer(server_ssl_context(pki, mutual=mutual)).start()
        try:
            exp = exporter(http_body(peer.url, tls=tls))
            await exp.start(RecordingHost())
            try:
                result = await asyncio.wait_for(exp.export(Batch(Signal.TRACES, traces(1))), 10)
            finally:
                await exp.shutdown()
            return result, peer.requests
        finally:
            await peer.stop()

    async def test_tls_with_the_ca(self, pki):
        result, requests = await self._export(pki, {"ca_file": str(pki.ca_cert)})
        assert result is None
        assert len(requests) == 1

    async def test_mutual_tls(self, pki):
        tls = {"ca_file": str(pki.ca_cert), "cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}
        result, requests = await self._export(pki, tls, mutual=True)
        assert result is None
        assert len(requests) == 1

    async def test_mutual_tls_without_a_client_certificate_fails_retryably(self, pki):
        with pytest.raises(RetryableError):
            await self._export(pki, {"ca_file": str(pki.ca_cert)}, mutual=True)

    async def test_a_server_signed_by_another_ca_fails_unless_verification_is_skipped(self, pki):
        with pytest.raises(RetryableError):
            await self._export(pki, {"ca_file": str(pki.other_ca_cert)})
        result, requests = await self._export(pki, {"ca_file": str(pki.other_ca_cert), "insecure_skip_verify": True})
        assert result is None
        assert len(requests) == 1

    async def test_server_name_override(self, pki):
        result, _ = await self._export(pki, {"ca_file": str(pki.ca_cert), "server_name_override": "obs-pipeline.test"})
        assert result is None
        with pytest.raises(RetryableError):
            await self._export(pki, {"ca_file": str(pki.ca_cert), "server_name_override": "someone-else.test"})


class TestStart:
    @pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
    async def test_a_tls_file_gone_since_validate_stops_the_start(self, tmp_path, pki, protocol):
        ca = tmp_path / "ca.pem"
        ca.write_bytes(pki.ca_cert.read_bytes())
        endpoint = "127.0.0.1:4317" if protocol == "grpc" else "https://127.0.0.1:4318"
        exp = exporter({"protocol": protocol, "endpoint": endpoint, "tls": {"ca_file": str(ca)}})
        ca.unlink()
        with pytest.raises(StartupError, match="ca_file"):
            await exp.start(RecordingHost())
        await exp.shutdown()

    def test_only_the_protocol_in_use_is_imported(self, tmp_path: Path):
        """An HTTP exporter never loads grpc; importing the module loads neither grpc nor aiohttp."""
        script = (
            "import asyncio, sys\n"
            "from obs_pipeline.components import Kind, get_factory\n"
            "from obs_pipeline.testing import RecordingHost, make_settings, parse_config\n"
            "f = get_factory(Kind.EXPORTER, 'otlphttp')\n"
            "assert 'grpc' not in sys.modules and 'aiohttp' not in sys.modules, sorted(sys.modules)\n"
            "e = f.create(make_settings('otlphttp', Kind.EXPORTER), parse_config(f, {'endpoint': 'http://127.0.0.1:9'}))\n"
            "async def main():\n"
            "    await e.start(RecordingHost())\n"
            "    await e.shutdown()\n"
            "asyncio.run(main())\n"
            "assert 'aiohttp' in sys.modules and 'grpc' not in sys.modules\n"
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False)
        assert done.returncode == 0, done.stderr
