"""``google.rpc.Status`` replies, with ``RetryInfo`` when the sender should back off.

OTLP/HTTP error bodies are a ``Status`` encoded like the request; OTLP/gRPC carries the same
``Status`` in the ``grpc-status-details-bin`` trailer, where the Go exporters (and the
collector) look for ``RetryInfo``. The Python SDK's gRPC exporter reads a bare ``RetryInfo``
from the ``google.rpc.retryinfo-bin`` trailer instead, so gRPC refusals carry both.
"""

from __future__ import annotations

import math

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status

GRPC_DETAILS_KEY = "grpc-status-details-bin"
PYTHON_SDK_RETRY_INFO_KEY = "google.rpc.retryinfo-bin"


def retry_info(retry_after: float) -> RetryInfo:
    """A ``RetryInfo`` asking for at least ``retry_after`` seconds before the next attempt."""
    seconds = max(0.0, retry_after)
    whole = math.floor(seconds)
    return RetryInfo(retry_delay=Duration(seconds=whole, nanos=int((seconds - whole) * 1e9)))


def status(code: int, message: str, retry_after: float | None = None) -> Status:
    """A ``google.rpc.Status``; with ``retry_after`` it carries a packed ``RetryInfo`` detail."""
    st = Status(code=code, message=message)
    if retry_after is not None:
        st.details.add().Pack(retry_info(retry_after))
    return st


def grpc_trailers(code: int, message: str, retry_after: float | None) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata for a failed gRPC call: the rich status, and RetryInfo for the Python SDK."""
    if retry_after is None:
        return ()
    st = status(code, message, retry_after)
    return (
        (GRPC_DETAILS_KEY, st.SerializeToString()),
        (PYTHON_SDK_RETRY_INFO_KEY, retry_info(retry_after).SerializeToString()),
    )


def encode_status(st: Status, as_json: bool) -> bytes:
    """Encode a ``Status`` for an OTLP/HTTP error body (protobuf or JSON, like the request)."""
    if as_json:
        return str(json_format.MessageToJson(st, indent=None)).encode()
    body: bytes = st.SerializeToString()
    return body
