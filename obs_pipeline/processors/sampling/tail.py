"""Tail mode: buffer each trace for ``decision_wait`` after its first span, then keep it by policy.

Acceptance: a span is accepted once it is in this buffer, in memory, as with the ``batch``
processor; a crash loses what the buffer holds. The buffer is part of the drain: on shutdown
every buffered trace is decided at once (with what has arrived) and the kept ones are handed on
within ``shutdown_timeout``; nothing is dropped undecided.

Bounds: ``num_traces`` and ``max_memory``. Before a batch is taken, the oldest traces are decided
early until it fits (counted per reason); decided, kept spans wait in an outbox for the next
stage, and while they alone fill ``max_memory`` the batch waits briefly for the flusher and is
then refused with a retryable error (backpressure), so the buffer never grows without bound and
never refuses after it took a batch. A kept trace is released whole, in one batch. Spans that
arrive after their trace was decided follow the decision, from a bounded cache of recent trace ids.

The flusher, retries while the next stage refuses, and the drain are
:class:`~obs_pipeline.processors._helper.BufferingProcessor`'s; this class says what is buffered
and when it is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from typing import Any

from obs_pipeline.batch import Batch
from obs_pipeline.components import Consumer, ProcessorSettings, State
from obs_pipeline.errors import RefusedError
from obs_pipeline.processors._helper import OVER_CAPACITY_RETRY_AFTER, BufferingProcessor, ProcessorCounters
from obs_pipeline.processors.sampling.buffer import SPAN_OVERHEAD, TRACE_OVERHEAD, Header, Trace, encode
from obs_pipeline.processors.sampling.config import Config
from obs_pipeline.processors.sampling.policies import PolicySet
from obs_pipeline.signals import Signal

DROP_REASON = "sampled"
RELEASE_SPANS = 4096  # a release batch closes after the trace that reaches this many spans
OUTBOX_WAIT = 1.0  # seconds a batch waits for decided spans to be handed on before it is refused
KEPT, DROPPED = "kept", "dropped"

_Entry = tuple[bytes, Header, int, Any, bytes]  # trace id, header, resource bits, span, span bytes


class TailSampler(BufferingProcessor):
    """The tail-mode processor (see the module docstring)."""

    def __init__(self, settings: ProcessorSettings, cfg: Config, next_consumer: Consumer) -> None:
        super().__init__(settings, next_consumer, capacity=cfg.max_memory)
        self.cfg = cfg
        self.policies = PolicySet(cfg.policies)
        self.traces: OrderedDict[bytes, Trace] = OrderedDict()  # oldest first
        self.buffered_bytes = 0  # accounted bytes of the buffered traces
        self.headers: dict[tuple[bytes, bytes], Header] = {}  # the ones buffered traces use, by content
        self.outbox: list[list[tuple[Header, bytes]]] = []  # decided, kept, not yet handed on
        self.outbox_bytes = 0
        self._outbox_items = 0
        self._kept_ids: OrderedDict[bytes, None] = OrderedDict()
        self._dropped_ids: OrderedDict[bytes, None] = OrderedDict()
        self._taken = asyncio.Event()
        self.counters.dropped(DROP_REASON, 0)
        self._metrics = _SamplingMetrics(settings, self.counters)

    # -- taking data --------------------------------------------------------------------------

    async def consume(self, batch: Batch) -> None:
        """Buffer the batch's spans by trace (accepted), deciding the oldest traces early if needed.

        Raises:
            RefusedError: shutting down, the flusher failed, or decided spans waiting for the next
                stage fill ``max_memory`` (retryable).
        """
        if self.state is not State.RUNNING:
            raise RefusedError("shutting_down")
        if self.failed is not None:
            raise RefusedError("processor_failed")
        items = batch.items
        if items == 0:
            return
        entries, headers, adds = self._plan(batch)
        try:
            await self._make_room(adds)
            self.counters.incoming.inc(items)
            self._commit(entries)
        finally:
            for header in headers:  # a header only late or refused spans used is forgotten
                if not header.refs and self.headers.get(header.key) is header:
                    del self.headers[header.key]
        self._metrics.flush(len(self.traces), self.buffered_bytes + self.outbox_bytes)

    def _plan(self, batch: Batch) -> tuple[list[_Entry], list[Header], int]:
        """The batch's spans, serialized, their headers, and the bytes they would add at most."""
        entries: list[_Entry] = []
        headers: list[Header] = []
        new_ids: set[bytes] = set()
        adds = 0
        policies, traces = self.policies, self.traces
        message: Any = batch.message
        for rs in message.resource_spans:
            bits = policies.resource_bits(rs.resource.attributes)
            for ss in rs.scope_spans:
                key = Header.key_of(rs, ss)
                header = self.headers.get(key)
                if header is None:
                    header = self.headers[key] = Header(key)
                headers.append(header)
                if not header.refs:
                    adds += header.size
                for span in ss.spans:
                    wire = span.SerializeToString()
                    trace_id = span.trace_id
                    entries.append((trace_id, header, bits, span, wire))
                    adds += len(wire) + SPAN_OVERHEAD
                    if trace_id not in traces:
                        new_ids.add(trace_id)
        return entries, headers, adds + TRACE_OVERHEAD * len(new_ids)

    async def _make_room(self, adds: int) -> None:
        """Decide the oldest traces until ``adds`` more bytes fit, or wait for the outbox, or refuse."""
        limit = self.cfg.max_memory
        while self.traces and self.buffered_bytes + self.outbox_bytes + adds > limit:
            self._decide(next(iter(self.traces)), forced="max_memory")
        if self.outbox_bytes and self.buffered_bytes + self.outbox_bytes + adds > limit:
            self._taken.clear()
            self._kick.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._taken.wait(), OUTBOX_WAIT)
            if self.state is not State.RUNNING:
                raise RefusedError("shutting_down")
            if self.outbox_bytes and self.buffered_bytes + self.outbox_bytes + adds > limit:
                raise RefusedError("queue_full", retry_after=OVER_CAPACITY_RETRY_AFTER)

    def _commit(self, entries: list[_Entry]) -> None:
        """Route each span: to its buffered trace, a new trace, or (decided before) its decision."""
        traces, policies = self.traces, self.policies
        deadline = time.monotonic() + self.cfg.decision_wait
        was_empty = not traces
        late_kept: list[tuple[Header, bytes]] = []
        late_dropped = 0
        added_items = 0
        for trace_id, header, bits, span, wire in entries:
            trace = traces.get(trace_id)
            if trace is None:
                if trace_id in self._kept_ids:
                    late_kept.append((header, wire))
                    continue
                if trace_id in self._dropped_ids:
                    late_dropped += 1
                    continue
                if len(traces) >= self.cfg.num_traces:
                    self._decide(next(iter(traces)), forced="num_traces")
                trace = traces[trace_id] = Trace(deadline, policies.new_summary())
                self.buffered_bytes += trace.nbytes
            self.buffered_bytes += trace.add(header, wire)
            policies.observe(trace.summary, span, bits, wire)
            added_items += 1
        self._buffered += added_items
        if late_kept:
            self._to_outbox(late_kept, sum(len(w) + SPAN_OVERHEAD for _h, w in late_kept))
            self._buffered += len(late_kept)
        self._metrics.late(len(late_kept), late_dropped)
        if late_kept or (was_empty and traces) or self.outbox:
            self._kick.set()

    # -- deciding -----------------------------------------------------------------------------

    def _decide(self, trace_id: bytes, forced: str = "") -> None:
        """Decide one buffered trace now: kept spans to the outbox, dropped ones counted."""
        trace = self.traces.pop(trace_id)
        self.buffered_bytes -= trace.nbytes + trace.release(self.headers)
        kept, policy = self.policies.decide(trace.summary, trace_id)
        self._metrics.decided(policy, kept, forced)
        count = len(trace.spans)
        if kept:
            self._to_outbox(trace.spans, trace.nbytes)
            _remember(self._kept_ids, trace_id, self.cfg.sampled_cache_size)
        else:
            self._buffered -= count
            self._metrics.dropped += count
            _remember(self._dropped_ids, trace_id, self.cfg.non_sampled_cache_size)

    def _to_outbox(self, spans: list[tuple[Header, bytes]], nbytes: int) -> None:
        self.outbox.append(spans)
        self.outbox_bytes += nbytes
        self._outbox_items += len(spans)

    # -- what the flusher asks ----------------------------------------------------------------

    def ready(self, now: float, *, draining: bool) -> float | None:
        """Now when draining or decided spans wait, else when the oldest trace is due."""
        if draining or self.outbox:
            return 0.0
        if not self.traces:
            return None
        return max(0.0, next(iter(self.traces.values())).deadline - now)

    def take(self) -> list[Batch]:
        """Decide every due trace (all when draining) and release the kept ones, whole, in batches."""
        draining = self.state is not State.RUNNING
        now = time.monotonic()
        while self.traces:
            trace_id, trace = next(iter(self.traces.items()))
            if not draining and trace.deadline > now:
                break
            self._decide(trace_id, forced="shutdown" if draining and trace.deadline > now else "")
        batches: list[Batch] = []
        group: list[list[tuple[Header, bytes]]] = []
        items = 0
        for spans in self.outbox:
            group.append(spans)
            items += len(spans)
            if items >= RELEASE_SPANS:
                batches.append(Batch.from_wire(Signal.TRACES, encode(group), items=items))
                group, items = [], 0
        if group:
            batches.append(Batch.from_wire(Signal.TRACES, encode(group), items=items))
        self.outbox, self.outbox_bytes, self._outbox_items = [], 0, 0
        self._taken.set()
        self._metrics.flush(len(self.traces), self.buffered_bytes)
        return batches

    def discard(self) -> None:
        """Forget everything (the shutdown deadline passed; the base counted it as lost)."""
        self.traces.clear()
        self.headers.clear()
        self.outbox, self.outbox_bytes, self._outbox_items, self.buffered_bytes = [], 0, 0, 0
        self._metrics.flush(0, 0)

    def accounted_bytes(self) -> int:
        """Bytes the buffer accounts for now: buffered traces plus decided spans not yet taken."""
        return self.buffered_bytes + self.outbox_bytes


