"""``cost``: spend per key equals the sum of the calls; the unpriced share is its own row; retried copies count once."""

from __future__ import annotations

import orjson
import pytest

from obs_pipeline.auditquery.cost import cost_report
from obs_pipeline.auditquery.filters import Deduper, Filter
from obs_pipeline.auditquery.query import matching
from obs_pipeline.auditquery.traces import TraceResolver
from obs_pipeline.auditquery.trail import Trail, trails_of
from tests.auditquery.trailkit import T1, chat, dumps, session_two, write_trail


def report(trails, by, where=None):
    return cost_report(matching(trails, where or Filter(), print, dedupe=Deduper()), by).as_dict()


class TestCost:
    def test_by_session_sums_and_unpriced_row(self, tmp_path):
        """Child calls without a session count for their trace's session; the duplicate once; unpriced apart."""
        trails = [Trail(write_trail(tmp_path / "audit.jsonl"))]
        result = report(trails, "session")
        assert [(row["key"], row["calls"], row["input"], row["output"], row["cost_usd"]) for row in result["rows"]] == [
            ("s2", 1, 1000, 100, 0.5), ("s1", 2, 300, 50, 0.03)]
        assert result["unpriced"] == {"calls": 1, "input": 50, "output": 5, "cache_read": 0, "cache_write": 0,
                                      "reasoning": 0, "total": 0, "cost_usd": None,
                                      "keys": [{"key": "s1", "calls": 1}]}
        assert result["total"]["calls"] == 4
        assert result["total"]["input"] == 1350
        assert result["total"]["cost_usd"] == pytest.approx(0.53)
        assert result["duplicates_dropped"] == 0  # counted by the command's Deduper

    def test_totals_equal_the_sum_of_the_rows(self, tmp_path):
        """Whatever the key, the total row is the priced rows plus the unpriced row."""
        trails = [Trail(write_trail(tmp_path / "audit.jsonl"))]
        for by in ("session", "model", "provider", "user", "agent", "day", "tenant"):
            result = report(trails, by)
            for name in ("calls", "input", "output"):
                assert result["total"][name] == sum(row[name] for row in result["rows"]) + result["unpriced"][name]
            assert result["total"]["cost_usd"] == pytest.approx(sum(row["cost_usd"] for row in result["rows"]))

    def test_by_model_and_provider(self, tmp_path):
        trails = [Trail(write_trail(tmp_path / "audit.jsonl"))]
        assert [(row["key"], row["cost_usd"]) for row in report(trails, "model")["rows"]] == [
            ("gpt-4o", 0.5), ("claude-sonnet-4-5", 0.03)]
        by_provider = report(trails, "provider")
        assert [row["key"] for row in by_provider["rows"]] == ["openai", "anthropic"]
        assert by_provider["unpriced"]["keys"] == [{"key": "acme", "calls": 1}]

    def test_by_user_and_agent_inherit_from_the_trace(self, tmp_path):
        trails = [Trail(write_trail(tmp_path / "audit.jsonl"))]
        assert [(row["key"], row["calls"]) for row in report(trails, "user")["rows"]] == [("u2", 1), ("u1", 2)]
        assert [row["key"] for row in report(trails, "agent")["rows"]] == ["helper", "planner"]

    def test_by_day(self, tmp_path):
        trails = [Trail(write_trail(tmp_path / "audit.jsonl"))]
        assert [(row["key"], row["calls"]) for row in report(trails, "day")["rows"]] == [("2026-03-17", 3)]

    def test_by_tenant_from_the_path(self, tmp_path):
        write_trail(tmp_path / "acme" / "audit.jsonl")
        (tmp_path / "globex").mkdir()
        (tmp_path / "globex" / "audit.jsonl").write_bytes(dumps(session_two()[:1]))
        trails = trails_of(str(tmp_path / "{tenant}" / "audit.jsonl"))
        result = report(trails, "tenant")
        assert [(row["key"], row["calls"], row["cost_usd"]) for row in result["rows"]] == [
            ("acme", 3, 0.53), ("globex", 1, 0.5)]

    def test_filters_narrow_the_report(self, tmp_path):
        trails = [Trail(write_trail(tmp_path / "audit.jsonl"))]
        only_s1 = report(trails, "model", Filter(sessions=frozenset({"s1"})))
        assert [(row["key"], row["calls"]) for row in only_s1["rows"]] == [("claude-sonnet-4-5", 2)]
        later = report(trails, "session", Filter(since="2026-03-17T10:30:00.000000Z"))
        assert [row["key"] for row in later["rows"]] == ["s2"]
        assert later["unpriced"]["calls"] == 0

    def test_duplicates_are_counted_once(self, tmp_path):
        trails = [Trail(write_trail(tmp_path / "audit.jsonl"))]
        dedupe = Deduper()
        result = cost_report(matching(trails, Filter(), print, dedupe=dedupe), "session")
        assert dedupe.dropped == 1
        assert result.total.calls == 4

    def test_unknown_group_is_refused(self):
        with pytest.raises(ValueError, match="--by must be one of"):
            cost_report([], "colour")


