"""The processor helpers: counting, exception policy, supervision, and the lifecycle state.

The function form counts and maps exceptions; the buffering base supervises its flusher; every
component shares the lifecycle state machine.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from obs_pipeline.batch import Batch
from obs_pipeline.components import LifecycleError, State
from obs_pipeline.errors import ProcessingError, RefusedError
from obs_pipeline.processors._helper import FunctionProcessor
from obs_pipeline.processors.batch import BatchProcessor, Config
from obs_pipeline.signals import Signal
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.testing import CapturingConsumer, RecordingHost, RefusingConsumer, make_processor_settings
from tests.enginekit import traces


def _sample(metrics: SelfMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, {"processor": "p", "pipeline": "traces", **labels}) or 0.0


async def _until(predicate, timeout: float = 3.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.002)


def _keep_even_spans(batch: Batch) -> Batch | None:
    data = batch.mutable()
    spans = data.resource_spans[0].scope_spans[0].spans
    kept = [s for i, s in enumerate(spans) if i % 2 == 0]
    if not kept:
        return None
    del spans[:]
    spans.extend(kept)
    return batch


class TestFunctionProcessor:
    async def test_counts_items_in_out_and_dropped_with_the_processors_reason(self):
        """A function that keeps half the spans: 10 in, 5 out, 5 dropped as 'sampled'."""
        metrics, sink = SelfMetrics(), CapturingConsumer()
        proc = FunctionProcessor(make_processor_settings("p", metrics=metrics), sink, _keep_even_spans,
                                 drop_reason="sampled")
        await proc.start(RecordingHost())
        await proc.consume(Batch(Signal.TRACES, traces(10)))
        assert sink.items == 5
        assert _sample(metrics, "obs_pipeline_processor_incoming_items_total") == 10
        assert _sample(metrics, "obs_pipeline_processor_outgoing_items_total") == 5
        assert _sample(metrics, "obs_pipeline_processor_dropped_items_total", reason="sampled") == 5

    async def test_a_function_that_drops_everything_hands_nothing_on(self):
        """None means dropped on purpose: counted, nothing passed on, no error for the sender."""
        metrics, sink = SelfMetrics(), CapturingConsumer()
        proc = FunctionProcessor(make_processor_settings("p", metrics=metrics), sink, lambda _b: None,
                                 drop_reason="filtered")
        await proc.start(RecordingHost())
        await proc.consume(Batch(Signal.TRACES, traces(3)))
        assert sink.batches == []
        assert _sample(metrics, "obs_pipeline_processor_dropped_items_total", reason="filtered") == 3

    async def test_a_raising_function_costs_only_its_batch_and_the_sender_is_told(self):
        """The exception becomes a non-retryable ProcessingError, counted; the next batch goes through."""
        metrics, sink = SelfMetrics(), CapturingConsumer()
        calls = []

        def flaky(batch: Batch) -> Batch:
            calls.append(batch)
            if len(calls) == 1:
                raise KeyError("sk-live-secret-in-message")
            return batch

        proc = FunctionProcessor(make_processor_settings("p", metrics=metrics), sink, flaky, drop_reason="x")
        await proc.start(RecordingHost())
        with pytest.raises(ProcessingError) as info:
            await proc.consume(Batch(Signal.TRACES, traces(2)))
        assert "sk-live" not in str(info.value)
        await proc.consume(Batch(Signal.TRACES, traces(2)))
        assert sink.items == 2
        assert _sample(metrics, "obs_pipeline_processor_dropped_items_total", reason="processing_error") == 2

    async def test_counts_the_cpu_its_function_spends_and_not_the_time_it_waits(self):
        """An operator reads what a processor costs from /metrics: CPU burnt counts, sleeping does not."""
        metrics, sink = SelfMetrics(), CapturingConsumer()

        def burn_then_sleep(batch: Batch) -> Batch:
            start = time.thread_time()
            while time.thread_time() - start < 0.05:
                pass
            time.sleep(0.2)
            return batch

        proc = FunctionProcessor(make_processor_settings("p", metrics=metrics), sink, burn_then_sleep,
                                 drop_reason="x")
        await proc.start(RecordingHost())
        await proc.consume(Batch(Signal.TRACES, traces(1)))
        cpu = _sample(metrics, "obs_pipeline_processor_cpu_seconds_total")
        assert 0.05 <= cpu < 0.15  # the 0.05 s burnt, not the 0.25 s the call took

    async def test_the_cpu_of_a_function_that_raises_is_counted_too(self):
        """A batch that fails after work still cost that work."""
        metrics = SelfMetrics()

        def burn_then_raise(_batch: Batch) -> Batch:
            start = time.thread_time()
            while time.thread_time() - start < 0.03:
                pass
            raise ValueError("bad batch")

        proc = FunctionProcessor(make_processor_settings("p", metrics=metrics), CapturingConsumer(), burn_then_raise,
                                 drop_reason="x")
        await proc.start(RecordingHost())
        with pytest.raises(ProcessingError):
            await proc.consume(Batch(Signal.TRACES, traces(1)))
        assert _sample(metrics, "obs_pipeline_processor_cpu_seconds_total") >= 0.03

    async def test_a_mutating_function_cannot_pass_on_stale_wire_bytes(self):
        """The batch came with request bytes; after the function changed it, what goes on has none."""
        sink = CapturingConsumer()
        proc = FunctionProcessor(make_processor_settings("p"), sink, _keep_even_spans, drop_reason="sampled")
        await proc.start(RecordingHost())
        data = traces(4)
        await proc.consume(Batch(Signal.TRACES, data, wire=data.SerializeToString()))
        assert sink.batches[0].wire is None

    async def test_refuses_after_shutdown(self):
        """A stopped processor refuses (retryable) instead of passing data into a stopped pipeline."""
        proc = FunctionProcessor(make_processor_settings("p"), CapturingConsumer(), lambda b: b, drop_reason="x")
        await proc.start(RecordingHost())
        await proc.shutdown()
        with pytest.raises(RefusedError):
            await proc.consume(Batch(Signal.TRACES, traces(1)))


class TestCountingOnRefusal:
    async def test_a_refused_batch_is_counted_once_when_it_finally_goes_through(self):
        """The next stage refuses twice, then takes it: incoming/outgoing/dropped move once, not three times."""
        metrics = SelfMetrics()
        sink = RefusingConsumer(times=2, retry_after=0.01)
        proc = FunctionProcessor(make_processor_settings("p", metrics=metrics), sink, _keep_even_spans,
                                 drop_reason="sampled")
        await proc.start(RecordingHost())
        batch = Batch(Signal.TRACES, traces(4))
        for _ in range(2):
            with pytest.raises(RefusedError):
                await proc.consume(batch)
        await proc.consume(batch)  # the same batch again: its remembered result goes on, the function does not rerun
        assert sink.items == 2
        assert _sample(metrics, "obs_pipeline_processor_incoming_items_total") == 4
        assert _sample(metrics, "obs_pipeline_processor_outgoing_items_total") == 2
        assert _sample(metrics, "obs_pipeline_processor_dropped_items_total", reason="sampled") == 2


class TestSupervision:
    async def test_a_dying_flusher_is_reported_and_nothing_more_is_accepted(self):
        """The batch flusher dies: the host hears a fatal error and new data is refused, not silently lost."""
        host, sink = RecordingHost(), CapturingConsumer()
        proc = BatchProcessor(make_processor_settings("batch"),
                              Config(send_batch_size=2, timeout=0.01, send_batch_max_size=0), sink)

        def broken_take() -> list[Batch]:
            raise RuntimeError("bug in take")

        proc.take = broken_take  # type: ignore[method-assign]
        await proc.start(host)
        await proc.consume(Batch(Signal.TRACES, traces(2)))
        await _until(lambda: bool(host.fatal))
        assert host.fatal[0][0] == "batch"
        with pytest.raises(RefusedError) as info:
            await proc.consume(Batch(Signal.TRACES, traces(1)))
        assert info.value.reason == "processor_failed"
        await proc.shutdown()


class TestLifecycle:
    async def test_a_second_start_raises_and_spawns_no_second_flusher(self):
        """Starting twice is a bug: it raises, and the one flusher keeps the order of batches."""
        proc = BatchProcessor(make_processor_settings("batch"),
                              Config(send_batch_size=2, timeout=10, send_batch_max_size=0), CapturingConsumer())
        await proc.start(RecordingHost())
        tasks_before = len(asyncio.all_tasks())
        with pytest.raises(LifecycleError):
            await proc.start(RecordingHost())
        assert len(asyncio.all_tasks()) == tasks_before
        await proc.shutdown()
        assert proc.state is State.STOPPED

    async def test_a_stopped_component_cannot_be_started_again(self):
        """After shutdown, start raises instead of running a half-torn-down component."""
        proc = FunctionProcessor(make_processor_settings("p"), CapturingConsumer(), lambda b: b, drop_reason="x")
        await proc.shutdown()
        with pytest.raises(LifecycleError):
            await proc.start(RecordingHost())

    async def test_shutdown_is_idempotent_and_safe_without_start(self):
        """Shutting down twice, or without a start, is a no-op, not an error."""
        proc = BatchProcessor(make_processor_settings("batch"),
                              Config(send_batch_size=2, timeout=10, send_batch_max_size=0), CapturingConsumer())
        await proc.shutdown()
        await proc.shutdown()
        assert proc.state is State.STOPPED

    async def test_a_shutdown_during_start_waits_for_the_start(self):
        """shutdown() while on_start is still running waits, then stops: no RUNNING component left behind."""
        gate = asyncio.Event()

        class SlowStart(FunctionProcessor):
            async def on_start(self, host):
                await gate.wait()

        proc = SlowStart(make_processor_settings("p"), CapturingConsumer(), lambda b: b, drop_reason="x")
        starting = asyncio.ensure_future(proc.start(RecordingHost()))
        await asyncio.sleep(0)
        stopping = asyncio.ensure_future(proc.shutdown())
        await asyncio.sleep(0.01)
        assert not stopping.done()
        gate.set()
        await starting
        await stopping
        assert proc.state is State.STOPPED

    async def test_spawn_outside_the_lifecycle_is_refused(self):
        """A task spawned by a component that never started would run unsupervised: it is refused."""
        proc = FunctionProcessor(make_processor_settings("p"), CapturingConsumer(), lambda b: b, drop_reason="x")
        with pytest.raises(LifecycleError):
            proc.spawn(asyncio.sleep(1), "orphan")

    async def test_a_failed_start_undoes_itself(self):
        """on_start raises after spawning a task: the task is cancelled and the component is stopped."""
        started: list[asyncio.Task[None]] = []

        class Fails(FunctionProcessor):
            async def on_start(self, host):
                started.append(self.spawn(asyncio.sleep(30), "sleeper"))
                raise OSError("cannot bind")

        proc = Fails(make_processor_settings("p"), CapturingConsumer(), lambda b: b, drop_reason="x")
        with pytest.raises(OSError, match="cannot bind"):
            await proc.start(RecordingHost())
        await asyncio.sleep(0)
        assert started[0].cancelled()
        assert proc.state is State.STOPPED


class TestRememberedRefusals:
    async def test_a_refused_batch_the_sender_drops_is_forgotten(self):
        """A receiver's refused batch is not kept alive by the processor: memory follows the callers."""
        import gc  # noqa: PLC0415
        import weakref  # noqa: PLC0415

        proc = FunctionProcessor(make_processor_settings("p"), RefusingConsumer(), lambda b: b, drop_reason="x")
        await proc.start(RecordingHost())
        batch = Batch(Signal.TRACES, traces(3))
        alive = weakref.ref(batch)
        with pytest.raises(RefusedError):
            await proc.consume(batch)
        del batch
        gc.collect()
        assert alive() is None
