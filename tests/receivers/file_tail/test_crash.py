"""`kill -9` of obs-pipeline while a writer appends and rotates, then a restart: nothing lost, few repeated."""

from __future__ import annotations

import collections
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.harness import PipelineProcess

WRITER = Path(__file__).with_name("writer.py")
BATCH = 200  # max_batch_lines: the documented bound on lines a crash can repeat


def _config(proc: PipelineProcess, logs: Path) -> dict:
    return {
        "receivers": {"file_tail/app": {
            "include": [str(logs / "app.log*")], "start_at": "beginning", "poll_interval": "20ms",
            "max_batch_lines": BATCH,
        }},
        # No memory queue: a line is in the audit file when the receiver hears it was accepted.
        "exporters": {"jsonl_audit": {"path": str(proc.audit_path), "sending_queue": {"enabled": False}}},
        "service": {
            "data_dir": str(proc.workdir / "data"),
            "pipelines": {"logs": {"receivers": ["file_tail/app"], "exporters": ["jsonl_audit"]}},
            "telemetry": {"metrics": {"endpoint": f"127.0.0.1:{proc.metrics_port}"},
                          "health": {"endpoint": f"127.0.0.1:{proc.health_port}"}},
        },
    }


def _pipeline(workdir: Path, logs: Path) -> PipelineProcess:
    proc = PipelineProcess(workdir)
    proc.config = _config(proc, logs)
    proc.config_path.write_text(__import__("yaml").safe_dump(proc.config, sort_keys=False))
    return proc


def _seqs(proc: PipelineProcess) -> list[int]:
    return [line["detail"]["seq"] for line in proc.audit_lines()]


@pytest.mark.e2e
class TestCrash:
    def test_kill_9_then_restart(self, tmp_path: Path):
        """30,000 lines rotated by rename and copytruncate; kill -9 mid-run; after a restart every line is there.

        Repeats are only lines accepted but not yet checkpointed: at most one batch (max_batch_lines),
        and each repeat has the same event_id as its first copy, so readers can drop it.
        """
        logs = tmp_path / "logs"
        logs.mkdir()
        total = 30_000
        first = _pipeline(tmp_path, logs).start()
        writer = subprocess.Popen([sys.executable, str(WRITER), str(logs), str(total), "3000", "6"])
        try:
            deadline = time.monotonic() + 20
            while len(first.audit_lines()) < total // 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            first.proc.kill()  # SIGKILL: no drain, no last checkpoint
            first.proc.wait()
            assert writer.poll() is None, "the writer finished before the crash: nothing was tested"
            second = _pipeline(tmp_path, logs).start()
            writer.wait(timeout=60)
            deadline = time.monotonic() + 30
            while len(set(_seqs(second))) < total and time.monotonic() < deadline:
                time.sleep(0.1)
            assert second.stop() == 0
        finally:
            writer.kill()
            first.kill()
        seqs = _seqs(second)
        counts = collections.Counter(seqs)
        missing = sorted(set(range(1, total + 1)) - set(counts))
        assert not missing, (len(missing), missing[:5], second.stderr()[-2000:])
        repeated = sum(n - 1 for n in counts.values())
        assert repeated <= BATCH, repeated
        lines = second.audit_lines()
        by_seq: dict[int, set[str]] = collections.defaultdict(set)
        for line in lines:
            by_seq[line["detail"]["seq"]].add(line["event_id"])
        assert all(len(ids) == 1 for ids in by_seq.values())  # a repeat keeps its event_id
