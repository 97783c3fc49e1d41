"""What other processors wrote, in the audit file: cost, security lines, budget lines, content for replay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from obs_pipeline.audit import KEYS
from obs_pipeline.audit.line import MAX_LIST_ITEMS
from obs_pipeline.audit.reader import read_entries
from obs_pipeline.batch import Batch
from obs_pipeline.components import Kind
from obs_pipeline.errors import ConfigError
from obs_pipeline.exporters.jsonl_audit import FACTORY
from obs_pipeline.exporters.jsonl_audit.content import Content, ContentPolicy
from obs_pipeline.exporters.jsonl_audit.derived import _security_of, derive, derive_from
from obs_pipeline.exporters.jsonl_audit.logs import encode_logs
from obs_pipeline.exporters.jsonl_audit.spans import SpanEncoder
from obs_pipeline.signals import Signal
from obs_pipeline.testing import RecordingHost, make_settings, parse_config
from tests.exporters.builders import CHAT, SPAN, TRACE, logs, traces

SECRET = "sk-proj-Xk3vR9mQ2pL7wN4tY8zB1cF6hJ0sD5gA"
MASKED = {
    "redaction.masked.count": 2,
    "redaction.masked.rules": ["openai-api-key", "openai-api-key"],
    "redaction.masked.keys": ["attributes.gen_ai.input.messages", "events[0].attributes.exception.message"],
}
BUDGET = {
    "budget.event": "exceeded", "budget.id": "session-cap", "budget.scope": "session", "budget.scope_value": "conv-0",
    "budget.window": "session", "budget.spend": 5.25, "budget.limit": 5.0, "budget.state": "exceeded",
}


def span_lines(*specs: dict[str, Any], content: ContentPolicy | None = None) -> list[dict[str, Any]]:
    encoder = SpanEncoder(content=content)
    return [orjson.loads(line) for line in encoder.encode(Batch(Signal.TRACES, traces(*specs)))]


def wire_lines(*specs: dict[str, Any], content: ContentPolicy | None = None) -> list[dict[str, Any]]:
    """The same through the batch's bytes alone (the exporter's usual path)."""
    wire = traces(*specs).SerializeToString()
    encoder = SpanEncoder(content=content)
    return [orjson.loads(line) for line in encoder.encode(Batch.from_wire(Signal.TRACES, wire))]


def _any(value: Any) -> AnyValue:
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[AnyValue(string_value=v) for v in value]))
    return AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)


def _parent() -> dict[str, Any]:
    """A span's own line, as :func:`derive` gets it."""
    return {key: f"{key}-value" for key in KEYS} | {"detail": {}, "event_id": "t:s"}


def chat(**attrs: Any) -> dict[str, Any]:
    return {**CHAT, "attrs": {**CHAT["attrs"], **attrs}}


class TestCost:
    """``detail.cost_usd`` and ``detail.unpriced`` from the cost processor's attributes."""

    def test_cost_amount_becomes_cost_usd(self) -> None:
        """A double, as the cost processor writes it, is the line's cost."""
        (line,) = span_lines(chat(**{"gen_ai.usage.cost.amount": 0.01234, "gen_ai.usage.cost.currency": "USD"}))
        assert line["detail"]["cost_usd"] == 0.01234
        assert "unpriced" not in line["detail"]

    def test_unpriced_is_marked_and_never_zero(self) -> None:
        """An unpriced span says so, and has no cost at all (not $0)."""
        (line,) = span_lines(chat(**{"gen_ai.usage.cost.unpriced": True}))
        assert line["detail"]["unpriced"] is True
        assert "cost_usd" not in line["detail"]

    def test_odd_cost_values(self) -> None:
        """An int or numeric string is read; NaN, infinity and words are not a cost."""
        values = [(1, 1), ("0.5", 0.5), (float("nan"), None), (float("inf"), None), ("free", None), (True, None)]
        for value, expected in values:
            (line,) = span_lines(chat(**{"gen_ai.usage.cost.amount": value}))
            assert line["detail"].get("cost_usd") == expected, value

    def test_wire_and_message_paths_agree(self) -> None:
        """The hand-read double of the wire path equals the parsed one."""
        spec = chat(**{"gen_ai.usage.cost.amount": 3.5e-05, **MASKED, **BUDGET})
        assert wire_lines(spec) == span_lines(spec)


