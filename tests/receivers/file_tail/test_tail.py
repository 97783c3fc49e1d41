"""Tailing behaviour a user sees: where reading starts, new files, rotation cases, partial lines, restarts."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.testing import RefusingConsumer
from tests.receivers.file_tail.kit import bodies, records, tailing, wait_until


def _append(path: Path, *lines: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def _json(n: int, tag: str = "x") -> str:
    return f'{{"n": {n}, "tag": "{tag}", "message": "event {n:05d} {tag}"}}'


async def _settle() -> None:
    await asyncio.sleep(0.15)


class TestStartAt:
    async def test_end_skips_what_was_there_and_reads_what_comes(self, tmp_path: Path):
        """start_at end (the default): old lines are skipped, new ones read."""
        log = tmp_path / "a.log"
        _append(log, _json(1), _json(2))
        async with tailing(tmp_path, {"include": [str(log)]}) as (_, consumer):
            await _settle()
            _append(log, _json(3))
            await consumer.wait_for_items(1)
            await _settle()
        assert [b["n"] for b in bodies(consumer)] == [3]

    async def test_beginning_reads_everything(self, tmp_path: Path):
        """start_at beginning reads the lines already there."""
        log = tmp_path / "a.log"
        _append(log, _json(1), _json(2))
        async with tailing(tmp_path, {"include": [str(log)], "start_at": "beginning"}) as (_, consumer):
            await consumer.wait_for_items(2)
        assert [b["n"] for b in bodies(consumer)] == [1, 2]

    async def test_a_file_that_appears_later_is_read_from_its_start(self, tmp_path: Path):
        """The tracer's new daily file, created after the start, is read whole even with start_at end."""
        body = {"include": [str(tmp_path / "actions-*.jsonl")]}
        async with tailing(tmp_path, body) as (_, consumer):
            await _settle()
            _append(tmp_path / "actions-2026-03-18.jsonl", _json(1), _json(2))
            await consumer.wait_for_items(2)
        assert [b["n"] for b in bodies(consumer)] == [1, 2]

    async def test_exclude_and_home_directory(self, tmp_path: Path, monkeypatch):
        """~ expands to the home directory; exclude leaves matched files alone."""
        monkeypatch.setenv("HOME", str(tmp_path))
        _append(tmp_path / "keep.log", _json(1))
        _append(tmp_path / "skip.log", _json(2))
        body = {"include": ["~/*.log"], "exclude": [str(tmp_path / "skip*")], "start_at": "beginning"}
        async with tailing(tmp_path, body) as (_, consumer):
            await consumer.wait_for_items(1)
            await _settle()
        assert [b["n"] for b in bodies(consumer)] == [1]


class TestRotationCases:
    async def test_renamed_file_is_neither_read_again_nor_lost(self, tmp_path: Path):
        """A file renamed (inside the pattern) keeps its place; lines written to it after the rename are read."""
        log = tmp_path / "app.log"
        _append(log, _json(1))
        async with tailing(tmp_path, {"include": [str(tmp_path / "app.log*")], "start_at": "beginning"}) as (_, c):
            await c.wait_for_items(1)
            with log.open("a") as old:
                log.rename(tmp_path / "app.log.1")
                await _settle()
                old.write(_json(2) + "\n")
            _append(log, _json(3))
            await c.wait_for_items(3)
            await _settle()
        assert sorted(b["n"] for b in bodies(c)) == [1, 2, 3]

    async def test_deleted_while_open_is_read_to_its_end(self, tmp_path: Path):
        """Lines written to a deleted file through a handle still open are read."""
        log = tmp_path / "app.log"
        _append(log, _json(1))
        async with tailing(tmp_path, {"include": [str(log)], "start_at": "beginning"}) as (_, consumer):
            await consumer.wait_for_items(1)
            with log.open("a") as handle:
                log.unlink()
                handle.write(_json(2) + "\n")
            await consumer.wait_for_items(2)
        assert [b["n"] for b in bodies(consumer)] == [1, 2]

    async def test_truncated_in_place_is_read_again_from_its_start(self, tmp_path: Path):
        """A file truncated in place and written again: its new lines are read, nothing else repeated."""
        metrics = SelfMetrics()
        log = tmp_path / "app.log"
        _append(log, _json(1), _json(2))
        async with tailing(tmp_path, {"include": [str(log)], "start_at": "beginning"}, metrics=metrics) as (_, c):
            await c.wait_for_items(2)
            os.truncate(log, 0)
            await _settle()
            _append(log, _json(3, "after"))
            await c.wait_for_items(3)
            await _settle()
        assert [b["n"] for b in bodies(c)] == [1, 2, 3]
        assert metrics.file_tail_truncations.labels(receiver="file_tail", kind="in_place")._value.get() >= 1

    async def test_copytruncate_reads_the_rest_from_the_copy(self, tmp_path: Path):
        """Lines the receiver had not read when the file was copied and truncated come from the copy."""
        log = tmp_path / "app.log"
        _append(log, _json(1))
        body = {"include": [str(tmp_path / "app.log*")], "start_at": "beginning"}
        async with tailing(tmp_path, body) as (_, c):
            await c.wait_for_items(1)
            _append(log, _json(2), _json(3))
            shutil.copyfile(log, tmp_path / "app.log.1")
            os.truncate(log, 0)
            _append(log, _json(4))
            await c.wait_for_items(4)
            await _settle()
        assert sorted(b["n"] for b in bodies(c)) == [1, 2, 3, 4]