class TestBoundedMemory:
    def test_trace_resolver_folds_when_the_key_shows_and_caps_what_it_holds(self):
        """Held sums are folded as soon as their trace's key shows; past the cap the oldest goes to "no key"."""
        folded: list[tuple[str | None, list[int]]] = []
        traces = TraceResolver(list, lambda key, held: folded.append((key, held)), max_traces=2)
        traces.hold("t1").append(1)
        traces.hold("t1").append(2)
        traces.learn("t1", "s1")
        assert folded == [("s1", [1, 2])]
        assert traces.known("t1") == "s1"
        for trace in ("t2", "t3", "t4"):
            traces.hold(trace).append(3)
        assert folded[1:] == [(None, [3])]  # t2, the oldest held, when t4 came
        traces.learn("t5", "s5")
        traces.learn("t6", "s6")
        assert traces.known("t1") is None  # forgotten: only the 2 most recent known traces are kept
        traces.finish()
        assert [key for key, _ in folded] == ["s1", None, None, None]


class TestUnknownIsNeverZero:
    def test_the_unpriced_row_has_no_cost_in_json_or_table(self, tmp_path):
        """An unpriced call's cost is unknown: null in --json, "unpriced" in the table, never $0."""
        from click.testing import CliRunner  # noqa: PLC0415

        from obs_pipeline.commands import main  # noqa: PLC0415

        live = write_trail(tmp_path / "audit.jsonl")
        runner = CliRunner()
        done = runner.invoke(main, ["cost", "--path", str(live), "--json"])
        assert done.exit_code == 0, done.output
        assert orjson.loads(done.output)["unpriced"]["cost_usd"] is None
        done = runner.invoke(main, ["cost", "--path", str(live)], env={"COLUMNS": "160"})
        unpriced_row = next(row for row in done.output.splitlines() if "unpriced" in row and "│" in row)
        assert "$" not in unpriced_row


class TestInvalidTokenCounts:
    @pytest.mark.parametrize("bad", [-5, 2.5, "100", True])
    def test_counts_that_are_not_non_negative_integers_are_left_out_and_counted(self, tmp_path, bad):
        """`input_tokens: -5` from a buggy SDK is neither summed nor hidden: it is counted as invalid."""
        live = tmp_path / "audit.jsonl"
        live.write_bytes(dumps([
            chat("10:00:01", T1, "c1", "a", "gpt-4o", (100, 20), 0.01, session="s1"),
            chat("10:00:02", T1, "c2", "a", "gpt-4o", (0, 10), 0.01, session="s1",
                 detail={"tokens": {"input": bad, "output": 10}}),
        ]))
        result = report([Trail(live)], "session")
        assert (result["total"]["input"], result["total"]["output"]) == (100, 30)
        assert result["invalid_token_counts"] == 1

    def test_replay_does_not_show_a_negative_count(self, tmp_path):
        from obs_pipeline.auditquery.render import event_text  # noqa: PLC0415
        from obs_pipeline.auditquery.replay import build_turns  # noqa: PLC0415

        live = tmp_path / "audit.jsonl"
        live.write_bytes(dumps([chat("10:00:01", T1, "c1", "a", "gpt-4o", (0, 10), 0.01, session="s1",
                                     detail={"tokens": {"input": -5, "output": 10}})]))
        lines = list(matching([Trail(live)], Filter(), print, dedupe=Deduper()))
        assert "-5" not in str(event_text(lines[0]))
        (turn,) = build_turns(lines)
        assert (turn.totals()["input_tokens"], turn.totals()["output_tokens"]) == (0, 10)
