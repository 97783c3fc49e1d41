"""TLS and bearer-token auth for the otlp receiver's listeners, and the warnings about exposed ones.

The shape is the collector's ``configtls.ServerConfig`` and ``configauth`` per protocol:
``protocols.<grpc|http>.tls`` (``cert_file``, ``key_file``, ``client_ca_file``, ``min_version``)
and ``protocols.<grpc|http>.auth.bearer_token``, inline instead of an authenticator extension.

The files are checked when the config is validated (:func:`check`) and read again when the
listener starts (:func:`load_tls`), with the same messages: the ``ssl`` module parses them, so a
file that passes here is one OpenSSL (and so grpc's BoringSSL) takes. A token is compared with
:func:`hmac.compare_digest` on bytes and never shown: not in messages, logs or ``repr``.
"""

from __future__ import annotations

import hmac
import ipaddress
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from obs_pipeline.errors import Problem
from obs_pipeline.secret import Secret
from obs_pipeline.units import parse_endpoint

#: ``min_version`` values: TLS 1.0 and 1.1 are deprecated (RFC 8996) and not offered at all.
TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
DEFAULT_MIN_VERSION = "1.2"
#: The reasons a request is refused, as its sender is told (never which token was expected).
MISSING_TOKEN = "missing bearer token"  # noqa: S105 - a message, not a password
INVALID_TOKEN = "invalid bearer token"  # noqa: S105
_LOOPBACK_NAMES = frozenset({"localhost", "localhost."})
_KEYS = ("cert_file", "key_file", "client_ca_file")  # the order problems are reported in


@dataclass(frozen=True)
class TlsConfig:
    """``protocols.<protocol>.tls``: the listener's certificate, and the CA of its clients' certificates (mutual TLS)."""

    cert_file: str
    key_file: str
    client_ca_file: str = ""  # empty: clients are not asked for a certificate
    min_version: str = DEFAULT_MIN_VERSION


@dataclass(frozen=True)
class AuthConfig:
    """``protocols.<protocol>.auth``: the bearer token every request must carry."""

    bearer_token: Secret


def parse_tls(body: dict[str, Any] | None) -> TlsConfig | None:
    """The typed ``tls`` block; None when it is absent (no TLS). YAML may give ``min_version`` as a number."""
    if body is None:
        return None
    return TlsConfig(
        cert_file=body["cert_file"], key_file=body["key_file"], client_ca_file=body["client_ca_file"],
        min_version=str(body["min_version"]),
    )


def parse_auth(body: dict[str, Any] | None) -> AuthConfig | None:
    """The typed ``auth`` block; None when it is absent (no auth)."""
    if body is None:
        return None
    return AuthConfig(bearer_token=body["bearer_token"])


class TlsFileError(Exception):
    """A ``tls`` file cannot be used; ``key`` is the option (``cert_file``), the message says why."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


@dataclass(frozen=True)
class TlsMaterial:
    """What the files hold, checked: PEM bytes for grpc, and a ready server context for aiohttp."""

    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None
    context: ssl.SSLContext

    def __repr__(self) -> str:
        return "TlsMaterial(...)"  # never the private key


class _Encrypted(Exception):
    """The key file asks for a passphrase (raised by the password callback instead of prompting)."""


def _ask_no_passphrase() -> str:
    raise _Encrypted


def _read(key: str, written: str) -> bytes:
    path = Path(written).expanduser()
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsFileError(key, f"{written}: no such file") from None
    except IsADirectoryError:
        raise TlsFileError(key, f"{written} is a directory, not a file") from None
    except PermissionError:
        raise TlsFileError(key, f"{written}: permission denied") from None
    except OSError as exc:
        raise TlsFileError(key, f"{written}: cannot read it ({exc.strerror or type(exc).__name__})") from None


def _pem_text(key: str, written: str, data: bytes, convert: str) -> str:
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise TlsFileError(key, f"{written} is not PEM text (a DER file? convert it: {convert})") from None


def load_tls(tls: TlsConfig) -> TlsMaterial:
    """Read and check the files of ``tls``; the server context has ``min_version`` and, with a client CA, requires client certificates.

    Raises:
        TlsFileError: the first problem :func:`tls_problems` finds.
    """
    material, problems = _load(tls)
    if problems:
        raise problems[0]
    assert material is not None
    return material


def tls_problems(tls: TlsConfig) -> list[TlsFileError]:
    """Every problem of the files of ``tls``: missing, unreadable, not PEM, encrypted, a key that is not the certificate's."""
    return _load(tls)[1]


def _load(tls: TlsConfig) -> tuple[TlsMaterial | None, list[TlsFileError]]:
    problems: list[TlsFileError] = []

    def attempt(step: Callable[[], bytes]) -> bytes | None:
        try:
            return step()
        except TlsFileError as exc:
            problems.append(exc)
            return None

    cert_chain = attempt(lambda: _certificates("cert_file", tls.cert_file))
    private_key = attempt(lambda: _private_key(tls.key_file))
    client_ca = attempt(lambda: _certificates("client_ca_file", tls.client_ca_file)) if tls.client_ca_file else None
    if cert_chain is None or private_key is None:
        return None, problems
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # secure defaults, and no system CAs: clients are checked against client_ca_file only
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    try:
        context.load_cert_chain(Path(tls.cert_file).expanduser(), Path(tls.key_file).expanduser(),
                                password=_ask_no_passphrase)
    except _Encrypted:
        problems.append(TlsFileError("key_file", _encrypted(tls.key_file)))
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            problems.append(TlsFileError("key_file", f"does not match cert_file: {tls.key_file} is not the private "
                                                     f"key of the certificate in {tls.cert_file}"))
        else:
            problems.append(TlsFileError("key_file", f"{tls.key_file} holds no PEM private key"))
    except OSError as exc:  # a file changed since it was read a moment ago
        problems.append(TlsFileError("cert_file", f"{tls.cert_file}: cannot read it ({exc.strerror or type(exc).__name__})"))
    if problems:
        return None, sorted(problems, key=lambda p: _KEYS.index(p.key))
    if client_ca is not None:
        context.load_verify_locations(cadata=client_ca.decode("ascii"))
        context.verify_mode = ssl.CERT_REQUIRED
    return TlsMaterial(cert_chain, private_key, client_ca, context), []


