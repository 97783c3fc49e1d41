"""The ``otlp`` exporter's config: the typed ``Config``, ``parse`` from the validated body, and ``check``.

The schemas (``schemas/exporters/otlp*.schema.json``, with the shared ``headers`` and
``tls_client`` blocks of ``common.schema.json``) hold the keys and defaults; ``check`` holds
the rules a schema cannot say, each reported at the key it is about: an endpoint of the wrong
shape for its protocol, a TLS file that does not exist, a key without its certificate, a header
value that would split the request.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from obs_pipeline.errors import Problem
from obs_pipeline.secret import Secret
from obs_pipeline.signals import Signal
from obs_pipeline.units import parse_endpoint

__all__ = [
    "DEFAULT_COMPRESSION",
    "DEFAULT_PROTOCOL",
    "GRPC",
    "HTTP",
    "Config",
    "HttpConfig",
    "TlsConfig",
    "check",
    "check_url",
    "parse",
    "parse_for",
    "signal_urls",
]

GRPC = "grpc"
HTTP = "http/protobuf"
DEFAULT_PROTOCOL = GRPC
DEFAULT_COMPRESSION = "gzip"
SIGNAL_PATHS = {Signal.TRACES: "v1/traces", Signal.METRICS: "v1/metrics", Signal.LOGS: "v1/logs"}
#: gRPC metadata keys: lower-cased on the wire, and only these characters (grpcio refuses others).
_GRPC_KEY = re.compile(r"^[0-9A-Za-z_.-]+$")
#: An HTTP header name (RFC 9110 token).
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_LOOPBACK = re.compile(r"^(localhost|127(\.\d{1,3}){3}|::1)$", re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class TlsConfig:
    """``tls``: the collector's client TLS settings (``common.schema.json#/$defs/tls_client``)."""

    insecure: bool = False  # gRPC: plaintext; HTTP: unused (the URL's scheme decides)
    ca_file: str = ""  # CA certificates that verify the server; empty: the system's trust store
    cert_file: str = ""  # client certificate, for mutual TLS
    key_file: str = ""  # its private key
    insecure_skip_verify: bool = False  # HTTP only: accept any server certificate
    server_name_override: str = ""  # the name to verify (and send as SNI) instead of the endpoint's host


@dataclass(frozen=True, kw_only=True)
class Config:
    """The ``otlp`` exporter's settings (and of its aliases ``otlp_grpc``, ``otlp_http``, ``otlphttp``).

    ``timeout``, ``retry_on_failure`` and ``sending_queue`` are the engine's
    (:class:`~obs_pipeline.delivery.DeliverySettings`), not the exporter's.
    """

    endpoint: str  # grpc: host:port; http/protobuf: the base URL
    protocol: str = DEFAULT_PROTOCOL  # grpc | http/protobuf
    traces_endpoint: str = ""  # http/protobuf: full URL overrides; empty: endpoint + /v1/<signal>
    metrics_endpoint: str = ""
    logs_endpoint: str = ""
    headers: Mapping[str, Secret] = field(default_factory=dict)  # sent with every request; values are secrets
    compression: str = DEFAULT_COMPRESSION  # gzip | none
    tls: TlsConfig = field(default_factory=TlsConfig)

    def signal_endpoint(self, signal: Signal) -> str:
        """The ``<signal>_endpoint`` override (empty when not set)."""
        return {Signal.TRACES: self.traces_endpoint, Signal.METRICS: self.metrics_endpoint,
                Signal.LOGS: self.logs_endpoint}[signal]


@dataclass(frozen=True, kw_only=True)
class HttpConfig(Config):
    """The config of ``otlp_http`` and ``otlphttp``: ``Config`` whose protocol is always http/protobuf."""

    protocol: str = HTTP


def _tls(raw: Mapping[str, Any]) -> TlsConfig:
    return TlsConfig(
        insecure=raw["insecure"], ca_file=raw["ca_file"], cert_file=raw["cert_file"], key_file=raw["key_file"],
        insecure_skip_verify=raw["insecure_skip_verify"], server_name_override=raw["server_name_override"],
    )


