"""The ``Export*ServiceResponse`` a destination answers with, read for its ``partial_success``.

OTLP lets a destination take a request and reject some of its items: the response then carries
``partial_success`` with ``rejected_spans`` / ``rejected_data_points`` / ``rejected_log_records``
and an ``error_message``. That is success (never retried); the rejected items are counted by the
engine. A message with nothing rejected is only a warning. An empty body is full success.

The destination's message is its own free text: it is logged, shortened and with control
characters replaced, so it can neither flood the log nor forge a log line.
"""

from __future__ import annotations

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from obs_pipeline.components import PartialSuccess
from obs_pipeline.signals import Signal

__all__ = ["MAX_MESSAGE", "UnreadableResponse", "read_response"]

#: Characters of a destination's message that are logged.
MAX_MESSAGE = 300
_RESPONSE: dict[Signal, type[Message]] = {
    Signal.TRACES: ExportTraceServiceResponse,
    Signal.METRICS: ExportMetricsServiceResponse,
    Signal.LOGS: ExportLogsServiceResponse,
}
_REJECTED = {Signal.TRACES: "rejected_spans", Signal.METRICS: "rejected_data_points", Signal.LOGS: "rejected_log_records"}


class UnreadableResponse(ValueError):
    """A success response whose body is not an Export*ServiceResponse (a proxy's page, say)."""


def read_response(signal: Signal, body: bytes, *, json: bool = False) -> tuple[PartialSuccess | None, str]:
    """``(partial success or None, warning)`` from a success response's body.

    Returns:
        A :class:`PartialSuccess` when items were rejected (None otherwise), and the
        destination's message when it sent one with nothing rejected ("" otherwise).

    Raises:
        UnreadableResponse: the body is not a response of this signal.
    """
    if not body.strip():
        return None, ""
    response = _RESPONSE[signal]()
    try:
        if json:
            json_format.Parse(body, response, ignore_unknown_fields=True)
        else:
            response.ParseFromString(body)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError, RecursionError) as exc:
        raise UnreadableResponse(f"not an OTLP {signal.value} export response") from exc
    if not response.HasField("partial_success"):
        return None, ""
    partial = response.partial_success  # type: ignore[attr-defined]
    rejected = int(getattr(partial, _REJECTED[signal]))
    message = clean(partial.error_message)
    if rejected > 0:
        return PartialSuccess(rejected, message), ""
    return None, message


def clean(text: str) -> str:
    """A destination's text, fit for one log line: control characters replaced, at most :data:`MAX_MESSAGE` long."""
    flat = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return flat if len(flat) <= MAX_MESSAGE else flat[: MAX_MESSAGE - 1] + "…"
