"""The ``tls`` block made usable: PEM files read at start, an ``ssl.SSLContext`` for HTTP.

Files are read when the exporter starts, so a file that went missing since ``validate`` stops the
pipeline before it accepts data, with the path and the OS reason (a :class:`StartupError`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from obs_pipeline.errors import StartupError
from obs_pipeline.exporters.otlp.config import TlsConfig

__all__ = ["Pem", "read_pem", "ssl_context"]


@dataclass(frozen=True)
class Pem:
    """The PEM bytes of the ``tls`` files that are set (None for the others)."""

    ca: bytes | None
    cert: bytes | None
    key: bytes | None


def read_pem(tls: TlsConfig, what: str) -> Pem:
    """Read ``ca_file``, ``cert_file`` and ``key_file``.

    Raises:
        StartupError: a file cannot be read.
    """
    return Pem(ca=_read(tls.ca_file, "ca_file", what), cert=_read(tls.cert_file, "cert_file", what),
               key=_read(tls.key_file, "key_file", what))


def _read(path: str, key: str, what: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise StartupError(f"{what}: cannot read tls.{key} {path}: {exc.strerror or type(exc).__name__}") from exc


def ssl_context(tls: TlsConfig, what: str) -> ssl.SSLContext:
    """A client context: the system's trust store or ``ca_file``, the client certificate, verification as configured.

    Raises:
        StartupError: a file cannot be read or is not a valid certificate or key.
    """
    pem = read_pem(tls, what)  # each file's own error first, with its key and path
    try:
        context = ssl.create_default_context(cadata=pem.ca.decode("ascii", "replace") if pem.ca else None)
    except ssl.SSLError as exc:
        raise StartupError(f"{what}: tls.ca_file {tls.ca_file} holds no usable certificate: "
                           f"{exc.reason or type(exc).__name__}") from exc
    if tls.cert_file:
        try:
            context.load_cert_chain(str(Path(tls.cert_file).expanduser()),
                                    str(Path(tls.key_file).expanduser()) if tls.key_file else None)
        except (ssl.SSLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, ssl.SSLError) else exc.strerror
            raise StartupError(f"{what}: tls.cert_file and tls.key_file are not a usable certificate and key: "
                               f"{reason or type(exc).__name__}") from exc
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