class TestSecurityLine:
    """A span the redaction processor changed gets a ``security`` line after its own, naming rules and places only."""

    @pytest.fixture(autouse=True)
    def _forget_summaries(self) -> None:
        """Each test starts with nothing remembered, so it sees the first read and the remembered one."""
        _security_of.cache_clear()

    def test_security_line_follows_with_rules_and_locations(self) -> None:
        """Same ids and session; rule ids once each; the locations; the count; result redacted."""
        own, security = span_lines(chat(**MASKED))
        assert list(security) == list(KEYS)
        assert security["category"] == "security"
        assert security["event_type"] == "secret_redacted"
        assert security["result"] == "redacted"
        assert security["detail"] == {"rules": ["openai-api-key"], "locations": MASKED["redaction.masked.keys"],
                                      "count": 2}
        for key in ("timestamp", "session_id", "task_id", "trace_id", "span_id", "parent_span_id", "service"):
            assert security[key] == own[key]
        assert security["event_id"] == f"{own['event_id']}:secret_redacted"
        assert "rules" not in own["detail"]

    def test_detect_mode_says_detected(self) -> None:
        """``mode: detect`` writes ``redaction.detected.*``: the line's result is ``detected``."""
        detected = {k.replace("masked", "detected"): v for k, v in MASKED.items()}
        _, security = span_lines(chat(**detected))
        assert security["result"] == "detected"
        assert security["detail"]["count"] == 2

    def test_no_summary_no_line_and_zero_is_nothing(self) -> None:
        """A clean span has one line; a count of zero with no rules is no event."""
        assert len(span_lines(chat())) == 1
        assert len(span_lines(chat(**{"redaction.masked.count": 0}))) == 1

    def test_log_records_get_their_security_line_too(self) -> None:
        """The log path writes the same line after the record's own."""
        data = logs({"body": "key [REDACTED:openai-api-key]", "attrs": MASKED, "trace_id": TRACE, "span_id": SPAN,
                     "time_unix_nano": 1})
        own, security = (orjson.loads(x) for x in encode_logs(data))
        assert security["category"] == "security"
        assert security["detail"]["locations"] == MASKED["redaction.masked.keys"]
        assert security["event_id"] == f"{own['event_id']}:secret_redacted"

    @pytest.mark.parametrize("summary", [
        MASKED,
        {k.replace("masked", "detected"): v for k, v in MASKED.items()},
        {**MASKED, **{k.replace("masked", "detected"): v for k, v in MASKED.items()}},  # masked wins
        {"redaction.masked.rules": ["jwt", "jwt", "pem"], "redaction.masked.keys": ["name"]},  # no count: the rules'
        {"redaction.masked.count": "3", "redaction.masked.rules": ["jwt"]},  # a numeric string
        {"redaction.masked.count": 0, "redaction.masked.rules": ["jwt"]},
        {"redaction.masked.count": True, "redaction.masked.rules": "jwt"},  # odd types from a sender
        {**MASKED, **BUDGET},
    ])
    def test_spans_remember_summaries_and_say_what_log_records_say(self, summary: dict[str, Any]) -> None:
        """Spans read the summary through a cache by its bytes; each line equals the log path's, twice over."""
        span_extra = [line for line in span_lines(chat(**summary), chat(**summary))
                      if line["category"] in ("security", "budget")]
        data = logs({"body": "x", "attrs": summary, "trace_id": TRACE, "span_id": SPAN, "time_unix_nano": 1})
        log_extra = [orjson.loads(x) for x in encode_logs(data)][1:]
        assert [(x["category"], x["result"], x["detail"]) for x in span_extra] == \
            2 * [(x["category"], x["result"], x["detail"]) for x in log_extra]
        assert span_extra  # every shape here is an event
        assert _security_of.cache_info().hits == 1  # the second span's came from memory

    def test_a_line_made_from_a_remembered_summary_cannot_change_the_next(self) -> None:
        """The cache holds tuples: a caller changing one line's detail leaves the next line as it was."""
        raws = [KeyValue(key=k, value=_any(v)).SerializeToString() for k, v in MASKED.items()]
        first = derive(raws, _parent(), ContentPolicy(Content.NONE))[0]
        first["detail"]["rules"].append("changed")
        first["detail"]["locations"].clear()
        second = derive(raws, _parent(), ContentPolicy(Content.NONE))[0]
        assert second["detail"] == {"rules": ["openai-api-key"], "locations": MASKED["redaction.masked.keys"],
                                    "count": 2}

    def test_a_summary_written_value_first_still_gives_its_line(self) -> None:
        """A ``KeyValue`` whose value comes before its key cannot be told by hand: the parsed path reads it."""
        raws = [KeyValue(key=k, value=_any(v)).SerializeToString() for k, v in MASKED.items()]
        first = KeyValue.FromString(raws[0])
        value = first.value.SerializeToString()
        key = first.key.encode()
        raws[0] = b"\x12" + bytes((len(value),)) + value + b"\x0a" + bytes((len(key),)) + key
        assert KeyValue.FromString(raws[0]) == first
        (line,) = derive(raws, _parent(), ContentPolicy(Content.NONE))
        assert line["detail"] == {"rules": ["openai-api-key"], "locations": MASKED["redaction.masked.keys"],
                                  "count": 2}

    @pytest.mark.parametrize(("first", "last"), [
        ("budget.event", "redaction.detected.rules"),  # told as other, parsed as the summary
        ("redaction.masked.rules", "budget.event"),  # told as the summary, parsed as other
    ])
    def test_a_key_given_twice_gives_the_lines_the_parser_gives(self, first: str, last: str) -> None:
        """Protobuf keeps a repeated key field's last value; telling by the first key must not add or lose a line."""
        raws = [KeyValue(key=k, value=_any(v)).SerializeToString() for k, v in MASKED.items()]
        twice = KeyValue(key=first, value=_any("exceeded")).SerializeToString() + \
            KeyValue(key=last).SerializeToString()[:2 + len(last)]
        raws.append(twice)
        parsed = [KeyValue.FromString(raw) for raw in raws]
        assert parsed[-1].key == last
        want = derive_from(parsed, _parent(), ContentPolicy(Content.NONE))
        assert derive(raws, _parent(), ContentPolicy(Content.NONE)) == want
        assert [x["event_type"] for x in want].count("secret_redacted") == 1

    def test_a_large_summary_is_read_each_time_and_not_remembered(self) -> None:
        """A summary of thousands of locations gives its line (lists capped as always); the cache keeps only small ones."""
        many = {"redaction.masked.count": 3000, "redaction.masked.rules": ["jwt"] * 3000,
                "redaction.masked.keys": [f"attributes.k{i}" for i in range(3000)]}
        raws = [KeyValue(key=k, value=_any(v)).SerializeToString() for k, v in many.items()]
        for _ in range(2):
            (line,) = derive(raws, _parent(), ContentPolicy(Content.NONE))
            assert line["detail"]["count"] == 3000
            assert line["detail"]["locations"] == [f"attributes.k{i}" for i in range(MAX_LIST_ITEMS)]
        assert _security_of.cache_info().currsize == 0

    def test_no_value_ever_reaches_the_line(self) -> None:
        """Whatever a (misbehaving) span holds, the security line carries ids and names only."""
        lines = span_lines(chat(**MASKED, **{"gen_ai.input.messages": f"key {SECRET}"}), content=None)
        assert SECRET not in json.dumps(lines)


