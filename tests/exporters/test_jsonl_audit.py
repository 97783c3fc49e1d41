"""The jsonl_audit exporter: what lands in the audit file for spans and log records, and how the file behaves."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import random
import re
import shlex
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import MetricsData
from opentelemetry.proto.trace.v1.trace_pb2 import Status, TracesData

from obs_pipeline.audit.line import KEYS, Cut, CutList
from obs_pipeline.batch import Batch
from obs_pipeline.components import Kind
from obs_pipeline.errors import PermanentError, RetryableError, StartupError
from obs_pipeline.exporters import jsonl_audit
from obs_pipeline.exporters.jsonl_audit import FACTORY, writer
from obs_pipeline.exporters.jsonl_audit import logs as logs_module
from obs_pipeline.exporters.jsonl_audit import spans as spans_module
from obs_pipeline.exporters.jsonl_audit.logs import DEFAULT_PRESET, LogPreset, encode_logs
from obs_pipeline.exporters.jsonl_audit.spans import SpanEncoder, encode_traces
from obs_pipeline.genai.attributes import (
    IN,
    INT_SLOTS,
    N_WANTED,
    SLOTS,
    WANTED,
    category,
    read_value,
    read_wanted,
    resource_context,
    tokens,
)
from obs_pipeline.signals import Signal
from obs_pipeline.testing import RecordingHost, make_settings, parse_config
from obs_pipeline.timestamps import format_ns
from tests.exporters.builders import CHAT, SPAN, T0, TRACE, add_attributes, logs, set_value, traces

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

#: DESIGN §5's order, written out here so that a change to ``audit.line.KEYS`` fails a test.
KEY_ORDER = ["timestamp", "session_id", "task_id", "event_type", "category", "result", "detail",
             "event_id", "trace_id", "span_id", "parent_span_id", "user_id", "agent", "service"]
assert list(KEYS) == KEY_ORDER
DEV_FULL = Path("/dev/full")


# --- helpers ------------------------------------------------------------------------------------

def line_of(data: Any) -> dict[str, Any]:
    """The single audit line of a one-item batch."""
    encode = encode_traces if isinstance(data, TracesData) else encode_logs
    (line,) = encode(data)
    return orjson.loads(line)


def missy_lines() -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (FIXTURES / "missy_audit.jsonl").read_bytes().splitlines()]


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def exporter(path: Path, **cfg: Any) -> jsonl_audit.JsonlAuditExporter:
    return FACTORY.create(make_settings("jsonl_audit", Kind.EXPORTER), parse_config(FACTORY, {"path": str(path), **cfg}))


async def export_all(path: Path, *batches: tuple[Signal, Any], **cfg: Any) -> None:
    """Start an exporter on ``path``, export the batches, shut down."""
    exp = exporter(path, **cfg)
    await exp.start(RecordingHost())
    for signal, data in batches:
        await exp.export(Batch(signal, data))
    await exp.shutdown()


async def write_batches(path: Path, *batches: tuple[Signal, Any], **cfg: Any) -> list[dict[str, Any]]:
    """:func:`export_all`, then every line in the file."""
    await export_all(path, *batches, **cfg)
    return read_lines(path)


# --- spans --------------------------------------------------------------------------------------

class TestSpanMapping:
    def test_chat_span_line(self):
        """A chat span gives model (the response model), provider, tokens and duration, keys in order."""
        line = line_of(traces(CHAT))
        assert list(line) == KEY_ORDER
        assert line == {
            "timestamp": "2026-03-17T10:30:45.123456Z",
            "session_id": "conv-0",
            "task_id": None,
            "event_type": "chat",
            "category": "llm",
            "result": "allow",
            "detail": {
                "model": "claude-sonnet-4-5-20250929",
                "provider": "anthropic",
                "tokens": {"input": 2400, "output": 310, "cache_read": 1800},
                "duration_ms": 2280.0,
            },
            "event_id": f"{TRACE.hex()}:{SPAN.hex()}",
            "trace_id": TRACE.hex(),
            "span_id": SPAN.hex(),
            "parent_span_id": None,
            "user_id": None,
            "agent": None,
            "service": "my-agent",
        }

    def test_request_model_when_no_response_model(self):
        """Without a response model the request model is reported."""
        line = line_of(traces({"attrs": {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}}))
        assert line["detail"]["model"] == "gpt-4o"

    def test_all_token_kinds(self):
        """Cache-write and reasoning counts appear next to input and output."""
        line = line_of(traces({"attrs": {
            "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 20,
            "gen_ai.usage.cache_write.input_tokens": 3, "gen_ai.usage.reasoning.output_tokens": 7,
        }}))
        assert line["detail"]["tokens"] == {"input": 10, "output": 20, "cache_write": 3, "reasoning": 7}

    def test_zero_tokens_are_reported(self):
        """A count of zero is a value, not an absence."""
        line = line_of(traces({"attrs": {"gen_ai.usage.input_tokens": 0, "gen_ai.usage.output_tokens": 5}}))
        assert line["detail"]["tokens"] == {"input": 0, "output": 5}

    def test_execute_tool_span(self):
        """A tool span is category tool and names the tool."""
        line = line_of(traces({"name": "execute_tool lookup_order", "attrs": {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order",
            "gen_ai.tool.call.arguments": '{"order_id": 1234}',
        }}))
        assert (line["event_type"], line["category"]) == ("execute_tool", "tool")
        assert line["detail"] == {"tool": "lookup_order", "duration_ms": 12.5}

    def test_invoke_agent_span(self):
        """An agent span is category agent and names the agent (top level, not in detail)."""
        line = line_of(traces({"attrs": {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support"}}))
        assert (line["event_type"], line["category"], line["agent"]) == ("invoke_agent", "agent", "support")
        assert "agent" not in line["detail"]

    def test_error_span(self):
        """Status ERROR gives result error, the status message and error.type in detail."""
        line = line_of(traces({
            "attrs": {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "t", "error.type": "TimeoutError"},
            "status": (Status.STATUS_CODE_ERROR, "upstream 503 from orders-api"),
        }))
        assert line["result"] == "error"
        assert line["detail"]["message"] == "upstream 503 from orders-api"
        assert line["detail"]["error_type"] == "TimeoutError"

    def test_error_type_from_exception_event(self):
        """Without error.type, an error span's exception event names the error type."""
        line = line_of(traces({
            "status": (Status.STATUS_CODE_ERROR, ""),
            "events": [("log", {"x": 1}), ("exception", {"exception.type": "KeyError", "exception.message": "k"})],
        }))
        assert line["detail"]["error_type"] == "KeyError"
        assert "message" not in line["detail"]

    def test_ok_status_is_allow(self):
        """Status OK and UNSET are both allow."""
        assert line_of(traces({"status": (Status.STATUS_CODE_OK, "")}))["result"] == "allow"
        assert line_of(traces({}))["result"] == "allow"

    def test_plain_span_uses_span_name(self):
        """A span without GenAI attributes is an ``other`` event named after the span."""
        line = line_of(traces({"name": "GET /orders", "attrs": {"http.method": "GET"}}))
        assert (line["event_type"], line["category"], line["session_id"]) == ("GET /orders", "other", None)
        assert line["detail"] == {"duration_ms": 12.5}

    def test_openinference_span_kind(self):
        """An OpenInference span without an operation name gets its category from the span kind."""
        line = line_of(traces({"name": "ChatOpenAI", "attrs": {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o"}}))
        assert (line["event_type"], line["category"], line["detail"]["model"]) == ("ChatOpenAI", "llm", "gpt-4o")

    def test_unknown_operation_is_other(self):
        """An operation nobody defined keeps its name as event_type, category other."""
        line = line_of(traces({"attrs": {"gen_ai.operation.name": "summon"}}))
        assert (line["event_type"], line["category"]) == ("summon", "other")

    def test_timestamp_exact_to_the_microsecond(self):
        """The start time keeps its microseconds (truncated, never rounded) and ends in Z."""
        for start, expected in [
            (T0, "2026-03-17T10:30:45.123456Z"),
            (1_773_743_445_000_000_000, "2026-03-17T10:30:45.000000Z"),
            (1_773_743_445_999_999_999, "2026-03-17T10:30:45.999999Z"),
            (1_000, "1970-01-01T00:00:00.000001Z"),
        ]:
            assert line_of(traces({"start_time_unix_nano": start, "end_time_unix_nano": start}))["timestamp"] == expected

    def test_duration_in_milliseconds(self):
        """duration_ms is end minus start as a float number of milliseconds."""
        line = line_of(traces({"start_time_unix_nano": T0, "end_time_unix_nano": T0 + 977_250_000}))
        assert line["detail"]["duration_ms"] == 977.25

    def test_unended_span_has_no_duration(self):
        """An end time before the start (unset) gives no duration rather than a negative one."""
        assert "duration_ms" not in line_of(traces({"end_time_unix_nano": 0}))["detail"]

    def test_event_id_is_trace_and_span(self):
        """event_id is ``<trace_id>:<span_id>`` in hex, the same every time."""
        data = traces(CHAT)
        assert line_of(data)["event_id"] == line_of(data)["event_id"] == f"{TRACE.hex()}:{SPAN.hex()}"

    def test_span_without_ids_gets_a_stable_content_id(self):
        """Without ids, trace_id/span_id are null and event_id is a stable content hash."""
        first = line_of(traces({"trace_id": b"", "span_id": b"", "name": "x"}))
        again = line_of(traces({"trace_id": b"", "span_id": b"", "name": "x"}))
        other = line_of(traces({"trace_id": b"", "span_id": b"", "name": "y"}))
        assert first["trace_id"] is None
        assert first["span_id"] is None
        assert first["event_id"].startswith("span:")
        assert len(first["event_id"]) == 21
        assert first["event_id"] == again["event_id"] != other["event_id"]

    def test_session_falls_back_to_resource(self):
        """A session id on the resource applies to its spans that carry none."""
        data = traces({"attrs": {}}, {"attrs": {"session.id": "own"}},
                      resource={"service.name": "svc", "session.id": "from-resource"})
        sessions = [orjson.loads(line)["session_id"] for line in encode_traces(data)]
        assert sessions == ["from-resource", "own"]

    def test_task_id(self):
        """The task id comes from gen_ai.task.id or one of its aliases."""
        assert line_of(traces({"attrs": {"gen_ai.task.id": "task-1"}}))["task_id"] == "task-1"
        assert line_of(traces({"attrs": {"task.id": "task-2"}}))["task_id"] == "task-2"

    def test_no_service_name(self):
        """A resource without service.name gives service null."""
        assert line_of(traces({}, resource={}))["service"] is None

    def test_many_resources_and_scopes(self):
        """Every span of every scope and resource gets a line, in order, with its own service."""
        data = traces({"name": "a"}, {"name": "b"}, resource={"service.name": "one"})
        second = data.resource_spans.add()
        add_attributes(second.resource.attributes, {"service.name": "two"})
        second.scope_spans.add().spans.add(name="c", span_id=b"\x01" * 8, trace_id=TRACE)
        second.scope_spans.add().spans.add(name="d", span_id=b"\x02" * 8, trace_id=TRACE)
        lines = [orjson.loads(line) for line in encode_traces(data)]
        assert [(x["event_type"], x["service"]) for x in lines] == [("a", "one"), ("b", "one"), ("c", "two"), ("d", "two")]

    def test_input_is_not_modified(self):
        """The batch may be shared with other exporters: mapping leaves it byte-identical."""
        data = traces(CHAT)
        before = data.SerializeToString()
        encode_traces(data)
        assert data.SerializeToString() == before


class TestAliases:
    def test_old_token_names(self):
        """gen_ai.usage.prompt_tokens / completion_tokens are read as input / output."""
        line = line_of(traces({"attrs": {"gen_ai.usage.prompt_tokens": 11, "gen_ai.usage.completion_tokens": 22}}))
        assert line["detail"]["tokens"] == {"input": 11, "output": 22}

    def test_gen_ai_system_value_is_normalized(self):
        """gen_ai.system is read as the provider and its old values are renamed."""
        assert line_of(traces({"attrs": {"gen_ai.system": "gemini"}}))["detail"]["provider"] == "gcp.gemini"
        assert line_of(traces({"attrs": {"gen_ai.system": "openai"}}))["detail"]["provider"] == "openai"

    def test_session_id_aliases(self):
        """session.id and langfuse.session.id are session ids."""
        assert line_of(traces({"attrs": {"session.id": "s-1"}}))["session_id"] == "s-1"
        assert line_of(traces({"attrs": {"langfuse.session.id": "s-2"}}))["session_id"] == "s-2"

    def test_cache_creation_is_cache_write(self):
        """The semconv 1.40 cache_creation name is read as cache_write."""
        line = line_of(traces({"attrs": {"gen_ai.usage.cache_creation.input_tokens": 5}}))
        assert line["detail"]["tokens"] == {"cache_write": 5}

    def test_openinference_names(self):
        """OpenInference token counts, model and tool names are understood."""
        line = line_of(traces({"attrs": {
            "llm.token_count.prompt": 100, "llm.token_count.completion": 9, "llm.model_name": "m", "tool.name": "t",
        }}))
        assert line["detail"] == {"model": "m", "tokens": {"input": 100, "output": 9}, "tool": "t", "duration_ms": 12.5}

    @pytest.mark.parametrize("order", ["canonical_first", "alias_first"])
    def test_canonical_wins_over_alias(self, order):
        """When both spellings are present, the canonical one wins whatever the order."""
        pairs = [("gen_ai.conversation.id", "canonical"), ("session.id", "alias"),
                 ("gen_ai.usage.input_tokens", 1), ("gen_ai.usage.prompt_tokens", 2)]
        if order == "alias_first":
            pairs = pairs[::-1]
        line = line_of(traces({"attrs": dict(pairs)}))
        assert (line["session_id"], line["detail"]["tokens"]["input"]) == ("canonical", 1)

    def test_token_counts_of_other_types(self):
        """Token counts sent as doubles or numeric strings are still integers in the line."""
        line = line_of(traces({"attrs": {"gen_ai.usage.input_tokens": 12.0, "gen_ai.usage.output_tokens": "34"}}))
        assert line["detail"]["tokens"] == {"input": 12, "output": 34}

    def test_integer_session_id_becomes_text(self):
        """A session id sent as an integer is written as text."""
        assert line_of(traces({"attrs": {"session.id": 42}}))["session_id"] == "42"

    def test_long_and_unicode_values(self):
        """Long wanted values and non-ASCII text come through exactly."""
        session = "sé-" + "ß" * 300
        line = line_of(traces({"attrs": {"gen_ai.conversation.id": session, "gen_ai.agent.name": "агент"}}))
        assert (line["session_id"], line["agent"]) == (session, "агент")

    def test_large_and_negative_token_counts(self):
        """Multi-byte varints decode exactly; a negative count (a buggy SDK) is not written as usage."""
        for value in (0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 2**40, 2**63 - 1):
            line = line_of(traces({"attrs": {"gen_ai.usage.input_tokens": value}}))
            assert line["detail"]["tokens"] == {"input": value}
        for value in (-1, -5, -(2**63)):
            line = line_of(traces({"attrs": {"gen_ai.usage.input_tokens": value, "gen_ai.usage.output_tokens": 10}}))
            assert line["detail"]["tokens"] == {"output": 10}
            line = line_of(traces({"attrs": {"gen_ai.usage.input_tokens": value}}))
            assert "tokens" not in line["detail"]


def _negative_counts_unreadable(attributes: Any) -> list[Any]:
    """``attributes`` with each negative token count made unreadable: the writer reads it as no count."""
    out = []
    for kv in attributes:
        slot = SLOTS.get(kv.key)
        if slot in INT_SLOTS and isinstance(count := read_value(IN, kv.value), int) and count < 0:
            kv = KeyValue(key=kv.key)  # noqa: PLW2901 - the copy stands in for it
            kv.value.string_value = "not a count"
        out.append(kv)
    return out


def reference_line(span: Any, resource: Any) -> dict[str, Any]:
    """The audit line computed the slow, obvious way from the protobuf objects (spans with valid ids)."""
    service, res_session, res_task, res_user, res_agent = resource_context(resource)
    vals = read_wanted(_negative_counts_unreadable(span.attributes))

    def val(name: str) -> Any:
        return vals[WANTED.index(name)]

    detail: dict[str, Any] = {}
    model = val("gen_ai.response.model") or val("gen_ai.request.model")
    for key, value in (("model", model), ("provider", val("gen_ai.provider.name")),
                       ("tokens", tokens(vals)), ("tool", val("gen_ai.tool.name"))):
        if value:
            detail[key] = value
    if span.end_time_unix_nano >= span.start_time_unix_nano:
        detail["duration_ms"] = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
    if span.status.message:
        detail["message"] = span.status.message
    for key, value in (("error_type", val("error.type") or val("exception.type")),
                       ("exception_message", val("exception.message")),
                       ("finish_reasons", val("gen_ai.response.finish_reasons"))):
        if value:
            detail[key] = value
    result = "error" if span.status.code == Status.STATUS_CODE_ERROR else "allow"
    for key, name in (("decision", "gen_ai.tool.call.decision.outcome"), ("guardrail_action", "gen_ai.security.action.type")):
        if val(name) is not None:
            detail[key] = val(name)
            if val(name).lower() in ("deny", "require_approval", "block"):
                result = "deny"
    op = val("gen_ai.operation.name")
    line = {
        "timestamp": format_ns(span.start_time_unix_nano),
        "session_id": val("gen_ai.conversation.id") or res_session,
        "task_id": val("gen_ai.task.id") or res_task,
        "event_type": op or span.name,
        "category": category(vals),
        "result": result,
        "detail": detail,
        "event_id": f"{span.trace_id.hex()}:{span.span_id.hex()}",
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex() or None,
        "user_id": val("user.id") or res_user,
        "agent": val("gen_ai.agent.name") or res_agent,
        "service": service,
    }
    cut = [k for k, v in [*line.items(), *detail.items()] if isinstance(v, (Cut, CutList))]  # read_wanted's marks
    if cut:
        detail["truncated_fields"] = cut
    return line


class TestFastPathMatchesReference:
    def test_random_spans(self):
        """The byte-level, cached span path gives exactly what the plain protobuf reading gives."""
        rnd = random.Random(1234)
        names = [*WANTED, "session.id", "gen_ai.system", "gen_ai.usage.prompt_tokens", "llm.model_name",
                 "tool.name", "gen_ai.prompt", "http.url", "k" * 200, "", "gen_ai.request.temperature",
                 "llm.usage.total_tokens", "enduser.id", "agent.name", "gen_ai.tool.call.decision",
                 "gen_ai.security.decision.type"]
        values: list[Any] = ["chat", "execute_tool", "gemini", "anthropic", "", "x" * 300, "ü" * 70, 0, 1, 300,
                             2**35, -5, 0.5, 3.0, True, "42", b"raw", [1, "a"], {"k": "v"}, None, "deny", "BLOCK",
                             "require_approval", ["stop", "length"], "y" * 5000, "z" * 1024]
        encoder = SpanEncoder()
        for _round in range(3):  # later rounds hit the caches filled by earlier ones
            data = TracesData()
            rs = data.resource_spans.add()
            add_attributes(rs.resource.attributes, {"service.name": "svc", "session.id": "res-session"})
            ss = rs.scope_spans.add()
            rnd_state = rnd.getstate()
            for i in range(300):
                span = ss.spans.add(trace_id=rnd.randbytes(16), span_id=rnd.randbytes(8), name=f"s{i}",
                                    parent_span_id=rnd.choice([b"", rnd.randbytes(8)]),
                                    start_time_unix_nano=T0 + rnd.randrange(10**12),
                                    end_time_unix_nano=T0 + rnd.randrange(10**12))
                for _ in range(rnd.randrange(0, 14)):
                    kv = span.attributes.add(key=rnd.choice(names))
                    value = rnd.choice(values)
                    if value is not None:
                        set_value(kv.value, value)
                if rnd.random() < 0.2:
                    span.status.code = rnd.choice([1, 2])
                    span.status.message = rnd.choice(["", "boom"])
            got = [orjson.loads(line) for line in encode_traces(data, encoder=encoder)]
            want = [orjson.loads(orjson.dumps(reference_line(span, rs.resource))) for span in ss.spans]
            for g, w in zip(got, want, strict=True):
                assert g == w
            from_wire = encode_traces(None, data.SerializeToString(), encoder=encoder)  # the bytes alone
            assert from_wire == encode_traces(data, encoder=encoder)
            rnd.setstate(rnd_state)
        assert len(WANTED) == N_WANTED

    def test_lines_from_wire_bytes_equal_lines_from_the_message(self):
        """A batch joined from several requests' bytes maps to the same lines as the parsed batch."""
        requests = []
        for n, service in enumerate(("a", "b", "c")):
            part = TracesData()
            rs = part.resource_spans.add()
            add_attributes(rs.resource.attributes, {"service.name": service})
            for i in range(3):
                span = rs.scope_spans.add().spans.add(trace_id=bytes([n + 1]) * 16, span_id=bytes([i + 1]) * 8,
                                                      start_time_unix_nano=T0, end_time_unix_nano=T0 + 5)
                add_attributes(span.attributes, {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": i})
            requests.append(part.SerializeToString())
        wire = b"".join(requests)
        data = TracesData.FromString(wire)
        lines = encode_traces(data, wire)
        assert lines == encode_traces(data)
        assert [orjson.loads(line)["service"] for line in lines] == ["a"] * 3 + ["b"] * 3 + ["c"] * 3


# --- logs ---------------------------------------------------------------------------------------

class TestLogMapping:
    def test_missy_audit_lines_come_out_unchanged(self):
        """A missy audit line read as a JSON log keeps its fields; the timestamp gains its Z."""
        for source in missy_lines():
            line = line_of(logs({"body": source, "observed_time_unix_nano": T0}))
            assert list(line) == KEY_ORDER
            for key in ("session_id", "task_id", "event_type", "category", "result", "detail"):
                assert line[key] == source[key], key
            assert line["timestamp"] == source["timestamp"] + "Z"
            assert line["service"] == "my-agent"
            assert line["event_id"].startswith("log:")

    def test_missy_detail_order_is_kept(self):
        """The source's detail keys keep their order."""
        source = missy_lines()[5]
        assert list(line_of(logs({"body": source}))["detail"]) == list(source["detail"])

    def test_log_event_id_is_stable_per_retry_and_unique_per_event(self):
        """Without a uid: a sender's retry (same record, same observed time) keeps its id; another time is another event."""
        source = missy_lines()[0]
        first = line_of(logs({"body": source, "observed_time_unix_nano": T0}))
        retry = line_of(logs({"body": source, "observed_time_unix_nano": T0}))
        later = line_of(logs({"body": source, "observed_time_unix_nano": T0 + 10**9}))
        other = line_of(logs({"body": missy_lines()[1], "observed_time_unix_nano": T0}))
        assert first["event_id"] == retry["event_id"]
        assert len({first["event_id"], later["event_id"], other["event_id"]}) == 3
        assert len(first["event_id"]) == len("log:") + 16

    def test_text_log_with_error_severity(self):
        """A text body is the message; severity ERROR gives result error; record time is the timestamp."""
        line = line_of(logs({"body": "disk on fire", "severity_number": 17, "severity_text": "ERROR",
                             "time_unix_nano": T0, "observed_time_unix_nano": T0 + 5}))
        assert (line["event_type"], line["category"], line["result"]) == ("log", "other", "error")
        assert line["detail"] == {"message": "disk on fire"}
        assert line["timestamp"] == "2026-03-17T10:30:45.123456Z"

    def test_severity_text_without_number(self):
        """An ERROR severity text counts when the number is unset; INFO is allow."""
        assert line_of(logs({"body": "x", "severity_text": "fatal"}))["result"] == "error"
        assert line_of(logs({"body": "x", "severity_number": 9, "severity_text": "INFO"}))["result"] == "allow"

    def test_observed_time_when_no_time(self):
        """Without a record time, the observed time is the timestamp."""
        assert line_of(logs({"body": "x", "observed_time_unix_nano": T0}))["timestamp"] == "2026-03-17T10:30:45.123456Z"

    def test_decision_is_result(self):
        """A body's ``decision`` is the result and wins over severity."""
        line = line_of(logs({"body": {"decision": "deny", "message": "blocked"}, "severity_number": 17}))
        assert line["result"] == "deny"
        assert line["detail"] == {"message": "blocked"}

    def test_event_name_field_and_attribute(self):
        """LogRecord.event_name, else the event.name attribute, names the event."""
        assert line_of(logs({"body": "x", "event_name": "gen_ai.client.inference.operation.details"}))[
            "event_type"] == "gen_ai.client.inference.operation.details"
        assert line_of(logs({"body": "x", "attrs": {"event.name": "budget.exceeded"}}))["event_type"] == "budget.exceeded"

    def test_trace_context_ids(self):
        """A record inside a span carries its trace and span ids; its event_id stays its own."""
        line = line_of(logs({"body": "x", "trace_id": TRACE, "span_id": SPAN}))
        assert (line["trace_id"], line["span_id"]) == (TRACE.hex(), SPAN.hex())
        assert line["event_id"].startswith("log:")

    def test_genai_attributes_and_session_of_a_log(self):
        """GenAI attributes on a log record fill detail, session and category like on a span."""
        line = line_of(logs({"body": "done", "attrs": {
            "gen_ai.operation.name": "chat", "gen_ai.response.model": "m", "gen_ai.usage.input_tokens": 3,
            "session.id": "s-9",
        }}))
        assert (line["session_id"], line["category"], line["event_type"]) == ("s-9", "llm", "chat")
        assert line["detail"] == {"message": "done", "model": "m", "tokens": {"input": 3}}

    def test_other_body_keys_go_to_detail(self):
        """Body keys that are not audit fields are kept in detail rather than lost."""
        source = orjson.loads((FIXTURES / "agent_os_log.jsonl").read_bytes().splitlines()[4])
        line = line_of(logs({"body": source}))
        assert line["result"] == "allow"  # the kernel's own decision
        assert line["detail"]["message"] == "Action failed"
        assert line["detail"]["action"] == "shell"
        assert line["detail"]["level"] == "ERROR"
        assert (line["trace_id"], line["span_id"]) == (source["trace_id"], source["span_id"])
        assert line["timestamp"] == "2026-03-17T10:30:51.923000Z"

    def test_numeric_and_offset_timestamps(self):
        """Epoch numbers and timestamps with an offset are normalized to UTC with Z."""
        assert line_of(logs({"body": {"timestamp": 1773743445.5}}))["timestamp"] == "2026-03-17T10:30:45.500000Z"
        assert line_of(logs({"body": {"timestamp": 1773743445123}}))["timestamp"] == "2026-03-17T10:30:45.123000Z"
        assert line_of(logs({"body": {"timestamp": "2026-03-17T12:30:45.123456+02:00"}}))[
            "timestamp"] == "2026-03-17T10:30:45.123456Z"

    def test_unparsable_timestamp_falls_back_to_record_time(self):
        """A body timestamp that is not a time is kept in detail; the record time is used."""
        line = line_of(logs({"body": {"timestamp": "yesterday"}, "time_unix_nano": T0}))
        assert line["timestamp"] == "2026-03-17T10:30:45.123456Z"
        assert line["detail"] == {"source_timestamp": "yesterday"}

    def test_preset_maps_another_framework(self):
        """A preset (data, not code) maps the policy kernel's fields onto the audit line."""
        preset = LogPreset("agent_os_audit", fields={
            **DEFAULT_PRESET.fields, "result": ("decision",), "session_id": ("context.session_id",),
            "event_type": ("action",), "event_id": ("id",), "message": ("reason",),
        }, values={"result": {"deny": "deny", "allow": "allow"}})
        source = orjson.loads((FIXTURES / "agent_os_audit.jsonl").read_bytes().splitlines()[0])
        (raw,) = encode_logs(logs({"body": source}), preset)
        line = orjson.loads(raw)
        assert (line["session_id"], line["event_type"], line["result"], line["event_id"]) == (
            "sess-123", "file_write", "deny", "audit-001")
        assert line["detail"]["message"] == "Production writes blocked"
        assert line["detail"]["resource"] == "/prod/config.yaml"

    def test_preset_rejects_unknown_fields(self):
        """A preset naming a field the audit line does not have is an error at construction."""
        with pytest.raises(ValueError, match="unknown audit fields"):
            LogPreset("bad", fields={"colour": ("c",)})


# --- one bad record never takes down a batch ----------------------------------------------------

#: Token counts no integer can be made of: each is read as absent, the rest of the record is mapped.
BAD_TOKEN_COUNTS: list[Any] = [
    float("inf"), float("-inf"), float("nan"), "inf", "-Infinity", "nan", "NaN", "1e999", "-1e999",
    1e300, -1e300, "1e300", 2.0**63, -(2.0**64), "9223372036854775808", "-9223372036854775809", "1" * 5000,
    -1, -5, -(2**63), "-9223372036854775808", -(2.0**63), "-3",  # negative: not a count (a buggy SDK)
]
#: Token counts at the edges that are still integers, with the value the line must carry.
EDGE_TOKEN_COUNTS: list[tuple[Any, int]] = [
    (2**63 - 1, 2**63 - 1), ("9223372036854775807", 2**63 - 1), (12.0, 12), ("34", 34), (" 7 ", 7), ("1e3", 1000),
    (0.0, 0), ("0", 0),
]


def short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} chars)"


def bad_span(name: str, value: Any) -> dict[str, Any]:
    """A chat span whose input token count is ``value``; everything else is normal."""
    return {"name": name, "span_id": os.urandom(8), "attrs": {
        "gen_ai.operation.name": "chat", "gen_ai.response.model": "m", "session.id": "s-1",
        "gen_ai.usage.input_tokens": value, "gen_ai.usage.output_tokens": 5,
    }}


def minimal_line(line: dict[str, Any]) -> dict[str, Any]:
    """The fields a mapping-error line carries whatever the record (timestamps and ids vary)."""
    return {k: line[k] for k in ("session_id", "task_id", "event_type", "category", "result", "detail")}


class TestBadValues:
    @pytest.mark.parametrize("value", BAD_TOKEN_COUNTS, ids=short_repr)
    def test_bad_token_count_is_absent(self, value):
        """A token count that is infinite, not a number or beyond int64 is left out; the line is complete."""
        for raw in (encode_traces(data := traces(bad_span("x", value))), encode_traces(data, data.SerializeToString())):
            line = orjson.loads(raw[0])
            assert (line["event_type"], line["session_id"]) == ("chat", "s-1")
            assert line["detail"] == {"model": "m", "tokens": {"output": 5}, "duration_ms": 12.5}

    @pytest.mark.parametrize(("value", "expected"), EDGE_TOKEN_COUNTS, ids=short_repr)
    def test_edge_token_counts_are_exact(self, value, expected):
        """int64 extremes, whether sent as integers, numeric strings or doubles, come through exactly."""
        assert line_of(traces(bad_span("x", value)))["detail"]["tokens"] == {"input": expected, "output": 5}
        assert line_of(logs({"body": "b", "attrs": {"gen_ai.usage.input_tokens": value}}))["detail"]["tokens"] == {
            "input": expected}

    @pytest.mark.parametrize("value", BAD_TOKEN_COUNTS, ids=short_repr)
    def test_bad_token_count_on_a_log_record_or_resource(self, value):
        """The same values on a log record's attributes or on a resource are left out too."""
        line = line_of(logs({"body": "b", "attrs": {"gen_ai.usage.input_tokens": value}}))
        assert line["detail"] == {"message": "b"}
        line = line_of(traces({"name": "x"}, resource={"service.name": "svc", "gen_ai.usage.input_tokens": value}))
        assert (line["event_type"], line["service"]) == ("x", "svc")

    @pytest.mark.parametrize(("any_value", "expected"), [
        (b"\x18" + b"\xff" * 9 + b"\x7e", 2**63 - 1),  # a 10-byte varint with more than 64 bits, cut to 64
        (b"\x18\x05\x18\x07", 7),  # int_value twice: the last one wins
        (b"\x18\x85\x80\x80\x80\x00", 5),  # over-long but valid
        (b"\x18\x80\x01", 128),
    ])
    def test_unusual_varints_on_the_wire(self, any_value, expected):
        """Token counts whose wire bytes are unusual are read as protobuf reads them (the fast path decodes by hand)."""
        key = b"gen_ai.usage.input_tokens"

        def field(number: int, body: bytes) -> bytes:
            return bytes([number << 3 | 2, len(body)]) + body

        span = field(1, TRACE) + field(2, SPAN) + field(9, field(1, key) + field(2, any_value))
        wire = field(1, field(2, field(2, span)))
        data = TracesData.FromString(wire)
        assert data.resource_spans[0].scope_spans[0].spans[0].attributes[0].value.int_value == expected
        for lines in (encode_traces(data, wire), encode_traces(data)):
            assert orjson.loads(lines[0])["detail"]["tokens"] == {"input": expected}

    async def test_batch_mixing_good_and_bad_spans(self, tmp_path):
        """Every span of a batch gets its line, in order; the good ones exactly as on their own."""
        good = [dict(CHAT, name=f"good{i}", span_id=bytes([i + 1]) * 8) for i in range(3)]
        specs: list[dict[str, Any]] = [good[0]]
        for i, value in enumerate(BAD_TOKEN_COUNTS + [v for v, _ in EDGE_TOKEN_COUNTS]):
            specs.append(bad_span(f"bad{i}", value))
            if i == 5:
                specs.append(good[1])
        specs.append(good[2])
        data = traces(*specs)
        lines = await write_batches(tmp_path / "audit.jsonl", (Signal.TRACES, data), content="none")
        assert len(lines) == len(specs)
        assert [orjson.loads(x)["span_id"] for x in encode_traces(data)] == [s["span_id"].hex() for s in specs]
        for spec in good:
            (line,) = [x for x in lines if x["span_id"] == spec["span_id"].hex()]
            assert line == line_of(traces(spec))
            assert line["detail"]["tokens"] == {"input": 2400, "output": 310, "cache_read": 1800}
        for line in lines:
            assert "mapping_error" not in line["detail"]
            assert line["detail"]["tokens"]["output"] in (5, 310)

    async def test_log_records_with_bad_bodies(self, tmp_path):
        """Log records with bodies the mapping cannot read as a time still get complete lines, in order."""
        bodies: list[Any] = [
            {"message": "good-1"},
            {"timestamp": "1" * 5000, "message": "huge-number time"},  # int() refuses more than 4300 digits
            {"timestamp": float("inf"), "message": "infinite time"},
            {"timestamp": 1e300, "message": "far-future time"},
            {"timestamp": "9" * 40, "message": "digits time"},
            {"message": "good-2", "x": float("nan")},
            {"detail": float("-inf"), "message": "odd detail"},
        ]
        data = logs(*[{"body": body, "time_unix_nano": T0} for body in bodies],
                    *[{"body": "tokens", "attrs": {"gen_ai.usage.input_tokens": v}} for v in BAD_TOKEN_COUNTS])
        lines = await write_batches(tmp_path / "audit.jsonl", (Signal.LOGS, data))
        assert len(lines) == len(bodies) + len(BAD_TOKEN_COUNTS)
        assert [x["detail"]["message"] for x in lines[:len(bodies)]] == [b["message"] for b in bodies]
        assert lines[1]["detail"]["source_timestamp"] == "1" * 5000
        assert lines[1]["timestamp"] == "2026-03-17T10:30:45.123456Z"
        for line in lines:
            assert "mapping_error" not in line["detail"]
        assert all(x["detail"] == {"message": "tokens"} for x in lines[len(bodies):])

    async def test_a_span_whose_mapping_fails_gets_a_minimal_line(self, tmp_path, monkeypatch, caplog):
        """Whatever goes wrong mapping one span, it still gets a line (naming the error, not values); the rest are normal."""
        def broken(_events: Any) -> str:
            raise RuntimeError("secret-attribute-value")

        monkeypatch.setattr(spans_module, "_exception_type", broken)
        specs = [dict(CHAT, span_id=b"\x01" * 8),
                 {"name": "tool call", "span_id": b"\x02" * 8, "status": (Status.STATUS_CODE_ERROR, "secret-message"),
                  "attrs": {"gen_ai.operation.name": "execute_tool", "session.id": "secret-session"}},
                 dict(CHAT, span_id=b"\x03" * 8)]
        path = tmp_path / "audit.jsonl"
        with caplog.at_level(logging.WARNING):
            lines = await write_batches(path, (Signal.TRACES, traces(*specs)), content="none")
        assert [x["span_id"] for x in lines] == [s["span_id"].hex() for s in specs]
        assert lines[0] == line_of(traces(specs[0]))
        assert lines[2] == line_of(traces(specs[2]))
        assert list(lines[1]) == KEY_ORDER
        assert lines[1] == {
            "timestamp": "2026-03-17T10:30:45.123456Z", "session_id": None, "task_id": None,
            "event_type": "tool call", "category": "other", "result": "error",
            "detail": {"mapping_error": "RuntimeError"},
            "event_id": f"{TRACE.hex()}:{'02' * 8}", "trace_id": TRACE.hex(), "span_id": "02" * 8,
            "parent_span_id": None, "user_id": None, "agent": None, "service": "my-agent",
        }
        assert b"secret" not in path.read_bytes()
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "1 of 3 spans" in warnings[0]
        assert "RuntimeError" in warnings[0]
        assert "secret" not in caplog.text

    def test_a_span_without_ids_whose_mapping_fails_keeps_a_stable_id(self, monkeypatch):
        """The minimal line of a span without ids has the same content id as its normal line would."""
        spec = {"trace_id": b"", "span_id": b"", "name": "x", "status": (Status.STATUS_CODE_OK, "")}
        want = line_of(traces(spec))["event_id"]
        monkeypatch.setattr(SpanEncoder, "_status", lambda self, raw: 1 / 0)
        line = line_of(traces(spec))
        assert minimal_line(line) == {"session_id": None, "task_id": None, "event_type": "x", "category": "other",
                                      "result": "allow",
                                      "detail": {"mapping_error": "ZeroDivisionError", "invalid_ids": True}}
        assert (line["event_id"], line["trace_id"], line["span_id"]) == (want, None, None)

    def test_a_resource_whose_mapping_fails_still_gives_every_span_a_line(self, monkeypatch):
        """If a resource cannot be read, each of its spans gets a minimal line; other resources are normal."""
        real = spans_module.resource_context_of

        def picky(attributes: Any) -> Any:
            attributes = list(attributes)
            if any(kv.key == "poison" for kv in attributes):
                raise KeyError("secret")
            return real(attributes)

        # From the wire bytes the resource is read from its raw attributes, from a message from the Resource.
        monkeypatch.setattr(spans_module, "resource_context_of", picky)
        monkeypatch.setattr(spans_module, "resource_context", lambda resource: picky(resource.attributes))
        data = traces({"name": "a"}, {"name": "b"}, resource={"service.name": "one", "poison": 1})
        second = data.resource_spans.add()
        add_attributes(second.resource.attributes, {"service.name": "two"})
        second.scope_spans.add().spans.add(name="c", span_id=SPAN, trace_id=TRACE, start_time_unix_nano=T0)
        for wire in (None, data.SerializeToString()):
            lines = [orjson.loads(x) for x in encode_traces(data, wire)]
            assert [(x["event_type"], x["service"], x["detail"].get("mapping_error")) for x in lines] == [
                ("a", None, "KeyError"), ("b", None, "KeyError"), ("c", "two", None)]

    async def test_a_log_record_whose_mapping_fails_gets_a_minimal_line(self, tmp_path, monkeypatch, caplog):
        """Whatever goes wrong mapping one log record, it still gets a line; the others are normal."""
        real = logs_module._detail

        def picky(own: Any, rest: dict[str, Any], message: Any, vals: list[Any]) -> dict[str, Any]:
            if message == "poison":
                raise TypeError("secret")
            return real(own, rest, message, vals)

        monkeypatch.setattr(logs_module, "_detail", picky)
        data = logs({"body": "fine", "time_unix_nano": T0},
                    {"body": {"message": "poison", "event_type": "secret"}, "severity_number": 17,
                     "time_unix_nano": T0, "trace_id": TRACE, "span_id": SPAN},
                    {"body": "fine too", "time_unix_nano": T0})
        path = tmp_path / "audit.jsonl"
        with caplog.at_level(logging.WARNING):
            lines = await write_batches(path, (Signal.LOGS, data))
        assert [x["detail"].get("message") for x in lines] == ["fine", None, "fine too"]
        assert list(lines[1]) == KEY_ORDER
        assert lines[1] == {
            "timestamp": "2026-03-17T10:30:45.123456Z", "session_id": None, "task_id": None,
            "event_type": "log", "category": "other", "result": "error",
            "detail": {"mapping_error": "TypeError"},
            "event_id": lines[1]["event_id"], "trace_id": TRACE.hex(), "span_id": SPAN.hex(), "parent_span_id": None,
            "user_id": None, "agent": None, "service": "my-agent",
        }
        assert lines[1]["event_id"].startswith("log:")
        assert b"secret" not in path.read_bytes()
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "1 of 3 log records" in warnings[0]
        assert "secret" not in caplog.text


# --- the OTLP fixture ---------------------------------------------------------------------------

def fixture_traces() -> list[TracesData]:
    """``otlp_traces.jsonl`` (OTLP/JSON, hex ids) as TracesData messages."""
    from obs_pipeline import otlp_json  # noqa: PLC0415

    return [otlp_json.decode(Signal.TRACES, line) for line in (FIXTURES / "otlp_traces.jsonl").read_bytes().splitlines()]


class TestOtlpFixture:
    async def test_fixture_spans(self, tmp_path):
        """The collector fixture's spans become audit lines with their sessions, tokens and errors."""
        path = tmp_path / "audit.jsonl"
        lines = await write_batches(path, *[(Signal.TRACES, data) for data in fixture_traces()])
        assert len(lines) == 12
        chat = lines[1]
        assert (chat["event_type"], chat["category"], chat["session_id"], chat["service"]) == (
            "chat", "llm", "conv-0", "support-agent")
        assert chat["detail"]["model"] == "claude-sonnet-4-5"
        assert chat["detail"]["provider"] == "anthropic"
        assert chat["detail"]["tokens"] == {"input": 2400, "output": 310, "cache_read": 1800}
        assert chat["detail"]["duration_ms"] == 2280.0
        assert chat["timestamp"] == "2026-03-17T10:30:45.100000Z"
        assert chat["event_id"] == "db5b5fab8f4d3e27dda1494c73cf256d:73ab48767734d7c1"
        errors = [x for x in lines if x["result"] == "error"]
        assert len(errors) == 1
        assert errors[0]["detail"]["message"] == "upstream 503 from orders-api"
        assert (errors[0]["event_type"], errors[0]["session_id"]) == ("execute_tool", "conv-2")
        assert [x["category"] for x in lines[:4]] == ["agent", "llm", "tool", "llm"]


# --- the file -----------------------------------------------------------------------------------

class TestFile:
    async def test_appends_across_restarts(self, tmp_path):
        """A restarted exporter appends; nothing written before is lost."""
        path = tmp_path / "audit.jsonl"
        await write_batches(path, (Signal.TRACES, traces({"name": "first"})))
        lines = await write_batches(path, (Signal.TRACES, traces({"name": "second"})), (Signal.LOGS, logs({"body": "x"})))
        assert [x["event_type"] for x in lines] == ["first", "second", "log"]
        assert path.read_bytes().endswith(b"}\n")

    async def test_one_write_per_batch(self, tmp_path, monkeypatch):
        """All lines of a batch go out in one write call."""
        calls: list[int] = []
        real_write = os.write

        def counting_write(fd: int, data: Any) -> int:
            calls.append(len(data))
            return real_write(fd, data)

        monkeypatch.setattr(writer.os, "write", counting_write)
        lines = await write_batches(tmp_path / "a.jsonl", (Signal.TRACES, traces(*[{"name": str(i)} for i in range(50)])))
        assert len(lines) == 50
        assert len(calls) == 1

    async def test_new_file_mode_0600_and_parents_0700(self, tmp_path):
        """A new file is private to its owner, and so are the directories created for it."""
        path = tmp_path / "a" / "b" / "audit.jsonl"
        await write_batches(path, (Signal.TRACES, traces({})))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
        assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700

    async def test_existing_looser_mode_is_kept_with_one_warning(self, tmp_path, caplog):
        """An existing 0644 file is left as it is, with one warning naming the path, not the data."""
        path = tmp_path / "audit.jsonl"
        path.write_bytes(b"")
        path.chmod(0o644)
        exp = exporter(path)
        with caplog.at_level(logging.WARNING):
            await exp.start(RecordingHost())
            await exp.export(Batch(Signal.TRACES, traces(CHAT)))
            exp.file.close()  # a reopen (after a failure) does not warn again
            await exp.export(Batch(Signal.TRACES, traces(CHAT)))
            await exp.shutdown()
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert str(path) in warnings[0]
        assert "0644" in warnings[0]
        assert "conv-0" not in caplog.text
        assert "claude" not in caplog.text

    async def test_partial_last_line_is_closed(self, tmp_path):
        """After a crash mid-line, the next line starts on a fresh line and is intact."""
        path = tmp_path / "audit.jsonl"
        path.write_bytes(b'{"timestamp":"2026-03-17T10:30:45.000000Z","sess')
        await export_all(path, (Signal.TRACES, traces({"name": "after"})))
        raw = path.read_bytes().splitlines()
        assert raw[0] == b'{"timestamp":"2026-03-17T10:30:45.000000Z","sess'
        assert orjson.loads(raw[1])["event_type"] == "after"
        assert len(raw) == 2

    async def test_complete_last_line_gets_no_blank_line(self, tmp_path):
        """A file that ends with a newline is continued directly."""
        path = tmp_path / "audit.jsonl"
        await write_batches(path, (Signal.TRACES, traces({})))
        await write_batches(path, (Signal.TRACES, traces({})))
        assert b"\n\n" not in path.read_bytes()

    async def test_unusable_path_fails_start_clearly(self, tmp_path):
        """A path that cannot be created fails start with the path and the OS reason."""
        (tmp_path / "file.txt").write_text("not a directory")
        path = tmp_path / "file.txt" / "audit.jsonl"
        exp = exporter(path)
        with pytest.raises(StartupError) as info:
            await exp.start(RecordingHost())
        assert str(info.value) == f"jsonl_audit: cannot open {path} for append: Not a directory"
        await exp.shutdown()

    async def test_directory_path_fails_start(self, tmp_path):
        """A path that is a directory fails start."""
        with pytest.raises(StartupError, match="Is a directory"):
            await exporter(tmp_path).start(RecordingHost())

    @pytest.mark.skipif(not DEV_FULL.exists(), reason="no /dev/full on this system")
    async def test_disk_full_is_retryable(self):
        """ENOSPC (writing to /dev/full) is a retryable error naming the path and the reason."""
        exp = exporter(DEV_FULL)
        await exp.start(RecordingHost())
        with pytest.raises(RetryableError) as info:
            await exp.export(Batch(Signal.TRACES, traces(CHAT)))
        assert str(info.value) == "jsonl_audit: cannot write /dev/full: No space left on device"
        assert isinstance(info.value.__cause__, OSError)
        assert info.value.__cause__.errno == errno.ENOSPC
        assert not exp.file.is_open  # reopened on the next attempt
        with pytest.raises(RetryableError):
            await exp.export(Batch(Signal.TRACES, traces(CHAT)))
        await exp.shutdown()

    async def test_recovers_after_the_path_comes_back(self, tmp_path):
        """When the path turns into a directory the write is retryable; once fixed, writing resumes."""
        path = tmp_path / "audit.jsonl"
        exp = exporter(path)
        await exp.start(RecordingHost())
        await exp.export(Batch(Signal.TRACES, traces({"name": "one"})))
        exp.file.close()  # as after a failed write
        path.rename(tmp_path / "moved.jsonl")
        path.mkdir()
        with pytest.raises(RetryableError, match="Is a directory"):
            await exp.export(Batch(Signal.TRACES, traces({"name": "two"})))
        path.rmdir()
        await exp.export(Batch(Signal.TRACES, traces({"name": "two"})))
        await exp.shutdown()
        assert [x["event_type"] for x in read_lines(path)] == ["two"]

    async def test_fsync_after_each_batch(self, tmp_path, monkeypatch):
        """With fsync on, each batch is flushed to the device after it is written."""
        synced: list[int] = []
        real = writer._sync
        monkeypatch.setattr(writer, "_sync", lambda fd: (synced.append(os.fstat(fd).st_size), real(fd)))
        path = tmp_path / "audit.jsonl"
        lines = await write_batches(path, (Signal.TRACES, traces({})), (Signal.LOGS, logs({"body": "x"})), fsync=True)
        assert len(lines) == 2
        assert len(synced) == 2
        assert synced[1] == path.stat().st_size

    async def test_no_fsync_by_default(self, tmp_path, monkeypatch):
        """Without the option no fsync happens."""
        synced: list[int] = []
        monkeypatch.setattr(writer, "_sync", synced.append)
        await write_batches(tmp_path / "audit.jsonl", (Signal.TRACES, traces({})))
        assert synced == []

    async def test_empty_batch_writes_nothing(self, tmp_path):
        """A batch without spans leaves the file untouched."""
        path = tmp_path / "audit.jsonl"
        assert await write_batches(path, (Signal.TRACES, TracesData())) == []
        assert path.read_bytes() == b""


class TestPathChangesWhileRunning:
    """The path is followed: a file deleted, rotated or replaced while running is reopened at the path."""

    async def test_deleted_file_is_created_again(self, tmp_path, caplog):
        """After the file is deleted, the next batch lands in a new 0600 file at the path, with one warning."""
        path = tmp_path / "audit.jsonl"
        exp = exporter(path)
        await exp.start(RecordingHost())
        await exp.export(Batch(Signal.TRACES, traces({"name": "one"})))
        path.unlink()
        with caplog.at_level(logging.WARNING):
            await exp.export(Batch(Signal.TRACES, traces(CHAT)))
            await exp.export(Batch(Signal.LOGS, logs({"body": "three"})))
        await exp.shutdown()
        assert [x["event_type"] for x in read_lines(path)] == ["chat", "log"]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings == [f"audit file {path}: it was deleted or renamed; reopening the path"]
        assert "conv-0" not in caplog.text

    async def test_rotation_by_rename(self, tmp_path):
        """Renamed away (logrotate): old lines stay in the renamed file, new ones go to a new file at the path."""
        path = tmp_path / "audit.jsonl"
        rotated = tmp_path / "audit.jsonl.1"
        exp = exporter(path)
        await exp.start(RecordingHost())
        await exp.export(Batch(Signal.TRACES, traces({"name": "one"})))
        path.rename(rotated)
        await exp.export(Batch(Signal.TRACES, traces({"name": "two"})))
        await exp.export(Batch(Signal.TRACES, traces({"name": "three"})))
        await exp.shutdown()
        assert [x["event_type"] for x in read_lines(rotated)] == ["one"]
        assert [x["event_type"] for x in read_lines(path)] == ["two", "three"]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    async def test_rotation_with_a_new_file_created(self, tmp_path):
        """Renamed away and a new file created at the path (logrotate ``create``): new lines go to that file."""
        path = tmp_path / "audit.jsonl"
        exp = exporter(path)
        await exp.start(RecordingHost())
        await exp.export(Batch(Signal.TRACES, traces({"name": "one"})))
        path.rename(tmp_path / "audit.jsonl.1")
        path.touch(mode=0o600)
        await exp.export(Batch(Signal.TRACES, traces({"name": "two"})))
        await exp.shutdown()
        assert [x["event_type"] for x in read_lines(path)] == ["two"]

    async def test_truncation_in_place_keeps_the_file(self, tmp_path, caplog):
        """Truncated in place (logrotate ``copytruncate``): same file, appended from its new end, no reopen."""
        path = tmp_path / "audit.jsonl"
        exp = exporter(path)
        await exp.start(RecordingHost())
        await exp.export(Batch(Signal.TRACES, traces({"name": "one"})))
        path.write_bytes(b"")
        with caplog.at_level(logging.WARNING):
            await exp.export(Batch(Signal.TRACES, traces({"name": "two"})))
        await exp.shutdown()
        assert path.read_bytes().startswith(b'{"timestamp"')
        assert [x["event_type"] for x in read_lines(path)] == ["two"]
        assert caplog.records == []

    async def test_replaced_by_a_directory_then_back(self, tmp_path):
        """A directory at the path makes writes retryable; once it is gone, writing resumes at the path."""
        path = tmp_path / "audit.jsonl"
        exp = exporter(path)
        await exp.start(RecordingHost())
        await exp.export(Batch(Signal.TRACES, traces({"name": "one"})))
        path.rename(tmp_path / "moved.jsonl")
        path.mkdir()
        for _attempt in range(2):
            with pytest.raises(RetryableError, match=f"cannot write {path}: Is a directory"):
                await exp.export(Batch(Signal.TRACES, traces({"name": "two"})))
        path.rmdir()
        await exp.export(Batch(Signal.TRACES, traces({"name": "two"})))
        await exp.shutdown()
        assert [x["event_type"] for x in read_lines(path)] == ["two"]
        assert [x["event_type"] for x in read_lines(tmp_path / "moved.jsonl")] == ["one"]

    async def test_directory_removed_is_created_again(self, tmp_path):
        """When the file's directory is removed, it is created again (0700) with the file (0600)."""
        path = tmp_path / "logs" / "audit.jsonl"
        exp = exporter(path)
        await exp.start(RecordingHost())
        await exp.export(Batch(Signal.TRACES, traces({"name": "one"})))
        shutil.rmtree(tmp_path / "logs")
        await exp.export(Batch(Signal.TRACES, traces({"name": "two"})))
        await exp.shutdown()
        assert [x["event_type"] for x in read_lines(path)] == ["two"]
        assert stat.S_IMODE((tmp_path / "logs").stat().st_mode) == 0o700
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    async def test_unchanged_path_is_not_reopened(self, tmp_path, monkeypatch):
        """The check costs one stat per batch: the file is opened once, however many batches."""
        opened: list[str] = []
        real_open = os.open
        monkeypatch.setattr(writer.os, "open", lambda p, *a: (opened.append(str(p)), real_open(p, *a))[1])
        await write_batches(tmp_path / "audit.jsonl", *[(Signal.TRACES, traces({"name": str(i)})) for i in range(5)])
        assert opened == [str(tmp_path / "audit.jsonl")]


# --- FIFOs and devices --------------------------------------------------------------------------

class FifoReader(threading.Thread):
    """A FIFO's reader: opened at once (so a writer can open it), reading in a thread once started.

    Start it after the writer has opened the FIFO: without a writer a read returns EOF at once.
    It reads until EOF (every writer closed), ``pause`` seconds between reads.
    """

    def __init__(self, path: Path, pause: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.set_blocking(self.fd, True)
        self.pause = pause
        self.data = bytearray()

    def run(self) -> None:
        while chunk := os.read(self.fd, 65536):
            self.data += chunk
            time.sleep(self.pause)

    def finish(self) -> bytes:
        """Wait for EOF (starting to read now if not yet), close, return what was read."""
        if self.ident is None:
            self.start()
        self.join(timeout=10)
        assert not self.is_alive()
        os.close(self.fd)
        return bytes(self.data)


def fifo_at(tmp_path: Path) -> Path:
    path = tmp_path / "audit.fifo"
    os.mkfifo(path, 0o600)
    return path


def many_spans(n: int, tag: str = "") -> TracesData:
    """A batch of ``n`` chat spans, each about 350 bytes of audit line, named ``<tag><i>``."""
    return traces(*[dict(CHAT, name=f"{tag}{i}", span_id=i.to_bytes(8, "big"),
                         attrs={**CHAT["attrs"], "gen_ai.operation.name": ""}) for i in range(n)])


class TestFifo:
    async def test_without_reader_start_fails_at_once(self, tmp_path):
        """A FIFO nobody reads fails start with a clear error instead of blocking the event loop forever."""
        path = fifo_at(tmp_path)
        rescue: list[int] = []  # if the open blocks (the bug), a late reader unblocks it so the test fails, not hangs
        timer = threading.Timer(3, lambda: rescue.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK)))
        timer.daemon = True
        timer.start()
        exp = exporter(path)
        started = time.monotonic()
        try:
            with pytest.raises(StartupError) as info:
                await exp.start(RecordingHost())
        finally:
            timer.cancel()
            await exp.shutdown()
            for fd in rescue:
                os.close(fd)
        assert time.monotonic() - started < 1
        assert str(info.value) == f"jsonl_audit: cannot open {path} for append: no process is reading the FIFO"

    async def test_with_reader(self, tmp_path):
        """With a reader, every batch arrives, spans and log records alike, and shutdown ends its input."""
        path = fifo_at(tmp_path)
        reader = FifoReader(path)
        await export_all(path, (Signal.TRACES, traces({"name": "one"})), (Signal.LOGS, logs({"body": "two"})),
                         fsync=True)  # small: the pipe's buffer holds it until the reader reads
        lines = [orjson.loads(x) for x in reader.finish().splitlines()]
        assert [x["event_type"] for x in lines] == ["one", "log"]
        assert stat.S_ISFIFO(path.stat().st_mode)

    async def test_batch_larger_than_the_pipe_with_a_slow_reader(self, tmp_path):
        """A batch bigger than the FIFO's buffer arrives whole and once, and the event loop keeps running meanwhile."""
        path = fifo_at(tmp_path)
        reader = FifoReader(path, pause=0.002)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        exp = exporter(path)
        await exp.start(RecordingHost())
        reader.start()
        task = asyncio.create_task(ticker())
        await exp.export(Batch(Signal.TRACES, many_spans(3000)))
        task.cancel()
        await exp.shutdown()
        data = reader.finish()
        assert len(data) > 4 * 65536
        assert [orjson.loads(x)["event_type"] for x in data.splitlines()] == [str(i) for i in range(3000)]
        assert ticks > 3  # the export waited for the reader without blocking the loop

    async def test_stuck_reader_is_retryable(self, tmp_path, monkeypatch):
        """A reader that takes nothing makes the write retryable (the loop runs meanwhile); the retry lands on a fresh line."""
        monkeypatch.setattr(writer, "FIFO_STALL_SECONDS", 0.2)
        path = fifo_at(tmp_path)
        reader = FifoReader(path)
        exp = exporter(path)
        await exp.start(RecordingHost())
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        batch = many_spans(1000)
        started = time.monotonic()
        with pytest.raises(RetryableError, match=r"the FIFO is full: its reader took nothing for 0\.2 s"):
            await exp.export(Batch(Signal.TRACES, batch))
        assert 0.2 <= time.monotonic() - started < 2
        assert ticks >= 5
        task.cancel()
        assert exp.file.is_open  # the reader is still there: closing would end its input
        reader.start()
        await exp.export(Batch(Signal.TRACES, batch))
        await exp.shutdown()
        raw = reader.finish().splitlines()
        parsed = []
        for line in raw:
            with contextlib.suppress(orjson.JSONDecodeError):
                parsed.append(orjson.loads(line)["event_type"])
        assert len(raw) - len(parsed) <= 1  # at most the line cut off by the failure
        assert parsed[-1000:] == [str(i) for i in range(1000)]

    async def test_reader_goes_away_and_comes_back(self, tmp_path):
        """When the reader leaves, writes are retryable (broken pipe, then no reader); a new reader gets the rest."""
        path = fifo_at(tmp_path)
        first = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        exp = exporter(path)
        await exp.start(RecordingHost())
        await exp.export(Batch(Signal.TRACES, traces({"name": "one"})))
        assert orjson.loads(os.read(first, 65536))["event_type"] == "one"
        os.close(first)
        with pytest.raises(RetryableError, match="Broken pipe"):
            await exp.export(Batch(Signal.TRACES, traces({"name": "two"})))
        with pytest.raises(RetryableError, match="no process is reading the FIFO"):
            await exp.export(Batch(Signal.TRACES, traces({"name": "two"})))
        second = FifoReader(path)
        await exp.export(Batch(Signal.TRACES, traces({"name": "two"})))
        await exp.shutdown()
        assert [orjson.loads(x)["event_type"] for x in second.finish().splitlines()] == ["two"]


class TestDevices:
    async def test_dev_null_is_opened_once(self, tmp_path, monkeypatch, caplog):
        """A character device takes every batch; the path check does not reopen it."""
        opened: list[str] = []
        real_open = os.open
        monkeypatch.setattr(writer.os, "open", lambda p, *a: (opened.append(str(p)), real_open(p, *a))[1])
        with caplog.at_level(logging.WARNING):
            await export_all(Path("/dev/null"), *[(Signal.TRACES, traces(CHAT))] * 3, fsync=True)
        assert opened == ["/dev/null"]
        assert caplog.records == []

    @pytest.mark.parametrize("stdout", ["pty", "pipe"])
    def test_dev_stdout(self, stdout):
        """``path: /dev/stdout`` writes the lines to the process's standard output, a terminal or a pipe."""
        script = textwrap.dedent("""
            import asyncio
            from obs_pipeline.batch import Batch
            from obs_pipeline.signals import Signal
            from obs_pipeline.testing import RecordingHost
            from tests.exporters.builders import traces
            from tests.exporters.test_jsonl_audit import exporter

            async def main():
                exp = exporter("/dev/stdout")
                await exp.start(RecordingHost())
                for name in ("one", "two"):
                    await exp.export(Batch(Signal.TRACES, traces({"name": name})))
                await exp.shutdown()

            asyncio.run(main())
        """)
        root = Path(__file__).resolve().parents[2]
        if stdout == "pipe":
            done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, timeout=60, check=False)
            assert done.returncode == 0, done.stderr.decode()
            out = done.stdout
        else:
            import pty  # noqa: PLC0415 - POSIX only

            main_fd, sub_fd = pty.openpty()
            proc = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=sub_fd, stderr=subprocess.PIPE)
            os.close(sub_fd)
            chunks = []
            while True:
                try:
                    chunk = os.read(main_fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            os.close(main_fd)
            assert proc.wait(timeout=60) == 0, proc.stderr.read().decode() if proc.stderr else ""
            out = b"".join(chunks)
        assert [orjson.loads(x)["event_type"] for x in out.splitlines()] == ["one", "two"]

    def test_dev_stdout_redirected_to_a_file_does_not_warn_about_its_mode(self, tmp_path):
        """``run x.yaml > out.jsonl``: the shell made the file 0644, which is not ours to warn about."""
        script = textwrap.dedent("""
            import asyncio, logging
            from obs_pipeline.batch import Batch
            from obs_pipeline.signals import Signal
            from obs_pipeline.testing import RecordingHost
            from tests.exporters.builders import traces
            from tests.exporters.test_jsonl_audit import exporter

            logging.basicConfig(level=logging.WARNING)

            async def main():
                exp = exporter("/dev/stdout")
                await exp.start(RecordingHost())
                await exp.export(Batch(Signal.TRACES, traces({"name": "one"})))
                await exp.shutdown()

            asyncio.run(main())
        """)
        out = tmp_path / "out.jsonl"
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2], stdout=fd,
                                  stderr=subprocess.PIPE, timeout=60, check=False)
        finally:
            os.close(fd)
        assert done.returncode == 0, done.stderr.decode()
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        assert [orjson.loads(x)["event_type"] for x in out.read_bytes().splitlines()] == ["one"]
        assert done.stderr.decode() == ""

    async def test_a_pipe_whose_reader_is_gone_fails_permanently_at_once(self, caplog):
        """An anonymous pipe (as ``/proc/self/fd/N``) whose reader closed: each write fails permanently, without waiting."""
        read_end, write_end = os.pipe()
        exp = exporter(Path(f"/proc/self/fd/{write_end}"))
        try:
            with caplog.at_level(logging.WARNING):
                await exp.start(RecordingHost())
            await exp.export(Batch(Signal.TRACES, traces({"name": "one"})))
            assert orjson.loads(os.read(read_end, 65536))["event_type"] == "one"
            os.close(read_end)
            started = time.monotonic()
            for name in ("two", "three"):  # the next batch too: reopening the path finds the same dead pipe
                with pytest.raises(PermanentError, match=r"cannot write /proc/self/fd/\d+: Broken pipe"):
                    await exp.export(Batch(Signal.TRACES, traces({"name": name})))
            assert time.monotonic() - started < 1
            assert not exp.file.reopens
        finally:
            await exp.shutdown()
            os.close(write_end)
        assert caplog.records == []  # no mode warning for a pipe

    def test_dev_stdout_piped_into_a_reader_that_exits(self):
        """``run x.yaml | head -1``: once head has exited, the next write fails permanently, not after retries."""
        script = textwrap.dedent("""
            import asyncio, sys, time
            from obs_pipeline.batch import Batch
            from obs_pipeline.signals import Signal
            from obs_pipeline.testing import RecordingHost
            from tests.exporters.builders import traces
            from tests.exporters.test_jsonl_audit import exporter

            async def main():
                exp = exporter("/dev/stdout")
                await exp.start(RecordingHost())
                await exp.export(Batch(Signal.TRACES, traces({"name": "one"})))
                sys.stdin.readline()  # the reader has gone
                started = time.monotonic()
                try:
                    await exp.export(Batch(Signal.TRACES, traces({"name": "two"})))
                except Exception as exc:
                    print(type(exc).__name__, exc, f"{time.monotonic() - started:.3f}", file=sys.stderr)
                await exp.shutdown()

            asyncio.run(main())
        """)
        proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # what head does after its first line
        _out, err = proc.communicate(b"\n", timeout=60)
        assert orjson.loads(first)["event_type"] == "one"
        assert proc.returncode == 0, err.decode()
        said = re.fullmatch(r"PermanentError jsonl_audit: cannot write /dev/stdout: Broken pipe (\d+\.\d+)",
                            err.decode().strip())
        assert said, err.decode()
        assert float(said[1]) < 1


