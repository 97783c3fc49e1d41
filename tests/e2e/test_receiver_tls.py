"""A real ``obs-pipeline run`` behind mutual TLS and a bearer token, as the destination of another pipeline or agent.

The clients are the official OTel SDK exporters (gRPC with credentials from the CA and a client
certificate, HTTP with ``certificate_file`` and a client certificate) and raw grpc / urllib
clients for the refusals. The token comes from the environment, the log level is debug, and
neither the right nor a wrong token may appear on stderr or on /metrics.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.e2e.harness import PipelineProcess, metric_value
from tests.enginekit import traces
from tests.tlskit import Pki, make_pki

pytestmark = pytest.mark.e2e

TOKEN = "e2e-Right-Token-9d2f61c0"
WRONG = "e2e-Wrong-Token-1b7e44aa"
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture(autouse=True)
def _environment(monkeypatch):
    """The token the config reads; and no REQUESTS_CA_BUNDLE, which overrides the SDK's certificate_file (psf/requests#4650)."""
    monkeypatch.setenv("OTLP_TOKEN", TOKEN)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def secured(pipe: PipelineProcess, pki: Pki) -> dict:
    """The harness's default pipeline with mutual TLS and the bearer token on both protocols, logging at debug."""
    cfg = pipe.default_config()
    tls = {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key), "client_ca_file": str(pki.ca_cert)}
    auth = {"bearer_token": "${env:OTLP_TOKEN}"}
    for protocol in ("grpc", "http"):
        cfg["receivers"]["otlp"]["protocols"][protocol].update(tls=tls, auth=auth)
    cfg["service"]["telemetry"]["logs"] = {"level": "debug"}
    return cfg


def export(exporter: SpanExporter, name: str) -> SpanExportResult:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "behind-tls"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("tests.e2e.tls").start_as_current_span(name, attributes={
        "gen_ai.operation.name": "chat", "gen_ai.conversation.id": "tls-session"}):
        pass
    provider.shutdown()
    try:
        return exporter.export(list(memory.get_finished_spans()))
    finally:
        exporter.shutdown()


def grpc_status(pipe: PipelineProcess, pki: Pki, metadata: tuple[tuple[str, str], ...] | None) -> grpc.StatusCode:
    credentials = grpc.ssl_channel_credentials(
        pki.ca_cert.read_bytes(), pki.client_key.read_bytes(), pki.client_cert.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{pipe.grpc_port}", credentials) as channel:
        try:
            channel.unary_unary(EXPORT)(traces(1).SerializeToString(), metadata=metadata, timeout=10)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def http_answer(pipe: PipelineProcess, pki: Pki, authorization: str | None) -> tuple[int, str | None]:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(pki.client_cert, pki.client_key)
    headers = {"Content-Type": "application/x-protobuf", **({"Authorization": authorization} if authorization else {})}
    request = urllib.request.Request(f"https://localhost:{pipe.http_port}/v1/traces", method="POST",
                                     data=traces(1).SerializeToString(), headers=headers)
    try:
        with urllib.request.urlopen(request, context=ctx, timeout=10) as response:
            return response.status, response.headers.get("WWW-Authenticate")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("WWW-Authenticate")


class TestSecuredReceiver:
    def test_sdk_exporters_over_mutual_tls_with_the_token_and_refusals_counted_never_logged(
        self, pipeline_factory, tmp_path,
    ):
        """Both SDK exporters deliver over mTLS with the token; wrong and missing tokens get the exact status.

        Every refusal is counted on /metrics; neither token is on stderr (at debug level) or on /metrics.
        """
        pki = make_pki(tmp_path / "pki")
        pipe: PipelineProcess = pipeline_factory()
        pipe.config = secured(pipe, pki)
        pipe.config_path.write_text(json.dumps(pipe.config))
        pipe.start()

        grpc_exporter = GrpcSpanExporter(
            endpoint=f"127.0.0.1:{pipe.grpc_port}", timeout=10, headers={"authorization": f"Bearer {TOKEN}"},
            credentials=grpc.ssl_channel_credentials(
                pki.ca_cert.read_bytes(), pki.client_key.read_bytes(), pki.client_cert.read_bytes()))
        assert export(grpc_exporter, "over grpc") is SpanExportResult.SUCCESS
        http_exporter = HttpSpanExporter(
            endpoint=f"https://localhost:{pipe.http_port}/v1/traces", timeout=10, certificate_file=str(pki.ca_cert),
            client_certificate_file=str(pki.client_cert), client_key_file=str(pki.client_key),
            headers={"Authorization": f"Bearer {TOKEN}"})
        assert export(http_exporter, "over http") is SpanExportResult.SUCCESS

        assert grpc_status(pipe, pki, (("authorization", f"Bearer {WRONG}"),)) == grpc.StatusCode.UNAUTHENTICATED
        assert grpc_status(pipe, pki, None) == grpc.StatusCode.UNAUTHENTICATED
        assert http_answer(pipe, pki, f"Bearer {WRONG}") == (401, "Bearer")
        assert http_answer(pipe, pki, None) == (401, "Bearer")

        page = pipe.metrics()
        for transport in ("grpc", "http"):
            assert metric_value(page, "obs_pipeline_receiver_unauthenticated_requests_total",
                                receiver="otlp", transport=transport) == 2
            assert metric_value(page, "obs_pipeline_receiver_accepted_items_total",
                                receiver="otlp", transport=transport, signal="traces") == 1
        assert pipe.stop() == 0
        names = sorted(line["event_type"] for line in pipe.audit_lines() if line["service"] == "behind-tls")
        assert names == ["chat", "chat"]

        err = pipe.stderr()
        assert "over mutual TLS, with a bearer token" in err
        assert "refused an unauthenticated OTLP/gRPC" in err  # debug level is really on
        assert "refused an unauthenticated OTLP/HTTP" in err
        for token in (TOKEN, WRONG):
            assert token not in err
            assert token not in page
        assert "Traceback" not in err


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "obs_pipeline", *args], capture_output=True, text=True,
                          timeout=60, check=False)


