"""``otlp``: traces, metrics and logs out over OTLP/gRPC or OTLP/HTTP (protobuf), as the collector's exporters.

Four type names share this one implementation, so collector configs carry over: ``otlp``
(``protocol: grpc`` by default, or ``http/protobuf``), ``otlp_grpc`` (gRPC), and ``otlp_http``
and ``otlphttp`` (HTTP). Each has a schema file; the two HTTP names share one.

What goes out is the batch's wire bytes (:meth:`Batch.serialized`): a batch nothing changed is
sent exactly as its receiver took it in, never parsed or serialized again. Outcomes follow the
OTLP specification, through :func:`~obs_pipeline.exporters._helper.map_errors`: gRPC
UNAVAILABLE, RESOURCE_EXHAUSTED with ``RetryInfo`` and the other retryable codes, and HTTP 429,
502, 503 and 504 (``Retry-After`` honoured) are retried by the engine; INVALID_ARGUMENT, 400 and
every other failure are permanent, dropped at once and counted. A response's ``partial_success``
becomes a :class:`PartialSuccess` (:mod:`.response`).

Layout: :mod:`.config` (the typed config and its checks), :mod:`.grpc_transport` and
:mod:`.http_transport` (imported only by the protocol in use, so an HTTP exporter never loads
grpc), :mod:`.tls`, :mod:`.response`.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

from obs_pipeline.batch import Batch
from obs_pipeline.components import Exporter, ExporterFactory, Host, PartialSuccess, Settings
from obs_pipeline.errors import PermanentError
from obs_pipeline.exporters._helper import map_errors
from obs_pipeline.exporters.otlp.config import (
    GRPC,
    HTTP,
    Config,
    TlsConfig,
    check,
    parse,
    parse_for,
    signal_urls,
)
from obs_pipeline.exporters.otlp.response import UnreadableResponse, read_response
from obs_pipeline.signals import Signal
from obs_pipeline.telemetry.logs import ComponentLogger

__all__ = [
    "FACTORY",
    "GRPC_FACTORY",
    "HTTP_FACTORY",
    "OTLPHTTP_FACTORY",
    "TYPE",
    "Config",
    "OtlpExporter",
    "OtlpSender",
    "TlsConfig",
    "Transport",
    "check",
    "origin",
    "parse",
]

TYPE = "otlp"


class Transport(Protocol):
    """What the exporter needs of a protocol: open, send one request's bytes, close."""

    @property
    def mode(self) -> str:
        """``plaintext``, ``TLS`` or ``mutual TLS``."""

    async def open(self) -> None:
        """Prepare the connection (files read, session or channel made)."""

    async def send(self, signal: Signal, payload: bytes) -> tuple[bytes, bool]:
        """Send one export request: the success response's body, and whether it is JSON."""

    async def close(self) -> None:
        """Release the connection."""


class OtlpSender:
    """A started transport and the reading of its answers: what ``otlp`` and ``logfire`` share."""

    def __init__(self, transport: Transport, what: str, log: ComponentLogger) -> None:
        self.transport = transport
        self.what = what
        self.log = log
        self._warned_unreadable = False

    async def export(self, batch: Batch) -> PartialSuccess | None:
        """Send ``batch`` as one export request and read the answer.

        Raises:
            RetryableError: a retryable status or a connection failure.
            PermanentError: any other status.
        """
        with map_errors(f"{self.what}: cannot export {batch.signal.value}"):
            body, is_json = await self.transport.send(batch.signal, batch.serialized())
        return self.outcome(batch.signal, body, json=is_json)

    def outcome(self, signal: Signal, body: bytes, *, json: bool = False) -> PartialSuccess | None:
        """A success response's meaning: a partial success, or None (a warning logged if it has one)."""
        try:
            partial, warning = read_response(signal, body, json=json)
        except UnreadableResponse:
            if not self._warned_unreadable:  # once: it says the endpoint is probably not an OTLP receiver
                self._warned_unreadable = True
                self.log.warning("the destination answered success with a body that is not an OTLP %s response; "
                                 "is the endpoint an OTLP receiver? (logged once)", signal.value)
            return None
        if warning:
            self.log.warning("the destination took all %s, with a warning: %s", signal.value, warning)
        return partial

    async def close(self) -> None:
        """Close the transport."""
        await self.transport.close()


class OtlpExporter(Exporter):
    """Sends each batch as one OTLP export request; one channel or session for its lifetime."""

    def __init__(self, settings: Settings, cfg: Config) -> None:
        super().__init__(settings)
        self.cfg = cfg
        self.sender: OtlpSender | None = None

    async def on_start(self, host: Host) -> None:
        """Create the channel (gRPC) or session (HTTP); nothing connects until the first export.

        Raises:
            StartupError: a tls file cannot be read or is not usable.
        """
        cfg = self.cfg
        transport: Transport
        if cfg.protocol == GRPC:
            from obs_pipeline.exporters.otlp.grpc_transport import GrpcTransport  # noqa: PLC0415 - grpc only when used

            transport = GrpcTransport(cfg, self.id)
            name, where = "gRPC", cfg.endpoint
        else:
            from obs_pipeline.exporters.otlp.http_transport import HttpTransport  # noqa: PLC0415 - aiohttp only when used

            transport = HttpTransport(urls=signal_urls(cfg), headers=cfg.headers, compression=cfg.compression,
                                      tls=cfg.tls, what=self.id)
            name, where = "HTTP", origin(cfg.endpoint)
        self.sender = OtlpSender(transport, self.id, self.log)
        await transport.open()
        self.log.info("exporting over OTLP/%s to %s (%s, compression %s)", name, where, transport.mode,
                      cfg.compression)

    async def export(self, batch: Batch) -> PartialSuccess | None:
        """Send ``batch`` as one export request (its wire bytes, as they are).

        Raises:
            RetryableError: a retryable status or a connection failure.
            PermanentError: any other status, or the exporter is not running.
        """
        if self.sender is None:
            raise PermanentError(f"{self.id}: not started")
        return await self.sender.export(batch)

    async def on_shutdown(self) -> None:
        """Close the channel or session."""
        sender, self.sender = self.sender, None
        if sender is not None:
            await sender.close()


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL: what a log line may say of a destination (no path, user or query)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"


def _factory(type_: str, schema: str, description: str, protocol: str | None) -> ExporterFactory[Config]:
    return ExporterFactory[Config](
        type=type_,
        signals=frozenset(Signal),
        schema=schema,
        description=description,
        parse=parse if protocol is None else parse_for(protocol),
        create=OtlpExporter,
        check=check,
    )


FACTORY = _factory(TYPE, "exporters/otlp.schema.json",
                   "Sends traces, metrics and logs over OTLP/gRPC or OTLP/HTTP to a collector, another obs-pipeline "
                   "or a backend.", None)
GRPC_FACTORY = _factory("otlp_grpc", "exporters/otlp_grpc.schema.json",
                        "The otlp exporter with protocol grpc, under the collector's name.", GRPC)
HTTP_FACTORY = _factory("otlp_http", "exporters/otlp_http.schema.json",
                        "The otlp exporter with protocol http/protobuf, under the collector's name.", HTTP)
OTLPHTTP_FACTORY = _factory("otlphttp", "exporters/otlp_http.schema.json",
                            "The otlp exporter with protocol http/protobuf, under the collector's older name.", HTTP)
