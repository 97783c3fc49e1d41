"""The exporter queue with ``storage: disk``: persisted before acknowledged, sent again after a restart.

Real files in a temp directory, a recording exporter, and the fan-out's own reserve -> persist ->
commit path. A "restart" is a new QueuedExporter on the same directory after the first one stopped;
a full disk is a real file size limit (``RLIMIT_FSIZE``) in a child process; a damaged record is a
byte flipped in the real segment file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from obs_pipeline.delivery import DeliverySettings, QueueSettings, RetrySettings
from obs_pipeline.engine.fanout import ExportersFanout
from obs_pipeline.engine.queue import QueuedExporter
from obs_pipeline.engine.storage.disk import queue_directory
from obs_pipeline.engine.storage.segments import RECORD_HEADER, SEGMENT_HEADER, scan_segment
from obs_pipeline.errors import ExportError, RefusedError, StartupError
from obs_pipeline.telemetry.metrics import SelfMetrics
from tests.enginekit import PermanentError, RecordingExporter, RetryableError, span_names, tbatch

FAST_RETRY = RetrySettings(initial_interval=0.01, max_interval=0.02, max_elapsed_time=5.0)
REPO = Path(__file__).parents[2]


class _Host:
    def report_fatal(self, component: str, error: BaseException) -> None:
        raise AssertionError(f"{component}: fatal {error!r}")

    def receiver_finished(self, component: str) -> None: ...


def _disk(exporter, metrics, data_dir: Path, retry: RetrySettings = FAST_RETRY, **queue) -> QueuedExporter:
    settings = QueueSettings(storage="disk", **queue)
    return QueuedExporter(exporter, metrics, DeliverySettings(queue=settings, retry=retry), data_dir=data_dir)


def _sample(metrics: SelfMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def _failed(metrics: SelfMetrics, exporter: str = "recorder") -> float:
    return sum(_sample(metrics, "obs_pipeline_exporter_failed_items_total", exporter=exporter, signal="traces", reason=r)
               for r in ("permanent_error", "rejected", "retries_exhausted", "retries_disabled", "shutdown",
                         "internal_error"))


async def _wait_for(predicate, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached in time"
        await asyncio.sleep(0.005)


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


class _SentThenStuck(RecordingExporter):
    """Delivers the first ``good`` batches; records every later one (it reached the destination) and then hangs."""

    def __init__(self, good: int, metrics: SelfMetrics) -> None:
        super().__init__(metrics=metrics)
        self.good = good

    async def export(self, batch):
        self.calls += 1
        self.batches.append(batch.message)
        if self.calls > self.good:
            await asyncio.Event().wait()


class TestAdmission:
    async def test_the_batch_is_on_disk_when_the_sender_is_acknowledged(self, tmp_path):
        """When the fan-out returns, the record is already in the segment file (read by another open), with its checksum."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        rec.gate = asyncio.Event()  # nothing is delivered meanwhile
        q = _disk(rec, metrics, tmp_path)
        await q.start(_Host())
        batch = tbatch(3, wire=True)
        await ExportersFanout([q]).consume(batch)
        (path,) = _segments(queue_directory(tmp_path, "recorder"))
        scanned = scan_segment(1, path.read_bytes())
        assert (list(scanned.items), scanned.damaged) == ([3], 0)
        assert path.read_bytes()[scanned.offsets[0] + RECORD_HEADER.size:] == batch.wire
        assert q.pending_items() == 3
        assert _sample(metrics, "obs_pipeline_exporter_queue_size", exporter="recorder") == 3
        rec.gate.set()
        await q.shutdown(time.monotonic() + 2)

    async def test_concurrent_batches_share_one_fsync(self, tmp_path):
        """Group commit: 50 senders at once are written in a few grouped writes, not 50."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        q = _disk(rec, metrics, tmp_path)
        await q.start(_Host())
        fanout = ExportersFanout([q])
        await asyncio.gather(*(fanout.consume(tbatch(1, start=i)) for i in range(50)))
        assert q._store is not None
        assert q._store.group_writes <= 5
        await _wait_for(lambda: rec.items() == 50)
        await q.shutdown(time.monotonic() + 2)
        assert sorted(span_names(rec.batches)) == sorted(f"span-{i}" for i in range(50))

    async def test_a_released_batch_is_never_sent_not_even_after_a_restart(self, tmp_path):
        """Persisted, then a direct exporter of the same pipeline fails: the sender is refused and the record is discarded."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        direct_rec = RecordingExporter("direct", metrics)
        direct_rec.fail_next = [PermanentError("no")]
        q = _disk(rec, metrics, tmp_path)
        direct = QueuedExporter(direct_rec, metrics, DeliverySettings(queue=QueueSettings(enabled=False),
                                                                       retry=RetrySettings(enabled=False)))
        for e in (q, direct):
            await e.start(_Host())
        with pytest.raises(ExportError):
            await ExportersFanout([q, direct]).consume(tbatch(2))
        await ExportersFanout([q]).consume(tbatch(1, start=7))
        await _wait_for(lambda: rec.items() == 1)
        await q.shutdown(time.monotonic() + 2)
        await direct.shutdown(time.monotonic() + 2)
        assert span_names(rec.batches) == ["span-7"]
        again = RecordingExporter(metrics=metrics)
        q2 = _disk(again, metrics, tmp_path)
        await q2.start(_Host())
        await asyncio.sleep(0.1)
        await q2.shutdown(time.monotonic() + 2)
        assert again.batches == []

    async def test_a_reservation_released_after_the_queue_closed_raises_nothing(self, tmp_path):
        """A fan-out error path that outlives the shutdown releases its room: no traceback, the lock is free."""
        metrics = SelfMetrics()
        q = _disk(RecordingExporter(metrics=metrics), metrics, tmp_path)
        await q.start(_Host())
        held = q.reserve(2)
        await held.persist(tbatch(2))
        await q.shutdown(time.monotonic() + 2)
        held.release()
        await asyncio.sleep(0.05)
        again = _disk(RecordingExporter(metrics=metrics), metrics, tmp_path)
        await again.start(_Host())  # the directory lock was released by the first queue's close
        await again.shutdown(time.monotonic() + 2)

    def test_a_disk_queue_needs_a_data_dir(self):
        """Built without service.data_dir, a disk queue is a programming error, said at once."""
        metrics = SelfMetrics()
        with pytest.raises(ValueError, match="data_dir"):
            QueuedExporter(RecordingExporter(metrics=metrics), metrics,
                           DeliverySettings(queue=QueueSettings(storage="disk")))

    async def test_the_directory_of_another_running_process_is_refused_at_start(self, tmp_path):
        """Two processes never share a queue: the second one's start fails with a clear StartupError."""
        directory = queue_directory(tmp_path, "recorder")
        code = textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from obs_pipeline.engine.storage.segments import SegmentFiles
            SegmentFiles(Path({str(directory)!r})).open()
            print("ready", flush=True)
            sys.stdin.read()
        """)
        holder = await asyncio.create_subprocess_exec(sys.executable, "-c", code, cwd=REPO, stdin=subprocess.PIPE,
                                                      stdout=subprocess.PIPE)
        try:
            assert await holder.stdout.readline() == b"ready\n"
            metrics = SelfMetrics()
            rec = RecordingExporter(metrics=metrics)
            q = _disk(rec, metrics, tmp_path)
            with pytest.raises(StartupError, match=r"recorder in use by another process \(pid \d+\)"):
                await q.start(_Host())
            assert rec.shut_down == 0, "the exporter was not started"
        finally:
            await holder.communicate(b"")


class TestRestart:
    async def test_what_was_stored_is_sent_first_in_order_after_a_restart(self, tmp_path):
        """Stopped with the destination stuck: the batches stay on disk; the next queue sends them before new data."""
        metrics = SelfMetrics()
        stuck = RecordingExporter(metrics=metrics)
        stuck.gate = asyncio.Event()  # never opens: the first batch stays in flight, unsent
        q1 = _disk(stuck, metrics, tmp_path)
        await q1.start(_Host())
        fanout = ExportersFanout([q1])
        for i in range(5):
            await fanout.consume(tbatch(2, start=i * 2))
        await q1.shutdown(time.monotonic() + 0.3)
        assert _failed(metrics) == 0, "items left on disk are not a loss"
        assert _sample(metrics, "obs_pipeline_exporter_queue_size", exporter="recorder") == 10
        metrics2 = SelfMetrics()
        rec = RecordingExporter(metrics=metrics2)
        rec.gate = asyncio.Event()
        q2 = _disk(rec, metrics2, tmp_path)
        await q2.start(_Host())
        assert _sample(metrics2, "obs_pipeline_exporter_queue_size", exporter="recorder") == 10
        await ExportersFanout([q2]).consume(tbatch(1, start=100))
        rec.gate.set()
        await _wait_for(lambda: rec.items() == 11)
        await q2.shutdown(time.monotonic() + 2)
        assert span_names(rec.batches) == [f"span-{i}" for i in range(10)] + ["span-100"]
        assert _sample(metrics2, "obs_pipeline_exporter_sent_items_total", exporter="recorder", signal="traces") == 11
        assert _sample(metrics2, "obs_pipeline_exporter_queue_size", exporter="recorder") == 0

    @pytest.mark.parametrize("consumers", [1, 3])
    async def test_only_batches_in_flight_at_a_stop_are_sent_twice(self, tmp_path, consumers):
        """Sent but not yet marked done when the process stops: sent again; at most num_consumers batches."""
        metrics = SelfMetrics()
        first = _SentThenStuck(good=4, metrics=metrics)
        q1 = _disk(first, metrics, tmp_path, num_consumers=consumers)
        await q1.start(_Host())
        fanout = ExportersFanout([q1])
        for i in range(10):
            await fanout.consume(tbatch(1, start=i))
        await _wait_for(lambda: first.calls == 4 + consumers)
        await q1.shutdown(time.monotonic() + 0.2)  # the stuck exports are cut off: in flight
        second = RecordingExporter(metrics=metrics)
        q2 = _disk(second, metrics, tmp_path, num_consumers=consumers)
        await q2.start(_Host())
        await _wait_for(lambda: second.items() == 10 - 4)
        await q2.shutdown(time.monotonic() + 2)
        delivered = span_names(first.batches) + span_names(second.batches)
        assert sorted(set(delivered)) == sorted(f"span-{i}" for i in range(10)), "nothing lost"
        assert len(delivered) - len(set(delivered)) == consumers
        if consumers == 1:
            assert span_names(second.batches) == [f"span-{i}" for i in range(4, 10)], "in order"

    async def test_final_outcomes_are_never_sent_again(self, tmp_path):
        """Sent, permanently failed, retries exhausted: all counted as today, and all marked done on disk."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        rec.fail_next = [PermanentError("bad"), RetryableError("down")]
        retry = RetrySettings(initial_interval=0.05, max_elapsed_time=0.01, randomization_factor=0)
        q1 = _disk(rec, metrics, tmp_path, retry=retry)
        await q1.start(_Host())
        fanout = ExportersFanout([q1])
        for i in range(3):
            await fanout.consume(tbatch(1, start=i))
        await _wait_for(lambda: q1.pending_items() == 0)
        await q1.shutdown(time.monotonic() + 2)
        failed = {r: _sample(metrics, "obs_pipeline_exporter_failed_items_total", exporter="recorder", signal="traces",
                             reason=r) for r in ("permanent_error", "retries_exhausted")}
        assert failed == {"permanent_error": 1, "retries_exhausted": 1}
        assert span_names(rec.batches) == ["span-2"]
        again = RecordingExporter(metrics=metrics)
        q2 = _disk(again, metrics, tmp_path)
        await q2.start(_Host())
        assert q2.pending_items() == 0
        await q2.shutdown(time.monotonic() + 2)
        assert again.calls == 0


