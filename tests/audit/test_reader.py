"""Reading an audit file back: every good line, and each broken one reported with its line number."""

from __future__ import annotations

import io

import orjson
import pytest

from obs_pipeline.audit.reader import BadLine, iter_entries, read_entries
from obs_pipeline.batch import Batch
from obs_pipeline.components import Kind
from obs_pipeline.exporters.jsonl_audit import FACTORY
from obs_pipeline.signals import Signal
from obs_pipeline.testing import RecordingHost, make_settings, parse_config
from tests.exporters.builders import traces

GOOD = b'{"timestamp":"2026-03-17T10:30:45.000000Z","event_type":"chat"}'


class TestReader:
    def test_good_lines_with_numbers_and_exact_bytes(self, tmp_path):
        """Each line comes back parsed, numbered from 1, with its bytes (what a hash chain covers)."""
        path = tmp_path / "audit.jsonl"
        path.write_bytes(GOOD + b"\n" + b'{"b":2}\n')
        entries = list(read_entries(path))
        assert [(e.number, e.record, e.raw) for e in entries] == [
            (1, orjson.loads(GOOD), GOOD), (2, {"b": 2}, b'{"b":2}')]

    def test_partial_last_line_is_reported_not_fatal(self, tmp_path):
        """A crash mid-write leaves a cut last line: reported as partial with its number, the rest read."""
        path = tmp_path / "audit.jsonl"
        path.write_bytes(GOOD + b"\n" + GOOD + b"\n" + GOOD[:30])
        bad: list[BadLine] = []
        assert [e.number for e in read_entries(path, bad.append)] == [1, 2]
        assert bad == [BadLine(3, "partial last line", 30)]
        assert str(bad[0]) == "line 3: partial last line (30 bytes); skipped"

    def test_unparsable_and_non_object_lines_are_reported(self):
        """A line that is not JSON, or JSON that is not an object, is skipped and named by number."""
        bad: list[BadLine] = []
        lines = [GOOD + b"\n", b'{"cut":\n', b"[1, 2]\n", b"\n", b"   \n", GOOD + b"\n"]
        assert [e.number for e in iter_entries(lines, bad.append)] == [1, 6]
        assert [(b.number, b.reason) for b in bad] == [(2, "not JSON"), (3, "not a JSON object")]

    def test_a_complete_last_line_without_newline_is_read(self):
        """The cut may fall just before the newline: a last line that parses is kept."""
        assert [e.record for e in iter_entries(io.BytesIO(GOOD))] == [orjson.loads(GOOD)]

    def test_bad_lines_never_carry_their_text(self):
        """A report names the line and its size, never its content (it may be telemetry)."""
        bad: list[BadLine] = []
        list(iter_entries([b'{"session_id": "secret-session", \n'], bad.append))
        assert "secret" not in str(bad[0])
        assert "secret" not in repr(bad[0])

    def test_without_a_callback_bad_lines_are_skipped(self):
        """``on_bad`` is optional."""
        assert [e.number for e in iter_entries([b"nope\n", GOOD])] == [2]

    def test_missing_file_raises(self, tmp_path):
        """A file that is not there is an OSError, not an empty audit."""
        with pytest.raises(FileNotFoundError):
            list(read_entries(tmp_path / "missing.jsonl"))

    async def test_reads_what_the_exporter_wrote_after_a_crash(self, tmp_path):
        """A file with a previous crash's cut line and new batches after it: the cut line is line 1, the rest read."""
        path = tmp_path / "audit.jsonl"
        path.write_bytes(GOOD[:25])
        exp = FACTORY.create(make_settings("jsonl_audit", Kind.EXPORTER), parse_config(FACTORY, {"path": str(path)}))
        await exp.start(RecordingHost())
        await exp.export(Batch(Signal.TRACES, traces({"name": "a"}, {"name": "b"})))
        await exp.shutdown()
        bad: list[BadLine] = []
        assert [(e.number, e.record["event_type"]) for e in read_entries(path, bad.append)] == [(2, "a"), (3, "b")]
        assert [(b.number, b.reason) for b in bad] == [(1, "not JSON")]
