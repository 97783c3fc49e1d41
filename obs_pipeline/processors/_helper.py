"""What every processor shares, written once: counting, the exception policy, buffering.

Two forms, after the collector's ``processorhelper`` and Vector's "prefer function transforms":

* :class:`FunctionProcessor`: the processor is a function over a batch that returns a batch, or
  None for "dropped on purpose". The helper counts items in and out, counts what the function
  dropped under the processor's reason, and applies one exception policy: a function that raises
  costs only that batch, which is counted (``processing_error``) and refused to the sender with a
  non-retryable :class:`~obs_pipeline.errors.ProcessingError` (retrying would fail the same way).
* :class:`BufferingProcessor`: accepted batches wait in a bounded buffer that one supervised
  background task flushes (``batch`` today; tail sampling and the disk queue next). Accepting into
  the buffer is acceptance. While it is over capacity new data is refused with a retryable error
  (backpressure); a refused flush is retried until it is taken, never dropped; shutdown flushes
  everything. Only a failure after it that retrying cannot fix (a later processor raising) or the
  shutdown deadline loses a batch, and both are counted. If the flusher dies, the host is told
  (fatal) and new data is refused, so nothing is acknowledged that nobody will deliver.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
import weakref
from collections.abc import Callable
from typing import Any

from obs_pipeline.batch import Batch
from obs_pipeline.components import Consumer, Host, Processor, ProcessorSettings, State
from obs_pipeline.errors import ProcessingError, RefusedError, describe_exception

__all__ = ["BufferingProcessor", "FunctionProcessor", "ProcessFunction", "ProcessorCounters"]

#: ``process(batch) -> batch | None``: the batch to hand on (the same or another), or None when
#: all of it was dropped on purpose.
ProcessFunction = Callable[[Batch], Batch | None]

#: Seconds between flush attempts while the next stage refuses.
REFUSED_RETRY_DELAY = 0.05
#: Retry hint given to senders while a buffer is over capacity.
OVER_CAPACITY_RETRY_AFTER = 0.5


class _Same(enum.Enum):
    """Marks a remembered result that is the input batch itself."""

    SAME = "same"


_SAME = _Same.SAME


class ProcessorCounters:
    """The ``obs_pipeline_processor_*`` series of one processor in one pipeline, looked up once."""

    def __init__(self, settings: ProcessorSettings) -> None:
        metrics = settings.metrics
        labels = {"processor": str(settings.id), "pipeline": settings.pipeline}
        self.incoming = metrics.processor_incoming.labels(**labels)
        self.outgoing = metrics.processor_outgoing.labels(**labels)
        self._dropped = metrics.processor_dropped
        self._labels = labels
        self._metrics = metrics
        self._by_reason: dict[str, Any] = {}

    def cpu(self) -> Any:
        """The ``processor_cpu_seconds`` series (function processors only: see :class:`FunctionProcessor`)."""
        return self._metrics.processor_cpu.labels(**self._labels)

    def dropped(self, reason: str, items: int) -> None:
        """Count ``items`` dropped for ``reason``."""
        child = self._by_reason.get(reason)
        if child is None:
            child = self._by_reason[reason] = self._dropped.labels(**self._labels, reason=reason)
        child.inc(items)


class FunctionProcessor(Processor):
    """A processor that is a function over a batch (see the module docstring).

    Args:
        settings: the processor's settings.
        next_consumer: the next stage.
        process: the function; it may change the batch through ``batch.mutable()``.
        drop_reason: the ``reason`` label for what ``process`` drops (``sampled``, ``filtered``).
    """

    def __init__(
        self, settings: ProcessorSettings, next_consumer: Consumer, process: ProcessFunction, *, drop_reason: str,
    ) -> None:
        super().__init__(settings, next_consumer)
        self._process = process
        self._drop_reason = drop_reason
        # Refused input -> its result, while the caller holds the input: its retry reuses the result.
        self._refused: weakref.WeakKeyDictionary[Batch, Batch | _Same] = weakref.WeakKeyDictionary()
        self.counters = ProcessorCounters(settings)
        self.counters.dropped(drop_reason, 0)
        self.counters.dropped("processing_error", 0)
        self._cpu = self.counters.cpu()

    async def consume(self, batch: Batch) -> None:
        """Run the function, count, and hand the result on.

        A batch the next stage refused comes back: a buffering stage before this one retries the
        very same batch. Its result is remembered for as long as the caller holds the batch (a weak
        reference: a receiver's batch is forgotten with it), so the retry neither runs the function
        on its own output nor counts the batch again. A sender's retry is a new batch and is
        processed and counted as a new arrival.

        Raises:
            RefusedError: the processor is shutting down, or the next stage refused.
            ProcessingError: the function raised; the batch was not passed on.
        """
        if self.state in (State.STOPPING, State.STOPPED):
            raise RefusedError("shutting_down")
        out = self._remembered(batch)
        if out is None:
            return
        try:
            await self.next.consume(out)
        except RefusedError:
            # The input itself is not stored as its own value: that would keep it alive for ever.
            self._refused[batch] = _SAME if out is batch else out
            raise
        self.counters.outgoing.inc(out.items)

    def _remembered(self, batch: Batch) -> Batch | None:
        """The result of a refused ``batch`` coming back, else the function's result now."""
        remembered = self._refused.pop(batch, None)
        if remembered is None:
            return self._run(batch)
        return batch if remembered is _SAME else remembered

    def _run(self, batch: Batch) -> Batch | None:
        """The function's result (None: nothing to hand on), with incoming and dropped counted."""
        items = batch.items
        self.counters.incoming.inc(items)
        # Thread time: what the function costs, not how long the loop waited while it ran (the
        # question "what does redaction cost me?" answered in the pipeline, not in a benchmark).
        started = time.thread_time()
        try:
            out = self._process(batch)
            out = out.settled() if out is not None else None
        except Exception as exc:
            self.counters.dropped("processing_error", items)
            self.log.warning("failed on a batch of %d items: %s", items, describe_exception(exc))
            raise ProcessingError(f"{self.id}: failed on the batch ({type(exc).__name__})") from exc
        finally:
            self._cpu.inc(time.thread_time() - started)
        kept = 0 if out is None else out.items
        if kept < items:
            self.counters.dropped(self._drop_reason, items - kept)
        return out if kept else None


class BufferingProcessor(Processor):
    """A bounded buffer flushed by one supervised task (see the module docstring).

    Subclasses say what is buffered and when to flush: :meth:`add` takes an accepted batch into
    the buffer, :meth:`ready` says how long until the buffer should be flushed (0: now, None:
    wait for a kick), :meth:`take` removes the batches to hand on now. The base does the rest:
    capacity, refusal, the flusher, retries while the next stage refuses, counting, the drain.

    Args:
        capacity: items the buffer holds before new data is refused.
    """

    def __init__(self, settings: ProcessorSettings, next_consumer: Consumer, *, capacity: int) -> None:
        super().__init__(settings, next_consumer)
        self.capacity = capacity
        self.counters = ProcessorCounters(settings)
        self.counters.dropped("shutdown", 0)
        self.counters.dropped("downstream_error", 0)
        self._buffered = 0  # items in the buffer
        self._inflight = 0  # items taken from the buffer and not yet accepted downstream
        self._kick = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    # -- what subclasses implement ----------------------------------------------------------

    def add(self, batch: Batch) -> None:
        """Put an accepted ``batch`` into the buffer."""
        raise NotImplementedError

    def ready(self, now: float, *, draining: bool) -> float | None:
        """Seconds until the buffer should be flushed: 0 for now, None to wait for a kick."""
        raise NotImplementedError

    def take(self) -> list[Batch]:
        """Remove and return what to hand on now (called when :meth:`ready` said 0)."""
        raise NotImplementedError

    def should_kick(self, batch: Batch) -> bool:
        """Whether adding ``batch`` should wake the flusher (default: always)."""
        return True

    def discard(self) -> None:
        """Forget whatever the buffer still holds (the shutdown deadline passed)."""
        raise NotImplementedError

    # -- the machinery ----------------------------------------------------------------------

    async def on_start(self, host: Host) -> None:
        """Start the flusher, supervised: if it dies the host hears of it."""
        self._flusher = self.spawn(self._flush_loop(), "flusher")

    async def consume(self, batch: Batch) -> None:
        """Take ``batch`` into the buffer (accepted), or refuse it while over capacity.

        Raises:
            RefusedError: shutting down, the flusher has failed, or the buffer is over capacity.
        """
        if self.state is not State.RUNNING:
            raise RefusedError("shutting_down")
        if self.failed is not None:  # the flusher died: accept nothing that nobody would flush
            raise RefusedError("processor_failed")
        items = batch.items
        if items == 0:
            return
        if self._buffered and self._buffered + items > self.capacity:
            raise RefusedError("queue_full", retry_after=OVER_CAPACITY_RETRY_AFTER)
        self.add(batch)
        self._buffered += items
        self.counters.incoming.inc(items)
        if self.should_kick(batch):
            self._kick.set()

    def pending_items(self) -> int:
        """Items in the buffer or being handed on."""
        return self._buffered + self._inflight

    async def on_shutdown(self) -> None:
        """Flush everything buffered; the pipeline bounds how long this may take."""
        self._kick.set()
        task = self._flusher
        if task is None or task.done():
            self._count_lost()
            return
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise
        except Exception:  # noqa: S110 - the flusher's death was reported when it happened
            pass
        finally:
            self._count_lost()

    def _count_lost(self) -> None:
        lost = self._buffered + self._inflight
        if lost:
            self.counters.dropped("shutdown", lost)
            self.log.error("%d items not flushed by the shutdown deadline", lost)
            self.discard()
            self._buffered = self._inflight = 0

    async def _flush_loop(self) -> None:
        while True:
            draining = self.state is not State.RUNNING
            wait = self.ready(time.monotonic(), draining=draining) if self._buffered else None
            if wait is None:
                if draining:
                    return
                self._kick.clear()
                await self._kick.wait()
                continue
            if wait > 0 and not draining:
                self._kick.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), wait)
                continue
            await self._flush_once()

    async def _flush_once(self) -> None:
        parts = self.take()
        taken = sum(part.items for part in parts)
        self._buffered -= taken
        self._inflight = taken
        for part in parts:
            await self._send(part)
            self._inflight -= part.items

    async def _send(self, batch: Batch) -> None:
        """Hand one batch on, retrying while the next stage refuses. Never drops what it accepted.

        A failure that is not a refusal (a processor after it raised) cannot be retried: the
        batch is counted as dropped (``downstream_error``) and logged.
        """
        while True:
            try:
                await self.next.consume(batch)
            except RefusedError:
                await asyncio.sleep(REFUSED_RETRY_DELAY)
                continue
            except Exception as exc:
                self.counters.dropped("downstream_error", batch.items)
                self.log.error("the next stage failed with %s; %d items dropped", describe_exception(exc), batch.items)
                return
            self.counters.outgoing.inc(batch.items)
            return
