"""What the audit line says and how it is typed: ids, fixed types, the fields that answer "why", caps.

Each test is phrased as what a reader of the audit file notices; each failed on the code before
the change it covers (event ids, invalid ids, fixed types, new fields, caps, the docs' key table).
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Status, TracesData

from obs_pipeline.audit.line import KEYS, NAME_CHARS, TEXT_CHARS, TEXT_KEYS
from obs_pipeline.exporters.jsonl_audit.logs import encode_logs
from obs_pipeline.exporters.jsonl_audit.spans import encode_traces
from tests.exporters.builders import CHAT, SPAN, T0, TRACE, logs, traces

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit-line.md"


def span_lines(data: TracesData) -> list[dict[str, Any]]:
    """The lines of ``data`` mapped from the message; asserts the wire path gives the same bytes."""
    lines = encode_traces(data)
    assert encode_traces(None, data.SerializeToString()) == lines
    return [orjson.loads(x) for x in lines]


def span_line(spec: dict[str, Any], resource: dict[str, Any] | None = None) -> dict[str, Any]:
    (line,) = span_lines(traces(spec, resource=resource))
    return line


def log_line(spec: dict[str, Any], resource: dict[str, Any] | None = None) -> dict[str, Any]:
    (raw,) = encode_logs(logs(spec, resource=resource))
    return orjson.loads(raw)


# --- A: event ids -------------------------------------------------------------------------------

class TestLogEventIds:
    def test_identical_lines_with_their_own_uids_are_two_events(self):
        """Two identical stdin lines (different ``log.record.uid``) get two ids, each ``log:<uid>``."""
        body = {"event_type": "tool_execute", "result": "allow"}
        first = log_line({"body": body, "attrs": {"log.record.uid": "01JD8X3K5Q0000000000000001"}})
        second = log_line({"body": body, "attrs": {"log.record.uid": "01JD8X3K5Q0000000000000002"}})
        assert first["event_id"] == "log:01JD8X3K5Q0000000000000001"
        assert second["event_id"] == "log:01JD8X3K5Q0000000000000002"

    def test_the_same_uid_is_the_same_id_whenever_it_is_read(self):
        """A line read again (same uid), at another time, keeps its id: it is the same event."""
        spec = {"body": {"message": "x"}, "attrs": {"log.record.uid": "u-1"}}
        assert log_line({**spec, "observed_time_unix_nano": T0})["event_id"] == log_line(
            {**spec, "observed_time_unix_nano": T0 + 10**9})["event_id"] == "log:u-1"

    def test_the_bodys_own_event_id_wins_over_the_uid(self):
        """An agent that writes its own event ids keeps them."""
        line = log_line({"body": {"event_id": "audit-001"}, "attrs": {"log.record.uid": "u-1"}})
        assert line["event_id"] == "audit-001"

    def test_sdk_records_at_different_times_are_different_events(self):
        """Without a uid, the same content observed at two times is two events; a retry of the same bytes is one."""
        spec = {"body": "user logged in", "time_unix_nano": T0}
        at_t0 = log_line({**spec, "observed_time_unix_nano": T0})
        retry = log_line({**spec, "observed_time_unix_nano": T0})
        later = log_line({**spec, "observed_time_unix_nano": T0 + 1})
        assert at_t0["event_id"] == retry["event_id"] != later["event_id"]
        assert re.fullmatch(r"log:[0-9a-f]{16}", at_t0["event_id"])


#: Invalid (trace id, span id) pairs and what the line must say of each id: hex when valid, else None.
INVALID_IDS = [
    pytest.param(bytes(16), SPAN, None, SPAN.hex(), id="all-zero trace id"),
    pytest.param(TRACE, bytes(8), TRACE.hex(), None, id="all-zero span id"),
    pytest.param(b"\x01\x02", b"\x03", None, None, id="wrong lengths"),
    pytest.param(TRACE[:8], SPAN, None, SPAN.hex(), id="8-byte trace id"),
    pytest.param(TRACE, TRACE, TRACE.hex(), None, id="16-byte span id"),
    pytest.param(b"", b"", None, None, id="absent"),
]


class TestInvalidSpanIds:
    @pytest.mark.parametrize(("trace_id", "span_id", "want_trace", "want_span"), INVALID_IDS)
    def test_invalid_ids_are_not_written_as_if_valid(self, trace_id, span_id, want_trace, want_span):
        """Invalid ids (OTLP: all zero, or not 16/8 bytes) are null, marked, and the event id is a content hash."""
        spec = {"name": "x", "trace_id": trace_id, "span_id": span_id}
        line = span_line(spec)
        assert (line["trace_id"], line["span_id"]) == (want_trace, want_span)
        assert line["detail"]["invalid_ids"] is True
        assert re.fullmatch(r"span:[0-9a-f]{16}", line["event_id"])
        assert span_line(spec)["event_id"] == line["event_id"]  # stable per retry
        assert span_line({**spec, "name": "y"})["event_id"] != line["event_id"]  # unique per event

    def test_valid_ids_carry_no_mark(self):
        """The usual case: ``<trace>:<span>``, no ``invalid_ids``."""
        line = span_line({"name": "x"})
        assert line["event_id"] == f"{TRACE.hex()}:{SPAN.hex()}"
        assert "invalid_ids" not in line["detail"]

    @pytest.mark.parametrize("parent", [bytes(8), b"\x01\x02\x03", bytes(range(16))], ids=["zero", "short", "long"])
    def test_an_invalid_parent_id_is_null_and_marked(self, parent):
        """A parent id that is present but invalid is not written; the span's own ids stay."""
        line = span_line({"name": "x", "parent_span_id": parent})
        assert line["parent_span_id"] is None
        assert line["detail"]["invalid_ids"] is True
        assert line["event_id"] == f"{TRACE.hex()}:{SPAN.hex()}"

    def test_a_minimal_line_does_not_write_invalid_ids_either(self, monkeypatch):
        """When the mapping fails, the minimal line keeps the same rule."""
        from obs_pipeline.exporters.jsonl_audit import spans  # noqa: PLC0415

        monkeypatch.setattr(spans, "_exception_type", lambda _events: 1 / 0)
        line = span_line({"name": "x", "trace_id": b"\x01\x02", "span_id": b"\x03",
                          "status": (Status.STATUS_CODE_ERROR, "")})
        assert line["detail"] == {"mapping_error": "ZeroDivisionError", "invalid_ids": True}
        assert (line["trace_id"], line["span_id"]) == (None, None)
        assert line["event_id"].startswith("span:")


