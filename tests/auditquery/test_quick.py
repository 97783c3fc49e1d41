"""The byte-level first look: it never drops a line the filter would keep, and keeps line numbers."""

from __future__ import annotations

import gzip
import json

from obs_pipeline.auditquery.filters import Filter
from obs_pipeline.auditquery.query import matching
from obs_pipeline.auditquery.quick import QuickCheck
from obs_pipeline.auditquery.trail import Trail
from tests.auditquery.trailkit import dumps, session_one_turn_one, write_trail


def test_lines_written_with_spaces_still_match(tmp_path):
    """Another writer's spacing (Python's json.dumps) does not hide a value."""
    live = tmp_path / "audit.jsonl"
    live.write_text("".join(json.dumps(line) + "\n" for line in session_one_turn_one()))
    found = list(matching([Trail(live)], Filter(categories=frozenset({"tool"})), print))
    assert [(line.number, line.record["detail"]["tool"]) for line in found] == [(2, "search")]


def test_same_results_with_and_without_the_check(tmp_path):
    live = write_trail(tmp_path / "audit.jsonl", garbage=True)
    for where in (Filter(results=frozenset({"deny", "error"})), Filter(event_types=frozenset({"chat"})),
                  Filter(categories=frozenset({"llm"}), agents=frozenset({"planner"}))):
        problems: list[str] = []
        quick = [(line.file, line.number) for line in matching([Trail(live)], where, problems.append)]
        slow = [(line.file, line.number) for line in matching([Trail(live)], Filter(), print)
                if where.matches(line)]
        assert quick == slow
        assert len(problems) == 1  # the garbage line is still reported


def test_values_that_may_be_escaped_turn_the_check_off():
    assert not QuickCheck([frozenset({"café"})])
    assert not QuickCheck([frozenset({'say "hi"'})])
    assert not QuickCheck([frozenset()])
    assert QuickCheck([frozenset({"tool"})]).may_match(b"not json\n")  # the parser decides, and reports


def test_a_truncated_gzip_is_still_reported(tmp_path):
    live = tmp_path / "audit.jsonl"
    live.write_bytes(b"")
    gz = tmp_path / "audit-20260317T100000000000Z.jsonl.gz"
    with gzip.open(gz, "wb") as out:
        out.write(dumps(session_one_turn_one() * 50))
    data = gz.read_bytes()
    gz.write_bytes(data[: len(data) // 2])
    problems: list[str] = []
    found = list(matching([Trail(live)], Filter(categories=frozenset({"tool"})), problems.append))
    assert found
    assert len(problems) == 1
    assert "compressed file is truncated or corrupt" in problems[0]
