"""Each filter narrows to exactly the lines it names; sessions follow their traces; times are ISO or ages."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from obs_pipeline.auditquery.filters import Filter, parse_when, security_filter
from obs_pipeline.auditquery.query import last, matching
from obs_pipeline.auditquery.trail import Trail
from tests.auditquery.trailkit import write_trail


def names(trails, where):
    return [line.record["event_id"].split(":")[-1] for line in matching(trails, where, print)]


def sid(name):
    return name.encode().hex().ljust(16, "0")[:16]


@pytest.fixture
def trails(tmp_path):
    return [Trail(write_trail(tmp_path / "audit.jsonl"))]


class TestFilters:
    def test_no_filter_keeps_everything(self, trails):
        assert len(names(trails, Filter())) == 13

    def test_category(self, trails):
        assert names(trails, Filter(categories=frozenset({"tool"}))) == [sid("x1"), sid("x2")]

    def test_result(self, trails):
        assert names(trails, Filter(results=frozenset({"deny"}))) == [sid("x2"), "bud1"]
        assert names(trails, Filter(results=frozenset({"error"}))) == [sid("c3")]

    def test_event_type(self, trails):
        assert names(trails, Filter(event_types=frozenset({"secret_redacted", "budget_exceeded"}))) == ["sec1", "bud1"]

    def test_session_takes_its_traces_child_lines(self, trails):
        """s2's chat span has no session_id: it is s2's through its trace."""
        assert names(trails, Filter(sessions=frozenset({"s2"}))) == [sid("c4"), sid("d"), sid("c4")]
        assert len(names(trails, Filter(sessions=frozenset({"s1"})))) == 10

    def test_agent_user_service(self, trails):
        assert names(trails, Filter(agents=frozenset({"coder"}))) == [sid("b2")]
        assert names(trails, Filter(users=frozenset({"u2"}))) == [sid("d")]
        assert names(trails, Filter(services=frozenset({"nobody"}))) == []

    def test_since_and_until(self, trails):
        window = Filter(since="2026-03-17T10:05:00.000000Z", until="2026-03-17T10:05:02.000000Z")
        assert names(trails, window) == [sid("b2"), sid("b")]

    def test_filters_combine(self, trails):
        assert names(trails, Filter(sessions=frozenset({"s1"}), categories=frozenset({"llm"}))) == [
            sid("c1"), sid("c2"), sid("c3")]

    def test_security_is_category_security_or_any_deny(self, trails):
        assert names(trails, security_filter(Filter())) == ["sec1", sid("x2"), "bud1"]

    def test_recent_is_the_last_n(self, trails):
        shown = last(matching(trails, Filter(), print), 2)
        assert [line.record["event_id"].split(":")[-1] for line in shown] == [sid("d"), sid("c4")]


class TestWhen:
    NOW = datetime(2026, 3, 17, 12, 0, tzinfo=UTC)

    @pytest.mark.parametrize(("text", "expected"), [
        ("1h", "2026-03-17T11:00:00.000000Z"),
        ("90s", "2026-03-17T11:58:30.000000Z"),
        ("1h30m", "2026-03-17T10:30:00.000000Z"),
        ("2d", "2026-03-15T12:00:00.000000Z"),
        ("1w", "2026-03-10T12:00:00.000000Z"),
        ("2026-03-17", "2026-03-17T00:00:00.000000Z"),
        ("2026-03-17T10:30", "2026-03-17T10:30:00.000000Z"),
        ("2026-03-17T10:30:45.5Z", "2026-03-17T10:30:45.500000Z"),
        ("2026-03-17T12:30:00+02:00", "2026-03-17T10:30:00.000000Z"),
    ])
    def test_ages_and_times(self, text, expected):
        assert parse_when(text, self.NOW) == expected

    @pytest.mark.parametrize("text", ["yesterday", "1y", "", "10"])
    def test_nonsense_is_refused(self, text):
        with pytest.raises(ValueError, match="neither a time"):
            parse_when(text, self.NOW)
