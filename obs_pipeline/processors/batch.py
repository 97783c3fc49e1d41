"""``batch``: group data into batches by size and time; split batches that are too large.

Acceptance: a batch counts as accepted by the pipeline once it is in this processor's buffer,
which is bounded. The buffer never drops what it accepted: when the exporters' queues are full
it keeps retrying the flush and, while its buffer is over capacity, refuses new data with a
retryable error, so backpressure reaches the sender. On shutdown it flushes everything it
holds. (The collector's batch processor returns before the export and swallows errors; this
one does neither.) With ``timeout: 0s`` nothing is buffered: each batch goes straight on (split
if needed) and the sender waits for the exporters' queues.

Merging: OTLP messages are concatenable on the wire (their only top-level field is repeated), so
the batch is made by joining the parts' serialized bytes, which receivers pass along, and
parsing the join once. That costs about a fifth of deep-copying every part with ``extend``, and
the joined bytes travel on, so an exporter need not serialize the batch again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from obs_pipeline.components import Consumer, Factory, Kind, Processor, Settings
from obs_pipeline.errors import Problem, RefusedError
from obs_pipeline.signals import Message, Signal, count_items, parse, split
from obs_pipeline.units import parse_duration

TYPE = "batch"
BUFFER_BATCHES = 2  # the buffer holds this many full batches before it refuses
REFUSED_RETRY_DELAY = 0.05  # seconds between flush attempts while the exporters are full


@dataclass(frozen=True, kw_only=True)
class Config:
    """See ``schemas/processors/batch.schema.json`` for each option's meaning and default."""

    send_batch_size: int
    timeout: float  # seconds
    send_batch_max_size: int

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Config:
        """From the validated dict (schema defaults filled in)."""
        return cls(
            send_batch_size=raw["send_batch_size"],
            timeout=parse_duration(raw["timeout"]),
            send_batch_max_size=raw["send_batch_max_size"],
        )


def check(cfg: Config) -> list[Problem]:
    """Cross-field rule: the hard cap cannot be below the trigger size."""
    if cfg.send_batch_max_size and cfg.send_batch_max_size < cfg.send_batch_size:
        return [Problem(
            path="send_batch_max_size",
            message=f"must be 0 or at least send_batch_size ({cfg.send_batch_size}), got {cfg.send_batch_max_size}",
        )]
    return []


class BatchProcessor(Processor):
    """Buffers batches of one pipeline and flushes them from one background task, in order."""

    def __init__(self, settings: Settings, cfg: Config, signal: Signal, pipeline: str, next_consumer: Consumer) -> None:
        super().__init__(settings, signal, pipeline, next_consumer)
        self.cfg = cfg
        self.capacity = max(cfg.send_batch_size, cfg.send_batch_max_size) * BUFFER_BATCHES
        self._parts: list[tuple[bytes, int]] = []  # (serialized part, items): bytes take half the memory
        self._items = 0
        self._inflight = 0  # items taken from the buffer and not yet accepted downstream
        self._first_at = 0.0
        self._kick = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        dropped = settings.metrics.processor_dropped
        self._dropped = dropped.labels(processor=self.id, pipeline=pipeline, reason="shutdown")
        self._failed = dropped.labels(processor=self.id, pipeline=pipeline, reason="downstream_error")

    async def start(self, host: Any) -> None:
        """Start the flusher."""
        if self.cfg.timeout > 0:
            self._task = asyncio.create_task(self._flusher(), name=f"batch {self.id} {self.pipeline}")

    async def consume(self, data: Message, wire: bytes | None = None) -> None:
        """Buffer ``data`` (accepted), or refuse it while the buffer is over capacity."""
        if self._closing:
            raise RefusedError("shutting_down")
        if self._task is None:  # timeout 0: pass straight through, split if needed
            parts = split(self.signal, data, self.cfg.send_batch_max_size)
            for part in parts:
                await self.next.consume(part, wire if len(parts) == 1 else None)
            return
        items = count_items(self.signal, data)
        if items == 0:
            return
        if self._items and self._items + items > self.capacity:
            raise RefusedError("queue_full", retry_after=max(self.cfg.timeout, 0.5))
        if not self._parts:
            self._first_at = time.monotonic()
        self._parts.append((wire if wire is not None else data.SerializeToString(), items))
        self._items += items
        if self._items >= self.cfg.send_batch_size or len(self._parts) == 1:
            self._kick.set()

    def pending_items(self) -> int:
        """Items in the buffer or being handed on."""
        return self._items + self._inflight

    async def shutdown(self) -> None:
        """Flush everything buffered (the pipeline bounds how long this may take)."""
        self._closing = True
        self._kick.set()
        if self._task is None:
            return
        try:
            await asyncio.shield(self._task)
        except asyncio.CancelledError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            raise
        finally:
            lost = self._items + self._inflight
            if lost:
                self._dropped.inc(lost)
                self.log.error("batch %s (%s): %d items not flushed by the shutdown deadline",
                               self.id, self.pipeline, lost)
                self._parts.clear()
                self._items = self._inflight = 0

    async def _flusher(self) -> None:
        while True:
            if not self._parts:
                if self._closing:
                    return
                self._kick.clear()
                await self._kick.wait()
                continue
            wait = self._first_at + self.cfg.timeout - time.monotonic()
            if self._items < self.cfg.send_batch_size and not self._closing and wait > 0:
                self._kick.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), wait)
                continue
            await self._flush_once()

    def _take(self) -> tuple[Message, bytes]:
        """Remove up to one batch's worth of parts from the buffer; merge them by joining their bytes."""
        limit = self.cfg.send_batch_max_size or self.cfg.send_batch_size
        taken: list[bytes] = []
        items = 0
        while self._parts and (not taken or items < limit):
            part, part_items = self._parts.pop(0)
            taken.append(part)
            items += part_items
        self._items -= items
        self._inflight = items
        if self._parts:
            self._first_at = time.monotonic()
        wire = taken[0] if len(taken) == 1 else b"".join(taken)
        return parse(self.signal, wire), wire

    async def _flush_once(self) -> None:
        batch, wire = self._take()
        chunks = split(self.signal, batch, self.cfg.send_batch_max_size)
        for chunk in chunks:
            await self._send(chunk, wire if len(chunks) == 1 else None)
            self._inflight -= count_items(self.signal, chunk)

    async def _send(self, chunk: Message, wire: bytes | None) -> None:
        """Hand one batch on, retrying while the exporters' queues are full. Never drops."""
        while True:
            try:
                await self.next.consume(chunk, wire)
            except RefusedError:
                await asyncio.sleep(REFUSED_RETRY_DELAY)
            except Exception as exc:
                self._failed.inc(count_items(self.signal, chunk))
                self.log.exception("batch %s (%s): downstream failed with %s; batch dropped",
                                   self.id, self.pipeline, type(exc).__name__)
                return
            else:
                return


def _create(settings: Settings, cfg: Config, signal: Signal, pipeline: str, next_consumer: Consumer) -> Processor:
    return BatchProcessor(settings, cfg, signal, pipeline, next_consumer)


FACTORY = Factory(
    type=TYPE,
    kind=Kind.PROCESSOR,
    signals=frozenset(Signal),
    schema="processors/batch.schema.json",
    description="Groups data into batches by size and time, and splits batches that are too large.",
    parse=Config.parse,
    create=_create,
    check=check,
)