class TestInvalidLogIds:
    @pytest.mark.parametrize(("field", "value"), [
        ("trace_id", "0" * 32), ("trace_id", "0102"), ("trace_id", 42), ("trace_id", "g" * 32),
        ("span_id", "0" * 16), ("span_id", "73ab48767734d7c1ff"), ("parent_span_id", "0" * 16),
        ("parent_span_id", "xyz"),
    ])
    def test_a_bodys_invalid_ids_are_not_written(self, field, value):
        """A log body's ``trace_id`` that is all zero, short, a number or not hex: null, marked, kept in detail."""
        line = log_line({"body": {field: value}})
        assert line[field] is None
        assert line["detail"][f"source_{field}"] == value
        assert line["detail"]["invalid_ids"] is True

    def test_a_bodys_valid_ids_are_written_in_lower_case(self):
        """Valid hex ids from a body are the line's ids (lower case, as OTLP/JSON writes them)."""
        line = log_line({"body": {"trace_id": TRACE.hex().upper(), "span_id": SPAN.hex(),
                                  "parent_span_id": "C7FDE805EC99108D"}})
        assert (line["trace_id"], line["span_id"], line["parent_span_id"]) == (
            TRACE.hex(), SPAN.hex(), "c7fde805ec99108d")
        assert line["detail"] == {}

    def test_a_records_invalid_ids_are_not_written(self):
        """A log record whose trace/span ids are the wrong length: null and marked, not ``0102``."""
        line = log_line({"body": "x", "trace_id": b"\x01\x02", "span_id": bytes(8)})
        assert (line["trace_id"], line["span_id"]) == (None, None)
        assert line["detail"]["invalid_ids"] is True

    def test_a_record_outside_any_span_is_fine(self):
        """No ids at all is not invalid for a log record."""
        line = log_line({"body": "x"})
        assert (line["trace_id"], line["span_id"]) == (None, None)
        assert "invalid_ids" not in line["detail"]


