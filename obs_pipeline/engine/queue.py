"""The exporter side of every pipeline: a bounded queue, consumers, timeouts and retries.

After the collector's exporterhelper, with two deliberate differences:

* The queue is sized in items (spans, data points, log records), not requests, so memory is
  bounded whatever the batch size. When it is full the pipeline *refuses* new data with a
  retryable error (backpressure to the sender); it never drops silently.
* On shutdown the queue is drained within the deadline; what cannot be delivered by then is
  counted (``failed_items{reason="shutdown"}``) and logged, never lost without a trace.

With ``sending_queue.storage: disk`` the queue is a :class:`~obs_pipeline.engine.storage.disk.DiskQueue`
under ``<data_dir>/exporters/<id>/``: bounded in bytes (``max_size``), persisted before the sender
is acknowledged, a record marked done only after its final outcome. At shutdown, what is left (the
destination failing, the deadline reached) stays on disk for the next start: it is not a failure,
and a failing export during the drain is not retried (its batch stays on disk too).

Admission is reserve -> persist -> commit (:class:`Reservation`): the fan-out reserves room in
every queue first, may await between (a disk queue persists there; direct exporters send), and
commits only when everything succeeded, releasing the reservations otherwise. Outcomes follow
the collector: :class:`~obs_pipeline.errors.PermanentError` is dropped at once and counted, a
:class:`~obs_pipeline.components.PartialSuccess` is success with its rejected items counted, and
everything else (retryable errors, timeouts, unexpected exceptions) is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from pathlib import Path
from typing import Any

from obs_pipeline.batch import Batch
from obs_pipeline.components import Exporter, Host, PartialSuccess
from obs_pipeline.delivery import DeliverySettings
from obs_pipeline.engine.storage.disk import DiskQueue, Record, Ticket, queue_directory
from obs_pipeline.errors import PermanentError, RefusedError, RetryableError, describe_exception
from obs_pipeline.signals import Signal
from obs_pipeline.telemetry.metrics import SelfMetrics

FAILURE_REASONS = (
    "permanent_error", "rejected", "disabled", "retries_exhausted", "retries_disabled", "shutdown", "internal_error",
)
QUEUE_FULL_RETRY_AFTER = 1.0

__all__ = ["QueuedExporter", "Reservation"]


class Reservation:
    """Room for one batch in one exporter's queue, held until it is committed or released.

    Exactly one of :meth:`commit` and :meth:`release` takes effect; a second call does nothing,
    so an error path can release everything it holds without tracking what was committed.
    """

    __slots__ = ("_done", "_queue", "items", "ticket")

    def __init__(self, queue: QueuedExporter, items: int) -> None:
        self._queue = queue
        self.items = items
        self._done = False
        self.ticket: Ticket | None = None

    async def persist(self, batch: Batch) -> None:
        """Make the batch survive a crash before it is acknowledged: write and fsync it (a memory queue: nothing to do).

        Raises:
            RefusedError: the disk queue is full (``queue_full``), the disk is (``disk_full``), a
                write failed (``disk_error``) or the queue is closing (``shutting_down``).
        """
        store = self._queue._store
        if store is None or self._done or self.ticket is not None:
            return
        self.ticket = store.enqueue(batch)
        await store.persist(self.ticket)

    def commit(self, batch: Batch) -> None:
        """Put ``batch`` into the queue, in the room reserved for it."""
        if not self._done:
            self._done = True
            self._queue._commit(self, batch)

    def release(self) -> None:
        """Give the room back: the batch is not coming."""
        if not self._done:
            self._done = True
            self._queue._release(self)


class QueuedExporter:
    """Wraps one exporter (shared by every pipeline that lists it) in a queue with retries."""

    def __init__(
        self, exporter: Exporter, metrics: SelfMetrics, delivery: DeliverySettings | None = None,
        *, data_dir: Path | None = None,
    ) -> None:
        """``data_dir`` (``service.data_dir``) is where a disk queue keeps its files.

        Raises:
            ValueError: the queue is on disk and no ``data_dir`` was given.
        """
        self.exporter = exporter
        self.id = exporter.id
        self.delivery = delivery or DeliverySettings()
        self.retry = self.delivery.retry
        self.timeout = self.delivery.timeout
        self._queue: deque[Batch] = deque()
        self._items = 0  # queued or being exported
        self._reserved = 0  # promised to batches not committed yet
        self._wakeup = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._stop_deadline: float | None = None
        self._closing = False
        self._drained = False  # the consumers are gone: nothing committed from now on is delivered
        self._closed = asyncio.Event()
        self._started = False
        self.log = exporter.log
        self._sent = {s: metrics.exporter_sent.labels(exporter=self.id, signal=s.value) for s in Signal}
        self._metrics = metrics
        # Every failure series exists from the start at 0, so "alert if it grows" rules work at once.
        for signal in Signal:
            for reason in FAILURE_REASONS:
                metrics.exporter_failed.labels(exporter=self.id, signal=signal.value, reason=reason)
        self._queue_gauge = metrics.exporter_queue_size.labels(exporter=self.id)
        self._send_duration = metrics.exporter_send_duration.labels(exporter=self.id)
        queue = self.delivery.queue
        self._store: DiskQueue | None = None
        if queue.on_disk:
            if data_dir is None:
                raise ValueError(f"exporter {self.id}: a disk queue needs a data_dir")
            self._store = DiskQueue(
                queue_directory(data_dir, self.id), max_size=queue.max_size, memory_items=queue.queue_size,
                log=self.log, corrupt=metrics.exporter_queue_corrupt_records.labels(exporter=self.id),
                stored_bytes=metrics.exporter_queue_stored_bytes.labels(exporter=self.id),
            )
        metrics.exporter_queue_capacity.labels(exporter=self.id).set(
            queue.queue_size if queue.enabled and not queue.on_disk else 0)
        metrics.exporter_queue_capacity_bytes.labels(exporter=self.id).set(queue.max_size if queue.on_disk else 0)

    @property
    def queued(self) -> bool:
        """Whether batches go through the queue (else the caller waits for the export)."""
        return self.delivery.queue.enabled

    def has_room(self, items: int) -> bool:
        """Whether a batch of ``items`` fits now. An empty queue takes any batch, however large.

        A disk queue is bounded in bytes: this says whether it is below ``max_size``; the batch's
        own size is checked when it is persisted.
        """
        if self._store is not None:
            return not self._closing and self._store.has_room()
        used = self._items + self._reserved
        return not self._closing and (used == 0 or used + items <= self.delivery.queue.queue_size)

    def pending_items(self) -> int:
        """Items queued or being exported (a disk queue: stored and not done)."""
        return self._store.live_items if self._store is not None else self._items

    def reserve(self, items: int) -> Reservation:
        """Hold room for a batch of ``items``.

        Raises:
            RefusedError: the queue is full, shutting down, or its exporter failed (retryable for the sender).
        """
        if self._closing:
            raise RefusedError("shutting_down")
        if self.exporter.failed is not None:  # a queue consumer died: nothing would deliver it
            raise RefusedError("exporter_failed")
        if not self.has_room(items):
            raise RefusedError("queue_full", retry_after=QUEUE_FULL_RETRY_AFTER)
        self._reserved += items
        return Reservation(self, items)

    def _commit(self, reservation: Reservation, batch: Batch) -> None:
        self._reserved -= reservation.items
        if self._store is not None:
            assert reservation.ticket is not None, "a disk queue's batch is persisted before it is committed"
            if self._drained:  # it is on disk: the next start sends it
                self.log.info("%d %s arrived while the queue was closing: stored for the next start", batch.items,
                              batch.signal.value)
                return
            self._store.commit(reservation.ticket)
            self._queue_gauge.set(self._store.live_items)
            return
        if self._drained:  # shutdown overtook a reservation held across an await: count, never lose silently
            self._failed(batch.signal, "shutdown").inc(batch.items)
            self.log.error("%d %s arrived after the queue was drained and were not delivered", batch.items,
                           batch.signal.value)
            return
        self._queue.append(batch)
        self._items += batch.items
        self._queue_gauge.set(self._items)
        self._wakeup.set()

    def _release(self, reservation: Reservation) -> None:
        self._reserved -= reservation.items
        if self._store is not None and reservation.ticket is not None:
            self._store.release(reservation.ticket)

    async def send_now(self, batch: Batch) -> None:
        """Export synchronously (``sending_queue.enabled: false``), with the same retries.

        The sender is still waiting, so a failure is raised to it (the receiver answers 503 or
        500) instead of being counted as a drop: nothing was acknowledged, nothing is lost.

        Raises:
            RefusedError: shutting down.
            RetryableError: retries ran out on a transient failure.
            PermanentError: the failure cannot be fixed by retrying.
        """
        if self._closing:
            raise RefusedError("shutting_down")
        if self.exporter.failed is not None:
            raise RefusedError("exporter_failed")
        await self._deliver(batch, synchronous=True)

    async def start(self, host: Host) -> None:
        """Open a disk queue, start the exporter, then the queue consumers (supervised by the exporter).

        Raises:
            StartupError: the disk queue's directory cannot be used, or the exporter did not start.
        """
        store = self._store
        if store is not None:
            await store.open()
            if store.live_items:
                self.log.info("%d items stored by a previous run: sending them first", store.live_items)
            self._queue_gauge.set(store.live_items)
        try:
            await self.exporter.start(host)
        except BaseException:
            if store is not None:
                await store.close()
            raise
        self._started = True
        if store is not None:
            store.start(self.exporter.spawn)
        if self.queued:
            work = self._work if store is None else self._work_disk
            self._workers = [self.exporter.spawn(work(), f"queue consumer #{i}")
                             for i in range(self.delivery.queue.num_consumers)]

    async def shutdown(self, deadline: float) -> None:
        """Stop taking data, deliver what is queued until ``deadline``, count the rest, close."""
        if self._closing:
            return
        self._closing = True
        self._stop_deadline = deadline
        self._closed.set()
        self._wakeup.set()
        if self._store is not None:
            self._store.stop_taking()
        if self._workers:
            _done, pending = await asyncio.wait(self._workers, timeout=max(0.0, deadline - time.monotonic()))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._drained = True
        if self._store is not None:
            await self._close_store(deadline)
        else:
            self._count_undelivered()
        if self._started:
            try:
                await asyncio.wait_for(self.exporter.shutdown(), timeout=max(0.5, deadline - time.monotonic()))
            except (TimeoutError, Exception) as exc:
                self.log.error("shutdown failed: %s", _describe(exc))

    async def _close_store(self, deadline: float) -> None:
        """Close the disk queue; what it still holds is kept for the next start, not lost."""
        assert self._store is not None
        try:
            await asyncio.wait_for(self._store.close(), timeout=max(0.5, deadline - time.monotonic()))
        except TimeoutError:
            self.log.error("the disk queue did not close by the deadline (what it stored stays on disk)")
        left = self._store.live_items
        self._queue_gauge.set(left)
        if left:
            self.log.warning("%d items left on disk for the next start", left)

    def _count_undelivered(self) -> None:
        lost = self._items
        for batch in self._queue:
            self._failed(batch.signal, "shutdown").inc(batch.items)
        self._queue.clear()
        self._items = 0
        self._queue_gauge.set(0)
        if lost:
            self.log.error("%d items were still queued at the shutdown deadline and were not delivered", lost)

    def _failed(self, signal: Signal, reason: str) -> Any:
        return self._metrics.exporter_failed.labels(exporter=self.id, signal=signal.value, reason=reason)

    async def _work(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._queue.popleft()
            try:
                await self._deliver(batch)
            except asyncio.CancelledError:
                self._failed(batch.signal, "shutdown").inc(batch.items)
                raise
            except Exception:  # a bug in the helper itself: count the batch; the supervisor reports it
                self._failed(batch.signal, "internal_error").inc(batch.items)
                raise
            finally:
                self._items -= batch.items
                self._queue_gauge.set(self._items)

    async def _work_disk(self) -> None:
        """A consumer of the disk queue: each record is marked done after its final outcome only."""
        store = self._store
        assert store is not None
        while True:
            record: Record | None = await store.take()
            if record is None:
                return
            if not await self._deliver(record.batch):
                return  # shutting down and it failed: it stays on disk, and so does what follows it
            await store.done(record)
            self._queue_gauge.set(store.live_items)

    async def _attempt(self, batch: Batch) -> PartialSuccess | None:
        if self.timeout:
            return await asyncio.wait_for(self.exporter.export(batch), self.timeout)
        return await self.exporter.export(batch)

    async def _deliver(self, batch: Batch, *, synchronous: bool = False) -> bool:
        """Export with timeout and retries; count the outcome.

        Queued batches were acknowledged already, so their failures are counted and logged here
        and never raised. ``synchronous`` batches are not acknowledged yet: failures are raised.

        Returns True when the outcome is final, False when a disk queue keeps the batch for the
        next start (an export failed during shutdown: not counted as a failure).
        """
        started = time.monotonic()
        interval = self.retry.initial_interval
        while True:
            try:
                result = await self._attempt(batch)
            except asyncio.CancelledError:
                raise
            except PermanentError as exc:
                if synchronous:
                    raise
                self._fail(batch, "permanent_error", exc)
                return True
            except Exception as exc:  # retryable, a timeout, or unexpected: retried, as the collector does
                hint = exc.retry_after if isinstance(exc, RetryableError) else None
                delay = max(self.retry.next_delay(interval), hint or 0.0)
                reason = self._give_up_reason(started, delay)
                what = _describe(exc)
                if reason is None:
                    self.log.warning("export failed, retrying in %.1fs: %s", delay, what)
                    reason = await self._wait_to_retry(delay)
                if reason:
                    if synchronous:
                        raise RetryableError(f"{self.id}: {reason}: {what}", retry_after=hint) from exc
                    if reason == "shutdown" and self._store is not None:
                        self.log.warning("export failed while shutting down, %d %s stay on disk for the next start: %s",
                                         batch.items, batch.signal.value, what)
                        return False
                    self._fail(batch, reason, exc)
                    return True
                interval = min(interval * self.retry.multiplier, self.retry.max_interval)
                continue
            self._succeeded(batch, result, started)
            return True

    def _succeeded(self, batch: Batch, result: PartialSuccess | None, started: float) -> None:
        rejected = 0
        if result is not None and result.rejected > 0:
            rejected = min(result.rejected, batch.items)
            self._failed(batch.signal, result.reason).inc(rejected)
            if result.reason != "disabled":  # a disabled exporter said so once, at start
                self.log.warning("the destination rejected %d of %d %s%s", rejected, batch.items,
                                 batch.signal.value, f": {result.message}" if result.message else "")
        self._sent[batch.signal].inc(batch.items - rejected)
        self._send_duration.observe(time.monotonic() - started)

    def _give_up_reason(self, started: float, delay: float) -> str | None:
        """Why the next retry should not happen, checked *before* sleeping (or None)."""
        now = time.monotonic()
        if self._closing and self._store is not None:  # it is safe on disk: do not hold the shutdown up
            return "shutdown"
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
        if self._stop_deadline is not None and (wake_at > self._stop_deadline or self._store is not None):
            return "shutdown"
        await asyncio.sleep(max(0.0, wake_at - time.monotonic()))
        return None

    def _fail(self, batch: Batch, reason: str, exc: BaseException) -> None:
        self._failed(batch.signal, reason).inc(batch.items)
        self.log.error("gave up on %d %s (failed: %s): %s", batch.items, batch.signal.value, reason, _describe(exc))


def _describe(exc: BaseException) -> str:
    """Our own errors by their message (written to be safe); anything else by class and place only."""
    if isinstance(exc, RetryableError | PermanentError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"unexpected {describe_exception(exc)}"
