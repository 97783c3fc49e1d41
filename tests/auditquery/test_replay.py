"""``replay``: a session's turns in start order, each with its calls inside; sessions listed with their figures."""

from __future__ import annotations

import pytest

from obs_pipeline.auditquery.filters import Deduper, Filter
from obs_pipeline.auditquery.query import matching
from obs_pipeline.auditquery.replay import build_turns, list_sessions, select_steps
from obs_pipeline.auditquery.trail import Line, Trail
from tests.auditquery.trailkit import T1, chat, log, span, write_trail


def session_lines(trails, session):
    return list(matching(trails, Filter(sessions=frozenset({session})), print, dedupe=Deduper()))


def shape(turns):
    return [(turn.number, [(step.line.record["event_type"], step.line.detail.get("tool") or step.line.detail.get("model"),
                            step.depth) for step in turn.steps]) for turn in turns]


@pytest.fixture
def trails(tmp_path):
    return [Trail(write_trail(tmp_path / "audit.jsonl"))]


class TestTurns:
    def test_turns_in_order_with_their_calls_inside(self, trails):
        """Two agent invocations of s1: the second's sub-agent belongs to it, log events hang at their span."""
        turns = build_turns(session_lines(trails, "s1"))
        assert shape(turns) == [
            (1, [("invoke_agent", None, 0), ("chat", "claude-sonnet-4-5", 1), ("execute_tool", "search", 1),
                 ("chat", "claude-sonnet-4-5", 1), ("secret_redacted", None, 2)]),
            (2, [("invoke_agent", None, 0), ("invoke_agent", None, 1), ("chat", "mystery-model", 2),
                 ("execute_tool", "shell", 2), ("budget_exceeded", None, 1)]),
        ]

    def test_turn_totals(self, trails):
        first, second = build_turns(session_lines(trails, "s1"))
        assert first.totals() == {"turn": 1, "started": "2026-03-17T10:00:00.000000Z", "llm_calls": 2,
                                  "tool_calls": 1, "errors": 0, "input_tokens": 300, "output_tokens": 50,
                                  "cost_usd": 0.03, "duration_ms": None}
        assert second.totals()["errors"] == 3  # the failed call, the denied tool, the budget deny
        assert second.totals()["cost_usd"] is None  # its only call was unpriced

    def test_kind_errors_and_turn_narrow_the_steps(self, trails):
        turns = build_turns(session_lines(trails, "s1"))
        tools = select_steps(turns, kinds=frozenset({"tool"}))
        assert [(turn.number, [line.detail["tool"] for line, _ in steps]) for turn, steps in tools] == [
            (1, ["search"]), (2, ["shell"])]
        errors = select_steps(turns, errors=True)
        assert [(turn.number, [line.record["event_type"] for line, _ in steps]) for turn, steps in errors] == [
            (2, ["chat", "execute_tool", "budget_exceeded"])]
        only_two = select_steps(turns, turn=2, kinds=frozenset({"budget", "security"}))
        assert [(turn.number, len(steps)) for turn, steps in only_two] == [(2, 1)]
        assert [turn.number for turn, _ in select_steps(turns, kinds=frozenset({"security"}))] == [1]

    def test_a_trace_without_agent_spans_is_one_turn(self, tmp_path):
        """No invoke_agent: the tree's top span is the turn."""
        records = [chat("09:00:01", T1, "c1", "r", "m", (1, 1), 0.1),
                   span("09:00:00", T1, "r", event_type="workflow", category="other", session="s")]
        lines = [Line(record, b"", tmp_path, number) for number, record in enumerate(records, 1)]
        assert shape(build_turns(lines)) == [(1, [("workflow", None, 0), ("chat", "m", 1)])]

    def test_lines_without_a_trace_go_to_the_turn_of_their_time(self, tmp_path):
        records = [span("09:00:00", T1, "r", event_type="invoke_agent", category="agent", session="s"),
                   log("09:00:05", None, None, event_type="note", category="other", session="s", event_id="log:n")]
        lines = [Line(record, b"", tmp_path, number) for number, record in enumerate(records, 1)]
        assert shape(build_turns(lines)) == [(1, [("invoke_agent", None, 0), ("note", None, 1)])]


class TestSessions:
    def test_list_counts_child_lines_for_their_session(self, trails):
        sessions = list_sessions(matching(trails, Filter(), print, dedupe=Deduper()))
        assert [item.as_dict() for item in sessions] == [
            {"session_id": "s2", "first": "2026-03-17T11:00:00.000000Z", "last": "2026-03-17T11:00:01.000000Z",
             "events": 2, "llm_calls": 1, "tool_calls": 0, "errors": 0, "cost_usd": 0.5, "unpriced_calls": 0,
             "agents": ["helper"], "tenants": []},
            {"session_id": "s1", "first": "2026-03-17T10:00:00.000000Z", "last": "2026-03-17T10:05:04.000000Z",
             "events": 10, "llm_calls": 3, "tool_calls": 2, "errors": 3, "cost_usd": 0.03, "unpriced_calls": 1,
             "agents": ["coder", "planner"], "tenants": []},
        ]