class TestMisconfigured:
    def test_missing_certificate_is_reported_by_validate_and_run_with_file_line_and_key(self, tmp_path):
        """validate and run both name file:line:column, the key and the reason; run starts nothing."""
        pki = make_pki(tmp_path / "pki")
        cfg = tmp_path / "pipeline.yaml"
        cfg.write_text(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        tls:\n"
            f"          cert_file: {tmp_path}/gone.pem\n          key_file: {pki.server_key}\n"
            "exporters:\n  debug: {}\n"
            "service:\n  pipelines:\n    traces: {receivers: [otlp], exporters: [debug]}\n",
        )
        expected = f"{cfg}:6:22: receivers.otlp.protocols.grpc.tls.cert_file: {tmp_path}/gone.pem: no such file"
        checked = _run("validate", str(cfg))
        assert checked.returncode == 1
        assert checked.stdout.splitlines()[0] == expected
        ran = _run("run", str(cfg))
        assert ran.returncode == 1
        assert ran.stderr.splitlines()[0] == expected
        assert "not started" in ran.stderr
        assert "Traceback" not in checked.stdout + checked.stderr + ran.stderr

    def test_exposed_listeners_are_warned_about_at_start(self, pipeline_factory):
        """run binds 0.0.0.0 as asked, but logs why that is risky: no auth on gRPC, a clear-text token on HTTP."""
        pipe: PipelineProcess = pipeline_factory()
        protocols = pipe.config["receivers"]["otlp"]["protocols"]
        protocols["grpc"]["endpoint"] = f"0.0.0.0:{pipe.grpc_port}"
        protocols["http"].update(endpoint=f"0.0.0.0:{pipe.http_port}", auth={"bearer_token": "${env:OTLP_TOKEN}"})
        pipe.config_path.write_text(json.dumps(pipe.config))
        pipe.start()
        assert pipe.stop() == 0
        err = pipe.stderr()
        assert f"receivers.otlp.protocols.grpc.endpoint: 0.0.0.0:{pipe.grpc_port} is not a loopback address" in err
        assert "receivers.otlp.protocols.http.auth.bearer_token: the token travels in clear text" in err
        assert TOKEN not in err