class TestShutdown:
    async def test_a_failing_destination_at_shutdown_leaves_everything_on_disk_and_stops_at_once(self, tmp_path, caplog):
        """No retrying until the deadline and no failed{shutdown}: the batches stay stored and are counted in the log."""
        caplog.set_level(logging.INFO)
        metrics = SelfMetrics()
        down = RecordingExporter(metrics=metrics)
        down.fail_next = [RetryableError("connection refused")] * 1000
        q = _disk(down, metrics, tmp_path, retry=RetrySettings(initial_interval=0.05, max_elapsed_time=0))
        await q.start(_Host())
        fanout = ExportersFanout([q])
        for i in range(4):
            await fanout.consume(tbatch(3, start=i * 3))
        await _wait_for(lambda: down.calls >= 2)
        began = time.monotonic()
        await q.shutdown(time.monotonic() + 20)
        assert time.monotonic() - began < 2, "the drain did not sit out the retries"
        assert _failed(metrics) == 0
        assert "12 items left on disk for the next start" in caplog.text
        rec = RecordingExporter(metrics=metrics)
        q2 = _disk(rec, metrics, tmp_path)
        await q2.start(_Host())
        await _wait_for(lambda: rec.items() == 12)
        await q2.shutdown(time.monotonic() + 2)
        assert span_names(rec.batches) == [f"span-{i}" for i in range(12)]

    async def test_retries_disabled_still_keeps_batches_that_fail_during_the_drain(self, tmp_path):
        """The collector's #15677: with retry_on_failure off, a failure during the drain must not delete the batch."""
        metrics = SelfMetrics()
        down = RecordingExporter(metrics=metrics)
        down.gate = asyncio.Event()
        down.fail_next = [RetryableError("down")] * 10
        q = _disk(down, metrics, tmp_path, retry=RetrySettings(enabled=False))
        await q.start(_Host())
        await ExportersFanout([q]).consume(tbatch(2))
        stopping = asyncio.ensure_future(q.shutdown(time.monotonic() + 5))
        await asyncio.sleep(0.05)
        down.gate.set()  # the export in flight fails after shutdown began
        await stopping
        assert _failed(metrics) == 0
        assert q.pending_items() == 2


