"""The ``otlp`` receiver: OTLP over gRPC and HTTP (protobuf or JSON, optionally gzip).

Each request is parsed straight into ``TracesData``/``MetricsData``/``LogsData`` (the same wire
layout as the Export*ServiceRequest messages), handed to the pipeline, and acknowledged only
once the pipeline accepted it. A refusal (full queue, shutting down) is answered with a
retryable status and a retry hint, so the sender backs off instead of losing data; malformed data
gets INVALID_ARGUMENT / 400 and the server keeps serving.

The transports live in ``grpc_server`` and ``http_server`` and are imported only when enabled,
so an HTTP-only pipeline never loads grpc. Each protocol may have ``tls`` (mutual with a
``client_ca_file``) and ``auth.bearer_token``: see ``security`` and docs/receivers.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from obs_pipeline.components import Consumer, Host, Receiver, ReceiverFactory, Settings
from obs_pipeline.errors import Problem
from obs_pipeline.receivers.otlp import security
from obs_pipeline.receivers.otlp.security import AuthConfig, TlsConfig
from obs_pipeline.signals import Signal
from obs_pipeline.units import parse_size

if TYPE_CHECKING:
    from obs_pipeline.receivers.otlp.grpc_server import GrpcServer
    from obs_pipeline.receivers.otlp.http_server import HttpServer

GRPC_DEFAULT_ENDPOINT = "127.0.0.1:4317"
HTTP_DEFAULT_ENDPOINT = "127.0.0.1:4318"
GRPC_DEFAULT_MAX_RECV_MSG_SIZE = 4 * 2**20  # the schema's 4MiB
HTTP_DEFAULT_MAX_REQUEST_BODY_SIZE = 20 * 2**20  # the schema's 20MiB
GRPC_MAX_MESSAGE_LIMIT = 2**31 - 1  # grpc's option is a C int
#: Seconds requests in flight get at shutdown when the caller gives no deadline.
DEFAULT_GRACE = 10.0
#: Seconds of the shutdown deadline kept for the servers' cleanup after the grace (408 answers to
#: unfinished uploads, 0.2 s, aiohttp's connection close, 0.5 s, and the JSON worker's exit, 1 s).
CLEANUP_RESERVE = 1.7


@dataclass(frozen=True)
class GrpcConfig:
    """``protocols.grpc``."""

    endpoint: str = GRPC_DEFAULT_ENDPOINT
    max_recv_msg_size: int = GRPC_DEFAULT_MAX_RECV_MSG_SIZE
    tls: TlsConfig | None = None
    auth: AuthConfig | None = None


@dataclass(frozen=True)
class HttpConfig:
    """``protocols.http``."""

    endpoint: str = HTTP_DEFAULT_ENDPOINT
    max_request_body_size: int = HTTP_DEFAULT_MAX_REQUEST_BODY_SIZE
    tls: TlsConfig | None = None
    auth: AuthConfig | None = None


@dataclass(frozen=True)
class Config:
    """The receiver's typed config; a protocol that is ``None`` is off.

    The defaults are the schema's: with no ``protocols`` key both transports are on.
    """

    grpc: GrpcConfig | None = GrpcConfig()
    http: HttpConfig | None = HttpConfig()


def parse(raw: dict[str, Any]) -> Config:
    """Typed config from the validated dict (schema defaults filled in, so every key is there).

    A protocol absent from ``protocols`` is off, and so are its ``tls`` and ``auth`` blocks when
    absent; that is the schema's meaning, not a fallback.
    """
    protocols = raw["protocols"]
    grpc_cfg = http_cfg = None
    if "grpc" in protocols:
        body = protocols["grpc"]
        grpc_cfg = GrpcConfig(
            endpoint=body["endpoint"], max_recv_msg_size=parse_size(body["max_recv_msg_size"]),
            tls=security.parse_tls(body.get("tls")), auth=security.parse_auth(body.get("auth")),
        )
    if "http" in protocols:
        body = protocols["http"]
        http_cfg = HttpConfig(
            endpoint=body["endpoint"], max_request_body_size=parse_size(body["max_request_body_size"]),
            tls=security.parse_tls(body.get("tls")), auth=security.parse_auth(body.get("auth")),
        )
    return Config(grpc=grpc_cfg, http=http_cfg)


def check(cfg: Config) -> list[Problem]:
    """What the schema cannot express: sizes positive and within grpc's C int; TLS files usable, tokens sendable.

    Plus warnings about a listener other hosts can reach without auth, or with auth but without
    TLS (the token would travel in clear text); ``validate`` and ``run`` show them.
    """
    problems: list[Problem] = []
    if cfg.grpc is not None:
        size = cfg.grpc.max_recv_msg_size
        if not 0 < size <= GRPC_MAX_MESSAGE_LIMIT:
            problems.append(Problem("protocols.grpc.max_recv_msg_size",
                                    f"must be between 1 byte and {GRPC_MAX_MESSAGE_LIMIT} bytes (2GiB - 1)"))
    if cfg.http is not None and cfg.http.max_request_body_size <= 0:
        problems.append(Problem("protocols.http.max_request_body_size", "must be greater than 0"))
    for transport, proto in (("grpc", cfg.grpc), ("http", cfg.http)):
        if proto is not None:
            problems += security.check(f"protocols.{transport}", transport, proto.endpoint, proto.tls, proto.auth)
    return problems


def endpoints(cfg: Config) -> list[tuple[str, str]]:
    """The addresses it listens on, for the config's port-clash check."""
    out = []
    if cfg.grpc is not None:
        out.append(("protocols.grpc.endpoint", cfg.grpc.endpoint))
    if cfg.http is not None:
        out.append(("protocols.http.endpoint", cfg.http.endpoint))
    return out


