"""The commands over a hand-built trail: what a user sees, exactly (tables, JSON lines, CSV, exit codes)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from rich.console import Console

from obs_pipeline.auditquery.describe import text_of
from obs_pipeline.auditquery.filters import Filter
from obs_pipeline.auditquery.query import last, matching
from obs_pipeline.auditquery.render import lines_table
from obs_pipeline.auditquery.trail import Trail
from obs_pipeline.commands import main
from tests.auditquery.trailkit import (
    T1,
    dumps,
    session_one_turn_one,
    session_one_turn_two,
    session_two,
    tool,
    write_trail,
)


@pytest.fixture
def live(tmp_path):
    return write_trail(tmp_path / "audit" / "audit.jsonl", garbage=True)


def run(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args])


def json_lines(text):
    return [json.loads(line) for line in text.splitlines()]


class TestAudit:
    def test_recent_json_is_the_lines_as_written(self, live):
        result = run("audit", "recent", "--path", live, "--limit", 3, "--json")
        assert result.exit_code == 0
        expected = session_two()
        assert result.stdout.encode() == b"".join(orjson.dumps(line) + b"\n" for line in expected)

    def test_a_skipped_line_is_reported_on_stderr_and_the_rest_read(self, live):
        result = run("audit", "query", "--path", live, "--json")
        assert result.exit_code == 0
        assert len(result.stdout.splitlines()) == 13
        assert result.stderr == f"warning: {live.parent}/audit-20260317T100600000000Z.jsonl: line 2: not JSON (16 bytes); skipped\n"

    def test_query_filters_narrow(self, live):
        result = run("audit", "query", "--path", live, "--json", "--session", "s1", "--category", "llm")
        assert [line["detail"]["model"] for line in json_lines(result.stdout)] == [
            "claude-sonnet-4-5", "claude-sonnet-4-5", "mystery-model"]
        limited = run("audit", "query", "--path", live, "--json", "--category", "llm", "--limit", 1)
        assert len(limited.stdout.splitlines()) == 1

    def test_security_json(self, live):
        result = run("audit", "security", "--path", live, "--json")
        assert [line["event_type"] for line in json_lines(result.stdout)] == [
            "secret_redacted", "execute_tool", "budget_exceeded"]

    def test_recent_table(self, live):
        result = run("audit", "recent", "--path", live, "--limit", 1)
        assert result.exit_code == 0
        lines = result.stdout.splitlines()
        assert all(word in lines[1] for word in ("time", "subject"))
        assert all(word in lines[3] for word in ("2026-03-17 11:00:01.000", "gpt-4o", "llm"))
        assert len(lines) == 5

    def test_export_csv(self, live):
        result = run("audit", "export", "--path", live, "--format", "csv", "--category", "llm")
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        assert [(row["model"], row["input_tokens"], row["cost_usd"], row["unpriced"]) for row in rows] == [
            ("claude-sonnet-4-5", "100", "0.01", ""), ("claude-sonnet-4-5", "200", "0.02", ""),
            ("mystery-model", "50", "", "True"), ("gpt-4o", "1000", "0.5", ""), ("gpt-4o", "1000", "0.5", "")]
        assert json.loads(rows[0]["detail"])["tokens"] == {"input": 100, "output": 20}

    def test_export_json_to_a_file(self, live, tmp_path):
        out = tmp_path / "report.json"
        result = run("audit", "export", "--path", live, "--format", "json", "--session", "s2", "-o", out)
        assert result.exit_code == 0
        assert "3 lines written to" in result.stderr
        assert json.loads(out.read_text()) == session_two()

    def test_a_missing_trail_exits_1_with_a_message(self, tmp_path):
        result = run("audit", "recent", "--path", tmp_path / "nope" / "{tenant}.jsonl")
        assert result.exit_code == 1
        assert "no audit file matches" in result.stderr

    @pytest.mark.parametrize("command", [["audit", "recent"], ["audit", "query"], ["cost"], ["replay", "list"]])
    def test_a_missing_file_in_a_missing_directory_exits_1_with_a_message(self, tmp_path, command):
        """A mistyped --path is not an empty trail: exit 1, naming the file and the missing directory."""
        result = run(*command, "--path", tmp_path / "nope" / "audit.jsonl")
        assert result.exit_code == 1
        assert f"no audit file at {tmp_path / 'nope' / 'audit.jsonl'} (the directory {tmp_path / 'nope'} does not exist)" in result.stderr

    @pytest.mark.parametrize("command", [["audit", "recent"], ["audit", "security"], ["audit", "query"], ["cost"],
                                         ["replay", "list"]])
    def test_filters_that_match_nothing_exit_0_as_docs_cli_says(self, live, command):
        """An empty answer is an answer: exit 0 (docs/cli.md used to say 1 for "nothing matches")."""
        result = run(*command, "--path", live, "--session", "no-such-session")
        assert result.exit_code == 0, result.output
        row = next(line for line in (Path(__file__).parents[2] / "docs" / "cli.md").read_text().splitlines()
                   if line.startswith("| `audit recent/security/query/export`"))
        assert "0 the trail was read, also when the filters match no line" in row
        assert "nothing matches" not in row

    def test_no_source_is_an_error(self):
        result = run("audit", "recent")
        assert result.exit_code == 1
        assert "--path FILE or --config" in result.stderr

    def test_a_bad_time_is_a_usage_error(self, live):
        result = run("audit", "query", "--path", live, "--since", "yesterday")
        assert result.exit_code == 2
        assert "neither a time" in result.stderr


class TestCost:
    def test_json_totals(self, live):
        result = run("cost", "--path", live, "--by", "session", "--json")
        document = json.loads(result.stdout)
        assert [(row["key"], row["cost_usd"]) for row in document["rows"]] == [("s2", 0.5), ("s1", 0.03)]
        assert document["unpriced"]["calls"] == 1
        assert document["total"]["cost_usd"] == 0.53
        assert document["duplicates_dropped"] == 1

    def test_table_has_the_unpriced_row_and_the_total(self, live):
        out = run("cost", "--path", live, "--by", "model").stdout
        assert "by model: mystery-model (1)" in out
        assert next(line for line in out.splitlines() if "unpriced" in line).split()[1:6] == [
            "unpriced", "│", "1", "│", "50"]
        total = next(line for line in out.splitlines() if "total" in line)
        assert all(figure in total for figure in ("4", "1,350", "$0.530000"))
        assert "1 of 4 calls could not be priced" in out


class TestReplay:
    def test_show_lists_turns_with_their_steps(self, live):
        out = run("replay", "show", "s1", "--path", live).stdout.splitlines()
        heads = [line for line in out if line.startswith("Turn ")]
        assert [head.split()[1] for head in heads] == ["1", "2"]
        assert "2 LLM · 1 tool · $0.030000" in heads[0]
        body = out[out.index(heads[0]) + 1: out.index(heads[1])]
        assert [line.split()[1] for line in body] == ["agent", "llm", "tool", "llm", "security"]
        assert "user: find the invoice → Searching." in body[1]
        assert '{"q":"invoice"} → 3 results' in body[2]

    def test_show_raw_with_kind_and_turn(self, live):
        raw = run("replay", "show", "s1", "--path", live, "--raw", "--turn", 2, "--kind", "tool", "--kind", "budget")
        assert [line["event_type"] for line in json_lines(raw.stdout)] == ["execute_tool", "budget_exceeded"]

    def test_show_errors_json(self, live):
        result = run("replay", "show", "s1", "--path", live, "--json", "--errors")
        (turn,) = json_lines(result.stdout)
        assert turn["turn"] == 2
        assert [(step["kind"], step["depth"]) for step in turn["steps"]] == [("llm", 2), ("tool", 2), ("budget", 1)]

    def test_show_unknown_session(self, live):
        result = run("replay", "show", "nobody", "--path", live)
        assert result.exit_code == 1
        assert "no audit lines for session 'nobody'" in result.stderr

    def test_list_json(self, live):
        result = run("replay", "list", "--path", live, "--json")
        assert [(item["session_id"], item["events"]) for item in json_lines(result.stdout)] == [("s2", 2), ("s1", 10)]


def test_the_kit_has_the_shape_the_tests_assume():
    assert len(session_one_turn_one()) == 5
    assert len(session_one_turn_two()) == 5


class TestDescribe:
    @pytest.mark.parametrize(("value", "shown"), [
        ({"text": "user: hello there", "truncated": True, "original_length": 5000}, "user: hello there"),
        ('[{"role":"user","parts":[{"type":"text","content":"one"}]},{"role":"user","parts":[{"type":"text","content":"two"}]}]',
         "user: two"),
        ('[{"role": "user", "parts": [{"type": "text", "content": "cut', '[{"role": "user", "parts": [{"type": "text", "content": "cut'),
        ([{"role": "assistant", "parts": [{"type": "tool_call", "name": "search"}]}], "assistant: [tool call search]"),
        ("  many\n  lines  ", "many lines"),
    ])
    def test_content_summaries(self, value, shown):
        """Content as the exporter writes it (an object with text, JSON message text, plain text) in one line."""
        assert text_of(value, 200, last=True) == shown

    def test_long_content_is_cut_with_an_ellipsis(self):
        assert text_of("x" * 100, 10) == "x" * 9 + "…"


class TestCsvSafety:
    def test_formula_text_is_quoted_numbers_are_not(self, tmp_path):
        """A value an agent wrote that a spreadsheet would run as a formula is quoted; figures stay figures."""
        live = tmp_path / "audit.jsonl"
        live.write_bytes(dumps([tool("10:00:00", T1, "x", "a", "=HYPERLINK(\"http://evil\")",
                                     detail={"duration_ms": -1.5})]))
        rows = list(csv.DictReader(io.StringIO(run("audit", "export", "--path", live).stdout)))
        assert rows[0]["tool"] == "'=HYPERLINK(\"http://evil\")"
        assert rows[0]["duration_ms"] == "-1.5"


class TestNarrowTerminal:
    def test_tables_drop_columns_instead_of_wrapping_every_cell(self, live):
        """At 80 columns the recent table keeps time, category, event, result, subject and summary."""
        out = io.StringIO()
        lines_table(last(matching([Trail(live)], Filter(), lambda _: None), 1), Console(file=out, width=80))
        header = out.getvalue().splitlines()[1]
        assert header.replace("┃", " ").split() == [
            "time", "category", "event", "result", "subject", "summary"]
        assert "03-17 11:00:01" in out.getvalue()
