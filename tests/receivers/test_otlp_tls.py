"""TLS and mutual TLS on the otlp receiver: real certificates (tests/tlskit.py), real servers and clients on loopback.

Clients are the official OTel SDK exporters (gRPC with credentials made from the CA, HTTP with
``certificate_file``) and raw grpc / aiohttp clients for the refusals.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

import aiohttp
import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from obs_pipeline.config import check_config
from obs_pipeline.errors import StartupError
from obs_pipeline.receivers.otlp import FACTORY
from obs_pipeline.signals import Signal
from obs_pipeline.testing import CapturingConsumer, RecordingHost, make_settings, parse_config
from tests.tlskit import Pki, make_pki

PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(autouse=True)
def _no_requests_ca_bundle(monkeypatch):
    """Unset REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE for the SDK's HTTP exporter.

    requests lets them override a session's verify (psf/requests#4650), which is where the
    exporter puts certificate_file: with them set, it would trust the system CAs instead.
    """
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def tls_block(pki: Pki, *, mutual: bool = False, **extra) -> dict:
    block = {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key), **extra}
    if mutual:
        block["client_ca_file"] = str(pki.ca_cert)
    return block


@contextlib.asynccontextmanager
async def running(protocol: str, tls: dict, consumer: CapturingConsumer, metrics=None):
    """An otlp receiver serving ``protocol`` with ``tls`` on a free loopback port."""
    cfg = parse_config(FACTORY, {"protocols": {protocol: {"endpoint": "127.0.0.1:0", "tls": tls}}})
    receiver = FACTORY.create(make_settings("otlp", metrics=metrics), cfg, {Signal.TRACES: consumer})
    await receiver.start(RecordingHost())
    try:
        yield receiver
    finally:
        await receiver.shutdown()


def one_span() -> list:
    """A finished SDK span, to hand to an exporter directly (so the export's result is visible)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("tests.tls").start_as_current_span("chat", attributes={"gen_ai.request.model": "m"}):
        pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def export(exporter: SpanExporter) -> SpanExportResult:
    try:
        return exporter.export(one_span())
    finally:
        exporter.shutdown()


def traces_request(n: int = 1) -> trace_service_pb2.ExportTraceServiceRequest:
    request = trace_service_pb2.ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i in range(n):
        scope.spans.add(name=f"span-{i}", trace_id=b"\x01" * 16, span_id=(i + 1).to_bytes(8, "big"))
    return request


async def grpc_export(port: int, credentials: grpc.ChannelCredentials | None) -> None:
    """One Export call over a fresh channel (plaintext when ``credentials`` is None)."""
    target = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(target) if credentials is None else grpc.aio.secure_channel(target, credentials)
    async with channel:
        await trace_service_pb2_grpc.TraceServiceStub(channel).Export(traces_request(), timeout=5)


def client_context(pki: Pki, *, ca: Path | None = None, with_cert: bool = False,
                   max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca or pki.ca_cert))
    if with_cert:
        ctx.load_cert_chain(pki.client_cert, pki.client_key)
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


async def http_post(port: int, ctx: ssl.SSLContext | bool) -> int:
    """POST one span to /v1/traces over https (``ctx`` False: plain http); the status."""
    scheme = "http" if ctx is False else "https"
    async with aiohttp.ClientSession() as session, session.post(
        f"{scheme}://127.0.0.1:{port}/v1/traces", data=traces_request().SerializeToString(), headers=PROTOBUF,
        ssl=ctx if ctx is not False else None, timeout=aiohttp.ClientTimeout(total=5),
    ) as response:
        return response.status