class TestCheck:
    def test_good_path_has_no_problem(self, tmp_path):
        """A path whose directories can be created is fine, and checking creates nothing."""
        path = tmp_path / "x" / "y" / "audit.jsonl"
        assert FACTORY.check(parse_config(FACTORY, {"path": str(path)})) == []
        assert not (tmp_path / "x").exists()

    def test_directory_is_a_problem(self, tmp_path):
        """A directory as the path is reported on the ``path`` key."""
        (problem,) = FACTORY.check(parse_config(FACTORY, {"path": str(tmp_path)}))
        assert problem.path == "path"
        assert problem.message == f"cannot write: {tmp_path} is a directory"

    def test_file_in_the_way_is_a_problem(self, tmp_path):
        """An ancestor that is a file makes the path unusable."""
        (tmp_path / "file.txt").write_text("")
        (problem,) = FACTORY.check(parse_config(FACTORY, {"path": str(tmp_path / "file.txt" / "a" / "audit.jsonl")}))
        assert problem.message == f"cannot write: {tmp_path / 'file.txt'} is not a directory"

    def test_read_only_directory_is_a_problem(self, tmp_path):
        """A directory without write permission is reported (root can write anywhere but /proc)."""
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        if os.geteuid() == 0:
            locked = Path("/proc/1")
        (problem,) = FACTORY.check(parse_config(FACTORY, {"path": str(locked / "audit.jsonl")}))
        assert "not writable" in problem.message

    @pytest.mark.parametrize("existing", [True, False], ids=["file", "directory"])
    def test_read_only_file_system_is_named(self, tmp_path, monkeypatch, existing):
        """On a file system mounted read-only, validate says so, not "permission denied"."""
        path = tmp_path / "audit.jsonl"
        if existing:
            path.write_bytes(b"")
        real = os.statvfs

        class ReadOnly:
            def __init__(self, result: Any) -> None:
                self.result = result

            def __getattr__(self, name: str) -> Any:
                return os.ST_RDONLY | self.result.f_flag if name == "f_flag" else getattr(self.result, name)

        monkeypatch.setattr(writer.os, "statvfs", lambda p: ReadOnly(real(p)))
        monkeypatch.setattr(writer.os, "access", lambda *_a, **_k: False)  # as access(2) says: EROFS
        (problem,) = FACTORY.check(parse_config(FACTORY, {"path": str(path)}))
        where = path if existing else tmp_path
        assert problem.message == f"cannot write: {where} is on a read-only file system"

    def test_a_real_read_only_mount(self, tmp_path):
        """A tmpfs mounted read-only (in a private mount namespace): "read-only file system", for a new and an old file."""
        mount = tmp_path / "ro"
        mount.mkdir()
        (mount / "old.jsonl").write_bytes(b"")
        script = ("from obs_pipeline.exporters.jsonl_audit.writer import check_path; "
                  f"print(check_path({str(mount / 'new' / 'audit.jsonl')!r})); print(check_path({str(mount / 'old.jsonl')!r}))")
        shell = (f"mount --bind {mount} {mount} && mount -o remount,bind,ro {mount} && "
                 f"exec {sys.executable} -c {shlex.quote(script)}")
        unshare = shutil.which("unshare")
        if unshare is None:
            pytest.skip("no unshare(1) here")
        done = subprocess.run([unshare, "--mount", "sh", "-c", shell], cwd=Path(__file__).resolve().parents[2],
                              capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot make a read-only mount here: {done.stderr.decode().strip()[:200]}")
        assert done.stdout.decode().splitlines() == [f"{mount} is on a read-only file system",
                                                     f"{mount / 'old.jsonl'} is on a read-only file system"]


class TestComponent:
    def test_parse_fills_defaults(self):
        """An exporter with only a path has fsync off (the schema's default)."""
        assert parse_config(FACTORY, {"path": "a.jsonl"}) == jsonl_audit.Config(path="a.jsonl", fsync=False)

    def test_schema_defaults_match_config(self):
        """The schema's documented default for fsync is the dataclass default and the named constant."""
        schema = orjson.loads(FACTORY.schema_path.read_bytes())
        assert schema["properties"]["fsync"]["default"] == jsonl_audit.Config(path="x").fsync
        assert jsonl_audit.Config(path="x").fsync is jsonl_audit.DEFAULT_FSYNC

    def test_parse_reads_the_schema_filled_body_without_fallbacks(self):
        """``parse`` takes what the schema filled in; a body without the defaults is a bug, not a default."""
        filled = {"rotation": None, "retention_days": None, "max_open_files": 64, "path_fallback": "unknown",
                  "hash_chain": False, "checkpoint": None, "content": "summary", "max_detail_chars": 2000}
        assert FACTORY.parse({"path": "a", "fsync": True, **filled}) == jsonl_audit.Config(path="a", fsync=True)
        with pytest.raises(KeyError, match="fsync"):
            FACTORY.parse({"path": "a"})

    def test_delivery_blocks_are_the_engines(self):
        """timeout, sending_queue and retry_on_failure are not the exporter's config: the engine reads them."""
        cfg = parse_config(FACTORY, {"path": "a", "fsync": True, "sending_queue": {"queue_size": 10},
                              "retry_on_failure": {"enabled": False}, "timeout": "5s"})
        assert cfg == jsonl_audit.Config(path="a", fsync=True)
        assert not {"timeout", "sending_queue", "retry_on_failure"} & {f.name for f in dataclasses.fields(jsonl_audit.Config)}

    def test_factory_declaration(self):
        """The factory takes traces and logs and points at its schema."""
        assert FACTORY.type == "jsonl_audit"
        assert FACTORY.kind is Kind.EXPORTER
        assert FACTORY.signals == {Signal.TRACES, Signal.LOGS}
        assert FACTORY.schema_path.is_file()

    async def test_shutdown_without_start_and_twice(self, tmp_path):
        """Shutdown is safe before start and when repeated, and creates nothing."""
        exp = exporter(tmp_path / "audit.jsonl")
        await exp.shutdown()
        await exp.shutdown()
        assert not (tmp_path / "audit.jsonl").exists()
        exp = exporter(tmp_path / "audit.jsonl")
        await exp.start(RecordingHost())
        await exp.shutdown()
        await exp.shutdown()
        assert not exp.file.is_open

    async def test_metrics_are_refused(self, tmp_path):
        """Metrics are not audit events: a permanent error."""
        exp = exporter(tmp_path / "audit.jsonl")
        with pytest.raises(PermanentError):
            await exp.export(Batch(Signal.METRICS, MetricsData()))
