"""OTLP/HTTP: ``POST /v1/traces|metrics|logs`` on ``aiohttp.web``.

Bodies are ``application/x-protobuf`` or ``application/json`` (OTLP/JSON, hex ids), optionally
``Content-Encoding: gzip`` or ``deflate``. aiohttp's own request decompression is turned off:
we inflate in a stream with a cap on the *decompressed* size, so a small gzip bomb is answered
413 without ever inflating past ``max_request_body_size``.

A protobuf body the strict parse refuses is repaired by :mod:`~obs_pipeline.receivers.otlp.lenient`
(invalid UTF-8, too-deep values) instead of refused; an OTLP/JSON body over
``offload.PROCESS_THRESHOLD`` is decoded in a worker process (:mod:`~obs_pipeline.receivers.otlp.offload`),
so it never stalls the event loop.

Answers follow the OTLP/HTTP spec: 200 with the Export*ServiceResponse encoded like the
request; 400 (malformed), 413 (too large) and 503 (refused, with ``Retry-After``) with a
``google.rpc.Status`` body encoded like the request; 415 for an unknown media type or content
coding; 404/405 from the router. Messages never echo the payload.

With ``tls`` the site listens with an ``ssl.SSLContext`` (``min_version``; client certificates
required when there is a ``client_ca_file``); with ``auth`` a middleware inside the in-flight one
answers every request without the bearer token 401 (``WWW-Authenticate: Bearer``), before its
body is read or its path routed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import zlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from google.protobuf.message import DecodeError

from obs_pipeline.batch import Batch
from obs_pipeline.errors import StartupError
from obs_pipeline.receivers._common import (
    INVALID_ARGUMENT,
    RESOURCE_EXHAUSTED,
    UNAUTHENTICATED,
    UNAVAILABLE,
    TransportServer,
    bind_failure_reason,
    outcome_of,
)
from obs_pipeline.receivers.otlp import lenient, security
from obs_pipeline.receivers.otlp.offload import JsonDecoder, WorkerLost
from obs_pipeline.receivers.otlp.status import encode_status, status
from obs_pipeline.signals import Signal, message_class
from obs_pipeline.units import parse_endpoint

if TYPE_CHECKING:
    from obs_pipeline.components import Consumer
    from obs_pipeline.receivers.otlp import HttpConfig

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CHUNK = 64 * 1024
# After the grace for requests in flight, what is left (idle keep-alive connections, or requests
# the grace did not cover) gets this long before aiohttp cancels it.
_CLEANUP_SECONDS = 0.5
# After the grace, requests still uploading are answered 408; they get this long to be written.
_ANSWER_SECONDS = 0.2
# A compressed body may be a little larger than its content; past this it cannot be honest.
_COMPRESSED_SLACK = 1.25

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _TooLarge(Exception):
    """The body (after decompression) is over the limit."""


class _BadEncoding(Exception):
    """The compressed stream is corrupt or truncated."""


class _NotReceivedInTime(Exception):
    """Shutdown's grace ended while the body was still uploading."""


class _Inflater:
    """Streaming gzip/deflate decompression that never produces more than ``limit`` bytes."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.encoding = encoding
        self.limit = limit
        self.out = bytearray()
        self._d: zlib._Decompress | None = None

    def _new(self, first: bytes) -> zlib._Decompress:
        if self.encoding == "deflate":
            # RFC 9110 "deflate" is zlib-wrapped, but many clients send raw deflate: look at the header.
            zlib_header = len(first) >= 2 and first[0] & 0x0F == 8 and (first[0] << 8 | first[1]) % 31 == 0
            return zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        return zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> None:
        """Inflate ``data``; raise ``_TooLarge`` as soon as the output passes the limit."""
        while data:
            if self._d is None:
                self._d = self._new(data)
            try:
                chunk = self._d.decompress(data, self.limit - len(self.out) + 1)
            except zlib.error as exc:
                raise _BadEncoding from exc
            self.out += chunk
            if len(self.out) > self.limit:
                raise _TooLarge
            if self._d.unconsumed_tail:
                data = self._d.unconsumed_tail
            elif self._d.eof and self._d.unused_data and self.encoding != "deflate":
                data = self._d.unused_data  # gzip allows several members back to back
                self._d = None
            else:
                data = b""

    def finish(self) -> bytes:
        """The whole inflated body. Raises ``_BadEncoding`` if the stream was cut short."""
        if self._d is None:
            return bytes(self.out)
        if not self._d.eof:
            raise _BadEncoding
        return bytes(self.out)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, decompressed, at most ``limit`` bytes.

    Raises:
        _TooLarge: the (decompressed) body is over ``limit``.
        _BadEncoding: the compressed stream is corrupt.
    """
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    compressed = encoding not in ("", "identity")
    raw_limit = int(limit * _COMPRESSED_SLACK) + 1024 if compressed else limit
    if request.content_length is not None and request.content_length > raw_limit:
        raise _TooLarge
    inflater = _Inflater("deflate" if encoding == "deflate" else "gzip", limit) if compressed else None
    body = bytearray()
    received = 0
    while True:
        chunk = await request.content.read(CHUNK)
        if not chunk:
            break
        received += len(chunk)
        if received > raw_limit:
            raise _TooLarge
        if inflater is None:
            body += chunk
        else:
            inflater.feed(chunk)
    return inflater.finish() if inflater is not None else bytes(body)


