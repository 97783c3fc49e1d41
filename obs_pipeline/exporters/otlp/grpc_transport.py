"""OTLP/gRPC out: one ``grpc.aio`` channel, the ``Export`` methods called with pre-serialized bytes.

The methods are generic unary calls with no serializers: the request is the batch's wire bytes
(``TracesData`` has the wire layout of ``ExportTraceServiceRequest``), so bytes a receiver took
in go out without a parse or a re-serialization, and the response comes back as bytes for
:mod:`~obs_pipeline.exporters.otlp.response`. Errors are the channel's ``AioRpcError``; the
exporter maps them with :func:`~obs_pipeline.exporters._helper.map_errors` (``RetryInfo``
honoured).

TLS unless ``tls.insecure`` (the collector's rule, also on loopback): ``ca_file`` or grpc's own
trust store, ``cert_file``/``key_file`` for mutual TLS, ``server_name_override`` as the name the
certificate is checked against. Proxy environment variables are not used (as for HTTP).
"""

from __future__ import annotations

import grpc

from obs_pipeline import __version__
from obs_pipeline.exporters.otlp.config import Config
from obs_pipeline.exporters.otlp.tls import read_pem
from obs_pipeline.signals import Signal

__all__ = ["METHODS", "GrpcTransport"]

METHODS = {
    Signal.TRACES: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    Signal.METRICS: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    Signal.LOGS: "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
#: Reconnect backoff of a channel whose destination is down (grpc's own maximum is 120s, which
#: would keep a destination that came back unused long after the engine's retries resumed).
INITIAL_RECONNECT_BACKOFF_MS = 1000
MAX_RECONNECT_BACKOFF_MS = 5000


class GrpcTransport:
    """One channel to ``cfg.endpoint``; :meth:`send` is one ``Export`` call."""

    def __init__(self, cfg: Config, what: str) -> None:
        self.cfg = cfg
        self.what = what
        self._channel: grpc.aio.Channel | None = None
        self._calls: dict[Signal, grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = {}
        # Header values are revealed here, for the wire only; the tuple is never printed.
        self._metadata = tuple((name.lower(), value.reveal()) for name, value in cfg.headers.items())

    @property
    def mode(self) -> str:
        """``plaintext``, ``TLS`` or ``mutual TLS``: for the start log line."""
        if self.cfg.tls.insecure:
            return "plaintext"
        return "mutual TLS" if self.cfg.tls.cert_file else "TLS"

    async def open(self) -> None:
        """Create the channel (it connects on the first call).

        Raises:
            StartupError: a tls file cannot be read.
        """
        cfg = self.cfg
        options: list[tuple[str, str | int]] = [
            ("grpc.primary_user_agent", f"obs-pipeline/{__version__}"),
            ("grpc.enable_http_proxy", 0),
            ("grpc.initial_reconnect_backoff_ms", INITIAL_RECONNECT_BACKOFF_MS),
            ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
        ]
        compression = grpc.Compression.Gzip if cfg.compression == "gzip" else grpc.Compression.NoCompression
        if cfg.tls.insecure:
            channel = grpc.aio.insecure_channel(cfg.endpoint, options=options, compression=compression)
        else:
            pem = read_pem(cfg.tls, self.what)
            credentials = grpc.ssl_channel_credentials(root_certificates=pem.ca, private_key=pem.key,
                                                       certificate_chain=pem.cert)
            if cfg.tls.server_name_override:
                options.append(("grpc.ssl_target_name_override", cfg.tls.server_name_override))
            channel = grpc.aio.secure_channel(cfg.endpoint, credentials, options=options, compression=compression)
        self._channel = channel
        # No serializers: bytes in, bytes out.
        self._calls = {signal: channel.unary_unary(method) for signal, method in METHODS.items()}

    async def send(self, signal: Signal, payload: bytes) -> tuple[bytes, bool]:
        """One ``Export`` call: ``(response bytes, False)`` (gRPC responses are never JSON).

        Raises:
            grpc.aio.AioRpcError: the call failed (the caller maps it).
        """
        response: bytes = await self._calls[signal](payload, metadata=self._metadata)
        return response, False

    async def close(self) -> None:
        """Close the channel; calls still running are cancelled."""
        channel, self._channel = self._channel, None
        self._calls = {}
        if channel is not None:
            await channel.close()