# --- B: fixed types -----------------------------------------------------------------------------

NOT_WORDS: list[Any] = [5, 2.5, True, ["a", "b"], {"k": "v"}]


class TestFixedTypes:
    @pytest.mark.parametrize("value", NOT_WORDS, ids=repr)
    @pytest.mark.parametrize(("field", "derived"), [("category", "llm"), ("result", "error"), ("event_type", "chat")])
    def test_a_word_field_that_is_not_a_string_is_kept_in_detail(self, field, derived, value):
        """``"category": 5`` (or a list, an object): the line's category is the derived one, the value is in detail."""
        line = log_line({"body": {field: value, "message": "m"}, "severity_number": 17,
                         "attrs": {"gen_ai.operation.name": "chat"}})
        assert line[field] == derived
        assert line["detail"][f"source_{field}"] == value

    @pytest.mark.parametrize(("value", "text"), [(42, "42"), (-7, "-7"), (2.5, "2.5"), (2**62, "4611686018427387904")])
    @pytest.mark.parametrize("field", ["session_id", "task_id", "user_id", "agent", "event_id"])
    def test_a_number_where_an_id_belongs_is_its_decimal_text(self, field, value, text):
        """A numeric session id (or task, user, ...) becomes its decimal text."""
        assert log_line({"body": {field: value}})[field] == text

    @pytest.mark.parametrize("value", [True, ["s-1"], {"id": "s-1"}], ids=repr)
    def test_an_id_that_is_not_a_scalar_is_kept_in_detail(self, value):
        """A session id that is a list, an object or a boolean is no id: kept in detail, the attributes decide."""
        line = log_line({"body": {"session_id": value}, "attrs": {"session.id": "from-attrs"}})
        assert line["session_id"] == "from-attrs"
        assert line["detail"]["source_session_id"] == value

    def test_a_service_that_is_not_text(self):
        """The body's service, when the resource names none: a number is its text, an object stays in detail."""
        assert log_line({"body": {"service": 7}}, resource={})["service"] == "7"
        line = log_line({"body": {"service": {"name": "x"}}}, resource={})
        assert line["service"] is None
        assert line["detail"]["source_service"] == {"name": "x"}

    def test_every_text_field_is_a_string_or_null_whatever_the_body(self):
        """Random bodies of every JSON type: the line's text fields are never anything but strings or null."""
        rnd = random.Random(7)
        values: list[Any] = [None, "", "s", 0, 3, -1.5, True, False, [], [1, "a"], {}, {"a": {"b": 1}}, "x" * 2000]
        fields = [*TEXT_KEYS, "message", "detail", "timestamp"]
        records = [{"body": {f: rnd.choice(values) for f in rnd.sample(fields, rnd.randrange(1, len(fields)))}}
                   for _ in range(300)]
        data = logs(*records)
        for raw in encode_logs(data):
            line = orjson.loads(raw)
            assert list(line) == list(KEYS)
            for key in TEXT_KEYS:
                assert line[key] is None or isinstance(line[key], str), (key, line[key])
            assert isinstance(line["event_type"], str)
            assert isinstance(line["category"], str)
            assert isinstance(line["result"], str)
            assert isinstance(line["event_id"], str)
            assert isinstance(line["detail"], dict)
            assert "mapping_error" not in line["detail"]

    def test_a_boolean_attribute_is_no_session_id(self):
        """On a span, ``session.id: true`` is no id (the resource's applies); a number is its text."""
        resource = {"service.name": "svc", "session.id": "res-session"}
        assert span_line({"attrs": {"session.id": True}}, resource)["session_id"] == "res-session"
        assert span_line({"attrs": {"session.id": 42}}, resource)["session_id"] == "42"


# --- C: the fields that answer "why" --------------------------------------------------------------

