"""OTLP/HTTP out: one ``aiohttp`` session per exporter, a protobuf POST per batch.

Shared by the ``otlp`` exporter (``protocol: http/protobuf``) and ``logfire``. Each request is
``POST <signal URL>`` with ``Content-Type: application/x-protobuf``, the configured headers and,
with ``compression: gzip``, a gzip body (``Content-Encoding: gzip``); a large body is compressed
in a worker thread so the event loop keeps serving receivers. A 2xx answer is success and its
body is read for ``partial_success``; any other status is raised as
``aiohttp.ClientResponseError`` (with the response headers, so ``Retry-After`` is honoured) for
:func:`~obs_pipeline.exporters._helper.map_errors`: 429, 502, 503, 504 retryable, the rest
permanent. Redirects are not followed (a 3xx is permanent): a POST cannot be replayed safely
through one. Proxy environment variables are not used.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Mapping

import aiohttp

from obs_pipeline import __version__
from obs_pipeline.exporters.otlp.config import TlsConfig
from obs_pipeline.exporters.otlp.tls import ssl_context
from obs_pipeline.secret import Secret
from obs_pipeline.signals import Signal

__all__ = ["PROTOBUF", "HttpTransport"]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
GZIP_LEVEL = 6  # zlib's default, as the collector's gzip writer
#: Bodies at least this large are compressed in a worker thread (about a millisecond of work).
OFFLOAD_BYTES = 64 * 1024
#: At most this much of a response body is read (an OTLP response is a few bytes).
MAX_RESPONSE_BYTES = 1 << 20


class HttpTransport:
    """POSTs protobuf bodies to one URL per signal over one session."""

    def __init__(self, *, urls: Mapping[Signal, str], headers: Mapping[str, Secret], compression: str,
                 tls: TlsConfig, what: str) -> None:
        self.urls = dict(urls)
        self.gzip = compression == "gzip"
        self.tls = tls
        self.what = what
        self._session: aiohttp.ClientSession | None = None
        # Revealed here, for the wire only; this dict is never printed.
        self._headers: dict[str, str] = {"User-Agent": f"obs-pipeline/{__version__}"}
        self._headers.update((name, value.reveal()) for name, value in headers.items())
        self._headers["Content-Type"] = PROTOBUF
        if self.gzip:
            self._headers["Content-Encoding"] = "gzip"

    @property
    def https(self) -> bool:
        """Whether any signal's URL is https:// (TLS is then set up)."""
        return any(url.lower().startswith("https://") for url in self.urls.values())

    @property
    def mode(self) -> str:
        """``plaintext``, ``TLS`` or ``mutual TLS``: for the start log line."""
        if not self.https:
            return "plaintext"
        return "mutual TLS" if self.tls.cert_file else "TLS"

    async def open(self) -> None:
        """Create the session (connections are made on the first request).

        Raises:
            StartupError: a tls file cannot be read or is not usable.
        """
        ssl: object = ssl_context(self.tls, self.what) if self.https else True
        connector = aiohttp.TCPConnector(ssl=ssl)  # type: ignore[arg-type]
        self._session = aiohttp.ClientSession(
            connector=connector, trust_env=False, timeout=aiohttp.ClientTimeout(total=None),
        )

    async def send(self, signal: Signal, payload: bytes) -> tuple[bytes, bool]:
        """POST ``payload``: ``(response body, whether it is JSON)`` for a 2xx answer.

        Raises:
            aiohttp.ClientResponseError: any other status (the caller maps it).
            aiohttp.ClientError: the request could not be made.
        """
        session = self._session
        if session is None:
            raise aiohttp.ClientConnectionError("the session is closed")
        body = await self._encode(payload)
        async with session.post(
            self.urls[signal], data=body, headers=self._headers, allow_redirects=False,
            server_hostname=self.tls.server_name_override or None,
        ) as response:
            content = await _read_capped(response)
            if not 200 <= response.status < 300:
                raise aiohttp.ClientResponseError(
                    response.request_info, response.history, status=response.status,
                    message=response.reason or "", headers=response.headers,
                )
            return content, response.content_type == JSON

    async def _encode(self, payload: bytes) -> bytes:
        if not self.gzip:
            return payload
        if len(payload) >= OFFLOAD_BYTES:
            return await asyncio.to_thread(gzip.compress, payload, GZIP_LEVEL, mtime=0)
        return gzip.compress(payload, GZIP_LEVEL, mtime=0)

    async def close(self) -> None:
        """Close the session and its connections."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    """The body, or its first :data:`MAX_RESPONSE_BYTES` (then it will not parse, which is reported)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_RESPONSE_BYTES:
            break
    return b"".join(chunks)
