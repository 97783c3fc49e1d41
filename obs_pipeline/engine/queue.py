"""The exporter side of every pipeline: a bounded queue, consumers, timeouts and retries.

After the collector's exporterhelper, with two deliberate differences:

* The queue is sized in items (spans, data points, log records), not requests, so memory is
  bounded whatever the batch size. When it is full the pipeline *refuses* new data with a
  retryable error (backpressure to the sender); it never drops silently.
* On shutdown the queue is drained within the deadline; what cannot be delivered by then is
  counted (``failed_items{reason="shutdown"}``) and logged, never lost without a trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from obs_pipeline.components import Exporter, Host
from obs_pipeline.errors import PermanentError, RetryableError
from obs_pipeline.signals import Message, Signal
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.units import parse_duration

log = logging.getLogger("obs_pipeline.exporter")

DEFAULT_QUEUE_SIZE = 20_000
FAILURE_REASONS = ("permanent_error", "retries_exhausted", "retries_disabled", "shutdown")


@dataclass(frozen=True)
class QueueSettings:
    """``sending_queue``: see ``schemas/common.schema.json``."""

    enabled: bool = True
    queue_size: int = DEFAULT_QUEUE_SIZE
    num_consumers: int = 1

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> QueueSettings:
        """Build from the validated config block (defaults already filled in)."""
        return cls(**raw) if raw else cls()


@dataclass(frozen=True)
class RetrySettings:
    """``retry_on_failure``: see ``schemas/common.schema.json``. Durations in seconds."""

    enabled: bool = True
    initial_interval: float = 5.0
    max_interval: float = 30.0
    max_elapsed_time: float = 300.0
    multiplier: float = 1.5
    randomization_factor: float = 0.5

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> RetrySettings:
        """Build from the validated config block (defaults already filled in)."""
        if not raw:
            return cls()
        durations = {k: parse_duration(v) for k, v in raw.items() if k.endswith(("_interval", "_time"))}
        return cls(**{**raw, **durations})

    def next_delay(self, interval: float) -> float:
        """A jittered wait around ``interval``: interval * (1 +- randomization_factor)."""
        spread = interval * self.randomization_factor
        return interval - spread + random.random() * 2 * spread  # noqa: S311 - jitter, not crypto


class QueuedExporter:
    """Wraps one exporter (shared by every pipeline that lists it) in a queue with retries."""

    def __init__(
        self,
        exporter: Exporter,
        metrics: SelfMetrics,
        queue: QueueSettings,
        retry: RetrySettings,
        timeout: float | None = None,
    ) -> None:
        self.exporter = exporter
        self.id = exporter.id
        self.queue_settings = queue
        self.retry = retry
        self.timeout = timeout
        self._queue: deque[tuple[Signal, Message, int, bytes | None]] = deque()
        self._items = 0
        self._inflight: dict[asyncio.Task[Any], int] = {}
        self._wakeup = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._stop_deadline: float | None = None
        self._closing = False
        self._closed = asyncio.Event()
        self._started = False
        self._sent = {s: metrics.exporter_sent.labels(exporter=self.id, signal=s.value) for s in Signal}
        self._metrics = metrics
        # Every failure series exists from the start at 0, so "alert if it grows" rules work at once.
        for signal in Signal:
            for reason in FAILURE_REASONS:
                metrics.exporter_failed.labels(exporter=self.id, signal=signal.value, reason=reason)
        self._queue_gauge = metrics.exporter_queue_size.labels(exporter=self.id)
        self._send_duration = metrics.exporter_send_duration.labels(exporter=self.id)
        metrics.exporter_queue_capacity.labels(exporter=self.id).set(queue.queue_size if queue.enabled else 0)

    @property
    def queued(self) -> bool:
        """Whether batches go through the queue (else the caller waits for the export)."""
        return self.queue_settings.enabled

    def has_room(self, items: int) -> bool:
        """Whether a batch of ``items`` fits now. An empty queue takes any batch, however large."""
        return not self._closing and (self._items == 0 or self._items + items <= self.queue_settings.queue_size)

    def pending_items(self) -> int:
        """Items queued or being exported."""
        return self._items

    def put_nowait(self, signal: Signal, data: Message, items: int, wire: bytes | None = None) -> None:
        """Enqueue a batch the caller checked with :meth:`has_room`."""
        self._queue.append((signal, data, items, wire))
        self._items += items
        self._queue_gauge.set(self._items)
        self._wakeup.set()

    async def send_now(self, signal: Signal, data: Message, items: int, wire: bytes | None = None) -> None:
        """Export synchronously (``sending_queue.enabled: false``), with the same retries.

        The sender is still waiting, so a failure is raised to it (the receiver answers 503 or
        500) instead of being counted as a drop: nothing was acknowledged, nothing is lost.

        Raises:
            RetryableError: retries ran out on a transient failure.
            PermanentError: the failure cannot be fixed by retrying.
        """
        await self._deliver(signal, data, items, wire, synchronous=True)

    async def start(self, host: Host) -> None:
        """Start the exporter, then its queue consumers."""
        await self.exporter.start(host)
        self._started = True
        if self.queued:
            self._workers = [
                asyncio.create_task(self._work(), name=f"exporter {self.id} #{i}")
                for i in range(self.queue_settings.num_consumers)
            ]

    async def shutdown(self, deadline: float) -> None:
        """Stop taking data, deliver what is queued until ``deadline``, count the rest, close."""
        if self._closing:
            return
        self._closing = True
        self._stop_deadline = deadline
        self._closed.set()
        self._wakeup.set()
        if self._workers:
            _done, pending = await asyncio.wait(self._workers, timeout=max(0.0, deadline - time.monotonic()))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._count_undelivered()
        if self._started:
            try:
                await asyncio.wait_for(self.exporter.shutdown(), timeout=max(0.5, deadline - time.monotonic()))
            except (TimeoutError, Exception) as exc:
                log.error("exporter %s: shutdown failed: %s", self.id, type(exc).__name__)

    def _count_undelivered(self) -> None:
        lost = self._items
        for signal, _data, items, _wire in self._queue:
            self._metrics.exporter_failed.labels(exporter=self.id, signal=signal.value, reason="shutdown").inc(items)
        self._queue.clear()
        self._items = 0
        self._queue_gauge.set(0)
        if lost:
            log.error("exporter %s: %d items were still queued at the shutdown deadline and were not delivered",
                      self.id, lost)

    async def _work(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            signal, data, items, wire = self._queue.popleft()
            try:
                await self._deliver(signal, data, items, wire)
            except asyncio.CancelledError:
                self._metrics.exporter_failed.labels(exporter=self.id, signal=signal.value, reason="shutdown").inc(items)
                raise
            finally:
                self._items -= items
                self._queue_gauge.set(self._items)

    async def _deliver(
        self, signal: Signal, data: Message, items: int, wire: bytes | None = None, *, synchronous: bool = False,
    ) -> None:
        """Export with timeout and retries; count the outcome.

        Queued batches were acknowledged already, so their failures are counted and logged here
        and never raised. ``synchronous`` batches are not acknowledged yet: failures are raised.
        """
        started = time.monotonic()
        interval = self.retry.initial_interval
        while True:
            try:
                if self.timeout:
                    await asyncio.wait_for(self.exporter.export_wire(signal, data, wire), self.timeout)
                else:
                    await self.exporter.export_wire(signal, data, wire)
            except (RetryableError, TimeoutError) as exc:
                hint = exc.retry_after if isinstance(exc, RetryableError) else None
                delay = max(self.retry.next_delay(interval), hint or 0.0)
                reason = self._give_up_reason(started, delay)
                if reason is None:
                    log.warning("exporter %s: export failed, retrying in %.1fs: %s", self.id, delay, exc or "timeout")
                    reason = await self._wait_to_retry(delay)
                if reason:
                    if synchronous:
                        raise RetryableError(f"{self.id}: {reason}: {exc}", retry_after=hint) from exc
                    self._fail(signal, items, reason, exc)
                    return
                interval = min(interval * self.retry.multiplier, self.retry.max_interval)
                continue
            except PermanentError as exc:
                if synchronous:
                    raise
                self._fail(signal, items, "permanent_error", exc)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("exporter %s: unexpected %s", self.id, type(exc).__name__)
                if synchronous:
                    raise PermanentError(f"{self.id}: unexpected {type(exc).__name__}") from exc
                self._fail(signal, items, "permanent_error", exc, logged=True)
                return
            self._sent[signal].inc(items)
            self._send_duration.observe(time.monotonic() - started)
            return

    def _give_up_reason(self, started: float, delay: float) -> str | None:
        """Why the next retry should not happen, checked *before* sleeping (or None)."""
        now = time.monotonic()
        if not self.retry.enabled:
            return "retries_disabled"
        if self.retry.max_elapsed_time and now + delay - started > self.retry.max_elapsed_time:
            return "retries_exhausted"
        if self._stop_deadline is not None and now + delay > self._stop_deadline:
            return "shutdown"
        return None

    async def _wait_to_retry(self, delay: float) -> str | None:
        """Sleep ``delay``; if shutdown starts meanwhile and the retry would miss its deadline, give up."""
        wake_at = time.monotonic() + delay
        if not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), delay)
        if self._stop_deadline is not None and wake_at > self._stop_deadline:
            return "shutdown"
        await asyncio.sleep(max(0.0, wake_at - time.monotonic()))
        return None

    def _fail(self, signal: Signal, items: int, reason: str, exc: BaseException, *, logged: bool = False) -> None:
        self._metrics.exporter_failed.labels(exporter=self.id, signal=signal.value, reason=reason).inc(items)
        if not logged:
            log.error("exporter %s: dropped %d %s (%s): %s", self.id, items, signal.value, reason, exc)
