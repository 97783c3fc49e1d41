"""Bearer-token auth on the otlp receiver, and the warnings about exposed listeners: real servers and clients."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import aiohttp
import grpc
import orjson
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from obs_pipeline.commands.validate import validate_files
from obs_pipeline.config import check_config
from obs_pipeline.receivers.otlp import FACTORY
from obs_pipeline.secret import Secret
from obs_pipeline.signals import Signal
from obs_pipeline.testing import CapturingConsumer, RecordingHost, make_settings, parse_config
from tests.receivers.conftest import sample

TOKEN = "s3cr3t-t0ken-RIGHT-4f9a"
WRONG = "s3cr3t-t0ken-WRONG-77c1"
PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@contextlib.asynccontextmanager
async def running(protocol: str, consumer: CapturingConsumer, metrics, token: str = TOKEN):
    cfg = parse_config(FACTORY, {"protocols": {protocol: {"endpoint": "127.0.0.1:0", "auth": {"bearer_token": token}}}})
    receiver = FACTORY.create(make_settings("otlp", metrics=metrics), cfg, {Signal.TRACES: consumer})
    await receiver.start(RecordingHost())
    try:
        yield receiver
    finally:
        await receiver.shutdown()


def export(exporter: SpanExporter) -> SpanExportResult:
    """Export one finished SDK span with ``exporter`` and return the result."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("tests.auth").start_as_current_span("chat"):
        pass
    provider.shutdown()
    try:
        return exporter.export(list(memory.get_finished_spans()))
    finally:
        exporter.shutdown()


def request_bytes(n: int = 1) -> bytes:
    request = trace_service_pb2.ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i in range(n):
        scope.spans.add(name=f"span-{i}", trace_id=b"\x01" * 16, span_id=(i + 1).to_bytes(8, "big"))
    return request.SerializeToString()


def unauthenticated(metrics, transport: str) -> float:
    return sample(metrics, "receiver_unauthenticated_requests", receiver="otlp", transport=transport)


async def grpc_call(port: int, metadata: tuple[tuple[str, str], ...] | None, body: bytes | None = None) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(EXPORT)
        try:
            await call(request_bytes() if body is None else body, metadata=metadata, timeout=5)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() != grpc.StatusCode.UNAUTHENTICATED or exc.details() in (
                "missing bearer token", "invalid bearer token")
            return exc.code()
    return grpc.StatusCode.OK


class TestGrpcAuth:
    @pytest.mark.parametrize(("metadata", "code"), [
        ((("authorization", f"Bearer {TOKEN}"),), grpc.StatusCode.OK),
        ((("authorization", f"bearer {TOKEN}"),), grpc.StatusCode.OK),  # the scheme is case-insensitive (RFC 9110)
        ((("authorization", f"Bearer {WRONG}"),), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", f"Bearer {TOKEN}x"),), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", f"Basic {TOKEN}"),), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", TOKEN),), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Bearer "),), grpc.StatusCode.UNAUTHENTICATED),
        (None, grpc.StatusCode.UNAUTHENTICATED),
    ], ids=["right", "lower-case-scheme", "wrong", "longer", "basic", "no-scheme", "empty", "missing"])
    async def test_status_for_each_token(self, metrics, metadata, code):
        """Only `Bearer <the token>` is served; everything else is UNAUTHENTICATED and counted, and never reaches the pipeline."""
        consumer = CapturingConsumer()
        async with running("grpc", consumer, metrics) as receiver:
            assert await grpc_call(receiver.grpc_port, metadata) == code
        ok = code == grpc.StatusCode.OK
        assert consumer.items == (1 if ok else 0)
        assert unauthenticated(metrics, "grpc") == (0 if ok else 1)
        assert sample(metrics, "receiver_accepted_items", receiver="otlp", transport="grpc", signal="traces") == ok

    async def test_unauthenticated_garbage_is_not_decoded(self, metrics):
        """Auth comes before decoding: garbage with a wrong token is UNAUTHENTICATED, not INVALID_ARGUMENT."""
        async with running("grpc", CapturingConsumer(), metrics) as receiver:
            code = await grpc_call(receiver.grpc_port, (("authorization", f"Bearer {WRONG}"),), b"\x0a\xff\xff\xff\xff\x0f")
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert sample(metrics, "receiver_malformed_requests", receiver="otlp", transport="grpc") == 0

    async def test_sdk_exporter_with_headers(self, metrics):
        """The SDK's gRPC exporter with `headers` delivers; with a wrong token it fails at once (not retried)."""
        consumer = CapturingConsumer()
        async with running("grpc", consumer, metrics) as receiver:
            endpoint = f"127.0.0.1:{receiver.grpc_port}"
            right = GrpcSpanExporter(endpoint=endpoint, insecure=True, headers={"authorization": f"Bearer {TOKEN}"})
            assert await asyncio.to_thread(export, right) is SpanExportResult.SUCCESS
            wrong = GrpcSpanExporter(endpoint=endpoint, insecure=True, headers={"authorization": f"Bearer {WRONG}"})
            assert await asyncio.to_thread(export, wrong) is SpanExportResult.FAILURE
        assert consumer.items == 1
        assert unauthenticated(metrics, "grpc") == 1


