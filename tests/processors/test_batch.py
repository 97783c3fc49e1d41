"""The batch processor: size and time triggers, splitting, order, backpressure and a lossless drain."""

from __future__ import annotations

import asyncio
import time

import pytest

from obs_pipeline.batch import Batch
from obs_pipeline.errors import RefusedError
from obs_pipeline.processors.batch import BatchProcessor, Config, check
from obs_pipeline.signals import Message, Signal, count_items
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.testing import RecordingHost, make_processor_settings
from tests.enginekit import span_names, traces


class Sink:
    """A downstream consumer that records batches and can refuse while ``full`` is set."""

    def __init__(self) -> None:
        self.batches: list[Message] = []
        self.wires: list[bytes | None] = []
        self.full = False
        self.refusals = 0

    async def consume(self, batch: Batch) -> None:
        self.wires.append(batch.wire)
        if self.full:
            self.refusals += 1
            raise RefusedError("queue_full", retry_after=0.01)
        self.batches.append(batch.message)

    def sizes(self) -> list[int]:
        return [count_items(Signal.TRACES, b) for b in self.batches]


def _processor(sink: Sink, size: int = 10, timeout: float = 0.05, max_size: int = 0,
               metrics: SelfMetrics | None = None) -> BatchProcessor:
    cfg = Config(send_batch_size=size, timeout=timeout, send_batch_max_size=max_size)
    return BatchProcessor(make_processor_settings("batch", metrics=metrics), cfg, sink)


async def _until(predicate, timeout: float = 3.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.002)


class TestBatchProcessor:
    async def test_flushes_when_send_batch_size_is_reached(self):
        """Ten 1-span batches with send_batch_size 10 leave as one batch, long before the timeout."""
        sink = Sink()
        proc = _processor(sink, size=10, timeout=30)
        await proc.start(RecordingHost())
        for i in range(10):
            await proc.consume(Batch(Signal.TRACES, traces(1, start=i)))
        await _until(lambda: sink.batches)
        assert sink.sizes() == [10]
        assert span_names(sink.batches) == [f"span-{i}" for i in range(10)]
        await proc.shutdown()

    async def test_flushes_a_small_batch_after_the_timeout(self):
        """Three spans, far below the size, are sent once the timeout passes."""
        sink = Sink()
        proc = _processor(sink, size=1000, timeout=0.05)
        await proc.start(RecordingHost())
        began = time.monotonic()
        await proc.consume(Batch(Signal.TRACES, traces(3)))
        await _until(lambda: sink.batches)
        assert 0.04 <= time.monotonic() - began < 1.0
        assert sink.sizes() == [3]
        await proc.shutdown()

    async def test_splits_batches_above_send_batch_max_size(self):
        """A 25-span request with send_batch_max_size 10 leaves as 10 + 10 + 5, in order."""
        sink = Sink()
        proc = _processor(sink, size=10, timeout=0.01, max_size=10)
        await proc.start(RecordingHost())
        await proc.consume(Batch(Signal.TRACES, traces(25)))
        await _until(lambda: sum(sink.sizes()) == 25)
        assert sink.sizes() == [10, 10, 5]
        assert span_names(sink.batches) == [f"span-{i}" for i in range(25)]
        await proc.shutdown()

    async def test_zero_timeout_passes_batches_straight_through(self):
        """timeout 0s: the caller's consume returns after the batch went downstream, split if needed."""
        sink = Sink()
        proc = _processor(sink, size=4, timeout=0, max_size=4)
        await proc.start(RecordingHost())
        await proc.consume(Batch(Signal.TRACES, traces(6)))
        assert sink.sizes() == [4, 2]
        sink.full = True
        with pytest.raises(RefusedError):
            await proc.consume(Batch(Signal.TRACES, traces(1)))
        await proc.shutdown()

    async def test_backpressure_refuses_new_data_while_downstream_is_full_and_loses_nothing(self):
        """With the exporters full the buffer fills, new data is refused, and everything accepted arrives later."""
        sink = Sink()
        sink.full = True
        proc = _processor(sink, size=10, timeout=0.01)
        await proc.start(RecordingHost())
        accepted, refused = 0, 0
        for i in range(20):
            try:
                await proc.consume(Batch(Signal.TRACES, traces(5, start=i * 5)))
                accepted += 5
            except RefusedError as exc:
                assert exc.reason == "queue_full"
                refused += 5
            await asyncio.sleep(0.002)
        assert refused > 0, "the buffer must refuse once it holds capacity"
        assert accepted <= proc.capacity + 10
        sink.full = False
        await _until(lambda: sum(sink.sizes()) == accepted)
        await proc.shutdown()
        assert sum(sink.sizes()) == accepted

    async def test_shutdown_flushes_everything_buffered(self):
        """Data buffered under a long timeout is flushed by shutdown, not dropped."""
        sink = Sink()
        proc = _processor(sink, size=1000, timeout=60)
        await proc.start(RecordingHost())
        await proc.consume(Batch(Signal.TRACES, traces(7)))
        await proc.shutdown()
        assert sink.sizes() == [7]
        with pytest.raises(RefusedError):
            await proc.consume(Batch(Signal.TRACES, traces(1)))

    async def test_items_left_at_a_cut_short_shutdown_are_counted(self):
        """If the drain is cancelled at the deadline, the buffered items are counted as dropped."""
        metrics = SelfMetrics()
        sink = Sink()
        sink.full = True
        proc = _processor(sink, size=1000, timeout=60, metrics=metrics)
        await proc.start(RecordingHost())
        await proc.consume(Batch(Signal.TRACES, traces(7)))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(proc.shutdown(), 0.1)
        dropped = metrics.registry.get_sample_value(
            "obs_pipeline_processor_dropped_items_total", {"processor": "batch", "pipeline": "traces", "reason": "shutdown"})
        assert dropped == 7

    async def test_shutdown_without_start_is_safe_and_idempotent(self):
        """Shutdown may be called before start and twice."""
        proc = _processor(Sink())
        await proc.shutdown()
        await proc.shutdown()