def _remember(cache: OrderedDict[bytes, None], trace_id: bytes, size: int) -> None:
    if size <= 0:
        return
    cache[trace_id] = None
    if len(cache) > size:
        cache.popitem(last=False)


class _SamplingMetrics:
    """The ``obs_pipeline_processor_sampling_*`` series of one tail sampler.

    Decisions are counted into plain integers and added to the series once per batch
    (:meth:`flush`): a prometheus ``inc`` costs more than deciding a small trace.
    """

    def __init__(self, settings: ProcessorSettings, counters: ProcessorCounters) -> None:
        metrics = settings.metrics
        self._labels = {"processor": str(settings.id), "pipeline": settings.pipeline}
        self._counters = counters
        self._traces = metrics.processor_sampling_traces
        self._late = {d: metrics.processor_sampling_late_spans.labels(**self._labels, decision=d) for d in (KEPT, DROPPED)}
        self._early = {reason: metrics.processor_sampling_early_decisions.labels(**self._labels, reason=reason)
                       for reason in ("num_traces", "max_memory", "shutdown")}
        self._buffered_traces = metrics.processor_sampling_buffered_traces.labels(**self._labels)
        self._buffered_bytes = metrics.processor_sampling_buffered_bytes.labels(**self._labels)
        self._children: dict[tuple[str, bool], Any] = {}
        self._decided: dict[tuple[str, bool], int] = {}
        self._forced: dict[str, int] = {}
        self.dropped = 0  # spans dropped since the last flush

    def decided(self, policy: str, kept: bool, forced: str) -> None:
        """Count one decision (``forced``: the reason it came before decision_wait, or "")."""
        key = (policy, kept)
        self._decided[key] = self._decided.get(key, 0) + 1
        if forced:
            self._forced[forced] = self._forced.get(forced, 0) + 1

    def late(self, kept: int, dropped: int) -> None:
        """Count spans that followed an earlier decision."""
        if kept:
            self._late[KEPT].inc(kept)
        if dropped:
            self._late[DROPPED].inc(dropped)
            self.dropped += dropped

    def flush(self, traces: int, nbytes: int) -> None:
        """Add the counts gathered since the last flush; set the gauges."""
        for key, count in self._decided.items():
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self._traces.labels(
                    **self._labels, policy=key[0], decision=KEPT if key[1] else DROPPED)
            child.inc(count)
        for reason, count in self._forced.items():
            self._early[reason].inc(count)
        if self.dropped:
            self._counters.dropped(DROP_REASON, self.dropped)
        self._decided.clear()
        self._forced.clear()
        self.dropped = 0
        self._buffered_traces.set(traces)
        self._buffered_bytes.set(nbytes)


__all__ = ["TailSampler"]