class TestCapacity:
    async def test_a_full_queue_refuses_retryably_and_keeps_what_it_stored(self, tmp_path):
        """max_size reached: queue_full with a retry hint; nothing stored is dropped; after the drain it takes data again."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        rec.gate = asyncio.Event()
        q = _disk(rec, metrics, tmp_path, max_size=16 * 1024)
        await q.start(_Host())
        fanout = ExportersFanout([q])
        accepted, refusal = [], None
        for i in range(200):
            try:
                await fanout.consume(tbatch(10, start=i * 10))
            except RefusedError as exc:
                refusal = exc
                break
            accepted.append(i)
        assert refusal is not None
        assert (refusal.reason, refusal.retry_after > 0) == ("queue_full", True)
        assert 10 <= len(accepted) < 200
        stored = sum(p.stat().st_size for p in _segments(queue_directory(tmp_path, "recorder")))
        assert stored <= 16 * 1024
        assert _sample(metrics, "obs_pipeline_exporter_queue_stored_bytes", exporter="recorder") == stored
        assert _sample(metrics, "obs_pipeline_exporter_queue_capacity_bytes", exporter="recorder") == 16 * 1024
        rec.gate.set()
        await _wait_for(lambda: rec.items() == 10 * len(accepted))
        await fanout.consume(tbatch(10, start=5000))
        await _wait_for(lambda: rec.items() == 10 * len(accepted) + 10)
        await q.shutdown(time.monotonic() + 2)
        assert span_names(rec.batches)[:-10] == [f"span-{i}" for i in range(10 * len(accepted))]
        assert _failed(metrics) == 0

    async def test_an_empty_queue_takes_one_batch_larger_than_max_size(self, tmp_path):
        """As the memory queue does with queue_size: an oversize batch is not refused forever."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        q = _disk(rec, metrics, tmp_path, max_size=1024)
        await q.start(_Host())
        await ExportersFanout([q]).consume(tbatch(100))
        await _wait_for(lambda: rec.items() == 100)
        await q.shutdown(time.monotonic() + 2)

    async def test_space_is_given_back_as_segments_finish(self, tmp_path):
        """Many small segments: once their records are done they are deleted, while sending goes on."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        q = _disk(rec, metrics, tmp_path, max_size=64 * 1024)  # 4 KiB segments
        await q.start(_Host())
        fanout = ExportersFanout([q])
        for i in range(300):
            await fanout.consume(tbatch(5, start=i * 5))
        await _wait_for(lambda: rec.items() == 1500)
        await asyncio.sleep(0.05)
        directory = queue_directory(tmp_path, "recorder")
        assert len(_segments(directory)) <= 1
        assert _sample(metrics, "obs_pipeline_exporter_queue_stored_bytes", exporter="recorder") <= 4096
        await q.shutdown(time.monotonic() + 2)
        assert span_names(rec.batches) == [f"span-{i}" for i in range(1500)]


class TestDamage:
    async def test_a_record_damaged_after_it_was_stored_is_skipped_and_counted(self, tmp_path):
        """A byte flipped on disk before the record is read back: the others are sent, one corrupt record counted."""
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        rec.gate = asyncio.Event()
        q = _disk(rec, metrics, tmp_path, queue_size=1)  # 1 item kept in memory (the 2nd): the 3rd and 4th are read back
        await q.start(_Host())
        fanout = ExportersFanout([q])
        for i in range(4):
            await fanout.consume(tbatch(1, start=i, wire=True))
        (path,) = _segments(queue_directory(tmp_path, "recorder"))
        data = bytearray(path.read_bytes())
        third = scan_segment(1, bytes(data)).offsets[2]
        data[third + RECORD_HEADER.size + 3] ^= 0xFF
        with path.open("r+b") as f:
            f.write(data)
        rec.gate.set()
        await _wait_for(lambda: rec.items() == 3)
        await asyncio.sleep(0.05)
        await q.shutdown(time.monotonic() + 2)
        assert span_names(rec.batches) == ["span-0", "span-1", "span-3"]
        assert _sample(metrics, "obs_pipeline_exporter_queue_corrupt_records_total", exporter="recorder") == 1

    async def test_damage_found_at_start_is_counted_and_the_rest_is_sent(self, tmp_path):
        """A stored segment damaged while the process was down: counted at start, never a crash loop."""
        metrics = SelfMetrics()
        stuck = RecordingExporter(metrics=metrics)
        stuck.gate = asyncio.Event()
        q1 = _disk(stuck, metrics, tmp_path)
        await q1.start(_Host())
        fanout = ExportersFanout([q1])
        for i in range(4):
            await fanout.consume(tbatch(1, start=i, wire=True))
        await q1.shutdown(time.monotonic() + 0.2)
        (path,) = _segments(queue_directory(tmp_path, "recorder"))
        data = bytearray(path.read_bytes())
        data[SEGMENT_HEADER.size + RECORD_HEADER.size + 2] ^= 0xFF  # inside the first record
        path.write_bytes(bytes(data) + b"\xa9QR1 torn")  # and a torn tail
        metrics2 = SelfMetrics()
        rec = RecordingExporter(metrics=metrics2)
        q2 = _disk(rec, metrics2, tmp_path)
        await q2.start(_Host())
        await _wait_for(lambda: rec.items() == 3)
        await q2.shutdown(time.monotonic() + 2)
        assert span_names(rec.batches) == ["span-1", "span-2", "span-3"]
        assert _sample(metrics2, "obs_pipeline_exporter_queue_corrupt_records_total", exporter="recorder") == 2

    async def test_read_ahead_does_not_run_across_a_damaged_record(self, tmp_path):
        """Damage in the middle of a stored segment: read ahead stops at the gap, so every other batch comes once, in order."""
        metrics = SelfMetrics()
        stuck = RecordingExporter(metrics=metrics)
        stuck.gate = asyncio.Event()
        q1 = _disk(stuck, metrics, tmp_path)
        await q1.start(_Host())
        fanout = ExportersFanout([q1])
        for i in range(6):
            await fanout.consume(tbatch(1, start=i, wire=True))
        await q1.shutdown(time.monotonic() + 0.2)
        (path,) = _segments(queue_directory(tmp_path, "recorder"))
        data = bytearray(path.read_bytes())
        data[scan_segment(1, bytes(data)).offsets[2] + RECORD_HEADER.size + 2] ^= 0xFF
        path.write_bytes(bytes(data))
        rec = RecordingExporter(metrics=metrics)
        q2 = _disk(rec, metrics, tmp_path)
        await q2.start(_Host())
        await _wait_for(lambda: rec.items() == 5)
        await asyncio.sleep(0.05)
        await q2.shutdown(time.monotonic() + 2)
        assert span_names(rec.batches) == ["span-0", "span-1", "span-3", "span-4", "span-5"]


_FULL_DISK = textwrap.dedent("""
    import asyncio, json, resource, sys, time
    from pathlib import Path
    from obs_pipeline.engine.fanout import ExportersFanout
    from obs_pipeline.errors import RefusedError
    from obs_pipeline.telemetry.metrics import SelfMetrics
    from tests.engine.test_diskqueue import _Host, _disk
    from tests.enginekit import RecordingExporter, tbatch

    async def main():
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        rec.gate = asyncio.Event()
        q = _disk(rec, metrics, Path(sys.argv[1]))
        await q.start(_Host())
        limit = int(sys.argv[2])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        fanout, accepted, reasons = ExportersFanout([q]), [], []
        for i in range(500):
            try:
                await fanout.consume(tbatch(20, start=i * 20))
            except RefusedError as exc:
                reasons.append(exc.reason)
                if len(reasons) == 3:
                    break
                continue
            accepted.append(i)
        await q.shutdown(time.monotonic() + 1)
        print(json.dumps({"accepted": accepted, "reasons": reasons, "pending": q.pending_items()}))

    asyncio.run(main())
""")


class TestFullDisk:
    async def test_a_full_disk_refuses_retryably_and_loses_nothing_stored(self, tmp_path):
        """A file size limit in a child process: the write fails, the sender is refused (disk_full), all stored batches survive."""
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", _FULL_DISK, str(tmp_path), "30000", cwd=REPO,
                                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stdout, stderr = await child.communicate()
        assert child.returncode == 0, stderr.decode()
        result = json.loads(stdout)
        assert result["reasons"] == ["disk_full"] * 3
        accepted = result["accepted"]
        assert accepted == list(range(len(accepted)))
        assert len(accepted) >= 5
        assert result["pending"] == 20 * len(accepted)
        assert "cannot write to the disk queue (EFBIG" in stderr.decode()
        metrics = SelfMetrics()
        rec = RecordingExporter(metrics=metrics)
        q = _disk(rec, metrics, tmp_path)
        await q.start(_Host())
        await _wait_for(lambda: rec.items() == 20 * len(accepted))
        await q.shutdown(time.monotonic() + 2)
        assert span_names(rec.batches) == [f"span-{i}" for i in range(20 * len(accepted))]
        assert _sample(metrics, "obs_pipeline_exporter_queue_corrupt_records_total", exporter="recorder") == 0