class TestGrpcTls:
    async def test_sdk_exporter_with_the_ca_sends_over_tls(self, pki):
        """The OTel SDK's gRPC exporter, with credentials from the CA, delivers spans over TLS."""
        consumer = CapturingConsumer()
        async with running("grpc", tls_block(pki), consumer) as receiver:
            credentials = grpc.ssl_channel_credentials(pki.ca_cert.read_bytes())
            exporter = GrpcSpanExporter(endpoint=f"127.0.0.1:{receiver.grpc_port}", credentials=credentials, timeout=10)
            assert await asyncio.to_thread(export, exporter) is SpanExportResult.SUCCESS
            await consumer.wait_for_items(1)
        assert consumer.messages[0].resource_spans[0].scope_spans[0].spans[0].name == "chat"

    async def test_client_trusting_another_ca_is_rejected(self, pki):
        """A client that does not trust our CA fails the handshake: UNAVAILABLE, nothing delivered."""
        consumer = CapturingConsumer()
        async with running("grpc", tls_block(pki), consumer) as receiver:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await grpc_export(receiver.grpc_port, grpc.ssl_channel_credentials(pki.other_ca_cert.read_bytes()))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert consumer.items == 0

    async def test_plaintext_client_is_rejected(self, pki):
        """A client without TLS cannot talk to a TLS listener."""
        consumer = CapturingConsumer()
        async with running("grpc", tls_block(pki), consumer) as receiver:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await grpc_export(receiver.grpc_port, None)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert consumer.items == 0

    async def test_mutual_tls_rejects_a_client_without_a_certificate(self, pki):
        """With client_ca_file, a client that presents no certificate is refused."""
        consumer = CapturingConsumer()
        async with running("grpc", tls_block(pki, mutual=True), consumer) as receiver:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await grpc_export(receiver.grpc_port, grpc.ssl_channel_credentials(pki.ca_cert.read_bytes()))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert consumer.items == 0

    async def test_mutual_tls_accepts_a_client_certificate_signed_by_the_ca(self, pki):
        """The SDK exporter with a client certificate signed by client_ca_file gets through."""
        consumer = CapturingConsumer()
        async with running("grpc", tls_block(pki, mutual=True), consumer) as receiver:
            credentials = grpc.ssl_channel_credentials(
                pki.ca_cert.read_bytes(), pki.client_key.read_bytes(), pki.client_cert.read_bytes())
            exporter = GrpcSpanExporter(endpoint=f"127.0.0.1:{receiver.grpc_port}", credentials=credentials, timeout=10)
            assert await asyncio.to_thread(export, exporter) is SpanExportResult.SUCCESS
            await consumer.wait_for_items(1)

    async def test_mutual_tls_rejects_a_certificate_from_another_ca(self, pki, tmp_path):
        """A client certificate that client_ca_file did not sign is refused."""
        stranger = make_pki(tmp_path / "stranger")
        consumer = CapturingConsumer()
        async with running("grpc", tls_block(pki, mutual=True), consumer) as receiver:
            credentials = grpc.ssl_channel_credentials(
                pki.ca_cert.read_bytes(), stranger.client_key.read_bytes(), stranger.client_cert.read_bytes())
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await grpc_export(receiver.grpc_port, credentials)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert consumer.items == 0


class TestHttpTls:
    async def test_sdk_exporter_with_certificate_file_sends_over_https(self, pki):
        """The OTel SDK's HTTP exporter with certificate_file (the CA) delivers spans over https."""
        consumer = CapturingConsumer()
        async with running("http", tls_block(pki), consumer) as receiver:
            exporter = HttpSpanExporter(endpoint=f"https://localhost:{receiver.http_port}/v1/traces",
                                        certificate_file=str(pki.ca_cert), timeout=10)
            assert await asyncio.to_thread(export, exporter) is SpanExportResult.SUCCESS
            await consumer.wait_for_items(1)

    async def test_client_trusting_another_ca_is_rejected(self, pki):
        """The client refuses our certificate when it trusts another CA; nothing is delivered."""
        consumer = CapturingConsumer()
        async with running("http", tls_block(pki), consumer) as receiver:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await http_post(receiver.http_port, client_context(pki, ca=pki.other_ca_cert))
        assert consumer.items == 0

    async def test_plain_http_is_rejected(self, pki):
        """Plain http to a TLS listener gets no answer: the connection is closed."""
        consumer = CapturingConsumer()
        async with running("http", tls_block(pki), consumer) as receiver:
            with pytest.raises(aiohttp.ClientError):
                await http_post(receiver.http_port, False)
        assert consumer.items == 0

    async def test_mutual_tls_rejects_a_client_without_a_certificate(self, pki):
        """With client_ca_file, the handshake fails for a client without a certificate: no status at all."""
        consumer = CapturingConsumer()
        async with running("http", tls_block(pki, mutual=True), consumer) as receiver:
            with pytest.raises(aiohttp.ClientError):
                await http_post(receiver.http_port, client_context(pki))
        assert consumer.items == 0

    async def test_mutual_tls_accepts_a_client_certificate(self, pki):
        """aiohttp and the SDK exporter with a client certificate signed by the CA get 200 / SUCCESS."""
        consumer = CapturingConsumer()
        async with running("http", tls_block(pki, mutual=True), consumer) as receiver:
            assert await http_post(receiver.http_port, client_context(pki, with_cert=True)) == 200
            exporter = HttpSpanExporter(
                endpoint=f"https://127.0.0.1:{receiver.http_port}/v1/traces", certificate_file=str(pki.ca_cert),
                client_certificate_file=str(pki.client_cert), client_key_file=str(pki.client_key), timeout=10)
            assert await asyncio.to_thread(export, exporter) is SpanExportResult.SUCCESS
            await consumer.wait_for_items(2)

    async def test_min_version_1_3_refuses_a_tls_1_2_client(self, pki):
        """min_version 1.3: a client capped at TLS 1.2 fails the handshake; a TLS 1.3 client is served."""
        consumer = CapturingConsumer()
        async with running("http", tls_block(pki, min_version="1.3"), consumer) as receiver:
            with pytest.raises(aiohttp.ClientError):
                await http_post(receiver.http_port, client_context(pki, max_version=ssl.TLSVersion.TLSv1_2))
            assert await http_post(receiver.http_port, client_context(pki)) == 200
        assert consumer.items == 1

    async def test_default_min_version_serves_tls_1_2(self, pki):
        """The default min_version is 1.2: a client capped at TLS 1.2 is served."""
        consumer = CapturingConsumer()
        async with running("http", tls_block(pki), consumer) as receiver:
            assert await http_post(receiver.http_port, client_context(pki, max_version=ssl.TLSVersion.TLSv1_2)) == 200


