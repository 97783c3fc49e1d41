"""The content policy: keep, drop or truncate prompts and completions; token counts never touched."""

from __future__ import annotations

import json

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from obs_pipeline.signals import Signal
from tests.processors.redaction.kit import attrs, first_span, log_request, redactor, run, span_request

SECRET = "gsk_" + "Q7w" * 16
MESSAGES = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hello " * 50 + SECRET}]}])
USAGE = {"gen_ai.usage.input_tokens": 812, "gen_ai.usage.output_tokens": 40, "gen_ai.usage.cost.amount": "0.0123"}


def test_drop_removes_content_everywhere_and_keeps_usage():
    """Attributes, their aliases, indexed forms and GenAI events go; counts and cost stay."""
    request = span_request({
        "gen_ai.input.messages": MESSAGES, "gen_ai.completion": "hi", "gen_ai.prompt.0.content": "q",
        "gen_ai.prompt.0.role": "user", "gen_ai.tool.call.arguments": "{}", **USAGE,
    })
    event = request.resource_spans[0].scope_spans[0].spans[0].events.add(name="gen_ai.user.message")
    event.attributes.add(key="content").value.string_value = "secret plan"
    event.attributes.add(key="gen_ai.system").value.string_value = "openai"
    out = first_span(run(redactor(content="drop"), request))
    got = attrs(out)
    assert got == {"gen_ai.prompt.0.role": "user", **USAGE, "gen_ai.content.dropped": True}
    assert attrs(out.events[0]) == {"gen_ai.system": "openai", "gen_ai.content.dropped": True}


def test_truncate_cuts_after_redaction_and_records_the_length():
    """The secret is masked before the cut, the length of the original is kept."""
    out = attrs(first_span(run(redactor(content="truncate", max_content_chars=40),
                               span_request({"gen_ai.input.messages": MESSAGES, **USAGE}))))
    redacted_length = len(MESSAGES) - len(SECRET) + len("[REDACTED:groq-api-key]")
    assert out["gen_ai.input.messages"] == MESSAGES[:40]
    assert out["gen_ai.content.original_length.gen_ai.input.messages"] == redacted_length
    assert out["gen_ai.usage.input_tokens"] == 812


def test_keep_leaves_content_redacted_but_whole():
    """The default: full content, secrets masked."""
    out = attrs(first_span(run(redactor(), span_request({"gen_ai.input.messages": MESSAGES}))))
    assert json.loads(out["gen_ai.input.messages"])[0]["parts"][0]["content"].endswith("[REDACTED:groq-api-key]")
    assert "gen_ai.content.dropped" not in out


def test_genai_event_log_bodies_are_dropped():
    """A log record of a GenAI content event loses its body, marked; other logs keep theirs."""
    request = log_request(body="the user's whole prompt", attrs={"event.name": "gen_ai.user.message"})
    plain_record = request.resource_logs[0].scope_logs[0].log_records.add()
    plain_record.body.CopyFrom(AnyValue(string_value="service started"))
    records = run(redactor(content="drop"), request, Signal.LOGS).message.resource_logs[0].scope_logs[0].log_records
    assert not records[0].HasField("body")
    assert attrs(records[0])["gen_ai.content.dropped"] is True
    assert records[1].body.string_value == "service started"


def test_a_clean_batch_with_content_is_walked_under_drop():
    """The fast path knows the content keys: content with no secret is still dropped."""
    out = attrs(first_span(run(redactor(content="drop"), span_request({"gen_ai.output.messages": "[]"}))))
    assert out == {"gen_ai.content.dropped": True}


def test_a_secret_after_dropped_content_is_still_masked():
    """Dropping content moves the attributes after it: the ones the framing pointed at are scanned all the same."""
    values = {"gen_ai.input.messages": "hi", "x": "y", "b": f"key {SECRET}"}
    span = attrs(first_span(run(redactor(content="drop"), span_request(values))))
    batch = run(redactor(content="drop"), log_request(body="line", attrs=values), Signal.LOGS)
    record = attrs(batch.message.resource_logs[0].scope_logs[0].log_records[0])
    for got in (span, record):
        assert got["b"] == "key [REDACTED:groq-api-key]"
        assert got["redaction.masked.keys"] == ["attributes.b"]
        assert "gen_ai.input.messages" not in got
