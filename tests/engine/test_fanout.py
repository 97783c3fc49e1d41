"""Fan-out: all-or-nothing admission into exporter queues, and copies for mutating pipelines."""

from __future__ import annotations

import pytest

from obs_pipeline.batch import Batch
from obs_pipeline.delivery import QueueSettings, RetrySettings
from obs_pipeline.engine.fanout import ExportersFanout, PipelinesFanout, single_or_fanout
from obs_pipeline.errors import RefusedError
from obs_pipeline.signals import Message, Signal
from obs_pipeline.telemetry.metrics import SelfMetrics
from tests.enginekit import PermanentError, RecordingExporter, queued, traces


class Recorder:
    def __init__(self, mutate: bool = False, refuse: bool = False) -> None:
        self.seen: list[Message] = []
        self.mutate = mutate
        self.refuse = refuse

    async def consume(self, batch: Batch) -> None:
        if self.refuse:
            raise RefusedError("queue_full")
        if self.mutate:
            batch.mutable().resource_spans[0].scope_spans[0].spans[0].name = "REDACTED"
        self.seen.append(batch.message)


class TestExportersFanout:
    async def test_a_batch_enters_every_queue_or_none(self):
        """When one exporter queue is full, the batch is refused and no queue takes it."""
        metrics = SelfMetrics()
        roomy = queued(RecordingExporter("a", metrics), metrics, QueueSettings(queue_size=100), RetrySettings())
        tight = queued(RecordingExporter("b", metrics), metrics, QueueSettings(queue_size=5), RetrySettings())
        fanout = ExportersFanout([roomy, tight])
        await fanout.consume(Batch(Signal.TRACES, traces(4)))
        with pytest.raises(RefusedError) as info:
            await fanout.consume(Batch(Signal.TRACES, traces(4)))
        assert info.value.reason == "queue_full"
        assert metrics.registry.get_sample_value("obs_pipeline_exporter_queue_size", {"exporter": "a"}) == 4
        assert metrics.registry.get_sample_value("obs_pipeline_exporter_queue_size", {"exporter": "b"}) == 4

    async def test_empty_batches_are_accepted_without_queueing(self):
        """A request with no items is acknowledged and queues nothing."""
        metrics = SelfMetrics()
        q = queued(RecordingExporter("a", metrics), metrics, QueueSettings(queue_size=1), RetrySettings())
        await ExportersFanout([q]).consume(Batch(Signal.TRACES, traces(0)))
        assert q.has_room(1)


class TestPipelinesFanout:
    async def test_mutating_pipeline_gets_a_copy_so_others_see_the_original(self):
        """Redaction-like mutation in one pipeline does not leak into a read-only pipeline's data."""
        reader, mutator = Recorder(), Recorder(mutate=True)
        fanout = PipelinesFanout([(reader, False), (mutator, True)])
        original = traces(1)
        await fanout.consume(Batch(Signal.TRACES, original))
        assert reader.seen[0].resource_spans[0].scope_spans[0].spans[0].name == "span-0"
        assert mutator.seen[0].resource_spans[0].scope_spans[0].spans[0].name == "REDACTED"
        assert reader.seen[0] is original

    async def test_two_mutating_pipelines_do_not_see_each_others_changes(self):
        """Each mutating pipeline works on its own data."""
        first, second = Recorder(mutate=True), Recorder(mutate=True)
        await PipelinesFanout([(first, True), (second, True)]).consume(Batch(Signal.TRACES, traces(1)))
        assert first.seen[0] is not second.seen[0]

    async def test_refusal_by_one_pipeline_is_reported_after_the_others_got_the_data(self):
        """One full pipeline makes the sender retry; the other pipeline still received the batch."""
        ok, full = Recorder(), Recorder(refuse=True)
        with pytest.raises(RefusedError):
            await PipelinesFanout([(full, False), (ok, False)]).consume(Batch(Signal.TRACES, traces(2)))
        assert len(ok.seen) == 1

    def test_a_single_pipeline_is_called_directly(self):
        """No fan-out object is inserted for one pipeline."""
        only = Recorder()
        assert single_or_fanout([(only, True)]) is only