class HttpServer(TransportServer):
    """One aiohttp server (AppRunner + TCPSite, access log off) in the running event loop."""

    cfg: HttpConfig
    transport = "http"
    _runner: web.AppRunner | None = None
    _closing = False
    _inflight = 0
    _idle: asyncio.Event | None = None
    _uploading: dict[int, web.Request]  # by id(): aiohttp requests are not hashable

    async def start(self) -> int:
        """Bind and start serving; return the bound port (useful with port 0).

        Raises:
            StartupError: the endpoint cannot be bound, or a TLS file cannot be used.
        """
        host, port = parse_endpoint(self.cfg.endpoint)
        ssl_context = None
        if self.cfg.tls is not None:
            try:
                ssl_context = security.load_tls(self.cfg.tls).context
            except security.TlsFileError as exc:
                raise StartupError(f"{self.receiver_id}: protocols.http.tls.{exc.key}: {exc}") from None
        self._idle = asyncio.Event()
        self._idle.set()
        self._uploading = {}  # requests in flight; shutdown ends their bodies when the grace is over
        # Bodies are read by read_body(), which enforces the limit.
        app = web.Application(middlewares=[self._in_flight_middleware(), *self._auth_middleware()])
        # Big OTLP/JSON bodies are decoded in a worker process (offload.py), stopped by the runner's cleanup.
        self._json = JsonDecoder(self.log)
        app.on_cleanup.append(self._json.on_cleanup)
        for signal in Signal:
            consumer = self.consumers.get(signal)
            handler = self._handler(signal, consumer) if consumer is not None else self._no_pipeline(signal)
            app.router.add_post(f"/v1/{signal.value}", handler)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, auto_decompress=False,
            shutdown_timeout=_CLEANUP_SECONDS,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, reuse_port=False, ssl_context=ssl_context)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            reason = bind_failure_reason(host, port, exc)
            raise StartupError(f"{self.receiver_id}: cannot listen on {self.cfg.endpoint}: {reason}") from exc
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        addresses = runner.addresses
        return int(addresses[0][1]) if addresses else port

    async def stop(self, grace: float) -> None:
        """Close the listener; requests in flight get up to ``grace`` seconds to be answered.

        The cleanup after the grace takes up to about 1.5 s more (``CLEANUP_RESERVE``).

        aiohttp's own cleanup stops reading from every connection at once, so a request whose
        body is still uploading would never finish and its sender would get no answer. So the
        listener is closed first, requests in flight (counted by a middleware) are waited for
        while their connections still read, new requests on kept-alive connections are answered
        503 (retryable), and only then does aiohttp close what is left.
        """
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._closing = True
        for site in list(runner.sites):
            await site.stop()
        if self._idle is not None and not self._idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace)
            if self._inflight:
                self.log.warning("%d OTLP/HTTP requests still in flight after the %.1fs grace are cut off",
                                 self._inflight, grace)
                self._answer_unfinished_uploads()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), _ANSWER_SECONDS)
        await runner.cleanup()

    def _answer_unfinished_uploads(self) -> None:
        """End the body of every request still uploading, so its handler answers 408 instead of nothing."""
        for request in list(self._uploading.values()):
            request.content.set_exception(_NotReceivedInTime())

    def _in_flight_middleware(self) -> Any:
        """Count requests in flight; once stopping, answer new ones 503 so the sender retries elsewhere or later."""

        @web.middleware
        async def track(request: web.Request, handler: Handler) -> web.StreamResponse:
            if self._closing:
                self.counters.draining()
                return _error(503, UNAVAILABLE, "shutting down, retry later", request.content_type.lower() == JSON,
                              retry_after=1.0, headers={"Retry-After": "1", "Connection": "close"})
            assert self._idle is not None
            self._inflight += 1
            self._idle.clear()
            self._uploading[id(request)] = request
            try:
                return await handler(request)
            finally:
                self._uploading.pop(id(request), None)
                self._inflight -= 1
                if not self._inflight:
                    self._idle.set()

        return track

    def _auth_middleware(self) -> list[Any]:
        """With ``auth``: a middleware answering 401 to a request without the bearer token, counted, its body unread."""
        if self.cfg.auth is None:
            return []
        token = security.BearerToken(self.cfg.auth.bearer_token)
        refused = self.counters.unauthenticated()
        log = self.log

        @web.middleware
        async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
            reason = token.refusal(request.headers.get("Authorization"))
            if reason is None:
                return await handler(request)
            refused.inc()
            log.debug("refused an unauthenticated OTLP/HTTP request: %s", reason)
            response = _error(401, UNAUTHENTICATED, reason, request.content_type.lower() == JSON,
                              headers={"WWW-Authenticate": "Bearer"})
            response.force_close()  # the unread body is not drained for a stranger
            return response

        return [authenticate]

    def _no_pipeline(self, signal: Signal) -> Handler:
        async def handler(_request: web.Request) -> web.StreamResponse:
            return web.Response(status=404, text=f"{self.receiver_id}: no pipeline takes {signal.value} from this receiver")

        return handler

    def _handler(self, signal: Signal, consumer: Consumer) -> Handler:
        """The POST handler of one signal."""
        from_string = message_class(signal).FromString
        accepted = self.counters.accepted(signal)
        counters = self.counters
        limit = self.cfg.max_request_body_size
        log = self.log
        json_decoder = self._json

        async def handle(request: web.Request) -> web.StreamResponse:
            media_type = request.content_type.lower()
            if media_type not in (PROTOBUF, JSON):
                return web.Response(
                    status=415, text=f"unsupported Content-Type; use {PROTOBUF} or {JSON}",
                    headers={"Accept-Post": f"{PROTOBUF}, {JSON}"},
                )
            as_json = media_type == JSON
            encoding = request.headers.get("Content-Encoding", "").strip().lower()
            if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
                return web.Response(status=415, text="unsupported Content-Encoding; use gzip, deflate or none")
            try:
                body = await read_body(request, limit)
            except _TooLarge:
                counters.malformed()
                log.debug("rejected an OTLP/HTTP %s request: body over %d bytes", signal.value, limit)
                return _error(413, RESOURCE_EXHAUSTED, f"request body is larger than {limit} bytes", as_json)
            except _NotReceivedInTime:
                log.debug("an OTLP/HTTP %s request was still uploading when shutdown's grace ended", signal.value)
                return _error(408, UNAVAILABLE, "the request body did not arrive before shutdown; retry", as_json,
                              retry_after=1.0, headers={"Retry-After": "1", "Connection": "close"})
            except _BadEncoding:
                counters.malformed()
                log.debug("rejected an OTLP/HTTP %s request: bad %s data", signal.value, encoding)
                return _error(400, INVALID_ARGUMENT, f"request body is not valid {encoding} data", as_json)
            repairs: dict[str, int] = {}
            wire: bytes | None
            try:
                if as_json:
                    data, wire = await json_decoder.decode(signal, body)
                else:
                    try:
                        data, wire = from_string(body), body
                    except (DecodeError, RecursionError):  # one bad value must not cost the batch (lenient.py)
                        repaired = await lenient.decode_async(signal, body)
                        data, wire, repairs = repaired.message, repaired.wire, repaired.repairs
            except WorkerLost:
                return _error(503, UNAVAILABLE, "the body could not be decoded now, retry later", as_json,
                              retry_after=1.0, headers={"Retry-After": "1"})
            except (DecodeError, ValueError, RecursionError) as exc:
                counters.malformed()
                reason = str(exc) if as_json else f"request body is not a valid OTLP {signal.value} export request"
                log.debug("rejected a malformed OTLP/HTTP %s request: %s", signal.value,
                          type(exc).__name__)
                return _error(400, INVALID_ARGUMENT, reason, as_json)
            if repairs:
                counters.repaired(signal, repairs)
                log.debug("repaired an OTLP/HTTP %s request: %s", signal.value, lenient.describe(repairs))
            batch = Batch(signal, data, wire=wire)
            items = 0
            try:
                items = batch.items
                await consumer.consume(batch)
            except Exception as exc:  # every failure becomes a status, never a crash
                outcome = outcome_of(exc, log, signal)
                counters.refused(signal, outcome.reason, items)
                headers = None
                if outcome.http_status == 503:
                    headers = {"Retry-After": str(max(1, math.ceil(outcome.retry_after or 1.0)))}
                return _error(outcome.http_status, outcome.grpc_code, outcome.message, as_json,
                              retry_after=outcome.retry_after, headers=headers)
            accepted.inc(items)
            if as_json:
                return web.Response(body=b"{}", content_type=JSON)
            return web.Response(body=b"", content_type=PROTOBUF)

        return handle


def _error(
    http_status: int, grpc_code: int, message: str, as_json: bool, *,
    retry_after: float | None = None, headers: dict[str, str] | None = None,
) -> web.Response:
    """An error answer whose body is a ``google.rpc.Status`` encoded like the request."""
    body = encode_status(status(grpc_code, message, retry_after), as_json)
    return web.Response(status=http_status, body=body, content_type=JSON if as_json else PROTOBUF, headers=headers)