class TestStartup:
    @pytest.mark.parametrize("protocol", ["grpc", "http"])
    async def test_certificate_gone_at_start_is_a_clear_startup_error(self, pki, tmp_path, protocol):
        """A file that passed validation but is gone at start fails start with the key and the reason."""
        cert = tmp_path / "server.pem"
        cert.write_bytes(pki.server_cert.read_bytes())
        cfg = parse_config(FACTORY, {"protocols": {protocol: {
            "endpoint": "127.0.0.1:0", "tls": {"cert_file": str(cert), "key_file": str(pki.server_key)}}}})
        assert FACTORY.check(cfg) == []
        cert.unlink()
        receiver = FACTORY.create(make_settings("otlp/in"), cfg, {Signal.TRACES: CapturingConsumer()})
        with pytest.raises(StartupError) as info:
            await receiver.start(RecordingHost())
        assert str(info.value) == f"otlp/in: protocols.{protocol}.tls.cert_file: {cert}: no such file"
        await receiver.shutdown()

    async def test_key_swapped_at_start_is_a_clear_startup_error(self, pki, tmp_path):
        """A key that no longer matches the certificate at start is named, for gRPC too (grpc itself would only fail handshakes)."""
        key = tmp_path / "server.key"
        key.write_bytes(pki.server_key.read_bytes())
        cfg = parse_config(FACTORY, {"protocols": {"grpc": {
            "endpoint": "127.0.0.1:0", "tls": {"cert_file": str(pki.server_cert), "key_file": str(key)}}}})
        key.write_bytes(pki.client_key.read_bytes())
        receiver = FACTORY.create(make_settings("otlp"), cfg, {Signal.TRACES: CapturingConsumer()})
        with pytest.raises(StartupError, match=r"^otlp: protocols\.grpc\.tls\.key_file: does not match cert_file"):
            await receiver.start(RecordingHost())
        await receiver.shutdown()


def write_config(tmp_path: Path, tls_lines: str, protocol: str = "grpc") -> Path:
    """A pipeline.yaml whose otlp receiver has the ``tls:`` lines given (indented under the protocol)."""
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "receivers:\n"
        "  otlp:\n"
        "    protocols:\n"
        f"      {protocol}:\n"
        "        endpoint: 127.0.0.1:4317\n"
        "        tls:\n"
        + "".join(f"          {line}\n" for line in tls_lines.strip().splitlines())
        + "exporters:\n  debug:\nservice:\n  pipelines:\n    traces: {receivers: [otlp], exporters: [debug]}\n",
        encoding="utf-8",
    )
    return path


def errors(path: Path) -> list:
    config, problems = check_config(path, {})
    found = [p for p in problems if p.severity == "error"]
    assert (config is None) == bool(found)
    return found