class TestWhoAndWhere:
    def test_parent_span_id(self):
        """A child span names its parent (hex); a root span has null."""
        parent = bytes.fromhex("c7fde805ec99108d")
        assert span_line({"parent_span_id": parent})["parent_span_id"] == "c7fde805ec99108d"
        assert span_line({})["parent_span_id"] is None

    @pytest.mark.parametrize("name", ["user.id", "enduser.id", "langfuse.user.id",
                                      "traceloop.association.properties.user_id"])
    def test_user_id_and_its_aliases(self, name):
        """``user.id`` and the names other instrumentations use give ``user_id``."""
        assert span_line({"attrs": {name: "u-42"}})["user_id"] == "u-42"
        assert log_line({"body": "x", "attrs": {name: "u-42"}})["user_id"] == "u-42"

    def test_canonical_user_id_wins(self):
        """``user.id`` beats an alias, whatever their order."""
        assert span_line({"attrs": {"enduser.id": "alias", "user.id": "canonical"}})["user_id"] == "canonical"

    @pytest.mark.parametrize("name", ["gen_ai.agent.name", "agent.name"])
    def test_agent_and_its_alias(self, name):
        """The agent's name is a top-level field."""
        line = span_line({"attrs": {"gen_ai.operation.name": "chat", name: "planner"}})
        assert line["agent"] == "planner"
        assert "agent" not in line["detail"]

    def test_user_and_agent_from_the_resource(self):
        """A resource's user and agent apply to its spans and log records that carry none."""
        resource = {"service.name": "svc", "user.id": "u-res", "gen_ai.agent.name": "a-res"}
        line = span_line({"attrs": {"gen_ai.agent.name": "own"}}, resource)
        assert (line["user_id"], line["agent"]) == ("u-res", "own")
        line = log_line({"body": "x"}, resource)
        assert (line["user_id"], line["agent"]) == ("u-res", "a-res")

    def test_a_log_body_names_its_user_agent_and_parent(self):
        """An agent's own audit line with ``user_id``, ``agent``, ``parent_span_id`` keeps them at the top level."""
        line = log_line({"body": {"user_id": "u-1", "agent": "planner", "parent_span_id": "c7fde805ec99108d"}})
        assert (line["user_id"], line["agent"], line["parent_span_id"]) == ("u-1", "planner", "c7fde805ec99108d")
        assert line["detail"] == {}