class OtlpReceiver(Receiver):
    """Runs the enabled transports; after ``start`` their bound ports are in ``grpc_port``/``http_port``."""

    def __init__(self, settings: Settings, cfg: Config, consumers: Mapping[Signal, Consumer]) -> None:
        super().__init__(settings, consumers)
        self.cfg = cfg
        self._grpc: GrpcServer | None = None
        self._http: HttpServer | None = None
        self.grpc_port: int | None = None
        self.http_port: int | None = None

    async def on_start(self, host: Host) -> None:
        """Bind and serve the enabled protocols (a failure stops whatever had started).

        Raises:
            StartupError: an address could not be bound, or a TLS file cannot be used (any more).
        """
        if self.cfg.grpc is not None:
            from obs_pipeline.receivers.otlp.grpc_server import GrpcServer  # noqa: PLC0415

            self._grpc = GrpcServer(self.id, self.cfg.grpc, self.consumers, self.settings.metrics, self.log)
            self.grpc_port = await self._grpc.start()
        if self.cfg.http is not None:
            from obs_pipeline.receivers.otlp.http_server import HttpServer  # noqa: PLC0415

            self._http = HttpServer(self.id, self.cfg.http, self.consumers, self.settings.metrics, self.log)
            self.http_port = await self._http.start()
        signals = ", ".join(s.value for s in Signal if s in self.consumers) or "no signals"
        for name, port, cfg in (("gRPC", self.grpc_port, self.cfg.grpc), ("HTTP", self.http_port, self.cfg.http)):
            if cfg is not None:
                where = cfg.endpoint if cfg.endpoint.endswith(f":{port}") else f"{cfg.endpoint} (port {port})"
                self.log.info("OTLP/%s listening on %s%s for %s", name, where, security.describe(cfg.tls, cfg.auth), signals)

    async def on_shutdown(self) -> None:
        """Stop accepting; requests in flight still get their real answer, until the deadline.

        Without a deadline (a test, an embedding) they get :data:`DEFAULT_GRACE` seconds.
        """
        servers = [s for s in (self._grpc, self._http) if s is not None]
        self._grpc = self._http = None
        deadline = self.shutdown_deadline
        # The servers' own cleanup (closing connections, stopping the JSON worker) needs time
        # after the grace: keep it inside the deadline, or the caller cancels it half done.
        grace = DEFAULT_GRACE if deadline is None else max(0.0, deadline - time.monotonic() - CLEANUP_RESERVE)
        if servers:
            await asyncio.gather(*(s.stop(grace) for s in servers))


def create(settings: Settings, cfg: Config, consumers: Mapping[Signal, Consumer]) -> OtlpReceiver:
    """Build the receiver; nothing is bound until ``start``."""
    return OtlpReceiver(settings, cfg, consumers)


FACTORY = ReceiverFactory[Config](
    type="otlp",
    signals=frozenset(Signal),
    schema="receivers/otlp.schema.json",
    description="Receives OTLP traces, metrics and logs over gRPC and HTTP (protobuf or JSON, gzip).",
    parse=parse,
    create=create,
    check=check,
    endpoints=endpoints,
)

__all__ = ["FACTORY", "Config", "GrpcConfig", "HttpConfig", "OtlpReceiver"]
