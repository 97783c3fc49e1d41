"""The exporter queue: bounded admission, retries by the rules, drain on shutdown, counted failures."""

from __future__ import annotations

import asyncio
import time

import pytest

from obs_pipeline.batch import Batch
from obs_pipeline.components import PartialSuccess
from obs_pipeline.delivery import QueueSettings, RetrySettings
from obs_pipeline.errors import RefusedError
from obs_pipeline.signals import Signal
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.testing import RecordingHost
from tests.enginekit import PermanentError, RecordingExporter, RetryableError, put, queued, traces

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
        q = queued(rec, metrics, QueueSettings(), FAST_RETRY)
        await q.start(_Host())
        for i in range(5):
            put(q, traces(3, start=i * 3))
        await _wait_for(lambda: rec.items() == 15)
        await q.shutdown(time.monotonic() + 1)
        names = [s.name for b in rec.batches for s in b.resource_spans[0].scope_spans[0].spans]
        assert names == [f"span-{i}" for i in range(15)]
        assert _sample(metrics, "obs_pipeline_exporter_sent_items_total", exporter="recorder", signal="traces") == 15
        assert rec.shut_down == 1

    def test_failure_series_exist_at_zero_before_any_failure(self):
        """Alerting on failed items works from the first scrape: every reason is exported as 0."""
        metrics = SelfMetrics()
        queued(RecordingExporter(metrics=metrics), metrics, QueueSettings(), FAST_RETRY)
        for reason in ("permanent_error", "retries_exhausted", "retries_disabled", "shutdown"):
            assert metrics.registry.get_sample_value("obs_pipeline_exporter_failed_items_total", {
                "exporter": "recorder", "signal": "logs", "reason": reason}) == 0

    async def test_queue_is_bounded_in_items_but_takes_any_batch_when_empty(self):
        """A full queue reports no room; an empty one takes even an oversize batch."""
        metrics = SelfMetrics()
        q = queued(RecordingExporter(metrics=metrics), metrics, QueueSettings(queue_size=10), FAST_RETRY)
        assert q.has_room(50)
        put(q, traces(8))
        assert q.has_room(2)
        assert not q.has_room(3)
        assert _sample(metrics, "obs_pipeline_exporter_queue_size", exporter="recorder") == 8
        assert _sample(metrics, "obs_pipeline_exporter_queue_capacity", exporter="recorder") == 10

    async def test_retryable_failure_is_retried_until_it_succeeds(self):
        """Two retryable failures, then success: delivered once, nothing counted as failed."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        rec.fail_next = [RetryableError("disk full"), RetryableError("disk full")]
        q = queued(rec, metrics, QueueSettings(), FAST_RETRY)
        await q.start(_Host())
        put(q, traces(4))
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
        q = queued(rec, metrics, QueueSettings(), FAST_RETRY)
        await q.start(_Host())
        began = time.monotonic()
        put(q, traces(1))
        await _wait_for(lambda: rec.items() == 1)
        assert time.monotonic() - began >= 0.29
        await q.shutdown(time.monotonic() + 1)

    async def test_permanent_failure_is_dropped_at_once_and_counted(self):
        """A permanent error is not retried; its items are counted with reason permanent_error."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        rec.fail_next = [PermanentError("rejected")]
        q = queued(rec, metrics, QueueSettings(), FAST_RETRY)
        await q.start(_Host())
        put(q, traces(7))
        put(q, traces(2))
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
        q = queued(rec, metrics, QueueSettings(), retry)
        await q.start(_Host())
        put(q, traces(5))
        await _wait_for(lambda: _sample(metrics, "obs_pipeline_exporter_failed_items_total", exporter="recorder",
                                        signal="traces", reason="retries_exhausted") == 5)
        assert 3 <= rec.calls <= 7
        await q.shutdown(time.monotonic() + 1)

    async def test_shutdown_drains_the_queue_before_closing(self):
        """Everything queued when shutdown starts is delivered if the deadline allows."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        rec.gate = asyncio.Event()
        q = queued(rec, metrics, QueueSettings(), FAST_RETRY)
        await q.start(_Host())
        for i in range(10):
            put(q, traces(1, start=i))
        asyncio.get_running_loop().call_later(0.1, rec.gate.set)
        await q.shutdown(time.monotonic() + 5)
        assert rec.items() == 10
        assert not q.has_room(1), "a stopped queue takes nothing more"

    async def test_undelivered_items_at_the_deadline_are_counted_not_silently_lost(self):
        """A stuck exporter: at the deadline the queued and in-flight items are counted as shutdown failures."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        rec.gate = asyncio.Event()  # never opens
        q = queued(rec, metrics, QueueSettings(), FAST_RETRY)
        await q.start(_Host())
        for i in range(4):
            put(q, traces(2, start=i * 2))
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
        q = queued(rec, metrics, QueueSettings(enabled=False), RetrySettings(enabled=False))
        await q.start(_Host())
        with pytest.raises(RetryableError):
            await q.send_now(Batch(Signal.TRACES, traces(3)))
        with pytest.raises(RetryableError):
            await q.send_now(Batch(Signal.TRACES, traces(3)))
        q.retry = FAST_RETRY
        with pytest.raises(PermanentError):
            await q.send_now(Batch(Signal.TRACES, traces(3)))
        for reason in ("retries_disabled", "permanent_error", "retries_exhausted"):
            assert _sample(metrics, "obs_pipeline_exporter_failed_items_total", exporter="recorder",
                           signal="traces", reason=reason) == 0
        await q.shutdown(time.monotonic() + 1)

    async def test_disabled_queue_exports_while_the_caller_waits(self):
        """With sending_queue.enabled false, send_now returns after the export happened."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        q = queued(rec, metrics, QueueSettings(enabled=False), FAST_RETRY)
        await q.start(_Host())
        assert not q.queued
        await q.send_now(Batch(Signal.TRACES, traces(3)))
        assert rec.items() == 3
        await q.shutdown(time.monotonic() + 1)


class TestOutcomes:
    async def test_an_unexpected_exception_is_retried_not_dropped(self):
        """A bug-like exception (not Retryable/Permanent) is retried as the collector does; the batch arrives."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        rec.fail_next = [KeyError("secret-looking key"), ConnectionResetError()]
        q = queued(rec, metrics, QueueSettings(), FAST_RETRY)
        await q.start(_Host())
        put(q, traces(4))
        await _wait_for(lambda: rec.items() == 4)
        await q.shutdown(time.monotonic() + 1)
        assert rec.calls == 3
        assert _sample(metrics, "obs_pipeline_exporter_sent_items_total", exporter="recorder", signal="traces") == 4
        assert _sample(metrics, "obs_pipeline_exporter_failed_items_total", exporter="recorder", signal="traces",
                       reason="permanent_error") == 0

    async def test_an_unexpected_exception_is_logged_by_class_never_by_message(self, caplog):
        """The exception's text may quote telemetry: the retry warning names its class and place only."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        rec.fail_next = [ValueError("sk-proj-leakedleakedleaked")]
        q = queued(rec, metrics, QueueSettings(), FAST_RETRY)
        await q.start(_Host())
        put(q, traces(1))
        await _wait_for(lambda: rec.items() == 1)
        await q.shutdown(time.monotonic() + 1)
        assert "ValueError" in caplog.text
        assert "sk-proj-leaked" not in caplog.text

    async def test_partial_success_is_success_with_its_rejected_items_counted(self):
        """The destination took the batch but rejected 3 items: no retry, 3 failed as rejected, the rest sent."""
        metrics = SelfMetrics()

        class Partial(RecordingExporter):
            async def export(self, batch):
                await super().export(batch)
                return PartialSuccess(rejected=3, message="3 spans had invalid ids")

        rec = Partial(metrics=metrics)
        q = queued(rec, metrics, QueueSettings(), FAST_RETRY)
        await q.start(_Host())
        put(q, traces(10))
        await _wait_for(lambda: rec.items() == 10)
        await q.shutdown(time.monotonic() + 1)
        assert rec.calls == 1
        assert _sample(metrics, "obs_pipeline_exporter_sent_items_total", exporter="recorder", signal="traces") == 7
        assert _sample(metrics, "obs_pipeline_exporter_failed_items_total", exporter="recorder", signal="traces",
                       reason="rejected") == 3

    async def test_a_dying_queue_consumer_is_reported_to_the_host(self):
        """If a consumer task dies (a bug in the helper itself), the host hears of it instead of data piling up."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        q = queued(rec, metrics, QueueSettings(), FAST_RETRY)
        host = RecordingHost()

        async def broken_deliver(batch, *, synchronous=False):
            raise RuntimeError("bug")

        q._deliver = broken_deliver  # type: ignore[method-assign]
        await q.start(host)
        put(q, traces(1))
        await _wait_for(lambda: bool(host.fatal))
        assert host.fatal[0][0] == "recorder"
        assert _sample(metrics, "obs_pipeline_exporter_failed_items_total", exporter="recorder", signal="traces",
                       reason="internal_error") == 1
        with pytest.raises(RefusedError) as info:
            q.reserve(1)
        assert info.value.reason == "exporter_failed", "nothing is accepted that no consumer would deliver"
        await q.shutdown(time.monotonic() + 1)