def parse(raw: dict[str, Any]) -> Config:
    """The validated ``otlp`` body (defaults filled in, header values wrapped in Secret) -> Config."""
    return _parse(Config, raw, raw["protocol"], signal_endpoints=True)


def parse_for(protocol: str) -> Any:
    """The ``parse`` of an alias whose protocol its type name fixes: ``otlp_grpc``, or ``otlp_http``/``otlphttp``."""

    def parse_grpc(raw: dict[str, Any]) -> Config:
        return _parse(Config, raw, GRPC, signal_endpoints=False)

    def parse_http(raw: dict[str, Any]) -> Config:
        return _parse(HttpConfig, raw, HTTP, signal_endpoints=True)

    return parse_grpc if protocol == GRPC else parse_http


def _parse(cls: type[Config], raw: dict[str, Any], protocol: str, *, signal_endpoints: bool) -> Config:
    """``cls`` from the body; ``signal_endpoints``: the schema has the three ``<signal>_endpoint`` keys."""
    return cls(
        protocol=protocol,
        endpoint=raw["endpoint"],
        traces_endpoint=raw["traces_endpoint"] if signal_endpoints else "",
        metrics_endpoint=raw["metrics_endpoint"] if signal_endpoints else "",
        logs_endpoint=raw["logs_endpoint"] if signal_endpoints else "",
        headers=dict(raw["headers"]),
        compression=raw["compression"],
        tls=_tls(raw["tls"]),
    )


def signal_urls(cfg: Config) -> dict[Signal, str]:
    """The URL of each signal's requests (http/protobuf): the override, else the base URL + ``/v1/<signal>``.

    As the collector composes them: ``https://host:4318`` and ``https://host:4318/`` both give
    ``https://host:4318/v1/traces``; a base URL with a path keeps it (``.../otlp/v1/traces``).
    """
    base = cfg.endpoint if cfg.endpoint.endswith("/") else cfg.endpoint + "/"
    return {signal: cfg.signal_endpoint(signal) or base + path for signal, path in SIGNAL_PATHS.items()}


def check(cfg: Config) -> list[Problem]:
    """The rules the schema cannot say, each at the key it is about (paths relative to the body)."""
    problems = _check_grpc(cfg) if cfg.protocol == GRPC else _check_http(cfg)
    problems += _check_tls(cfg)
    problems += _check_headers(cfg)
    return problems


def _check_grpc(cfg: Config) -> list[Problem]:
    problems: list[Problem] = []
    endpoint = cfg.endpoint
    if "://" in endpoint:
        problems.append(Problem("endpoint", f'"{endpoint}" has a scheme: protocol grpc takes host:port '
                                            "(plaintext or TLS is set by tls.insecure)"))
    elif "/" in endpoint:
        problems.append(Problem("endpoint", f'"{endpoint}" has a path: protocol grpc takes host:port'))
    else:
        try:
            host, _port = parse_endpoint(endpoint)
        except ValueError as exc:
            problems.append(Problem("endpoint", f"{exc}: protocol grpc takes host:port"))
        else:
            if _LOOPBACK.match(host) and _bare_tls(cfg.tls):
                problems.append(Problem("endpoint", (
                    "a loopback address, with TLS on (tls.insecure is false, the collector's default): "
                    "an obs-pipeline otlp receiver serves plaintext unless its own tls is set; "
                    "set tls.insecure: true for a plaintext destination"), severity="warning"))
    for signal in Signal:
        if cfg.signal_endpoint(signal):
            problems.append(Problem(f"{signal.value}_endpoint", "is only for protocol http/protobuf; "
                                                                 "protocol grpc sends every signal to endpoint"))
    if cfg.tls.insecure_skip_verify:
        problems.append(Problem("tls.insecure_skip_verify", (
            "is not supported with protocol grpc: grpcio always verifies the server's certificate; "
            "set tls.ca_file to the CA that signed it (or, for plaintext, only tls.insecure: true)")))
    return problems


def _bare_tls(tls: TlsConfig) -> bool:
    """TLS on with nothing configured for it: the likely mistake of pointing TLS at a plaintext receiver."""
    return not (tls.insecure or tls.ca_file or tls.cert_file or tls.server_name_override or tls.insecure_skip_verify)