class TestBudgetLine:
    """``budget.event`` from the budget processor gives a ``budget`` line."""

    def test_exceeded_is_deny_with_the_budget_named(self) -> None:
        """Result deny; detail names the budget, scope value, window, spend, limit and trace."""
        own, budget = span_lines(chat(**BUDGET))
        assert budget["category"] == "budget"
        assert budget["event_type"] == "budget_exceeded"
        assert budget["result"] == "deny"
        assert budget["detail"] == {"budget_id": "session-cap", "scope": "session", "scope_value": "conv-0",
                                    "window": "session", "spend": 5.25, "limit": 5.0, "trace_id": own["trace_id"]}
        assert budget["event_id"] == f"{own['event_id']}:budget_exceeded:session-cap"
        assert own["result"] == "allow"  # the call itself happened

    def test_warning_is_allow_with_its_threshold(self) -> None:
        """A warning threshold crossing is an allow line carrying the threshold."""
        _, budget = span_lines(chat(**{**BUDGET, "budget.event": "warning", "budget.threshold": 0.8,
                                       "budget.spend": 4.1}))
        assert (budget["event_type"], budget["result"], budget["detail"]["threshold"]) == ("budget_warning", "allow", 0.8)

    def test_a_state_without_an_event_is_no_line(self) -> None:
        """``budget.state`` alone (annotate on every span) is not an event: only the crossing is."""
        assert len(span_lines(chat(**{k: v for k, v in BUDGET.items() if k != "budget.event"}))) == 1
        assert len(span_lines(chat(**{**BUDGET, "budget.event": "whatever"}))) == 1

    def test_security_then_budget_order(self) -> None:
        """Both on one span: the span's line, then security, then budget."""
        assert [x["category"] for x in span_lines(chat(**MASKED, **BUDGET))] == ["llm", "security", "budget"]