class TestLines:
    async def test_partial_line_waits_for_its_newline(self, tmp_path: Path):
        """A line written in two pieces is one record."""
        log = tmp_path / "a.log"
        log.write_text("")
        body = {"include": [str(log)], "format": "text", "force_flush_period": "5s"}
        async with tailing(tmp_path, body) as (_, consumer):
            await _settle()
            with log.open("ab") as f:
                f.write("héllo wö".encode()[:-1])  # ends inside the two bytes of ö
                f.flush()
                await _settle()
                f.write("ö".encode()[-1:] + b"rld\n")
            await consumer.wait_for_items(1)
        assert bodies(consumer) == ["héllo wörld"]

    async def test_partial_line_is_flushed_after_force_flush_period(self, tmp_path: Path):
        """A writer that stopped mid-line: the line comes out after force_flush_period."""
        log = tmp_path / "a.log"
        log.write_text("")
        body = {"include": [str(log)], "format": "text", "force_flush_period": "100ms"}
        async with tailing(tmp_path, body) as (_, consumer):
            await _settle()
            with log.open("a") as f:
                f.write("no newline yet")
            await consumer.wait_for_items(1)
        assert bodies(consumer) == ["no newline yet"]

    async def test_invalid_utf8_is_replaced_and_counted(self, tmp_path: Path):
        """Bytes that are not UTF-8 become U+FFFD; the record says it was repaired; the metric counts it."""
        metrics = SelfMetrics()
        log = tmp_path / "a.log"
        log.write_bytes(b'{"message": "caf\xe9"}\nplain \xff text\n')
        async with tailing(tmp_path, {"include": [str(log)], "start_at": "beginning"}, metrics=metrics) as (_, c):
            await c.wait_for_items(1)
            await _settle()
        assert bodies(c)[0] == {"message": "caf\ufffd"}
        repaired = metrics.receiver_repaired_values.labels(
            receiver="file_tail", transport="file", signal="logs", reason="invalid_utf8")._value.get()
        assert repaired == 1
        malformed = metrics.receiver_malformed_requests.labels(receiver="file_tail", transport="file")._value.get()
        assert malformed == 1  # "plain text" is not JSON

    async def test_long_line_is_truncated_and_counted(self, tmp_path: Path):
        """A line over max_line_size keeps its first bytes and is marked truncated; the next line is whole."""
        log = tmp_path / "a.log"
        log.write_text("x" * 5000 + "\nshort\n")
        body = {"include": [str(log)], "format": "text", "max_line_size": 100, "start_at": "beginning"}
        async with tailing(tmp_path, body) as (_, consumer):
            await consumer.wait_for_items(2)
        assert bodies(consumer) == ["x" * 100, "short"]
        marks = [kv.value.array_value.values[0].string_value for kv in records(consumer)[0].attributes
                 if kv.key == "obs_pipeline.decoding.repaired"]
        assert marks == ["truncated"]


