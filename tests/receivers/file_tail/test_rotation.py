"""Rotation while a writer appends at speed: every line exactly once, in order per file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from obs_pipeline.telemetry.metrics import SelfMetrics
from tests.receivers.file_tail.kit import bodies, tailing, wait_until

WRITER = Path(__file__).with_name("writer.py")


def _seqs(consumer) -> list[int]:
    return [b["seq"] for b in bodies(consumer)]


class TestRotation:
    async def test_rename_and_copytruncate_lose_and_repeat_nothing(self, tmp_path: Path):
        """20,000 lines, rotated 9 times alternately by rename and copytruncate: exactly 20,000 records."""
        logs = tmp_path / "logs"
        logs.mkdir()
        total = 20_000
        metrics = SelfMetrics()
        body = {"include": [str(logs / "app.log*")], "start_at": "beginning"}
        async with tailing(tmp_path, body, metrics=metrics) as (_, consumer):
            writer = subprocess.Popen([sys.executable, str(WRITER), str(logs), str(total), "2000", "4"])  # noqa: ASYNC220
            try:
                await wait_until(lambda: writer.poll() is not None, within=60)
                await wait_until(lambda: consumer.items >= total, within=30)
            finally:
                writer.kill()
        seqs = _seqs(consumer)
        assert writer.returncode == 0
        assert len(seqs) == total
        assert sorted(seqs) == list(range(1, total + 1))
        # in order per file: within each stretch between rotations the numbers only grow
        for start in range(0, total, 2000):
            stretch = [s for s in seqs if start < s <= start + 2000]
            assert stretch == sorted(stretch)
        copytruncates = metrics.file_tail_truncations.labels(receiver="file_tail", kind="copytruncate")._value.get()
        assert copytruncates >= 1
