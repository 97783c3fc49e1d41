"""Real OTLP peers on loopback for the otlp and logfire exporter tests: they record and answer as told.

A peer is a real server (``grpc.aio`` with generic handlers, or ``aiohttp``), optionally with
TLS or mutual TLS from :mod:`tests.tlskit`. It records every request it gets (path, headers or
metadata, raw and decoded body, arrival time) and answers from a script of :class:`Answer`
values, then with plain success. Used where the destination must do what an obs-pipeline
receiver never does: answer a partial success, 429 with ``Retry-After``, RESOURCE_EXHAUSTED
with ``RetryInfo``, or speak TLS before the receiver's own TLS exists.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2

from obs_pipeline.signals import Signal

SERVICES = {
    Signal.TRACES: "opentelemetry.proto.collector.trace.v1.TraceService",
    Signal.METRICS: "opentelemetry.proto.collector.metrics.v1.MetricsService",
    Signal.LOGS: "opentelemetry.proto.collector.logs.v1.LogsService",
}
PATHS = {"/v1/traces": Signal.TRACES, "/v1/metrics": Signal.METRICS, "/v1/logs": Signal.LOGS}


@dataclass
class Answer:
    """One scripted answer. HTTP: ``status``, ``headers``, ``body``. gRPC: ``code`` (None: OK), ``body``, ``retry_delay``."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    code: grpc.StatusCode | None = None
    retry_delay: float | None = None


@dataclass
class Request:
    """What a peer received."""

    signal: Signal
    path: str
    headers: dict[str, str]  # HTTP headers, or gRPC metadata (lower-case keys)
    raw: bytes  # as it came over the wire (gzip still applied for HTTP)
    body: bytes  # decompressed
    at: float  # time.monotonic() on arrival


class _Peer:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.script: list[Answer] = []
        self._arrived = asyncio.Condition()

    def answer(self, *answers: Answer) -> None:
        """Answer the next requests with these, in order; then plain success."""
        self.script.extend(answers)

    def _next(self) -> Answer:
        return self.script.pop(0) if self.script else Answer()

    async def _record(self, request: Request) -> None:
        self.requests.append(request)
        async with self._arrived:
            self._arrived.notify_all()

    async def wait_for(self, n: int, within: float = 10.0) -> list[Request]:
        """Wait until ``n`` requests arrived; return them all."""
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= n)
        return self.requests


class HttpPeer(_Peer):
    """An OTLP/HTTP server (``POST /v1/<signal>``; any other path is recorded too, under its own name)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__()
        self.ssl_context = ssl_context
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def start(self) -> HttpPeer:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = gzip.decompress(raw) if request.headers.get("Content-Encoding") == "gzip" else raw
        await self._record(Request(PATHS.get(request.path, Signal.TRACES), request.path, dict(request.headers), raw, body,
                                   time.monotonic()))
        answer = self._next()
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers,
                            content_type="application/x-protobuf")


class GrpcPeer(_Peer):
    """An OTLP/gRPC server: the three ``Export`` methods, raw bytes in and out."""

    def __init__(self, credentials: grpc.ServerCredentials | None = None) -> None:
        super().__init__()
        self.credentials = credentials
        self.port = 0
        self._server: grpc.aio.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> GrpcPeer:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(tuple(
            grpc.method_handlers_generic_handler(service, {"Export": grpc.unary_unary_rpc_method_handler(self._handler(signal))})
            for signal, service in SERVICES.items()
        ))
        address = f"127.0.0.1:{port}"
        if self.credentials is None:
            self.port = server.add_insecure_port(address)
        else:
            self.port = server.add_secure_port(address, self.credentials)
        await server.start()
        self._server = server
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(None)
            self._server = None

    def _handler(self, signal: Signal) -> Any:
        async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            metadata = dict(context.invocation_metadata() or ())
            await self._record(Request(signal, f"/{SERVICES[signal]}/Export", metadata, request, request, time.monotonic()))
            answer = self._next()
            if answer.code is not None:
                trailers: tuple[tuple[str, bytes], ...] = ()
                if answer.retry_delay is not None:
                    status = status_pb2.Status(code=answer.code.value[0], message="slow down")
                    whole = int(answer.retry_delay)
                    status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=Duration(
                        seconds=whole, nanos=round((answer.retry_delay - whole) * 1e9))))
                    trailers = (("grpc-status-details-bin", status.SerializeToString()),)
                await context.abort(answer.code, "scripted failure", trailers)
            return answer.body

        return export


def server_ssl_context(pki: Any, *, mutual: bool = False) -> ssl.SSLContext:
    """A server context with the test PKI's server certificate; ``mutual``: client certificates from its CA required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if mutual:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca_cert)
    return context


def grpc_server_credentials(pki: Any, *, mutual: bool = False) -> grpc.ServerCredentials:
    """gRPC server credentials with the test PKI's server certificate; ``mutual``: client certificates required."""
    return grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
        root_certificates=pki.ca_cert.read_bytes() if mutual else None,
        require_client_auth=mutual,
    )