class TestWhy:
    def test_exception_message_of_an_error_span(self):
        """An error span's exception event gives its type and its message, beside each other."""
        line = span_line({"status": (Status.STATUS_CODE_ERROR, "tool failed"), "events": [
            ("exception", {"exception.type": "PermissionError", "exception.message": "/etc/shadow: denied"})]})
        assert line["detail"]["error_type"] == "PermissionError"
        assert line["detail"]["exception_message"] == "/etc/shadow: denied"
        assert line["detail"]["message"] == "tool failed"

    def test_error_type_attribute_wins_and_the_message_still_comes_from_the_event(self):
        """``error.type`` names the error; the exception event still tells its message."""
        line = span_line({"attrs": {"error.type": "timeout"}, "status": (Status.STATUS_CODE_ERROR, ""),
                          "events": [("exception", {"exception.type": "TimeoutError", "exception.message": "30 s"})]})
        assert (line["detail"]["error_type"], line["detail"]["exception_message"]) == ("timeout", "30 s")

    def test_exception_attributes_of_a_log_record(self):
        """A log record's ``exception.type`` / ``exception.message`` attributes are its error type and message."""
        line = log_line({"body": "failed", "severity_number": 17,
                         "attrs": {"exception.type": "ValueError", "exception.message": "bad input"}})
        assert line["detail"]["error_type"] == "ValueError"
        assert line["detail"]["exception_message"] == "bad input"

    def test_finish_reasons(self):
        """Why the model stopped, as an array, on spans and log records."""
        line = span_line({"attrs": {"gen_ai.operation.name": "chat", "gen_ai.response.finish_reasons": ["length"]}})
        assert line["detail"]["finish_reasons"] == ["length"]
        line = log_line({"body": "x", "attrs": {"gen_ai.response.finish_reasons": ["stop", "tool_calls"]}})
        assert line["detail"]["finish_reasons"] == ["stop", "tool_calls"]

    @pytest.mark.parametrize(("name", "value", "result"), [
        ("gen_ai.tool.call.decision.outcome", "deny", "deny"),
        ("gen_ai.tool.call.decision.outcome", "require_approval", "deny"),
        ("gen_ai.tool.call.decision.outcome", "allow", "allow"),
        ("gen_ai.tool.call.decision", "deny", "deny"),
        ("gen_ai.security.action.type", "block", "deny"),
        ("gen_ai.security.action.type", "modify", "allow"),
        ("gen_ai.security.decision.type", "deny", "deny"),
    ])
    def test_a_decision_gives_the_result(self, name, value, result):
        """A tool call's decision or a guardrail's action sets ``result``; the value is kept in detail."""
        key = "guardrail_action" if name.startswith("gen_ai.security") else "decision"
        line = span_line({"attrs": {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "rm", name: value}})
        assert line["result"] == result
        assert line["detail"][key] == value
        line = log_line({"event_name": "gen_ai.tool.call.decision", "attrs": {name: value}})
        assert (line["event_type"], line["result"]) == ("gen_ai.tool.call.decision", result)

    def test_deny_beats_an_error_status(self):
        """A denied call that the framework then reports as an error is a deny: that is the why."""
        line = span_line({"attrs": {"gen_ai.tool.call.decision.outcome": "deny"},
                          "status": (Status.STATUS_CODE_ERROR, "PermissionError")})
        assert line["result"] == "deny"

    def test_total_tokens_when_that_is_all_there_is(self):
        """A span that reports only a total gets ``tokens.total``, never an invented input/output split."""
        assert span_line({"attrs": {"gen_ai.usage.total_tokens": 1500}})["detail"]["tokens"] == {"total": 1500}
        assert span_line({"attrs": {"llm.usage.total_tokens": 7}})["detail"]["tokens"] == {"total": 7}
        both = span_line({"attrs": {"gen_ai.usage.input_tokens": 10, "gen_ai.usage.total_tokens": 15}})
        assert both["detail"]["tokens"] == {"input": 10}
        assert log_line({"body": "x", "attrs": {"llm.token_count.total": 9}})["detail"]["tokens"] == {"total": 9}


# --- C: caps ------------------------------------------------------------------------------------

