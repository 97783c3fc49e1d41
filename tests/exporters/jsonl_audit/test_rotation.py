"""Rotation by size and day, compression, retention, fsync policies: real files, real exporters."""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from obs_pipeline.audit.files import audit_files, rotated_files, rotated_name
from obs_pipeline.audit.reader import read_entries
from obs_pipeline.audit.verify import verify_trail
from obs_pipeline.exporters.jsonl_audit import FACTORY, Config, writer
from obs_pipeline.exporters.jsonl_audit.options import Fsync
from obs_pipeline.exporters.jsonl_audit.rotation import Maintenance, Rotation
from obs_pipeline.testing import RecordingHost, parse_config
from tests.e2e.harness import PipelineProcess
from tests.exporters.jsonl_audit.kit import batch_of, exporter, read_trail, write_trail


def every_line(path: Path) -> list[dict[str, object]]:
    """The whole trail's lines, oldest file first (a torn line, which a kill can leave, skipped)."""
    return [entry.record for file in audit_files(path) for entry in read_entries(file)]


def mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)


class TestSizeRotation:
    async def test_under_load_no_line_lost_or_repeated_and_the_chain_verifies(self, tmp_path):
        """20,000 lines in batches of 200 over many size rotations: each line once, in order, chain intact."""
        path = tmp_path / "audit.jsonl"
        exp = exporter(path, hash_chain=True, rotation={"max_size": "300KiB", "compress": True})
        await exp.start(RecordingHost())
        for first in range(0, 20_000, 200):
            await exp.export(batch_of(first, 200))
        await exp.shutdown()
        rotated = rotated_files(path)
        assert len(rotated) >= 10
        assert all(p.name.endswith(".jsonl.gz") for p in rotated)
        lines = every_line(path)
        assert [line["name" if "name" in line else "event_type"] for line in lines[:1]]  # parsed
        span_ids = [str(line["span_id"]) for line in lines]
        assert span_ids == [(n + 1).to_bytes(8, "big").hex() for n in range(20_000)]
        report = verify_trail(path)
        assert report.intact, report.broken
        assert (report.lines, report.first_seq, report.last_seq, len(report.files)) == (20_000, 1, 20_000, len(rotated) + 1)

    async def test_rotated_files_are_named_by_the_rule_and_stay_under_max_size(self, tmp_path):
        """Each rotated file has the shared name rule, mode 0600, and at most max_size bytes."""
        path = tmp_path / "audit.jsonl"
        await write_trail(path, 10, rotation={"max_size": 4000, "compress": False})
        rotated = rotated_files(path)
        assert len(rotated) >= 3
        for file in rotated:
            assert file.name.startswith("audit-")
            assert file.name.endswith("Z.jsonl")
            assert file.stat().st_size <= 4000
            assert mode(file) == "0o600"
        assert mode(path) == "0o600"
        assert len(every_line(path)) == 50

    async def test_a_batch_larger_than_max_size_is_not_split(self, tmp_path):
        """One batch bigger than max_size goes whole into a fresh file."""
        path = tmp_path / "audit.jsonl"
        await write_trail(path, 3, per_batch=20, rotation={"max_size": 1000, "compress": False})
        sizes = [len(read_trail(p)) for p in audit_files(path)]
        assert sizes == [20, 20, 20]

    async def test_compressed_files_are_0600_and_the_plain_one_is_gone(self, tmp_path):
        """Compression leaves only the .gz (mode 0600), whose content is the rotated file's."""
        path = tmp_path / "audit.jsonl"
        await write_trail(path, 4, rotation={"max_size": 2500, "compress": True})
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names[-1] == "audit.jsonl"
        assert all(n.endswith(".jsonl.gz") for n in names[:-1])
        for file in rotated_files(path):
            assert mode(file) == "0o600"
            gzip.decompress(file.read_bytes())  # whole

    async def test_a_plain_file_left_by_a_crash_is_compressed_at_the_next_start(self, tmp_path):
        """A rotated plain file beside a partial .gz (a crash mid-compression) is compressed again."""
        path = tmp_path / "audit.jsonl"
        await write_trail(path, 2, rotation={"max_size": 100_000, "compress": False})
        plain = rotated_name(path, datetime.now(UTC) - timedelta(hours=1))
        path.rename(plain)
        (plain.parent / (plain.name + ".gz")).write_bytes(b"\x1f\x8b partial")
        await write_trail(path, 1, start=50, rotation={"max_size": 100_000, "compress": True})
        assert not plain.exists()
        assert len(read_trail(plain.parent / (plain.name + ".gz"))) == 10