async def http_post(port: int, headers: dict[str, str], body: bytes | None = None, path: str = "/v1/traces"):
    async with aiohttp.ClientSession() as session, session.post(
        f"http://127.0.0.1:{port}{path}", data=request_bytes() if body is None else body, headers=headers,
    ) as response:
        return response.status, dict(response.headers), await response.read()


class TestHttpAuth:
    @pytest.mark.parametrize(("authorization", "status"), [
        (f"Bearer {TOKEN}", 200),
        (f"BEARER {TOKEN}", 200),
        (f"Bearer {WRONG}", 401),
        (f"Bearer {TOKEN[:-1]}", 401),
        (f"Basic {TOKEN}", 401),
        ("Bearer", 401),
        (None, 401),
    ], ids=["right", "upper-case-scheme", "wrong", "shorter", "basic", "scheme-only", "missing"])
    async def test_status_for_each_token(self, metrics, authorization, status):
        """Only `Bearer <the token>` is served; everything else is 401 with WWW-Authenticate: Bearer and a Status body."""
        consumer = CapturingConsumer()
        headers = {**PROTOBUF, **({"Authorization": authorization} if authorization else {})}
        async with running("http", consumer, metrics) as receiver:
            got, answer_headers, body = await http_post(receiver.http_port, headers)
        assert got == status
        if status == 401:
            assert answer_headers["WWW-Authenticate"] == "Bearer"
            assert answer_headers["Content-Type"] == "application/x-protobuf"
            message = Status.FromString(body)
            assert message.code == grpc.StatusCode.UNAUTHENTICATED.value[0]
            assert message.message in ("missing bearer token", "invalid bearer token")
        assert consumer.items == (1 if status == 200 else 0)
        assert unauthenticated(metrics, "http") == (1 if status == 401 else 0)

    async def test_json_request_gets_a_json_status(self, metrics):
        """A refused OTLP/JSON request gets its google.rpc.Status as JSON."""
        async with running("http", CapturingConsumer(), metrics) as receiver:
            status, headers, body = await http_post(receiver.http_port, {**JSON, "Authorization": f"Bearer {WRONG}"}, b"{}")
        assert (status, headers["Content-Type"]) == (401, "application/json")
        assert orjson.loads(body) == {"code": 16, "message": "invalid bearer token"}

    async def test_every_path_needs_the_token(self, metrics):
        """Unknown paths and signals without a pipeline answer 401 too, so they tell a stranger nothing."""
        async with running("http", CapturingConsumer(), metrics) as receiver:
            assert (await http_post(receiver.http_port, PROTOBUF, path="/v1/logs"))[0] == 401
            assert (await http_post(receiver.http_port, PROTOBUF, path="/nope"))[0] == 401
            right = {**PROTOBUF, "Authorization": f"Bearer {TOKEN}"}
            assert (await http_post(receiver.http_port, right, path="/v1/logs"))[0] == 404

    async def test_unauthenticated_garbage_is_not_decoded(self, metrics):
        """Auth comes before the body is read: garbage with no token is 401, not 400."""
        async with running("http", CapturingConsumer(), metrics) as receiver:
            assert (await http_post(receiver.http_port, PROTOBUF, b"\x0a\xff\xff\xff\xff\x0f"))[0] == 401
        assert sample(metrics, "receiver_malformed_requests", receiver="otlp", transport="http") == 0

    async def test_sdk_exporter_with_headers(self, metrics):
        """The SDK's HTTP exporter with `headers` delivers; with a wrong token it fails (401 is not retried)."""
        consumer = CapturingConsumer()
        async with running("http", consumer, metrics) as receiver:
            endpoint = f"http://127.0.0.1:{receiver.http_port}/v1/traces"
            right = HttpSpanExporter(endpoint=endpoint, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
            assert await asyncio.to_thread(export, right) is SpanExportResult.SUCCESS
            wrong = HttpSpanExporter(endpoint=endpoint, headers={"Authorization": f"Bearer {WRONG}"}, timeout=10)
            assert await asyncio.to_thread(export, wrong) is SpanExportResult.FAILURE
        assert consumer.items == 1
        assert unauthenticated(metrics, "http") == 1


class TestSecrecy:
    async def test_tokens_are_never_logged(self, metrics, caplog):
        """At debug level, neither the right nor a wrong token appears in any log line, on either transport."""
        caplog.set_level(logging.DEBUG)
        async with running("grpc", CapturingConsumer(), metrics) as receiver:
            await grpc_call(receiver.grpc_port, (("authorization", f"Bearer {WRONG}"),))
            await grpc_call(receiver.grpc_port, (("authorization", f"Bearer {TOKEN}"),))
        async with running("http", CapturingConsumer(), metrics) as receiver:
            await http_post(receiver.http_port, {**PROTOBUF, "Authorization": f"Bearer {WRONG}"})
            await http_post(receiver.http_port, {**PROTOBUF, "Authorization": f"Bearer {TOKEN}"})
        assert "unauthenticated" in caplog.text  # the refusals are logged, without the tokens
        assert TOKEN not in caplog.text
        assert WRONG not in caplog.text
        assert unauthenticated(metrics, "grpc") == unauthenticated(metrics, "http") == 1

    def test_token_is_a_secret_in_the_parsed_config(self):
        """bearer_token is x-secret: the component gets a Secret, and the config's repr does not show it."""
        cfg = parse_config(FACTORY, {"protocols": {"grpc": {"auth": {"bearer_token": TOKEN}},
                                                   "http": {"auth": {"bearer_token": TOKEN}}}})
        assert cfg.grpc.auth.bearer_token == Secret(TOKEN)
        assert isinstance(cfg.http.auth.bearer_token, Secret)
        assert TOKEN not in repr(cfg)

    def test_counter_is_registered(self, metrics):
        """The unauthenticated counter is one of our metrics (documented in docs/telemetry.md)."""
        registered = {m.name for m in metrics.registry.collect()}
        assert "obs_pipeline_receiver_unauthenticated_requests" in registered


def write_config(tmp_path: Path, protocol_body: str, protocol: str = "grpc") -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "receivers:\n  otlp:\n    protocols:\n"
        f"      {protocol}:\n"
        + "".join(f"        {line}\n" for line in protocol_body.strip().splitlines())
        + "exporters:\n  debug:\nservice:\n  pipelines:\n    traces: {receivers: [otlp], exporters: [debug]}\n",
        encoding="utf-8",
    )
    return path


