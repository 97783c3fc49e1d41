"""OTLP/gRPC: the TraceService, MetricsService and LogsService ``Export`` methods on ``grpc.aio``.

The handlers are registered as generic handlers with no request deserializer, so they get the
raw bytes and parse them themselves: a malformed request is then answered INVALID_ARGUMENT
(grpc's own deserializer failure would be INTERNAL, which clients must not retry either, but it
hides the cause). The response is the empty Export*ServiceResponse, pre-serialized (``b""``).

Per request the handler does only: ``FromString`` → a :class:`Batch` with the request bytes
(its item count computed once) → ``consume`` → count. Nothing
per span runs in Python here. Only a request the strict parse refuses is parsed again by
:mod:`~obs_pipeline.receivers.otlp.lenient`, which repairs invalid UTF-8 and too-deep values
instead of refusing the batch. Services of signals no pipeline takes are not registered, so
grpc answers UNIMPLEMENTED for them.

With ``tls`` the port is added with ``grpc.ssl_server_credentials`` (client certificates required
when there is a ``client_ca_file``); with ``auth`` each handler first checks the
``authorization`` metadata (:class:`~obs_pipeline.receivers.otlp.security.BearerToken`) and
answers UNAUTHENTICATED, before the request is decoded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import grpc
from google.protobuf.message import DecodeError

from obs_pipeline.batch import Batch
from obs_pipeline.errors import StartupError
from obs_pipeline.receivers._common import TransportServer, bind_failure_reason, outcome_of
from obs_pipeline.receivers.otlp import lenient, security
from obs_pipeline.receivers.otlp.status import grpc_trailers
from obs_pipeline.signals import Signal, message_class
from obs_pipeline.units import parse_endpoint

if TYPE_CHECKING:
    from obs_pipeline.components import Consumer
    from obs_pipeline.receivers.otlp import GrpcConfig

SERVICES = {
    Signal.TRACES: "opentelemetry.proto.collector.trace.v1.TraceService",
    Signal.METRICS: "opentelemetry.proto.collector.metrics.v1.MetricsService",
    Signal.LOGS: "opentelemetry.proto.collector.logs.v1.LogsService",
}
# An empty Export*ServiceResponse serializes to no bytes at all: full success, no partial_success.
_EMPTY_RESPONSE = b""
_CODES = {code.value[0]: code for code in grpc.StatusCode}

Handler = Callable[[bytes, grpc.aio.ServicerContext[bytes, bytes]], Awaitable[bytes]]


class GrpcServer(TransportServer):
    """One ``grpc.aio`` server in the running event loop."""

    cfg: GrpcConfig
    transport = "grpc"
    _server: grpc.aio.Server | None = None

    async def start(self) -> int:
        """Bind and start serving; return the bound port (useful with port 0).

        Raises:
            StartupError: the endpoint cannot be bound, or a TLS file cannot be used.
        """
        host, port = parse_endpoint(self.cfg.endpoint)
        credentials = self._credentials()
        server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", self.cfg.max_recv_msg_size),
            # Without this a second obs-pipeline (or anything else using SO_REUSEPORT) could bind
            # the same port silently and steal half the connections.
            ("grpc.so_reuseport", 0),
        ])
        server.add_generic_rpc_handlers(tuple(
            grpc.method_handlers_generic_handler(SERVICES[signal], {
                "Export": grpc.unary_unary_rpc_method_handler(self._handler(signal, consumer)),
            })
            for signal, consumer in self.consumers.items()
        ))
        try:
            if credentials is None:
                bound = server.add_insecure_port(self.cfg.endpoint)
            else:
                bound = server.add_secure_port(self.cfg.endpoint, credentials)
        except RuntimeError as exc:
            await server.stop(None)
            reason = bind_failure_reason(host, port)
            raise StartupError(f"{self.receiver_id}: cannot listen on {self.cfg.endpoint}: {reason}") from exc
        await server.start()
        self._server = server
        return int(bound)

    def _credentials(self) -> grpc.ServerCredentials | None:
        """The TLS credentials of ``tls``, its files read now; None without TLS.

        Raises:
            StartupError: a file is gone, unreadable or no longer fits (it passed validation earlier).
        """
        if self.cfg.tls is None:
            return None
        try:
            material = security.load_tls(self.cfg.tls)
        except security.TlsFileError as exc:
            raise StartupError(f"{self.receiver_id}: protocols.grpc.tls.{exc.key}: {exc}") from None
        return grpc.ssl_server_credentials(
            [(material.private_key, material.cert_chain)],
            root_certificates=material.client_ca, require_client_auth=material.client_ca is not None,
        )

    async def stop(self, grace: float) -> None:
        """Stop taking calls; calls in flight get up to ``grace`` seconds to finish."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)

    def _handler(self, signal: Signal, consumer: Consumer) -> Handler:
        """The ``Export`` handler of one signal, with its lookups bound once."""
        from_string = message_class(signal).FromString
        accepted = self.counters.accepted(signal)
        counters = self.counters
        log = self.log
        malformed_message = f"request body is not a valid OTLP {signal.value} export request"

        async def export(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            try:
                data = from_string(request)
                wire = request
            except (DecodeError, RecursionError) as exc:
                try:  # one bad value must not cost the batch: repair it (lenient.py)
                    repaired = await lenient.decode_async(signal, request)
                except (DecodeError, RecursionError):
                    counters.malformed()
                    log.debug("rejected a malformed OTLP/gRPC %s request: %s", signal.value,
                              type(exc).__name__)
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, malformed_message)
                data, wire = repaired.message, repaired.wire
                counters.repaired(signal, repaired.repairs)
                log.debug("repaired an OTLP/gRPC %s request: %s", signal.value, lenient.describe(repaired.repairs))
            batch = Batch(signal, data, wire=wire)
            items = 0
            try:
                items = batch.items
                await consumer.consume(batch)
            except Exception as exc:  # every failure becomes a status, never a crash
                outcome = outcome_of(exc, log, signal)
                counters.refused(signal, outcome.reason, items)
                await context.abort(
                    _CODES[outcome.grpc_code], outcome.message,
                    grpc_trailers(outcome.grpc_code, outcome.message, outcome.retry_after),
                )
            accepted.inc(items)
            return _EMPTY_RESPONSE

        return export if self.cfg.auth is None else self._authenticated(export, signal)

    def _authenticated(self, export: Handler, signal: Signal) -> Handler:
        """``export`` behind the bearer token: a call without it is UNAUTHENTICATED, counted, never decoded."""
        assert self.cfg.auth is not None
        token = security.BearerToken(self.cfg.auth.bearer_token)
        refused = self.counters.unauthenticated()
        log = self.log

        async def authenticated(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            authorization = None
            for key, value in context.invocation_metadata() or ():
                if key == "authorization":  # grpc lower-cases metadata keys
                    authorization = value if isinstance(value, str) else None
                    break
            reason = token.refusal(authorization)
            if reason is not None:
                refused.inc()
                log.debug("refused an unauthenticated OTLP/gRPC %s request: %s", signal.value, reason)
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)
            return await export(request, context)

        return authenticated