class TestDailyRotation:
    async def test_a_file_from_yesterday_rotates_at_the_first_batch(self, tmp_path):
        """daily: a live file last written on an earlier UTC day is rotated before today's first line."""
        path = tmp_path / "audit.jsonl"
        await write_trail(path, 1)
        yesterday = time.time() - 86_400
        os.utime(path, (yesterday, yesterday))
        await write_trail(path, 1, start=10, rotation={"daily": True, "max_size": None, "compress": False})
        rotated = rotated_files(path)
        assert len(rotated) == 1
        assert [len(read_trail(p)) for p in (*rotated, path)] == [5, 5]

    async def test_a_file_from_today_does_not_rotate(self, tmp_path):
        """daily alone does not rotate a file written today."""
        path = tmp_path / "audit.jsonl"
        await write_trail(path, 3, rotation={"daily": True, "max_size": None})
        assert rotated_files(path) == []

    def test_due(self):
        """The rule itself: a size past max_size, or another UTC day; never an empty file."""
        now = datetime(2026, 12, 2, 0, 0, 1, tzinfo=UTC)
        rule = Rotation(max_size=100, daily=True)
        assert rule.due(90, 20, now, now)
        assert not rule.due(80, 20, now, now)
        assert rule.due(1, 1, now - timedelta(seconds=2), now)
        assert not rule.due(0, 500, now - timedelta(days=3), now)


class TestRetention:
    async def test_old_rotated_files_are_removed_and_counted_never_the_live_file(self, tmp_path):
        """retention_days removes files rotated earlier than that, counts them, keeps recent ones and the live file."""
        path = tmp_path / "audit.jsonl"
        now = datetime.now(UTC)
        old = [rotated_name(path, now - timedelta(days=d)) for d in (40, 31)]
        recent = rotated_name(path, now - timedelta(days=2))
        for file in [*old, recent]:
            file.write_bytes(b"{}\n")
        (old[0].parent / (old[0].name + ".gz")).write_bytes(gzip.compress(b"{}\n"))
        path.write_bytes(b"{}\n")
        os.utime(path, (time.time() - 90 * 86_400,) * 2)  # an old live file is still never removed
        exp = exporter(path, rotation={"max_size": "1MiB", "compress": False}, retention_days=30)
        await exp.start(RecordingHost())
        await exp.export(batch_of(0, 1))
        await exp.shutdown()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([recent.name, path.name])
        registry = exp.settings.metrics.registry
        assert registry.get_sample_value("obs_pipeline_exporter_audit_files_removed_total",
                                         {"exporter": "jsonl_audit"}) == 3

    def test_a_directory_that_cannot_be_listed_is_logged_not_raised(self, tmp_path, caplog):
        """The maintenance task outlives a directory it cannot list (here a symlink loop): one warning, no raise.

        It runs as the exporter's supervised task, where an exception would stop the whole pipeline.
        """
        loop = tmp_path / "loop"
        loop.symlink_to(loop)
        removed: list[int] = []
        tending = Maintenance(Rotation(max_size=1, compress=True), 1.0, logging.getLogger("test"), removed.append)
        tending.tend(loop / "audit.jsonl")
        assert removed == []
        assert any("cannot look at the rotated audit files" in message for message in caplog.messages)

    async def test_after_the_shutdown_drain_the_task_touches_no_file(self, tmp_path):
        """The exporter cancels its tasks only after the drain: a pass the task starts in between must not run.

        Else a file rotated after shutdown (by the next process, or by hand) is compressed under it.
        """
        live = tmp_path / "audit.jsonl"
        tending = Maintenance(Rotation(max_size=1, compress=True), None, logging.getLogger("test"), [].append)
        task = asyncio.create_task(tending.run())
        tending.notice(live)
        await tending.drain(None)
        rotated = rotated_name(live, datetime.now(UTC))
        rotated.write_bytes(b"{}\n")
        tending.notice(live)  # wakes the task, still running until its owner cancels it
        for _ in range(20):
            await asyncio.sleep(0.01)
        task.cancel()
        assert sorted(p.name for p in tmp_path.iterdir()) == [rotated.name]

    def test_retention_without_rotation_is_a_warning(self):
        """retention_days alone removes nothing: validate says so."""
        problems = FACTORY.check(parse_config(FACTORY, {"path": "a.jsonl", "retention_days": 7}))
        assert [(p.path, p.severity) for p in problems] == [("retention_days", "warning")]


class TestFsync:
    @pytest.mark.parametrize(("given", "policy"), [(True, Fsync.BATCH), (False, Fsync.NEVER), ("always", Fsync.ALWAYS),
                                                   ("batch", Fsync.BATCH), ("never", Fsync.NEVER)])
    def test_old_boolean_and_new_words(self, given, policy):
        """fsync takes always|batch|never, and still the old boolean (true was one flush per batch)."""
        assert parse_config(FACTORY, {"path": "a", "fsync": given}).fsync is policy
        assert Config(path="a", fsync=given).fsync is policy

    async def test_always_flushes_the_directory_on_rotation_and_the_checkpoints(self, tmp_path, monkeypatch):
        """always: one data flush per batch, plus the directory after each new file, and each checkpoint."""
        synced: list[str] = []
        monkeypatch.setattr(writer, "_sync", lambda fd: synced.append("data"))
        real_fsync = os.fsync
        monkeypatch.setattr(os, "fsync", lambda fd: (synced.append("dir" if Path(f"/proc/self/fd/{fd}").is_dir() else "file"),
                                                    real_fsync(fd))[1])
        path = tmp_path / "audit.jsonl"
        await write_trail(path, 3, fsync="always", hash_chain=True, rotation={"max_size": 2500, "compress": False},
                          checkpoint={"key": "k", "every_lines": 1000})
        assert synced.count("data") == 3
        assert synced.count("dir") >= 2  # the new file, and a rotation
        assert synced.count("file") == 1  # the checkpoint at shutdown

    async def test_batch_flushes_data_only(self, tmp_path, monkeypatch):
        """batch: one fdatasync per batch and nothing else."""
        synced: list[int] = []
        monkeypatch.setattr(writer, "_sync", synced.append)
        monkeypatch.setattr(os, "fsync", lambda fd: synced.append(-1))
        await write_trail(tmp_path / "audit.jsonl", 2, fsync="batch", rotation={"max_size": 1500, "compress": False})
        assert len(synced) == 2
        assert -1 not in synced


