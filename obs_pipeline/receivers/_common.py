"""What every receiver needs: its counters, and how a pipeline failure is told to a sender.

The counters move once per request or batch. Their label children are looked up once and
cached, because ``Counter.labels`` takes a lock and builds a tuple: too much on the gRPC hot
path.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from obs_pipeline.errors import (
    PermanentError,
    ProcessingError,
    RefusedError,
    RetryableError,
    describe_exception,
)
from obs_pipeline.signals import Signal

if TYPE_CHECKING:
    from obs_pipeline.components import Consumer
    from obs_pipeline.telemetry.logs import ComponentLogger
    from obs_pipeline.telemetry.metrics import SelfMetrics


# google.rpc.Code values (gRPC status codes), as plain ints so HTTP-only code needs no grpc.
INVALID_ARGUMENT = 3
RESOURCE_EXHAUSTED = 8
INTERNAL = 13
UNAVAILABLE = 14
UNAUTHENTICATED = 16


class Counters:
    """The ``obs_pipeline_receiver_*`` counters of one receiver and transport."""

    def __init__(self, metrics: SelfMetrics, receiver: str, transport: str) -> None:
        self._metrics = metrics
        self._receiver = receiver
        self._transport = transport
        self._accepted: dict[Signal, Any] = {}
        self._refused: dict[tuple[Signal, str], Any] = {}
        self._malformed = metrics.receiver_malformed_requests.labels(receiver=receiver, transport=transport)

    def accepted(self, signal: Signal) -> Any:
        """The accepted-items counter child for ``signal`` (cached: call ``.inc(n)`` on it)."""
        child = self._accepted.get(signal)
        if child is None:
            child = self._metrics.receiver_accepted.labels(
                receiver=self._receiver, transport=self._transport, signal=signal.value,
            )
            self._accepted[signal] = child
        return child

    def refused(self, signal: Signal, reason: str, items: int) -> None:
        """Count ``items`` of ``signal`` not passed on, for ``reason``."""
        child = self._refused.get((signal, reason))
        if child is None:
            child = self._metrics.receiver_refused.labels(
                receiver=self._receiver, transport=self._transport, signal=signal.value, reason=reason,
            )
            self._refused[(signal, reason)] = child
        child.inc(items)

    def malformed(self, requests: int = 1) -> None:
        """Count requests or lines that could not be decoded (their item count is unknown)."""
        self._malformed.inc(requests)

    def unauthenticated(self) -> Any:
        """The unauthenticated-requests counter child (call ``.inc()``); made on first use, so it is 0 from then on."""
        return self._metrics.receiver_unauthenticated_requests.labels(receiver=self._receiver, transport=self._transport)

    def draining(self) -> None:
        """Count a request refused unread because the receiver is shutting down (rare, so not cached)."""
        self._metrics.receiver_draining_requests.labels(receiver=self._receiver, transport=self._transport).inc()

    def repaired(self, signal: Signal, repairs: Mapping[str, int]) -> None:
        """Count values repaired instead of refused, by reason (``{"invalid_utf8": 2}``); rare, so not cached."""
        for reason, count in repairs.items():
            self._metrics.receiver_repaired_values.labels(
                receiver=self._receiver, transport=self._transport, signal=signal.value, reason=reason,
            ).inc(count)


@dataclass(frozen=True)
class Outcome:
    """How a failed request is answered: the status in both transports and the metric reason."""

    grpc_code: int
    http_status: int
    reason: str
    message: str
    retry_after: float | None = None


def outcome_of(exc: Exception, log: ComponentLogger, signal: Signal) -> Outcome:
    """Map what the pipeline raised to the answer, after the collector's rules.

    A refusal (full queue, shutting down) and anything unexpected are retryable (UNAVAILABLE /
    503) so the sender backs off and retries; a permanent failure is INTERNAL / 500. Unexpected
    exceptions are logged (class and place only).
    """
    if isinstance(exc, RefusedError):
        return Outcome(UNAVAILABLE, 503, exc.reason, f"pipeline refused data: {exc.reason}", exc.retry_after)
    if isinstance(exc, RetryableError):
        return Outcome(UNAVAILABLE, 503, "export_failed", "export failed, retry later", exc.retry_after or 1.0)
    if isinstance(exc, PermanentError):
        return Outcome(INTERNAL, 500, "export_failed", "export failed permanently")
    if isinstance(exc, ProcessingError):
        return Outcome(INTERNAL, 500, "processing_error", "a processor failed on this data")
    log.warning("unexpected %s while handling %s; answered as retryable", describe_exception(exc), signal.value)
    return Outcome(UNAVAILABLE, 503, "internal_error", "internal error, retry later")


def bind_failure_reason(host: str, port: int, error: BaseException | None = None) -> str:
    """Why ``host:port`` cannot be listened on, in words (``address already in use``).

    grpc only says "Failed to bind", so after a failure we try the bind ourselves to learn the
    errno. ``error``, when it is an ``OSError`` with an errno, is used directly.
    """
    def words(code: int) -> str:
        if code == errno.EADDRINUSE:
            return "address already in use"
        return os.strerror(code).lower()

    if isinstance(error, OSError) and error.errno:
        return words(error.errno)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return f"cannot resolve host {host!r}"
    for family, type_, proto, _name, addr in infos:
        with socket.socket(family, type_, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(addr)
            except OSError as exc:
                return words(exc.errno) if exc.errno else str(exc)
    return "bind failed"


class TransportServer:
    """What every transport of a receiver holds: its config, its consumers, its counters."""

    transport = ""  # the ``transport`` label of its counters: grpc, http

    def __init__(
        self, receiver_id: str, cfg: Any, consumers: Mapping[Signal, Consumer],
        metrics: SelfMetrics, log: ComponentLogger,
    ) -> None:
        self.receiver_id = receiver_id
        self.cfg = cfg
        self.consumers = consumers
        self.log = log
        self.counters = Counters(metrics, receiver_id, self.transport)
