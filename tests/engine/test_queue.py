"""The exporter queue: bounded admission, retries by the rules, drain on shutdown, counted failures."""

from __future__ import annotations

import asyncio
import time

import pytest

from obs_pipeline.engine.queue import QueuedExporter, QueueSettings, RetrySettings
from obs_pipeline.signals import Signal
from obs_pipeline.telemetry.metrics import SelfMetrics
from tests.enginekit import PermanentError, RecordingExporter, RetryableError, traces

FAST_RETRY = RetrySettings(initial_interval=0.01, max_interval=0.02, max_elapsed_time=5.0)


class _Host:
    def report_fatal(self, component: str, error: BaseException) -> None: ...
    def receiver_finished(self, component: str) -> None: ...


def _sample(metrics: SelfMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def _wait_for(predicate, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.005)


class TestQueuedExporter:
    async def test_delivers_queued_batches_in_order_and_counts_them(self):
        """Batches put in the queue reach the exporter in order and move the sent counter."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        q = QueuedExporter(rec, metrics, QueueSettings(), FAST_RETRY)
        await q.start(_Host())
        for i in range(5):
            q.put_nowait(Signal.TRACES, traces(3, start=i * 3), 3)
        await _wait_for(lambda: rec.items() == 15)
        await q.shutdown(time.monotonic() + 1)
        names = [s.name for b in rec.batches for s in b.resource_spans[0].scope_spans[0].spans]
        assert names == [f"span-{i}" for i in range(15)]
        assert _sample(metrics, "obs_pipeline_exporter_sent_items_total", exporter="recorder", signal="traces") == 15
        assert rec.shut_down == 1

    def test_failure_series_exist_at_zero_before_any_failure(self):
        """Alerting on failed items works from the first scrape: every reason is exported as 0."""
        metrics = SelfMetrics()
        QueuedExporter(RecordingExporter(metrics=metrics), metrics, QueueSettings(), FAST_RETRY)
        for reason in ("permanent_error", "retries_exhausted", "retries_disabled", "shutdown"):
            assert metrics.registry.get_sample_value("obs_pipeline_exporter_failed_items_total", {
                "exporter": "recorder", "signal": "logs", "reason": reason}) == 0

    async def test_queue_is_bounded_in_items_but_takes_any_batch_when_empty(self):
        """A full queue reports no room; an empty one takes even an oversize batch."""
        metrics = SelfMetrics()
        q = QueuedExporter(RecordingExporter(metrics=metrics), metrics, QueueSettings(queue_size=10), FAST_RETRY)
        assert q.has_room(50)
        q.put_nowait(Signal.TRACES, traces(8), 8)
        assert q.has_room(2)
        assert not q.has_room(3)
        assert _sample(metrics, "obs_pipeline_exporter_queue_size", exporter="recorder") == 8
        assert _sample(metrics, "obs_pipeline_exporter_queue_capacity", exporter="recorder") == 10

    async def test_retryable_failure_is_retried_until_it_succeeds(self):
        """Two retryable failures, then success: delivered once, nothing counted as failed."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        rec.fail_next = [RetryableError("disk full"), RetryableError("disk full")]
        q = QueuedExporter(rec, metrics, QueueSettings(), FAST_RETRY)
        await q.start(_Host())
        q.put_nowait(Signal.TRACES, traces(4), 4)
        await _wait_for(lambda: rec.items() == 4)
        await q.shutdown(time.monotonic() + 1)
        assert rec.calls == 3
        assert _sample(metrics, "obs_pipeline_exporter_failed_items_total", exporter="recorder", signal="traces",
                       reason="retries_exhausted") == 0

    async def test_retry_honours_the_servers_retry_after_hint(self):
        """A retry_after hint longer than the backoff sets the wait."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        rec.fail_next = [RetryableError("throttled", retry_after=0.3)]
        q = QueuedExporter(rec, metrics, QueueSettings(), FAST_RETRY)
        await q.start(_Host())
        began = time.monotonic()
        q.put_nowait(Signal.TRACES, traces(1), 1)
        await _wait_for(lambda: rec.items() == 1)
        assert time.monotonic() - began >= 0.29
        await q.shutdown(time.monotonic() + 1)

    async def test_permanent_failure_is_dropped_at_once_and_counted(self):
        """A permanent error is not retried; its items are counted with reason permanent_error."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        rec.fail_next = [PermanentError("rejected")]
        q = QueuedExporter(rec, metrics, QueueSettings(), FAST_RETRY)
        await q.start(_Host())
        q.put_nowait(Signal.TRACES, traces(7), 7)
        q.put_nowait(Signal.TRACES, traces(2), 2)
        await _wait_for(lambda: rec.items() == 2)
        await q.shutdown(time.monotonic() + 1)
        assert rec.calls == 2
        assert _sample(metrics, "obs_pipeline_exporter_failed_items_total", exporter="recorder", signal="traces",
                       reason="permanent_error") == 7

    async def test_gives_up_after_max_elapsed_time(self):
        """Retrying stops once max_elapsed_time would be passed, and the batch is counted."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        rec.fail_next = [RetryableError("down")] * 100
        retry = RetrySettings(initial_interval=0.02, max_interval=0.02, max_elapsed_time=0.1, randomization_factor=0)
        q = QueuedExporter(rec, metrics, QueueSettings(), retry)
        await q.start(_Host())
        q.put_nowait(Signal.TRACES, traces(5), 5)
        await _wait_for(lambda: _sample(metrics, "obs_pipeline_exporter_failed_items_total", exporter="recorder",
                                        signal="traces", reason="retries_exhausted") == 5)
        assert 3 <= rec.calls <= 7
        await q.shutdown(time.monotonic() + 1)

    async def test_shutdown_drains_the_queue_before_closing(self):
        """Everything queued when shutdown starts is delivered if the deadline allows."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        rec.gate = asyncio.Event()
        q = QueuedExporter(rec, metrics, QueueSettings(), FAST_RETRY)
        await q.start(_Host())
        for i in range(10):
            q.put_nowait(Signal.TRACES, traces(1, start=i), 1)
        asyncio.get_running_loop().call_later(0.1, rec.gate.set)
        await q.shutdown(time.monotonic() + 5)
        assert rec.items() == 10
        assert not q.has_room(1), "a stopped queue takes nothing more"

    async def test_undelivered_items_at_the_deadline_are_counted_not_silently_lost(self):
        """A stuck exporter: at the deadline the queued and in-flight items are counted as shutdown failures."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        rec.gate = asyncio.Event()  # never opens
        q = QueuedExporter(rec, metrics, QueueSettings(), FAST_RETRY)
        await q.start(_Host())
        for i in range(4):
            q.put_nowait(Signal.TRACES, traces(2, start=i * 2), 2)
        began = time.monotonic()
        await q.shutdown(time.monotonic() + 0.3)
        assert time.monotonic() - began < 2
        assert _sample(metrics, "obs_pipeline_exporter_failed_items_total", exporter="recorder", signal="traces",
                       reason="shutdown") == 8

    async def test_disabled_queue_raises_failures_to_the_waiting_sender_instead_of_dropping(self):
        """Without a queue nothing was acknowledged yet: a failure reaches the sender and is not counted as lost."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        rec.fail_next = [RetryableError("disk full")] * 3 + [PermanentError("rejected")]
        q = QueuedExporter(rec, metrics, QueueSettings(enabled=False), RetrySettings(enabled=False))
        await q.start(_Host())
        with pytest.raises(RetryableError):
            await q.send_now(Signal.TRACES, traces(3), 3)
        with pytest.raises(RetryableError):
            await q.send_now(Signal.TRACES, traces(3), 3)
        q.retry = FAST_RETRY
        with pytest.raises(PermanentError):
            await q.send_now(Signal.TRACES, traces(3), 3)
        for reason in ("retries_disabled", "permanent_error", "retries_exhausted"):
            assert _sample(metrics, "obs_pipeline_exporter_failed_items_total", exporter="recorder",
                           signal="traces", reason=reason) == 0
        await q.shutdown(time.monotonic() + 1)

    async def test_disabled_queue_exports_while_the_caller_waits(self):
        """With sending_queue.enabled false, send_now returns after the export happened."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        q = QueuedExporter(rec, metrics, QueueSettings(enabled=False), FAST_RETRY)
        await q.start(_Host())
        assert not q.queued
        await q.send_now(Signal.TRACES, traces(3), 3)
        assert rec.items() == 3
        await q.shutdown(time.monotonic() + 1)
