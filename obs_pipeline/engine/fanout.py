"""The two places where one batch goes to several consumers.

``PipelinesFanout``: a receiver listed in several pipelines of one signal hands each batch to
every pipeline. Pipelines whose processors mutate data get their own copy (the collector's rule:
the last mutating pipeline may take the original when no read-only pipeline shares it).

``ExportersFanout``: the end of one pipeline. A batch is admitted into *every* exporter queue or
into none: room is checked in all queues before it is put in any. The event loop runs one task
at a time, so nothing can fill a queue between the check and the put. This is what makes the
receiver's acknowledgement mean "accepted by every exporter", without duplicates on refusal.
"""

from __future__ import annotations

from collections.abc import Sequence

from obs_pipeline.components import Consumer
from obs_pipeline.engine.queue import QueuedExporter
from obs_pipeline.errors import RefusedError
from obs_pipeline.signals import Message, Signal, copy, count_items

QUEUE_FULL_RETRY_AFTER = 1.0


class ExportersFanout:
    """Admits a batch into all exporters of a pipeline, or refuses it as a whole."""

    def __init__(self, signal: Signal, exporters: Sequence[QueuedExporter]) -> None:
        self.signal = signal
        self._queued = [e for e in exporters if e.queued]
        self._direct = [e for e in exporters if not e.queued]

    async def consume(self, data: Message, wire: bytes | None = None) -> None:
        """Enqueue ``data`` everywhere, or raise ``RefusedError`` without enqueuing anywhere."""
        items = count_items(self.signal, data)
        if items == 0:
            return
        for exporter in self._queued:
            if not exporter.has_room(items):
                raise RefusedError("queue_full", retry_after=QUEUE_FULL_RETRY_AFTER)
        for exporter in self._queued:
            exporter.put_nowait(self.signal, data, items, wire)
        for exporter in self._direct:
            await exporter.send_now(self.signal, data, items, wire)


class PipelinesFanout:
    """Hands a receiver's batch to each pipeline that lists the receiver for this signal."""

    def __init__(self, entries: Sequence[tuple[Consumer, bool]]) -> None:
        """``entries``: (first consumer of the pipeline, whether the pipeline mutates data)."""
        self._read_only = [c for c, mutates in entries if not mutates]
        self._mutating = [c for c, mutates in entries if mutates]

    async def consume(self, data: Message, wire: bytes | None = None) -> None:
        """Deliver to every pipeline; if any refuses, raise after trying all of them.

        A pipeline that accepted keeps the batch, so the sender's retry may duplicate it there
        (at-least-once; audit lines carry a stable ``event_id`` for deduplication).
        """
        # Copies are made before any pipeline runs, so no copy can see another's mutation.
        share_original = bool(self._mutating) and not self._read_only
        copies = [copy(data) for _ in range(len(self._mutating) - share_original)]
        if share_original:
            copies.append(data)
        refusal: RefusedError | None = None
        for consumer, batch in [*((c, data) for c in self._read_only), *zip(self._mutating, copies, strict=True)]:
            try:
                await consumer.consume(batch, wire)
            except RefusedError as exc:
                refusal = refusal or exc
        if refusal is not None:
            raise refusal


def single_or_fanout(entries: Sequence[tuple[Consumer, bool]]) -> Consumer:
    """The consumer a receiver should call: the pipeline itself when there is only one."""
    if len(entries) == 1:
        return entries[0][0]
    return PipelinesFanout(entries)