class TestReserveCommit:
    async def test_a_failing_direct_exporter_does_not_make_queued_ones_take_the_batch_twice(self):
        """The direct exporter fails, the sender retries: the queued exporter holds the batch once, not twice."""
        metrics = SelfMetrics()
        background = RecordingExporter("queued", metrics)
        direct_rec = RecordingExporter("direct", metrics)
        direct_rec.fail_next = [PermanentError("destination said no")]
        q = queued(background, metrics, QueueSettings(queue_size=100), RetrySettings(enabled=False))
        direct = queued(direct_rec, metrics, QueueSettings(enabled=False), RetrySettings(enabled=False))
        fanout = ExportersFanout([q, direct])
        with pytest.raises(PermanentError):
            await fanout.consume(Batch(Signal.TRACES, traces(3)))
        assert q.pending_items() == 0, "a refused batch left nothing in the queue"
        assert q.has_room(100), "the reservation was released"
        await fanout.consume(Batch(Signal.TRACES, traces(3)))  # the sender's retry
        assert q.pending_items() == 3
        assert len(direct_rec.batches) == 1

    async def test_reserved_room_counts_against_capacity_while_held(self):
        """While a reservation is held across an await, another batch cannot take its room."""
        metrics = SelfMetrics()
        q = queued(RecordingExporter("a", metrics), metrics, QueueSettings(queue_size=5), RetrySettings())
        held = q.reserve(4)
        with pytest.raises(RefusedError):
            q.reserve(2)
        held.release()
        q.reserve(2).commit(Batch(Signal.TRACES, traces(2)))
        assert q.pending_items() == 2

    async def test_a_reservation_takes_effect_once(self):
        """Committing then releasing (an error path that releases everything) changes nothing more."""
        metrics = SelfMetrics()
        q = queued(RecordingExporter("a", metrics), metrics, QueueSettings(queue_size=5), RetrySettings())
        r = q.reserve(3)
        r.commit(Batch(Signal.TRACES, traces(3)))
        r.release()
        assert q.pending_items() == 3
        assert q.has_room(2)
        assert not q.has_room(3)


class TestPipelinesFanoutFailures:
    async def test_a_failing_pipeline_does_not_keep_the_batch_from_the_others(self):
        """A processor error in the first pipeline: the second still gets the batch, then the error is raised."""
        from obs_pipeline.errors import ProcessingError  # noqa: PLC0415

        class Failing:
            async def consume(self, batch: Batch) -> None:
                raise ProcessingError("redaction: failed on the batch (KeyError)")

        ok = Recorder()
        with pytest.raises(ProcessingError):
            await PipelinesFanout([(Failing(), False), (ok, False)]).consume(Batch(Signal.TRACES, traces(2)))
        assert len(ok.seen) == 1

    async def test_a_refusal_wins_over_other_errors_so_the_sender_retries(self):
        """One pipeline refuses, one fails: the sender is told to retry, so the refusing one gets it later."""
        from obs_pipeline.errors import ProcessingError  # noqa: PLC0415

        class Failing:
            async def consume(self, batch: Batch) -> None:
                raise ProcessingError("x")

        with pytest.raises(RefusedError):
            await PipelinesFanout([(Failing(), False), (Recorder(refuse=True), False)]).consume(
                Batch(Signal.TRACES, traces(1)))


class TestLateCommit:
    async def test_a_batch_committed_after_the_drain_is_counted_not_silently_lost(self):
        """A reservation held across shutdown: its batch is counted as failed(shutdown), never vanishes."""
        import time  # noqa: PLC0415

        from obs_pipeline.testing import RecordingHost  # noqa: PLC0415

        metrics = SelfMetrics()
        q = queued(RecordingExporter("late", metrics), metrics, QueueSettings(queue_size=10), RetrySettings())
        await q.start(RecordingHost())
        held = q.reserve(3)
        await q.shutdown(time.monotonic() + 1)
        held.commit(Batch(Signal.TRACES, traces(3)))
        assert q.pending_items() == 0
        assert metrics.registry.get_sample_value("obs_pipeline_exporter_failed_items_total", {
            "exporter": "late", "signal": "traces", "reason": "shutdown"}) == 3