class TestConfig:
    @pytest.mark.parametrize("token", ["", "two words", "tab\there", "ünïcode"])
    def test_a_token_that_cannot_be_sent_in_a_header_is_an_error(self, tmp_path, token):
        """An empty token, or one with spaces or non-ASCII characters, is an error that does not show it."""
        path = write_config(tmp_path, f"auth:\n  bearer_token: {orjson.dumps(token).decode()}")
        config, problems = check_config(path, {})
        assert config is None
        [problem] = problems
        assert problem.path == "receivers.otlp.protocols.grpc.auth.bearer_token"
        assert problem.line == 6
        if token:
            assert token not in problem.message

    def test_auth_needs_bearer_token(self, tmp_path):
        """`auth:` alone is an error: a missing bearer_token must not mean "no auth"."""
        _, problems = check_config(write_config(tmp_path, "auth:"), {})
        assert [p.message for p in problems] == ['missing required key "bearer_token"']

    def test_token_from_the_environment(self, tmp_path):
        """The usual way: ${env:...}; the value is never shown in messages."""
        path = write_config(tmp_path, "endpoint: 0.0.0.0:4317\nauth:\n  bearer_token: ${env:OTLP_TOKEN}")
        config, problems = check_config(path, {"OTLP_TOKEN": TOKEN})
        assert config is not None
        otlp = next(iter(config.receivers.values())).config
        assert otlp.grpc.auth.bearer_token.reveal() == TOKEN
        assert all(TOKEN not in str(p) for p in problems)


