"""The two places where one batch goes to several consumers.

``PipelinesFanout``: a receiver listed in several pipelines of one signal hands each batch to
every pipeline. Pipelines whose processors mutate data get their own copy (the collector's rule:
the last mutating pipeline may take the original when no read-only pipeline shares it).

``ExportersFanout``: the end of one pipeline. A batch is admitted into *every* exporter or into
none: room is reserved in every queue first, then (with the reservations held) each reservation
is persisted and each direct exporter (``sending_queue.enabled: false``) sends; only when all of
that succeeded are the reservations committed. Any failure releases them all, so the sender's
retry never puts a batch into a queue twice. This is what makes the receiver's acknowledgement
mean "accepted by every exporter". (Direct exporters cannot be reserved: if the second of two
fails after the first delivered, the retry repeats the batch at the first.)
"""

from __future__ import annotations

from collections.abc import Sequence

from obs_pipeline.batch import Batch
from obs_pipeline.components import Consumer
from obs_pipeline.engine.queue import QueuedExporter, Reservation
from obs_pipeline.errors import RefusedError

__all__ = ["ExportersFanout", "PipelinesFanout", "single_or_fanout"]


class ExportersFanout:
    """Admits a batch into all exporters of a pipeline, or refuses it as a whole."""

    def __init__(self, exporters: Sequence[QueuedExporter]) -> None:
        self._queued = [e for e in exporters if e.queued]
        self._direct = [e for e in exporters if not e.queued]

    async def consume(self, batch: Batch) -> None:
        """Deliver ``batch`` everywhere, or raise without leaving it anywhere queued.

        Raises:
            RefusedError: a queue is full or shutting down.
            ExportError: a direct exporter failed (the queued ones did not take the batch).
        """
        if batch.items == 0:
            return
        reservations: list[Reservation] = []
        try:
            for exporter in self._queued:
                reservations.append(exporter.reserve(batch.items))
            for reservation in reservations:
                await reservation.persist(batch)
            for exporter in self._direct:
                await exporter.send_now(batch)
        except BaseException:
            for reservation in reservations:
                reservation.release()
            raise
        for reservation in reservations:
            reservation.commit(batch)


class PipelinesFanout:
    """Hands a receiver's batch to each pipeline that lists the receiver for this signal."""

    def __init__(self, entries: Sequence[tuple[Consumer, bool]]) -> None:
        """``entries``: (first consumer of the pipeline, whether the pipeline mutates data)."""
        self._read_only = [c for c, mutates in entries if not mutates]
        self._mutating = [c for c, mutates in entries if mutates]

    async def consume(self, batch: Batch) -> None:
        """Deliver to every pipeline; if any fails, raise after trying all of them.

        One pipeline's failure never keeps the batch from the others. A refusal wins over other
        errors, so the sender retries and the refusing pipeline still gets the batch; a pipeline
        that accepted keeps it, so the retry may duplicate it there (at-least-once; audit lines
        carry a stable ``event_id`` for deduplication).
        """
        # Copies are made before any pipeline runs, so no copy can see another's mutation.
        share_original = bool(self._mutating) and not self._read_only
        copies = [batch.copy() for _ in range(len(self._mutating) - share_original)]
        if share_original:
            copies.append(batch)
        refusal: RefusedError | None = None
        failure: Exception | None = None
        for consumer, part in [*((c, batch) for c in self._read_only), *zip(self._mutating, copies, strict=True)]:
            try:
                await consumer.consume(part)
            except RefusedError as exc:
                refusal = refusal or exc
            except Exception as exc:  # a processor or a direct exporter failed: the others still get it
                failure = failure or exc
        if refusal is not None:
            raise refusal
        if failure is not None:
            raise failure


def single_or_fanout(entries: Sequence[tuple[Consumer, bool]]) -> Consumer:
    """The consumer a receiver should call: the pipeline itself when there is only one."""
    if len(entries) == 1:
        return entries[0][0]
    return PipelinesFanout(entries)
