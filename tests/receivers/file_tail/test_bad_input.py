"""Bad input: counted (and logged once), memory stays bounded, the receiver keeps going."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest

from obs_pipeline.telemetry.metrics import SelfMetrics
from tests.receivers.file_tail.kit import bodies, tailing, wait_until


def _problems(metrics: SelfMetrics, reason: str) -> float:
    return metrics.file_tail_file_errors.labels(receiver="file_tail", reason=reason)._value.get()


def _good(path: Path, n: int) -> None:
    with path.open("a") as f:
        f.write(json.dumps({"n": n}) + "\n")


class TestBadInput:
    async def test_binary_garbage_is_counted_and_reading_goes_on(self, tmp_path: Path):
        """Random bytes between good lines: the garbage lines are malformed, the good ones all arrive."""
        metrics = SelfMetrics()
        log = tmp_path / "a.log"
        _good(log, 1)
        with log.open("ab") as f:
            f.write(os.urandom(200_000).replace(b"\n", b"\x00") + b"\n" + os.urandom(3000) + b"\n")
        _good(log, 2)
        async with tailing(tmp_path, {"include": [str(log)], "start_at": "beginning"}, metrics=metrics) as (_, c):
            await wait_until(lambda: [b for b in bodies(c) if isinstance(b, dict) and b.get("n") == 2])
        assert [b["n"] for b in bodies(c)] == [1, 2]
        assert metrics.receiver_malformed_requests.labels(receiver="file_tail", transport="file")._value.get() >= 1

    async def test_a_50_mb_line_is_truncated_in_bounded_memory(self, tmp_path: Path):
        """A 50 MB line: one record of max_line_size, the next line whole; never more than a few MiB held."""
        log = tmp_path / "a.log"
        with log.open("wb") as f:
            chunk = b'{"blob": "' + b"a" * (1 << 20)
            f.write(chunk)
            for _ in range(49):
                f.write(b"a" * (1 << 20))
            f.write(b'"}\n')
        _good(log, 2)
        tracemalloc.start()
        try:
            async with tailing(tmp_path, {"include": [str(log)], "start_at": "beginning"}) as (_, consumer):
                await consumer.wait_for_items(2, within=30)
                peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        first, second = bodies(consumer)
        assert len(first) == 1 << 20  # the truncated line, as text
        assert second == {"n": 2}
        assert peak < 16 * (1 << 20), peak

    async def test_file_replaced_by_a_directory(self, tmp_path: Path, caplog):
        """A matched path that becomes a directory is counted once and logged once; other files go on."""
        metrics = SelfMetrics()
        a, b = tmp_path / "a.log", tmp_path / "b.log"
        _good(a, 1)
        _good(b, 2)
        body = {"include": [str(tmp_path / "*.log")], "start_at": "beginning"}
        with caplog.at_level(logging.WARNING):
            async with tailing(tmp_path, body, metrics=metrics) as (_, c):
                await c.wait_for_items(2)
                a.unlink()
                a.mkdir()
                await asyncio.sleep(0.2)  # several scans
                _good(b, 3)
                await c.wait_for_items(3)
        assert sorted(x["n"] for x in bodies(c)) == [1, 2, 3]
        assert _problems(metrics, "not_regular") == 1
        assert sum("not regular" in r.getMessage() for r in caplog.records) == 1

    async def test_symlink_loops(self, tmp_path: Path):
        """A symlink loop between two names is counted once each; a directory loop under ** reads the file once."""
        metrics = SelfMetrics()
        (tmp_path / "x.log").symlink_to(tmp_path / "y.log")
        (tmp_path / "y.log").symlink_to(tmp_path / "x.log")
        sub = tmp_path / "d"
        sub.mkdir()
        (sub / "loop").symlink_to(tmp_path)
        _good(sub / "real.log", 1)
        body = {"include": [str(tmp_path / "**" / "*.log")], "start_at": "beginning"}
        async with tailing(tmp_path, body, metrics=metrics) as (_, c):
            await c.wait_for_items(1)
            await asyncio.sleep(0.2)
        assert [x["n"] for x in bodies(c)] == [1]
        assert _problems(metrics, "symlink_loop") >= 2  # x.log and y.log (also reached through the loop)

    async def test_ten_thousand_files(self, tmp_path: Path, caplog):
        """A glob matching 10,000 files: every line read once, never more than max_concurrent_files open."""
        metrics = SelfMetrics()
        folder = tmp_path / "many"
        folder.mkdir()
        for i in range(10_000):
            (folder / f"f{i:05d}.log").write_text(json.dumps({"n": i}) + "\n")
        body = {"include": [str(folder / "*.log")], "start_at": "beginning", "max_concurrent_files": 256}
        with caplog.at_level(logging.WARNING):
            async with tailing(tmp_path, body, metrics=metrics) as (receiver, c):
                await c.wait_for_items(10_000, within=60)
                assert receiver.tracker.open_count <= 256
                await asyncio.sleep(0.1)
        assert sorted(x["n"] for x in bodies(c)) == list(range(10_000))
        assert sum("10000 files match" in r.getMessage() for r in caplog.records) == 1

    def test_no_read_permission(self, tmp_path: Path):
        """A file the process may not read is counted and logged once; a readable one beside it is read.

        As root (which reads everything) the check runs in a child process switched to user nobody.
        """
        folder = Path(f"/tmp/file-tail-perm-{os.getpid()}") if os.geteuid() == 0 else tmp_path / "perm"
        folder.mkdir(mode=0o755)
        try:
            (folder / "secret.log").write_text('{"n": 1}\n')
            (folder / "secret.log").chmod(0)
            (folder / "open.log").write_text('{"n": 2}\n')
            (folder / "open.log").chmod(0o644)
            script = textwrap.dedent(f"""
                import os, json
                from obs_pipeline.receivers.file_tail.files import Tracker  # imported first: nobody cannot
                if os.geteuid() == 0:
                    os.setgid(65534); os.setuid(65534)
                seen = []
                t = Tracker(include=[{str(folder / '*.log')!r}], exclude=[], fingerprint_size=1000,
                            max_line_size=1 << 20, max_open=10, start_at_end=False,
                            on_problem=lambda path, kind, log: seen.append((os.path.basename(path), kind, log)),
                            on_event=lambda kind: None)
                t.scan(); t.scan()
                print(json.dumps({{"problems": seen, "files": [f.name for f in t.files]}}))
            """)
            out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                                 cwd=Path(__file__).parents[3])
        finally:
            for child in folder.iterdir():
                child.unlink()
            folder.rmdir()
        result = json.loads(out.stdout)
        assert result["problems"] == [["secret.log", "permission_denied", True]]
        assert result["files"] == ["open.log"]


@pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux's")
class TestNotifications:
    async def test_new_lines_arrive_without_waiting_for_a_poll(self, tmp_path: Path):
        """With watch auto and a long poll_interval, a new line is still read (the notification wakes the loop)."""
        log = tmp_path / "a.log"
        log.write_text("")
        async with tailing(tmp_path, {"include": [str(log)], "watch": "auto", "poll_interval": "30s"}) as (r, c):
            await wait_until(lambda: r._watching)
            await asyncio.sleep(0.1)
            _good(log, 1)
            await c.wait_for_items(1, within=5)
        assert bodies(c) == [{"n": 1}]

    async def test_directory_created_after_the_start(self, tmp_path: Path):
        """With watch auto and a directory that does not exist yet, polling finds its files once it does."""
        later = tmp_path / "later"
        body = {"include": [str(later / "*.log")], "watch": "auto", "poll_interval": "20ms"}
        async with tailing(tmp_path, body) as (receiver, c):
            await asyncio.sleep(0.1)
            assert not receiver._watching  # nothing to watch: polling alone
            later.mkdir()
            _good(later / "a.log", 1)
            await c.wait_for_items(1)
        assert bodies(c) == [{"n": 1}]