class TestCheckpoints:
    async def test_restart_neither_rereads_nor_loses(self, tmp_path: Path):
        """Lines read before a restart are not read again; lines written while stopped are read."""
        log = tmp_path / "a.log"
        _append(log, _json(1), _json(2))
        body = {"include": [str(log)], "start_at": "beginning"}
        async with tailing(tmp_path, body) as (_, first):
            await first.wait_for_items(2)
        _append(log, _json(3))
        async with tailing(tmp_path, {**body, "start_at": "end"}) as (_, second):
            await second.wait_for_items(1)
            await _settle()
        assert [b["n"] for b in bodies(second)] == [3]
        checkpoint = tmp_path / "receivers" / "file_tail" / "checkpoints.json"
        assert checkpoint.is_file()
        assert oct(checkpoint.stat().st_mode & 0o777) == "0o600"

    async def test_record_ids_are_stable_across_runs(self, tmp_path: Path):
        """The same line read in two runs (no checkpoint kept) gets the same log.record.uid."""
        log = tmp_path / "a.log"
        _append(log, _json(1))
        body = {"include": [str(log)], "start_at": "beginning"}

        async def uid(data_dir: Path) -> str:
            async with tailing(data_dir, body) as (_, consumer):
                await consumer.wait_for_items(1)
            return next(kv.value.string_value for kv in records(consumer)[0].attributes if kv.key == "log.record.uid")

        first_dir, second_dir = tmp_path / "one", tmp_path / "two"
        assert await uid(first_dir) == await uid(second_dir)

    async def test_refusal_pauses_and_nothing_is_committed_until_accepted(self, tmp_path: Path):
        """While the pipeline refuses, the same batch is retried; after a shutdown while refused, it is read again."""
        log = tmp_path / "a.log"
        _append(log, _json(1), _json(2))
        body = {"include": [str(log)], "start_at": "beginning"}
        refusing = RefusingConsumer(retry_after=0.01)
        async with tailing(tmp_path, body, refusing):
            await refusing.wait_for_refusals(3)
        assert refusing.items == 0
        async with tailing(tmp_path, body) as (_, consumer):
            await consumer.wait_for_items(2)
        assert [b["n"] for b in bodies(consumer)] == [1, 2]

    async def test_refused_then_accepted_delivers_once(self, tmp_path: Path):
        """A batch refused twice and then accepted arrives exactly once."""
        log = tmp_path / "a.log"
        _append(log, _json(1), _json(2))
        refusing = RefusingConsumer(retry_after=0.01, times=2)
        async with tailing(tmp_path, {"include": [str(log)], "start_at": "beginning"}, refusing):
            await refusing.wait_for_items(2)
            await _settle()
        assert [b["n"] for b in bodies(refusing)] == [1, 2]


class TestCorruptCheckpoint:
    async def test_unreadable_checkpoint_is_set_aside(self, tmp_path: Path):
        """A damaged checkpoint is renamed .corrupt and reading starts as on a first start."""
        log = tmp_path / "a.log"
        _append(log, _json(1))
        folder = tmp_path / "receivers" / "file_tail"
        folder.mkdir(parents=True)
        (folder / "checkpoints.json").write_text('{"version": 1, "files": [{"fp": ')
        async with tailing(tmp_path, {"include": [str(log)], "start_at": "beginning"}) as (_, consumer):
            await consumer.wait_for_items(1)
        assert (folder / "checkpoints.corrupt").is_file()
        assert [b["n"] for b in bodies(consumer)] == [1]


class TestStartAtAfterACrash:
    async def test_lines_written_while_down_are_read_even_with_start_at_end(self, tmp_path: Path):
        """start_at end is for the very first start: the checkpoint is written at once, before any line.

        So a crash before the first line still leaves it, and lines written meanwhile are read.
        """
        log = tmp_path / "a.log"
        _append(log, _json(1))
        body = {"include": [str(log)]}
        async with tailing(tmp_path, body) as (receiver, _):
            checkpoint = receiver.checkpoints.path
            await wait_until(checkpoint.is_file)
        checkpoint_bytes = checkpoint.read_bytes()
        checkpoint.write_bytes(checkpoint_bytes)  # as a crash would leave it: the one written after the scan
        _append(log, _json(2))
        async with tailing(tmp_path, body) as (_, consumer):
            await consumer.wait_for_items(1)
            await _settle()
        assert [b["n"] for b in bodies(consumer)] == [2]
