"""What every exporter shares: transport exceptions mapped to retryable or permanent, in one place.

Modelled on httpx's ``map_httpcore_exceptions``: a context manager around the transport call
that maps each exception it knows to the most specific
:class:`~obs_pipeline.errors.RetryableError` or :class:`~obs_pipeline.errors.PermanentError`
and raises it ``from`` the original; an exception it does not know passes unchanged (the engine
retries those like retryable ones, as the collector does). The gRPC and HTTP rows are the OTLP
specification's retryable codes and statuses; the ``OSError`` rows are ours, for local
destinations (files, pipes):

=============================================  ==========================================
``OSError`` EPIPE / ECONNRESET (closed pipe)   permanent: nobody will read it again, unless
                                               the exporter reopens its destination
                                               (``reopens=True``): then retryable
``OSError`` ENOSPC, EIO, EAGAIN, anything else retryable (disk full, a stuck reader)
``TimeoutError``                               retryable
``grpc.aio.AioRpcError``                       CANCELLED, DEADLINE_EXCEEDED, ABORTED,
                                               OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS:
                                               retryable; RESOURCE_EXHAUSTED: retryable only
                                               with ``google.rpc.RetryInfo``; others permanent
``aiohttp.ClientResponseError``                429, 502, 503, 504: retryable; other 4xx/5xx:
                                               permanent
``aiohttp.ClientConnectionError``              retryable
=============================================  ==========================================

A server's throttle hint (gRPC ``RetryInfo.retry_delay``, HTTP ``Retry-After`` in seconds or as
an HTTP date) becomes ``retry_after``, which the engine uses as a lower bound on its backoff.

Third-party classes are looked up only in modules that are already imported: an exception of
grpc or aiohttp cannot exist before its library is loaded, so an exporter that does not use
grpc never imports it. Messages name the operation, the OS reason, the gRPC code or the HTTP
status; never a server's free text, a URL or a header, which may quote telemetry or secrets.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

from obs_pipeline.errors import ExportError, PermanentError, RetryableError

__all__ = ["GRPC_RETRYABLE", "HTTP_RETRYABLE", "map_errors", "map_exception"]

#: gRPC status codes (names) the OTLP spec retries; RESOURCE_EXHAUSTED only with RetryInfo.
GRPC_RETRYABLE = frozenset({"CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE", "DATA_LOSS"})
#: HTTP statuses the OTLP spec retries.
HTTP_RETRYABLE = frozenset({429, 502, 503, 504})
#: ``errno`` values of a pipe or connection whose other end is gone.
CLOSED_PIPE = frozenset({errno.EPIPE, errno.ECONNRESET})
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


@contextlib.contextmanager
def map_errors(what: str, *, reopens: bool = False) -> Iterator[None]:
    """Map the transport exceptions raised in the block (see the module docstring).

    Args:
        what: the operation, for the message: ``"jsonl_audit: cannot write /var/audit.jsonl"``.
        reopens: the next attempt opens the destination again (a path, a new connection), so a
            closed pipe may have a new reader by then: retryable instead of permanent.

    Raises:
        RetryableError: the block raised a transient transport error.
        PermanentError: the block raised one that retrying cannot fix.
    """
    try:
        yield
    except ExportError:
        raise
    except Exception as exc:
        mapped = map_exception(exc, what, reopens=reopens)
        if mapped is None:
            raise
        raise mapped from exc


def map_exception(exc: BaseException, what: str, *, reopens: bool = False) -> ExportError | None:
    """The error ``exc`` maps to (message ``"<what>: <reason>"``), or None when it is not a transport error."""
    for mapper in _third_party_mappers():
        mapped: ExportError | None = mapper(exc, what)
        if mapped is not None:
            return mapped
    if isinstance(exc, TimeoutError):  # before OSError: TimeoutError is one
        return RetryableError(f"{what}: timed out")
    if isinstance(exc, OSError):
        reason = exc.strerror or type(exc).__name__
        if exc.errno in CLOSED_PIPE and not reopens:
            return PermanentError(f"{what}: {reason}")
        return RetryableError(f"{what}: {reason}")
    return None


def _third_party_mappers() -> list[Callable[[BaseException, str], ExportError | None]]:
    """The mappers of the transport libraries loaded in this process.

    They run before the ``OSError`` rule: aiohttp's connection errors are ``OSError`` subclasses
    too, and are retryable whatever their errno.
    """
    mappers: list[Callable[[BaseException, str], ExportError | None]] = []
    if "grpc.aio" in sys.modules:
        mappers.append(_map_grpc)
    if "aiohttp" in sys.modules:
        mappers.append(_map_aiohttp)
    return mappers


# --- grpc ---------------------------------------------------------------------------------------

def _map_grpc(exc: BaseException, what: str) -> ExportError | None:
    aio = sys.modules["grpc.aio"]
    if not isinstance(exc, aio.AioRpcError):
        return None
    code = exc.code().name
    delay = _retry_info_delay(exc.trailing_metadata())
    message = f"{what}: gRPC {code}"
    if code in GRPC_RETRYABLE or (code == "RESOURCE_EXHAUSTED" and delay is not None):
        return RetryableError(message, retry_after=delay)
    return PermanentError(message)


def _retry_info_delay(metadata: Any) -> float | None:
    """``RetryInfo.retry_delay`` in seconds from the ``grpc-status-details-bin`` trailer, or None."""
    from google.rpc import error_details_pb2, status_pb2  # noqa: PLC0415 - only for gRPC errors

    for key, value in metadata or ():
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except Exception:  # a malformed trailer is no hint
            return None
        for detail in status.details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                seconds: float = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
                return max(0.0, seconds)
    return None


# --- aiohttp ------------------------------------------------------------------------------------

def _map_aiohttp(exc: BaseException, what: str) -> ExportError | None:
    aiohttp = sys.modules["aiohttp"]
    if isinstance(exc, aiohttp.ClientResponseError):
        status = exc.status
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "unknown status"
        message = f"{what}: HTTP {status} {phrase}"
        if status in HTTP_RETRYABLE:
            return RetryableError(message, retry_after=_retry_after(exc.headers))
        return PermanentError(message)
    if isinstance(exc, aiohttp.ClientConnectionError):
        number = exc.errno if isinstance(exc, OSError) else None  # its strerror quotes the address
        return RetryableError(f"{what}: {os.strerror(number) if number else type(exc).__name__}")
    return None


def _retry_after(headers: Any) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None when absent or unreadable."""
    value: object = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT
        return None
    return max(0.0, when.timestamp() - time.time())