class TestBatchConfig:
    def test_max_size_below_size_is_a_config_problem(self):
        """send_batch_max_size smaller than send_batch_size is reported at send_batch_max_size."""
        problems = check(Config(send_batch_size=100, timeout=0.2, send_batch_max_size=50))
        assert [p.path for p in problems] == ["send_batch_max_size"]
        assert check(Config(send_batch_size=100, timeout=0.2, send_batch_max_size=0)) == []


class TestWireBytes:
    async def test_parts_are_merged_by_joining_their_bytes_and_the_join_travels_on(self):
        """Three requests with their wire bytes leave as one batch whose bytes are exactly their join."""
        sink = Sink()
        proc = _processor(sink, size=9, timeout=30)
        await proc.start(RecordingHost())
        parts = [traces(3, start=i * 3) for i in range(3)]
        for part in parts:
            await proc.consume(Batch(Signal.TRACES, part, wire=part.SerializeToString()))
        await _until(lambda: sink.batches)
        await proc.shutdown()
        assert span_names(sink.batches) == [f"span-{i}" for i in range(9)]
        assert sink.wires == [b"".join(p.SerializeToString() for p in parts)]
        assert sink.batches[0].SerializeToString() == sink.wires[0]

    async def test_parts_without_bytes_are_serialized_for_the_join(self):
        """A part that came without bytes (OTLP/JSON, stdin) is serialized, so the batch still has them."""
        sink = Sink()
        proc = _processor(sink, size=4, timeout=30)
        await proc.start(RecordingHost())
        first, second = traces(2), traces(2, start=2)
        await proc.consume(Batch(Signal.TRACES, first, wire=first.SerializeToString()))
        await proc.consume(Batch(Signal.TRACES, second))
        await _until(lambda: sink.batches)
        await proc.shutdown()
        assert sink.wires[0] == first.SerializeToString() + second.SerializeToString()

    async def test_split_batches_carry_no_stale_bytes(self):
        """When a batch is split, its chunks go on without the whole batch's bytes."""
        sink = Sink()
        proc = _processor(sink, size=4, timeout=0.01, max_size=4)
        await proc.start(RecordingHost())
        data = traces(6)
        await proc.consume(Batch(Signal.TRACES, data, wire=data.SerializeToString()))
        await _until(lambda: sum(sink.sizes()) == 6)
        await proc.shutdown()
        assert sink.wires == [None, None]

    async def test_a_failing_downstream_stage_is_counted_and_flushing_goes_on(self):
        """An unexpected error downstream drops that batch (counted) but later batches still flow."""
        metrics = SelfMetrics()

        class Flaky(Sink):
            async def consume(self, batch: Batch) -> None:
                if not self.wires:
                    self.wires.append(batch.wire)
                    raise RuntimeError("bug")
                await super().consume(batch)

        sink = Flaky()
        proc = _processor(sink, size=2, timeout=0.01, metrics=metrics)
        await proc.start(RecordingHost())
        await proc.consume(Batch(Signal.TRACES, traces(2)))
        await _until(lambda: sink.wires)
        await proc.consume(Batch(Signal.TRACES, traces(2, start=2)))
        await _until(lambda: sink.batches)
        await proc.shutdown()
        assert span_names(sink.batches) == ["span-2", "span-3"]
        assert metrics.registry.get_sample_value("obs_pipeline_processor_dropped_items_total", {
            "processor": "batch", "pipeline": "traces", "reason": "downstream_error"}) == 2