class TestExposureWarnings:
    @pytest.mark.parametrize("endpoint", ["0.0.0.0:4317", "[::]:4317", "10.1.2.3:4317", "my-host.example:4317"])
    def test_non_loopback_without_auth_warns(self, tmp_path, endpoint):
        """Binding an address other hosts can reach with no auth is valid, with a warning at the endpoint."""
        path = write_config(tmp_path, f"endpoint: \"{endpoint}\"")
        config, problems = check_config(path, {})
        assert config is not None
        [warning] = problems
        assert (warning.severity, warning.path, warning.line) == ("warning", "receivers.otlp.protocols.grpc.endpoint", 5)
        assert "not a loopback address" in warning.message
        assert "protocols.grpc.auth.bearer_token" in warning.message
        assert config.warnings == (warning,)

    def test_non_loopback_with_auth_but_no_tls_warns_that_the_token_travels_in_clear(self, tmp_path):
        path = write_config(tmp_path, f"endpoint: 0.0.0.0:4318\nauth:\n  bearer_token: {TOKEN}", "http")
        _, problems = check_config(path, {})
        [warning] = problems
        assert (warning.severity, warning.path, warning.line) == (
            "warning", "receivers.otlp.protocols.http.auth.bearer_token", 7)
        assert "in clear text" in warning.message
        assert "protocols.http.tls" in warning.message
        assert TOKEN not in str(warning)

    @pytest.mark.parametrize("endpoint", ["127.0.0.1:4317", "localhost:4317", "[::1]:4317", "127.0.0.2:4317"])
    def test_loopback_needs_neither(self, tmp_path, endpoint):
        _, problems = check_config(write_config(tmp_path, f"endpoint: \"{endpoint}\""), {})
        assert problems == []

    def test_default_endpoints_need_neither(self, tmp_path):
        path = tmp_path / "pipeline.yaml"
        path.write_text("receivers: {otlp: }\nexporters: {debug: }\n"
                        "service: {pipelines: {traces: {receivers: [otlp], exporters: [debug]}}}\n")
        assert check_config(path, {})[1] == []

    def test_non_loopback_with_auth_and_tls_is_quiet(self, tmp_path):
        from tests.tlskit import make_pki  # noqa: PLC0415

        pki = make_pki(tmp_path / "pki")
        path = write_config(tmp_path, f"endpoint: 0.0.0.0:4317\nauth: {{bearer_token: {TOKEN}}}\n"
                                      f"tls: {{cert_file: {pki.server_cert}, key_file: {pki.server_key}}}")
        assert check_config(path, {})[1] == []

    def test_validate_shows_the_warning_and_passes(self, tmp_path):
        """`obs-pipeline validate` prints the warning and exits 0."""
        import io  # noqa: PLC0415

        path = write_config(tmp_path, "endpoint: 0.0.0.0:4317")
        out = io.StringIO()
        assert validate_files([path], out=out, environ={}) == 0
        lines = out.getvalue().splitlines()
        assert lines[0].startswith(f"{path}:5:19: warning: receivers.otlp.protocols.grpc.endpoint: ")
        assert lines[-1] == f"{path}: valid (1 warning)"