def _certificates(key: str, written: str) -> bytes:
    """The bytes of a file of at least one PEM certificate, every one of which parses."""
    data = _read(key, written)
    text = _pem_text(key, written, data, f"openssl x509 -inform der -in {written} -out cert.pem")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=text)
    except ssl.SSLError:
        raise TlsFileError(key, f"{written} holds no PEM certificate") from None
    return data


def _private_key(written: str) -> bytes:
    """The bytes of a file with an unencrypted PEM private key (whether it parses shows when paired with the certificate)."""
    data = _read("key_file", written)
    text = _pem_text("key_file", written, data, f"openssl pkey -inform der -in {written} -out key.pem")
    if "-----BEGIN ENCRYPTED PRIVATE KEY-----" in text or "Proc-Type: 4,ENCRYPTED" in text:
        raise TlsFileError("key_file", _encrypted(written))
    if "PRIVATE KEY-----" not in text:
        raise TlsFileError("key_file", f"{written} holds no PEM private key")
    return data


def _encrypted(written: str) -> str:
    return (f"{written} is encrypted with a passphrase, which obs-pipeline cannot prompt for; "
            "store it unencrypted, readable only by the pipeline's user (mode 0600)")


class BearerToken:
    """Checks ``Authorization: Bearer <token>`` in constant time; shows as ``BearerToken([REDACTED])``."""

    __slots__ = ("_expected",)

    def __init__(self, token: Secret) -> None:
        self._expected = token.reveal().encode()

    def __repr__(self) -> str:
        return "BearerToken([REDACTED])"

    def refusal(self, authorization: str | None) -> str | None:
        """None when ``authorization`` (the header's value) carries the token, else why not, for the sender.

        The scheme is case-insensitive (RFC 9110 §11.1); the comparison takes the same time
        wherever the first wrong byte is.
        """
        if not authorization:
            return MISSING_TOKEN
        scheme, _, credentials = authorization.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            return MISSING_TOKEN
        given = credentials.encode("utf-8", "replace")
        return None if hmac.compare_digest(given, self._expected) else INVALID_TOKEN


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (127.0.0.0/8, ::1, localhost); a wildcard or a name is not."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any address


def _token_problem(token: Secret) -> str | None:
    text = token.reveal()
    if not text:
        return "must not be empty"
    if not all("!" <= ch <= "~" for ch in text):
        return "must be printable ASCII without spaces, as an HTTP header and gRPC metadata carry it (RFC 6750)"
    return None


def check(
    prefix: str, transport: str, endpoint: str, tls: TlsConfig | None, auth: AuthConfig | None,
) -> list[Problem]:
    """Validate-time problems of one protocol's listener: its files and token (errors), its exposure (warnings).

    ``prefix`` is the protocol's path in the component (``protocols.grpc``); ``transport`` is ``grpc`` or ``http``.
    """
    problems: list[Problem] = []
    if tls is not None:
        problems += [Problem(f"{prefix}.tls.{exc.key}", str(exc)) for exc in tls_problems(tls)]
        if transport == "grpc" and tls.min_version != DEFAULT_MIN_VERSION:
            problems.append(Problem(
                f"{prefix}.tls.min_version",
                f"gRPC's Python server cannot require TLS {tls.min_version}: it always offers TLS 1.2 and 1.3; "
                f'use "{DEFAULT_MIN_VERSION}" (the default), or require 1.3 on protocols.http only',
            ))
    if auth is not None and (reason := _token_problem(auth.bearer_token)):
        problems.append(Problem(f"{prefix}.auth.bearer_token", reason))
    try:
        host, _port = parse_endpoint(endpoint)
    except ValueError:
        return problems  # the graph pass reports it
    if is_loopback(host):
        return problems
    if auth is None:
        problems.append(Problem(
            f"{prefix}.endpoint",
            f"{endpoint} is not a loopback address and {prefix}.auth is not set: anyone who can reach it can send "
            f"telemetry; set {prefix}.auth.bearer_token (and {prefix}.tls), or listen on 127.0.0.1",
            severity="warning",
        ))
    elif tls is None:
        problems.append(Problem(
            f"{prefix}.auth.bearer_token",
            f"the token travels in clear text: {endpoint} is not a loopback address and {prefix}.tls is not set; "
            f"set {prefix}.tls, or listen on 127.0.0.1",
            severity="warning",
        ))
    return problems


def describe(tls: TlsConfig | None, auth: AuthConfig | None) -> str:
    """`` over mutual TLS, with a bearer token`` for the "listening on" log line; empty when neither is set."""
    parts = []
    if tls is not None:
        parts.append("over mutual TLS" if tls.client_ca_file else "over TLS")
    if auth is not None:
        parts.append("with a bearer token")
    return (" " + ", ".join(parts)) if parts else ""


__all__ = [
    "DEFAULT_MIN_VERSION",
    "INVALID_TOKEN",
    "MISSING_TOKEN",
    "TLS_VERSIONS",
    "AuthConfig",
    "BearerToken",
    "TlsConfig",
    "TlsFileError",
    "TlsMaterial",
    "check",
    "describe",
    "is_loopback",
    "load_tls",
    "parse_auth",
    "parse_tls",
    "tls_problems",
]