def _check_http(cfg: Config) -> list[Problem]:
    problems = check_url("endpoint", cfg.endpoint)
    for signal in Signal:
        if url := cfg.signal_endpoint(signal):
            problems += check_url(f"{signal.value}_endpoint", url)
    tls = cfg.tls
    configured = tls.ca_file or tls.cert_file or tls.server_name_override or tls.insecure_skip_verify
    if configured and not problems and all(url.lower().startswith("http://") for url in signal_urls(cfg).values()):
        problems.append(Problem("tls", "is not used: every URL is http://, which is plaintext; use https:// for TLS",
                                severity="warning"))
    return problems


def check_url(key: str, url: str) -> list[Problem]:
    """Problems of a URL an HTTP exporter sends to, at ``key``: it needs an http(s) scheme, a host, a valid port."""
    parts = urlsplit(url)
    if "://" not in url or not parts.scheme:
        return [Problem(key, f'"{url}" has no scheme: protocol http/protobuf takes a URL such as '
                             f"http://{url} or https://{url}")]
    if parts.scheme.lower() not in ("http", "https"):
        return [Problem(key, f'"{url}" is not an http:// or https:// URL')]
    try:
        if not parts.hostname:
            return [Problem(key, f'"{url}" has no host')]
        _ = parts.port  # raises on a port that is not a number or out of range
    except ValueError:
        return [Problem(key, f'"{url}" has an invalid port')]
    return []


def _check_tls(cfg: Config) -> list[Problem]:
    tls = cfg.tls
    problems: list[Problem] = []
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(tls, key)
        if path and (reason := _unreadable(path)):
            problems.append(Problem(f"tls.{key}", f'cannot read "{path}": {reason}'))
    if tls.key_file and not tls.cert_file:
        problems.append(Problem("tls.key_file", "needs tls.cert_file, the certificate of this key"))
    if tls.cert_file and not tls.key_file:
        problems.append(Problem("tls.cert_file", "needs tls.key_file, the private key of this certificate"))
    if not problems:
        problems += _unusable_tls(tls)
    return problems


def _unusable_tls(tls: TlsConfig) -> list[Problem]:
    """Load the files as the transports will, so a file that is not PEM fails validate, not every send."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    problems: list[Problem] = []
    if tls.ca_file:
        try:
            context.load_verify_locations(cafile=str(Path(tls.ca_file).expanduser()))
        except (ssl.SSLError, OSError, ValueError):
            problems.append(Problem("tls.ca_file", f'"{tls.ca_file}" holds no usable PEM certificate'))
    if tls.cert_file and tls.key_file:
        try:
            context.load_cert_chain(str(Path(tls.cert_file).expanduser()), str(Path(tls.key_file).expanduser()))
        except (ssl.SSLError, OSError, ValueError):
            problems.append(Problem("tls.cert_file", (
                f'"{tls.cert_file}" and tls.key_file "{tls.key_file}" are not a usable PEM certificate and its '
                "private key (not PEM, protected by a passphrase, or not a pair)")))
    return problems


def _unreadable(path: str) -> str:
    """Why the file at ``path`` cannot be read ("" when it can)."""
    file = Path(path).expanduser()
    if not file.exists():
        return "no such file"
    if not file.is_file():
        return "not a file"
    try:
        with file.open("rb"):
            pass
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return ""


def _check_headers(cfg: Config) -> list[Problem]:
    problems: list[Problem] = []
    for name, value in cfg.headers.items():
        if not _TOKEN.match(name):
            problems.append(Problem(f"headers.{name}", "is not a header name: use letters, digits and - (no spaces, "
                                                       "no colon)"))
            continue
        text = value.reveal() if isinstance(value, Secret) else str(value)
        if "\n" in text or "\r" in text:
            problems.append(Problem(f"headers.{name}", "the value contains a line break (newline or carriage return), "
                                                       "which would end the header early"))
        if cfg.protocol == GRPC and not _GRPC_KEY.match(name):
            problems.append(Problem(f"headers.{name}", "is not a gRPC metadata key: use letters, digits, - _ and ."))
        elif cfg.protocol == GRPC and name.lower().endswith("-bin"):
            problems.append(Problem(f"headers.{name}", "binary (-bin) metadata is not supported: its value is text"))
    return problems
