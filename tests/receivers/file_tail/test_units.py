"""The line splitter and the mapping on their own: offsets, limits, time formats, value translations."""

from __future__ import annotations

import pytest

from obs_pipeline.receivers.file_tail.mapping import Mapper, MappingError
from obs_pipeline.receivers.file_tail.splitter import LineSplitter
from obs_pipeline.receivers.linebatch import SEVERITY_NUMBERS


class TestSplitter:
    def test_offsets_cover_the_bytes_exactly(self):
        """Each line's [start, end) ends past its newline; a partial line is pending until completed."""
        s = LineSplitter(100, 10)
        lines = s.feed(b"ab\r\ncd\nef")
        assert [(x.start, x.end, x.data) for x in lines] == [(10, 14, b"ab"), (14, 17, b"cd")]
        assert s.pending == 2
        assert [(x.start, x.end, x.data) for x in s.feed(b"g\n")] == [(17, 21, b"efg")]
        assert s.pending == 0

    def test_long_line_keeps_its_first_bytes_and_skips_the_rest(self):
        """A line over the limit is cut at it, across many chunks, and never held beyond it."""
        s = LineSplitter(5, 0)
        out = []
        for _ in range(100):
            out += s.feed(b"x" * 1000)
            assert len(s._partial) <= 5
        out += s.feed(b"yy\nok\n")
        assert [(x.data, x.truncated) for x in out] == [(b"xxxxx", True), (b"ok", False)]
        assert out[0].end == 100_003

    def test_flush_hands_on_the_partial_line(self):
        """flush() makes the pending bytes a line; what follows starts a new one."""
        s = LineSplitter(100, 0)
        s.feed(b"half")
        line = s.flush()
        assert line is not None
        assert (line.start, line.end, line.data) == (0, 4, b"half")
        assert s.flush() is None
        assert [x.data for x in s.feed(b" more\n")] == [b" more"]


def _mapper(spec):
    return Mapper(spec, SEVERITY_NUMBERS)


class TestMapping:
    @pytest.mark.parametrize(("spec", "value", "expected_ns"), [
        ({"field": "t", "format": "unix_ms"}, 1773743445123, 1773743445123000000),
        ({"field": "t", "format": "unix_s"}, "1773743445.5", 1773743445500000000),
        ({"field": "t", "format": "iso8601"}, "2026-03-17T10:30:45.123456", 1773743445123456000),
        ({"field": "t", "format": "%d/%m/%Y %H:%M:%S"}, "17/03/2026 10:30:45", 1773743445000000000),
        ({"field": "t", "format": "iso8601", "timezone": "Europe/Paris"}, "2026-03-17T11:30:45", 1773743445000000000),
        ("t", 1773743445, 1773743445000000000),
    ])
    def test_timestamp_formats(self, spec, value, expected_ns):
        """Each time format gives the record's time in ns since the epoch (UTC unless a zone is named)."""
        assert _mapper({"timestamp": spec}).apply({"t": value}).time_ns == expected_ns

    def test_unparseable_time_is_kept_in_detail(self):
        """A time that is not one is kept as detail.source_timestamp; the record gets no time from it."""
        mapped = _mapper({"timestamp": {"field": "t", "format": "unix_ms"}}).apply({"t": "yesterday"})
        assert mapped.time_ns == 0
        assert mapped.body["detail"]["source_timestamp"] == "yesterday"

    def test_fields_values_defaults_and_constants(self):
        """First present candidate wins; values translate; default fills; value is a constant."""
        mapper = _mapper({
            "session_id": ["a.b", "c"], "result": {"field": "s", "values": {"ok": "allow"}, "default": "allow"},
            "category": {"value": "tool"}, "severity": {"field": "lvl"},
            "detail": {"fields": ["m.model"], "exclude": ["secret"]},
        })
        mapped = mapper.apply({"c": "sess", "s": "ok", "lvl": "warn", "m": {"model": "x"}, "secret": "s3", "n": 1})
        assert mapped.body == {"session_id": "sess", "category": "tool", "result": "allow",
                               "detail": {"model": "x", "m": {"model": "x"}, "n": 1}}
        assert (mapped.severity_text, mapped.severity_number) == ("warn", 13)
        assert _mapper({"result": {"field": "s", "default": "allow"}}).apply({}).body["result"] == "allow"
        assert _mapper({"session_id": ["a.b", "c"]}).apply({"a": {"b": "inner"}, "c": "outer"}).body == {
            "session_id": "inner", "detail": {"a": {"b": "inner"}, "c": "outer"}}

    def test_ids_become_record_ids(self):
        """Hex trace and span ids of the right length become the record's ids; others do not."""
        mapped = _mapper({"trace_id": "t", "span_id": "s"}).apply({"t": "ab" * 16, "s": "zz" * 8})
        assert mapped.trace_id == bytes.fromhex("ab" * 16)
        assert mapped.span_id == b""

    @pytest.mark.parametrize("spec", [{"nope": "x"}, {"result": 5}, {"result": {"values": {}}},
                                      {"detail": {"rest": "yes"}}, {"timestamp": {"field": "t", "format": "weird"}}])
    def test_bad_mappings_are_refused(self, spec):
        """What cannot be compiled is a MappingError naming where."""
        with pytest.raises(MappingError):
            _mapper(spec)