MESSAGES_IN = json.dumps([
    {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
    {"role": "user", "parts": [{"type": "text", "content": "first question"}]},
    {"role": "assistant", "parts": [{"type": "text", "content": "an answer"}]},
    {"role": "user", "parts": [{"type": "text", "content": "what is the weather in Paris?"}]},
])
MESSAGES_OUT = json.dumps([{"role": "assistant", "parts": [
    {"type": "tool_call", "id": "c1", "name": "get_weather", "arguments": {"city": "Paris"}}],
    "finish_reason": "tool_call"}])


class TestContent:
    """``content: none | summary | full`` puts input and output into the line's detail."""

    def test_summary_is_the_last_user_message_and_the_first_output(self) -> None:
        """The default: short excerpts a replay can show."""
        (line,) = span_lines(chat(**{"gen_ai.input.messages": MESSAGES_IN, "gen_ai.output.messages": MESSAGES_OUT}),
                             content=ContentPolicy())
        assert line["detail"]["input"] == {"text": "what is the weather in Paris?"}
        assert line["detail"]["output"] == {"text": "[tool_call get_weather]"}

    def test_full_keeps_the_json_and_the_system_instructions(self) -> None:
        """``full``: the text as the span carries it, and ``detail.system``."""
        (line,) = span_lines(chat(**{"gen_ai.input.messages": MESSAGES_IN, "gen_ai.system_instructions": "be brief"}),
                             content=ContentPolicy(Content.FULL))
        assert json.loads(line["detail"]["input"]["text"]) == json.loads(MESSAGES_IN)
        assert line["detail"]["system"] == {"text": "be brief"}

    def test_truncation_is_marked_with_the_original_length(self) -> None:
        """A cut text says so; summary cuts at min(200, max_detail_chars), full at max_detail_chars."""
        long = "é" * 5000
        spec = chat(**{"gen_ai.input.messages": long})
        (line,) = span_lines(spec, content=ContentPolicy(Content.FULL, 2000))
        assert line["detail"]["input"] == {"text": "é" * 2000, "truncated": True, "original_length": 5000}
        (line,) = span_lines(spec, content=ContentPolicy(Content.SUMMARY, 2000))
        assert line["detail"]["input"]["text"] == "é" * 200
        (line,) = span_lines(spec, content=ContentPolicy(Content.SUMMARY, 50))
        assert len(line["detail"]["input"]["text"]) == 50

    def test_none_keeps_no_content(self) -> None:
        """``none``: no input, output or system."""
        (line,) = span_lines(chat(**{"gen_ai.output.messages": MESSAGES_OUT}), content=ContentPolicy(Content.NONE))
        assert not {"input", "output", "system"} & set(line["detail"])

    def test_tool_calls_and_older_names(self) -> None:
        """A tool span's arguments and result; ``gen_ai.prompt``/``completion``; the canonical name wins."""
        tool = {"name": "execute_tool", "attrs": {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "shell",
                                                  "gen_ai.tool.call.arguments": '{"cmd": "ls"}',
                                                  "gen_ai.tool.call.result": "a.txt"}}
        (line,) = span_lines(tool, content=ContentPolicy())
        assert (line["detail"]["input"], line["detail"]["output"]) == ({"text": '{"cmd": "ls"}'}, {"text": "a.txt"})
        old = chat(**{"gen_ai.prompt": "old prompt", "gen_ai.completion": "old answer"})
        old["attrs"].pop("gen_ai.input.messages")
        (line,) = span_lines(old, content=ContentPolicy())
        assert line["detail"]["input"] == {"text": "old prompt"}
        (line,) = span_lines(chat(**{"gen_ai.prompt": "old prompt"}), content=ContentPolicy(Content.FULL))
        assert line["detail"]["input"] == {"text": "x" * 600}  # CHAT's gen_ai.input.messages

    def test_wire_path_agrees(self) -> None:
        """The exporter's bytes-only path writes the same content."""
        spec = chat(**{"gen_ai.output.messages": MESSAGES_OUT, "gen_ai.usage.cost.amount": 0.2})
        for mode in Content:
            assert wire_lines(spec, content=ContentPolicy(mode)) == span_lines(spec, content=ContentPolicy(mode))


class TestExporterConfig:
    """The exporter reads ``content`` and ``max_detail_chars`` from its config; summary is the default."""

    async def _write(self, path: Path, body: dict[str, Any], *specs: dict[str, Any]) -> list[dict[str, Any]]:
        exp = FACTORY.create(make_settings("jsonl_audit", Kind.EXPORTER), parse_config(FACTORY, {"path": str(path), **body}))
        await exp.start(RecordingHost())
        await exp.export(Batch(Signal.TRACES, traces(*specs)))
        await exp.shutdown()
        return [entry.record for entry in read_entries(path)]

    async def test_default_is_summary(self, tmp_path: Path) -> None:
        """No option: a summary of at most 200 characters."""
        (line,) = await self._write(tmp_path / "a.jsonl", {}, chat())
        assert line["detail"]["input"] == {"text": "x" * 200, "truncated": True, "original_length": 600}

    async def test_full_with_a_limit(self, tmp_path: Path) -> None:
        """``content: full``, ``max_detail_chars: 300``."""
        (line,) = await self._write(tmp_path / "a.jsonl", {"content": "full", "max_detail_chars": 300}, chat())
        assert line["detail"]["input"]["text"] == "x" * 300

    def test_bad_values_are_config_errors(self) -> None:
        """A content mode that does not exist, or a limit under 1, fails validation."""
        for body in ({"content": "some"}, {"max_detail_chars": 0}):
            with pytest.raises(ConfigError, match=r"content|max_detail_chars"):
                parse_config(FACTORY, {"path": "a", **body})


def test_an_error_span_with_everything_keeps_one_line_each() -> None:
    """Status error, exception, cost, redaction and budget on one span: three lines, all in key order."""
    spec = chat(**MASKED, **BUDGET, **{"gen_ai.usage.cost.amount": 0.4})
    spec["status"] = (Status.STATUS_CODE_ERROR, "failed")
    lines = span_lines(spec, content=ContentPolicy())
    assert [x["result"] for x in lines] == ["error", "redacted", "deny"]
    assert all(list(x) == list(KEYS) for x in lines)
    assert lines[0]["detail"]["cost_usd"] == 0.4


def test_the_hand_read_string_equals_the_parsed_one() -> None:
    """``string_of`` agrees with the protobuf parser on every length and value kind, and survives bad bytes."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: PLC0415

    from obs_pipeline.exporters.jsonl_audit.content import string_of  # noqa: PLC0415

    for key in ("k", "gen_ai.input.messages", "x" * 127, "y" * 200):
        for length in (0, 1, 60, 127, 128, 129, 130, 400, 16_000, 16_383, 16_384, 40_000):
            for text in ("a" * length, "é" * length):
                raw = KeyValue(key=key, value=AnyValue(string_value=text)).SerializeToString()
                assert string_of(raw) == text, (len(key), length)
    for value in (AnyValue(int_value=5), AnyValue(double_value=1.5), AnyValue(bytes_value=b"abc"), AnyValue()):
        assert string_of(KeyValue(key="k", value=value).SerializeToString()) == ""
    bad = KeyValue(key="k", value=AnyValue(string_value="ab")).SerializeToString()[:-2] + b"\xff\xfe"
    assert string_of(bad) == "\ufffd\ufffd"
    assert string_of(b"") == ""
    assert string_of(b"\x0a\x05ab") == ""