class TestSpecialFiles:
    async def test_dev_null_never_rotates(self, tmp_path):
        """Rotation applies to regular files only: /dev/null is written and left alone."""
        exp = await write_trail(Path("/dev/null"), 3, hash_chain=True, rotation={"max_size": 10, "compress": True})
        assert exp.file is not None
        assert exp.file.size == 0  # not a regular file: no size kept, so no rotation


def _send_spans(endpoint: str, count: int, first: int) -> None:
    """``count`` spans from the OpenTelemetry SDK over OTLP/gRPC, each named by its number."""
    provider = TracerProvider(resource=Resource.create({"service.name": "load-agent"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True),
                                                   max_queue_size=count, max_export_batch_size=500,
                                                   schedule_delay_millis=20))
    tracer = provider.get_tracer("load")
    for n in range(first, first + count):
        with tracer.start_as_current_span(f"span-{n}", attributes={"gen_ai.operation.name": "chat"}):
            pass
    provider.shutdown()


@pytest.mark.e2e
class TestThroughThePipeline:
    def test_rotation_under_load_and_a_restart_keep_every_line_once_and_the_chain(self, tmp_path):
        """Two runs of 6,000 SDK spans each, through a size-rotating, chained, signed exporter: each once, verified."""
        for run, first in enumerate((0, 6000)):
            proc = PipelineProcess(tmp_path)
            proc.config["exporters"]["jsonl_audit"] |= {
                "hash_chain": True, "rotation": {"max_size": "400KiB", "compress": True},
                "checkpoint": {"key": "${env:AUDIT_HMAC_KEY}", "every_lines": 1000}}
            proc.config_path.write_text(yaml.safe_dump(proc.config, sort_keys=False))
            os.environ["AUDIT_HMAC_KEY"] = "e2e-key"
            try:
                proc.start()
                _send_spans(f"127.0.0.1:{proc.grpc_port}", 6000, first)
                assert proc.stop() == 0, proc.stderr()
            finally:
                proc.kill()
                del os.environ["AUDIT_HMAC_KEY"]
            assert run or len(rotated_files(proc.audit_path)) >= 3
        spans = [line["span_id"] for line in every_line(proc.audit_path)]
        assert len(spans) == len(set(spans)) == 12_000
        done = subprocess.run([sys.executable, "-m", "obs_pipeline", "audit", "verify", "--config", "pipeline.yaml"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
                              env={**os.environ, "AUDIT_HMAC_KEY": "e2e-key"})
        assert done.returncode == 0, done.stdout + done.stderr
        assert ": intact: " in done.stdout
        assert "12000 line(s), seq 1..12000" in done.stdout

    def test_a_killed_run_leaves_a_trail_the_next_run_continues(self, tmp_path):
        """kill -9 mid-stream, then a new run: whatever the crash left, the chain verifies across both runs."""
        options = {"hash_chain": True, "rotation": {"max_size": "200KiB", "compress": True}}
        proc = PipelineProcess(tmp_path)
        proc.config["exporters"]["jsonl_audit"] |= options
        proc.config_path.write_text(yaml.safe_dump(proc.config, sort_keys=False))
        try:
            proc.start()
            _send_spans(f"127.0.0.1:{proc.grpc_port}", 3000, 0)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(every_line(proc.audit_path)) < 1000:
                time.sleep(0.05)
            proc.kill()  # SIGKILL: no drain, no final checkpoint
        finally:
            proc.kill()
        written = len(every_line(proc.audit_path))
        assert written >= 1000
        proc = PipelineProcess(tmp_path)
        proc.config["exporters"]["jsonl_audit"] |= options
        proc.config_path.write_text(yaml.safe_dump(proc.config, sort_keys=False))
        try:
            proc.start()
            _send_spans(f"127.0.0.1:{proc.grpc_port}", 500, 10_000)
            assert proc.stop() == 0, proc.stderr()
        finally:
            proc.kill()
        report = verify_trail(proc.audit_path)
        assert report.intact, report.broken
        assert report.lines == len(every_line(proc.audit_path)) >= written + 500