class TestCaps:
    def test_a_huge_model_name_is_cut_and_the_line_says_so(self):
        """A 100 KB model name becomes its first 1024 characters, and ``detail.truncated_fields`` names it."""
        line = span_line({"attrs": {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m" * 100_000}})
        assert line["detail"]["model"] == "m" * NAME_CHARS
        assert line["detail"]["truncated_fields"] == ["model"]

    def test_every_field_is_capped(self):
        """Session, user, agent, tool, event type (the span name) and service from the resource: all capped, all named."""
        big = "é" * 5000
        line = span_line({"name": big, "attrs": {"session.id": big, "user.id": big, "gen_ai.tool.name": big,
                                                 "gen_ai.provider.name": big}},
                         resource={"service.name": big, "gen_ai.agent.name": big})
        for key in ("session_id", "event_type", "user_id", "agent", "service"):
            assert line[key] == "é" * NAME_CHARS, key
        assert line["detail"]["tool"] == line["detail"]["provider"] == "é" * NAME_CHARS
        assert line["detail"]["truncated_fields"] == ["session_id", "event_type", "user_id", "agent", "service",
                                                      "provider", "tool"]

    def test_messages_have_a_larger_cap(self):
        """Status and exception messages keep 4096 characters."""
        line = span_line({"status": (Status.STATUS_CODE_ERROR, "s" * 10_000), "events": [
            ("exception", {"exception.type": "E", "exception.message": "e" * 10_000})]})
        assert line["detail"]["message"] == "s" * TEXT_CHARS
        assert line["detail"]["exception_message"] == "e" * TEXT_CHARS
        assert line["detail"]["truncated_fields"] == ["message", "exception_message"]

    def test_values_at_the_cap_are_not_marked(self):
        """Exactly 1024 characters is not cut."""
        line = span_line({"attrs": {"gen_ai.request.model": "m" * NAME_CHARS}})
        assert "truncated_fields" not in line["detail"]

    def test_log_fields_are_capped(self):
        """A log body's session id, event type and message are capped too; the source's other keys are kept."""
        line = log_line({"body": {"session_id": "s" * 3000, "event_type": "e" * 3000, "message": "m" * 9000,
                                  "output": "o" * 9000}})
        assert (len(line["session_id"]), len(line["event_type"]), len(line["detail"]["message"])) == (
            NAME_CHARS, NAME_CHARS, TEXT_CHARS)
        assert line["detail"]["output"] == "o" * 9000
        assert line["detail"]["truncated_fields"] == ["session_id", "event_type", "message"]

    def test_many_finish_reasons_are_cut(self):
        """A finish-reason array beyond 64 items keeps 64 and is named."""
        line = span_line({"attrs": {"gen_ai.response.finish_reasons": ["stop"] * 100}})
        assert line["detail"]["finish_reasons"] == ["stop"] * 64
        assert line["detail"]["truncated_fields"] == ["finish_reasons"]
        line = span_line({"attrs": {"gen_ai.response.finish_reasons": ["stop", "r" * 5000]}})
        assert line["detail"]["finish_reasons"] == ["stop", "r" * NAME_CHARS]
        assert line["detail"]["truncated_fields"] == ["finish_reasons"]

    def test_caps_keep_the_caches_right(self):
        """A cut value and a short one in the same batch, twice (warm caches): the same lines each time."""
        from obs_pipeline.exporters.jsonl_audit.spans import SpanEncoder  # noqa: PLC0415

        data = traces({"attrs": {"gen_ai.request.model": "m" * 2000}}, CHAT, {"attrs": {"gen_ai.request.model": "m"}})
        encoder = SpanEncoder()
        first = encode_traces(data, encoder=encoder)
        assert encode_traces(data, encoder=encoder) == first
        assert [orjson.loads(x)["detail"].get("truncated_fields") for x in first] == [["model"], None, None]


# --- the docs -----------------------------------------------------------------------------------

class TestDoc:
    def test_the_key_table_lists_every_key_in_order(self):
        """docs/audit-line.md's table of keys is the line's key order, no more, no less."""
        table = DOC.read_text().split("Keys always appear", 1)[1].split("\n\n", 2)[1]
        listed = [name for row in table.splitlines() if row.startswith("| `")
                  for name in re.findall(r"`([a-z_]+)`", row.split("|")[1])]
        assert listed == list(KEYS)

    def test_the_example_line_is_what_the_exporter_writes(self):
        """The doc's example is the line of the collector fixture's chat span, byte for byte."""
        from obs_pipeline import otlp_json  # noqa: PLC0415
        from obs_pipeline.signals import Signal  # noqa: PLC0415

        example = DOC.read_text().split("```json\n", 1)[1].split("\n```", 1)[0].encode()
        fixture = (Path(__file__).resolve().parents[1] / "fixtures" / "otlp_traces.jsonl").read_bytes().splitlines()[0]
        assert encode_traces(otlp_json.decode(Signal.TRACES, fixture))[1] == example

    def test_it_promises_nothing_that_does_not_exist(self):
        """No "file receiver" and no configurable preset: what exists is stdin, and presets are internal."""
        text = DOC.read_text()
        assert "a file receiver" not in text
        assert "preset maps audit fields" not in text


class TestRepairedValues:
    def test_a_json_line_whose_values_were_converted_says_so_in_its_audit_line(self):
        """1e400 became the string "1e400": the audit line lists the conversion, so it is not taken for the source's."""
        import orjson  # noqa: PLC0415

        from obs_pipeline.exporters.jsonl_audit.logs import encode_logs  # noqa: PLC0415
        from obs_pipeline.receivers.linebatch import LineBatch  # noqa: PLC0415
        from obs_pipeline.signals import Signal  # noqa: PLC0415

        batch = LineBatch("json", {Signal.LOGS})
        batch.add(b'{"event_type": "x", "v": 1e400, "n": 123456789012345678901234567890}', 1)
        batch.add(b'{"event_type": "y", "v": 1}', 2)
        lines = [orjson.loads(line) for line in encode_logs(batch.messages[Signal.LOGS])]
        assert lines[0]["detail"]["repaired"] == ["big_integer", "non_finite_number"]
        assert "repaired" not in lines[1]["detail"]
