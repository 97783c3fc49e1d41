"""Fan-out: all-or-nothing admission into exporter queues, and copies for mutating pipelines."""

from __future__ import annotations

import pytest

from obs_pipeline.engine.fanout import ExportersFanout, PipelinesFanout, single_or_fanout
from obs_pipeline.engine.queue import QueuedExporter, QueueSettings, RetrySettings
from obs_pipeline.errors import RefusedError
from obs_pipeline.signals import Message, Signal
from obs_pipeline.telemetry.metrics import SelfMetrics
from tests.enginekit import RecordingExporter, traces


class Recorder:
    def __init__(self, mutate: bool = False, refuse: bool = False) -> None:
        self.seen: list[Message] = []
        self.mutate = mutate
        self.refuse = refuse

    async def consume(self, data: Message, wire: bytes | None = None) -> None:
        if self.refuse:
            raise RefusedError("queue_full")
        if self.mutate:
            data.resource_spans[0].scope_spans[0].spans[0].name = "REDACTED"
        self.seen.append(data)


class TestExportersFanout:
    async def test_a_batch_enters_every_queue_or_none(self):
        """When one exporter queue is full, the batch is refused and no queue takes it."""
        metrics = SelfMetrics()
        roomy = QueuedExporter(RecordingExporter("a", metrics), metrics, QueueSettings(queue_size=100), RetrySettings())
        tight = QueuedExporter(RecordingExporter("b", metrics), metrics, QueueSettings(queue_size=5), RetrySettings())
        fanout = ExportersFanout(Signal.TRACES, [roomy, tight])
        await fanout.consume(traces(4))
        with pytest.raises(RefusedError) as info:
            await fanout.consume(traces(4))
        assert info.value.reason == "queue_full"
        assert metrics.registry.get_sample_value("obs_pipeline_exporter_queue_size", {"exporter": "a"}) == 4
        assert metrics.registry.get_sample_value("obs_pipeline_exporter_queue_size", {"exporter": "b"}) == 4

    async def test_empty_batches_are_accepted_without_queueing(self):
        """A request with no items is acknowledged and queues nothing."""
        metrics = SelfMetrics()
        q = QueuedExporter(RecordingExporter("a", metrics), metrics, QueueSettings(queue_size=1), RetrySettings())
        await ExportersFanout(Signal.TRACES, [q]).consume(traces(0))
        assert q.has_room(1)


class TestPipelinesFanout:
    async def test_mutating_pipeline_gets_a_copy_so_others_see_the_original(self):
        """Redaction-like mutation in one pipeline does not leak into a read-only pipeline's data."""
        reader, mutator = Recorder(), Recorder(mutate=True)
        fanout = PipelinesFanout([(reader, False), (mutator, True)])
        original = traces(1)
        await fanout.consume(original)
        assert reader.seen[0].resource_spans[0].scope_spans[0].spans[0].name == "span-0"
        assert mutator.seen[0].resource_spans[0].scope_spans[0].spans[0].name == "REDACTED"
        assert reader.seen[0] is original

    async def test_two_mutating_pipelines_do_not_see_each_others_changes(self):
        """Each mutating pipeline works on its own data."""
        first, second = Recorder(mutate=True), Recorder(mutate=True)
        await PipelinesFanout([(first, True), (second, True)]).consume(traces(1))
        assert first.seen[0] is not second.seen[0]

    async def test_refusal_by_one_pipeline_is_reported_after_the_others_got_the_data(self):
        """One full pipeline makes the sender retry; the other pipeline still received the batch."""
        ok, full = Recorder(), Recorder(refuse=True)
        with pytest.raises(RefusedError):
            await PipelinesFanout([(full, False), (ok, False)]).consume(traces(2))
        assert len(ok.seen) == 1

    def test_a_single_pipeline_is_called_directly(self):
        """No fan-out object is inserted for one pipeline."""
        only = Recorder()
        assert single_or_fanout([(only, True)]) is only
