"""The hash chain's seam: a hook sees every serialized line, in file order, before it is written."""

from __future__ import annotations

import orjson
import pytest

from obs_pipeline.audit.hook import NO_HOOK, LineHook, seal_all
from obs_pipeline.audit.reader import read_entries
from obs_pipeline.batch import Batch
from obs_pipeline.components import Kind
from obs_pipeline.exporters.jsonl_audit import FACTORY, JsonlAuditExporter, writer
from obs_pipeline.exporters.jsonl_audit.logs import DEFAULT_PRESET
from obs_pipeline.signals import Signal
from obs_pipeline.testing import RecordingHost, make_settings, parse_config
from tests.exporters.builders import logs, traces


class Numbering:
    """A stand-in for the hash chain: appends ``"seq"`` to each line."""

    def __init__(self) -> None:
        self.seq = 0
        self.seen: list[bytes] = []

    def seal(self, line: bytes) -> bytes:
        self.seen.append(line)
        self.seq += 1
        return line[:-1] + b',"seq":' + str(self.seq).encode() + b"}"


class TestHook:
    async def test_every_line_is_sealed_in_file_order(self, tmp_path):
        """Spans and log records, across batches: the file holds what the hook returned, numbered in order."""
        hook = Numbering()
        assert isinstance(hook, LineHook)
        path = tmp_path / "audit.jsonl"
        cfg = parse_config(FACTORY, {"path": str(path)})
        exp = JsonlAuditExporter(make_settings("jsonl_audit", Kind.EXPORTER), cfg, DEFAULT_PRESET, hook)
        await exp.start(RecordingHost())
        await exp.export(Batch(Signal.TRACES, traces({"name": "a"}, {"name": "b"})))
        await exp.export(Batch(Signal.LOGS, logs({"body": "c"})))
        await exp.shutdown()
        records = [e.record for e in read_entries(path)]
        assert [(r["event_type"], r["seq"]) for r in records] == [("a", 1), ("b", 2), ("log", 3)]
        assert [orjson.loads(line)["event_type"] for line in hook.seen] == ["a", "b", "log"]

    def test_a_hook_beside_the_hash_chain_is_refused(self, tmp_path):
        """The chain seals every line itself: a hook given with hash_chain would be ignored, so it is an error."""
        cfg = parse_config(FACTORY, {"path": str(tmp_path / "audit.jsonl"), "hash_chain": True})
        with pytest.raises(ValueError, match="exclude each other"):
            JsonlAuditExporter(make_settings("jsonl_audit", Kind.EXPORTER), cfg, DEFAULT_PRESET, Numbering())

    def test_no_hook_writes_lines_unchanged_without_copying(self):
        """The default hook costs nothing: the same list, the same bytes."""
        lines = [b'{"a":1}', b'{"b":2}']
        assert seal_all(NO_HOOK, lines) is lines
        assert writer.frame(lines, NO_HOOK) == b'{"a":1}\n{"b":2}\n'

    async def test_the_exporter_writes_plain_lines_by_default(self, tmp_path):
        """Without a hook the lines are the mapping's, byte for byte."""
        path = tmp_path / "audit.jsonl"
        exp = FACTORY.create(make_settings("jsonl_audit", Kind.EXPORTER), parse_config(FACTORY, {"path": str(path)}))
        await exp.start(RecordingHost())
        await exp.export(Batch(Signal.TRACES, traces({"name": "a"})))
        await exp.shutdown()
        assert "seq" not in next(iter(read_entries(path))).record