class TestValidation:
    def test_valid_tls_block_has_no_problems(self, pki, tmp_path):
        """Readable PEM files that belong together: valid, no warning (loopback)."""
        path = write_config(tmp_path, f"cert_file: {pki.server_cert}\nkey_file: {pki.server_key}\n"
                                      f"client_ca_file: {pki.ca_cert}")
        config, problems = check_config(path, {})
        assert config is not None
        assert problems == []

    def test_missing_cert_file_names_file_line_and_key(self, pki, tmp_path):
        """A cert_file that does not exist: one error at its line, under its key."""
        path = write_config(tmp_path, f"cert_file: {tmp_path}/nope.pem\nkey_file: {pki.server_key}")
        [problem] = errors(path)
        assert (problem.file, problem.line, problem.column) == (str(path), 7, 22)
        assert problem.path == "receivers.otlp.protocols.grpc.tls.cert_file"
        assert problem.message == f"{tmp_path}/nope.pem: no such file"

    def test_mismatched_key_names_both_keys(self, pki, tmp_path):
        """A key_file that is not the certificate's key: the error says which two keys disagree."""
        path = write_config(tmp_path, f"cert_file: {pki.server_cert}\nkey_file: {pki.client_key}", "http")
        [problem] = errors(path)
        assert (problem.line, problem.path) == (8, "receivers.otlp.protocols.http.tls.key_file")
        assert problem.message == (f"does not match cert_file: {pki.client_key} is not the private key of the "
                                   f"certificate in {pki.server_cert}")

    def test_files_that_are_not_pem(self, pki, tmp_path):
        """A cert_file, key_file or client_ca_file that does not parse as PEM is an error at its own key."""
        junk = tmp_path / "junk.pem"
        junk.write_text("not a certificate\n")
        path = write_config(tmp_path, f"cert_file: {junk}\nkey_file: {pki.server_key}\nclient_ca_file: {junk}")
        problems = errors(path)
        assert [(p.path.rsplit(".", 1)[-1], p.message) for p in problems] == [
            ("cert_file", f"{junk} holds no PEM certificate"),
            ("client_ca_file", f"{junk} holds no PEM certificate"),
        ]
        path = write_config(tmp_path, f"cert_file: {pki.server_cert}\nkey_file: {pki.server_cert}")
        [problem] = errors(path)
        assert (problem.path, problem.message) == (
            "receivers.otlp.protocols.grpc.tls.key_file", f"{pki.server_cert} holds no PEM private key")

    def test_binary_and_encrypted_files(self, pki, tmp_path):
        """A DER (binary) certificate and a passphrase-protected key are refused with what to do."""
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
        from cryptography.x509 import load_pem_x509_certificate  # noqa: PLC0415

        der = tmp_path / "server.der"
        der.write_bytes(load_pem_x509_certificate(pki.server_cert.read_bytes()).public_bytes(serialization.Encoding.DER))
        encrypted = tmp_path / "encrypted.key"
        key = serialization.load_pem_private_key(pki.server_key.read_bytes(), None)
        encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.BestAvailableEncryption(b"passphrase")))
        path = write_config(tmp_path, f"cert_file: {der}\nkey_file: {encrypted}")
        assert [p.message for p in errors(path)] == [
            f"{der} is not PEM text (a DER file? convert it: openssl x509 -inform der -in {der} -out cert.pem)",
            f"{encrypted} is encrypted with a passphrase, which obs-pipeline cannot prompt for; "
            "store it unencrypted, readable only by the pipeline's user (mode 0600)",
        ]

    def test_directory(self, pki, tmp_path):
        """A directory where a file goes is an error that says so."""
        path = write_config(tmp_path, f"cert_file: {tmp_path}\nkey_file: {pki.server_key}")
        assert [p.message for p in errors(path)] == [f"{tmp_path} is a directory, not a file"]

    def test_unreadable_file(self, pki, tmp_path):
        """A key_file without read permission is an error that says so (not testable as root)."""
        locked = tmp_path / "locked.key"
        locked.write_bytes(pki.server_key.read_bytes())
        locked.chmod(0)
        try:
            locked.read_bytes()
        except PermissionError:
            pass
        else:
            pytest.skip("running as root: file permissions do not stop reads")
        path = write_config(tmp_path, f"cert_file: {pki.server_cert}\nkey_file: {locked}")
        assert [p.message for p in errors(path)] == [f"{locked}: permission denied"]

    def test_required_keys_and_unknown_keys(self, tmp_path):
        """`tls:` without cert_file and key_file, or with a key the collector spells differently, is an error."""
        path = write_config(tmp_path, "ca_file: /x.pem")
        messages = sorted(p.message for p in errors(path))
        assert messages[:2] == ['missing required key "cert_file"', 'missing required key "key_file"']
        assert messages[2].startswith('unknown key "ca_file"')

    def test_min_version(self, pki, tmp_path):
        """min_version takes 1.2 or 1.3, quoted or not; 1.1 is refused; gRPC cannot enforce 1.3."""
        files = f"cert_file: {pki.server_cert}\nkey_file: {pki.server_key}\n"
        for written in ("1.2", '"1.2"', "1.3", "'1.3'"):
            assert errors(write_config(tmp_path, files + f"min_version: {written}", "http")) == [], written
        [old] = errors(write_config(tmp_path, files + "min_version: 1.1", "http"))
        assert old.path.endswith("tls.min_version")
        assert "1.1" in old.message
        assert "1.2" in old.message
        [grpc_13] = errors(write_config(tmp_path, files + "min_version: '1.3'", "grpc"))
        assert grpc_13.path == "receivers.otlp.protocols.grpc.tls.min_version"
        assert "gRPC" in grpc_13.message

    def test_parsed_config(self, pki):
        """The typed config carries the paths and the default min_version."""
        cfg = parse_config(FACTORY, {"protocols": {"http": {"tls": tls_block(pki, mutual=True)}, "grpc": None}})
        assert cfg.http.tls.cert_file == str(pki.server_cert)
        assert cfg.http.tls.client_ca_file == str(pki.ca_cert)
        assert cfg.http.tls.min_version == "1.2"
        assert cfg.grpc.tls is None
