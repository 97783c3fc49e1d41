"""The redaction processor: every location, the summary contract, markers, modes and the fast path."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from obs_pipeline.batch import Batch
from obs_pipeline.processors.redaction import FACTORY, Redactor, scan_text
from obs_pipeline.signals import Signal
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.testing import CapturingConsumer, make_processor_settings, parse_config
from tests.processors.redaction.kit import (
    attrs,
    first_span,
    log_request,
    plain,
    redactor,
    run,
    set_value,
    span_request,
)

OPENAI = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z" * 2
GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0" + "k1L2m3N4o5P6q7R8"


def summary(holder, prefix="redaction.masked"):
    got = attrs(holder)
    return got.get(f"{prefix}.count"), got.get(f"{prefix}.rules"), got.get(f"{prefix}.keys")


class TestFastPath:
    def test_a_clean_batch_goes_on_untouched_with_its_wire_bytes(self):
        """Nothing to redact: the very same batch, bytes kept, nothing re-serialized."""
        request = span_request({"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10})
        batch = Batch.from_wire(Signal.TRACES, request.SerializeToString())
        out = redactor()(batch)
        assert out is batch
        assert out.wire == request.SerializeToString()
        assert not out.mutated

    def test_a_batch_with_a_secret_loses_its_stale_bytes(self):
        """A redacted batch carries no bytes of the unredacted message: none, or its own."""
        for request in (span_request({"input": OPENAI}), span_request({"input": OPENAI}, name=f"x {OPENAI}")):
            original = Batch.from_wire(Signal.TRACES, request.SerializeToString())
            out = redactor()(original).settled()
            assert out.wire is None or out.wire == out.message.SerializeToString()
            assert OPENAI.encode() not in out.serialized()
        resource_hit = span_request()
        resource_hit.resource_spans[0].resource.attributes.add(key="k").value.string_value = OPENAI
        batch = Batch.from_wire(Signal.TRACES, resource_hit.SerializeToString())
        out = redactor()(batch)
        assert out.wire is None  # the whole-message path: the message was changed in place
        assert OPENAI.encode() not in out.settled().serialized()

    def test_a_sensitive_key_alone_is_enough_to_walk_the_batch(self):
        """Key-name rules see keys in the bytes: a short password by key is still masked."""
        got = attrs(first_span(run(redactor(), span_request({"db.password": "pw"}))))
        assert got["db.password"] == "[REDACTED:sensitive-key]"


class TestLocations:
    def test_every_place_in_a_span_is_covered_and_summarized(self):
        """Name, status, attributes, events, links, resource and scope: masked, with their locations."""
        request = span_request({"tool.args": f"use {GITHUB}"}, name=f"call {OPENAI}")
        rs = request.resource_spans[0]
        rs.resource.attributes.add(key="deploy.note").value.string_value = f"token {GITHUB}"
        rs.scope_spans[0].scope.attributes.add(key="build").value.string_value = f"via {OPENAI}"
        span = rs.scope_spans[0].spans[0]
        span.status.message = f"401 with {OPENAI}"
        event = span.events.add(name=f"retry {GITHUB}")
        event.attributes.add(key="exception.message").value.string_value = f"bad key {OPENAI}"
        event.attributes.add(key="exception.stacktrace").value.string_value = f'File "x.py"\n  key="{GITHUB}"\n'
        span.links.add().attributes.add(key="origin").value.string_value = f"from {OPENAI}"
        out = first_span(run(redactor(), request))
        count, rules, keys = summary(out)
        assert set(keys) == {
            "resource.attributes.deploy.note", "scope.attributes.build", "name", "status.message",
            "attributes.tool.args", "events[0].name", "events[0].attributes.exception.message",
            "events[0].attributes.exception.stacktrace", "links[0].attributes.origin",
        }
        assert count == len(rules) == len(keys) == 9
        assert set(rules) == {"openai-api-key", "github-pat"}
        text = run(redactor(), request).serialized()
        assert OPENAI.encode() not in text
        assert GITHUB.encode() not in text
        assert out.name == "call [REDACTED:openai-api-key]"

    def test_resource_hits_are_counted_once_on_the_first_span(self):
        """A secret in the resource is masked for all spans but counted once."""
        request = span_request()
        request.resource_spans[0].resource.attributes.add(key="note").value.string_value = OPENAI
        request.resource_spans[0].scope_spans[0].spans.add(name="second")
        spans = run(redactor(), request).message.resource_spans[0].scope_spans[0].spans
        assert summary(spans[0])[0] == 1
        assert summary(spans[1])[0] is None

    def test_log_bodies_of_every_shape(self):
        """String, bytes, arrays and nested kvlists in a body, and record attributes."""
        request = log_request(attrs={"msg": f"key={OPENAI}"})
        record = request.resource_logs[0].scope_logs[0].log_records[0]
        kv = record.body.kvlist_value.values.add(key="request")
        kv.value.kvlist_value.values.add(key="headers").value.array_value.values.add().string_value = (
            f"Authorization: Bearer {GITHUB}")
        record.body.kvlist_value.values.add(key="raw").value.bytes_value = b"\xff\xfe token " + OPENAI.encode()
        record.body.kvlist_value.values.add(key="api_key").value.int_value = 1234
        out = run(redactor(), request, Signal.LOGS).message.resource_logs[0].scope_logs[0].log_records[0]
        body = plain(out.body)
        assert body["request"]["headers"] == ["Authorization: Bearer [REDACTED:github-pat]"]
        assert body["raw"] == b"\xff\xfe token [REDACTED:openai-api-key]"
        assert body["api_key"] == "[REDACTED:sensitive-key]"
        _, rules, keys = summary(out)
        assert sorted(keys) == ["attributes.msg", "body.api_key", "body.raw", "body.request.headers[0]"]
        assert len(rules) == 4

    def test_metric_point_and_exemplar_attributes_without_summary(self):
        """Data points are masked, but get no summary attributes (that would make a new series)."""
        request = ExportMetricsServiceRequest()
        metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="calls")
        point = metric.sum.data_points.add(as_int=1)
        point.attributes.add(key="url").value.string_value = "https://bot:S3cretPw@api.example.com"
        point.exemplars.add(as_int=1).filtered_attributes.add(key="q").value.string_value = OPENAI
        out = run(redactor(), request, Signal.METRICS).message
        point = out.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0]
        assert attrs(point) == {"url": "https://bot:[REDACTED:url-userinfo]@api.example.com"}
        assert plain(point.exemplars[0].filtered_attributes[0].value) == "[REDACTED:openai-api-key]"


def test_scope_names_versions_schema_urls_severity_texts_and_metric_descriptions_are_scanned():
    """Strings outside attributes that exporters still send on: scope labels, /metrics HELP lines."""
    request = span_request({"x": "y"})
    scope_spans = request.resource_spans[0].scope_spans[0]
    scope_spans.scope.name = f"meter-{GITHUB}"
    scope_spans.scope.version = f"v1 {OPENAI}"
    request.resource_spans[0].schema_url = "https://bot:S3cretPw@schemas.example.com/1.0"
    out = run(redactor(), request).message.resource_spans[0]
    assert out.scope_spans[0].scope.name == "meter-[REDACTED:github-pat]"
    assert out.scope_spans[0].scope.version == "v1 [REDACTED:openai-api-key]"
    assert "S3cretPw" not in out.schema_url
    _, _, keys = summary(out.scope_spans[0].spans[0])
    assert sorted(keys) == ["resource.schema_url", "scope.name", "scope.version"]

    logs = log_request(body="ok")
    logs.resource_logs[0].scope_logs[0].log_records[0].severity_text = f"ERROR {GITHUB}"
    record = run(redactor(), logs, Signal.LOGS).message.resource_logs[0].scope_logs[0].log_records[0]
    assert record.severity_text == "ERROR [REDACTED:github-pat]"

    metrics = ExportMetricsServiceRequest()
    sm = metrics.resource_metrics.add().scope_metrics.add()
    sm.scope.name = f"meter-{GITHUB}"
    metric = sm.metrics.add(name="calls", description="calls made with password=MetricDesc-Secret1", unit="1")
    metric.sum.data_points.add(as_int=1)
    got = run(redactor(), metrics, Signal.METRICS).message.resource_metrics[0].scope_metrics[0]
    assert got.scope.name == "meter-[REDACTED:github-pat]"
    assert "MetricDesc-Secret1" not in got.metrics[0].description
    assert got.metrics[0].name == "calls"


def test_a_token_right_after_a_json_escape_in_prose_is_caught():
    r"""JSON quoted inside prose is not decoded, so ``\n`` sits right before the token: its ``n`` is no word."""
    for token, rule in (("rk_test_mxaMz9prTCTusC11LQzdwR9E", "stripe-key"),
                        ("api_org_EHZraPFF8ybWrIFb0fKmgqc7PavcUmteop", "huggingface-token")):
        text = f'résumé: [{{"content": "my key:\\n{token}\\n"}}] (pasted)'
        out = first_span(run(redactor(), span_request({"gen_ai.prompt": text})))
        assert plain(out.attributes[0].value) == f'résumé: [{{"content": "my key:\\n[REDACTED:{rule}]\\n"}}] (pasted)'


def test_a_secret_used_as_a_key_is_masked_and_never_echoed_as_a_location():
    """A map keyed by a token: the key is masked, and redaction.masked.keys shows the masked key."""
    got = attrs(first_span(run(redactor(), span_request({f"seen.{GITHUB}": "yes"}))))
    assert got["seen.[REDACTED:github-pat]"] == "yes"
    assert got["redaction.masked.keys"] == ["attributes.seen.[REDACTED:github-pat]"]
    assert GITHUB not in str(got)


def test_two_secret_keys_masked_alike_stay_two_keys_with_both_values():
    """Attributes, a map body and a JSON object keyed by two tokens keep both entries, the second named ``#2``."""
    other = GITHUB[:-4] + "ZZZZ"
    span = first_span(run(redactor(), span_request({f"seen.{GITHUB}": "a", f"seen.{other}": "b", "seen.x": "c"})))
    assert attrs(span) == {
        "seen.[REDACTED:github-pat]": "a", "seen.[REDACTED:github-pat]#2": "b", "seen.x": "c",
        "redaction.masked.count": 2, "redaction.masked.rules": ["github-pat", "github-pat"],
        "redaction.masked.keys": ["attributes.seen.[REDACTED:github-pat]", "attributes.seen.[REDACTED:github-pat]#2"],
    }
    batch = run(redactor(), log_request(body={GITHUB: "a", other: "b"}), Signal.LOGS)
    body = plain(batch.message.resource_logs[0].scope_logs[0].log_records[0].body)
    assert body == {"[REDACTED:github-pat]": "a", "[REDACTED:github-pat]#2": "b"}
    doc = json.dumps({"headers": {GITHUB: "a", other: "b", "[REDACTED:github-pat]#2": "c"}})
    got = attrs(first_span(run(redactor(), span_request({"gen_ai.tool.call.arguments": doc}))))
    assert json.loads(got["gen_ai.tool.call.arguments"])["headers"] == {
        "[REDACTED:github-pat]": "a", "[REDACTED:github-pat]#3": "b", "[REDACTED:github-pat]#2": "c"}
    assert GITHUB not in str(got)
    assert other not in str(got)


@pytest.mark.parametrize(("mode", "prefix"), [("redact", "redaction.masked"), ("detect", "redaction.detected")])
def test_a_secret_key_over_a_secret_value_is_named_masked_in_every_location(mode, prefix):
    """The value's hit is located under the masked key too, in shadow mode as well, where the key stays as sent."""
    attributes = {f"seen.{GITHUB}": OPENAI}
    body = {f"headers.{GITHUB}": f"Bearer {OPENAI}"}
    span = first_span(run(redactor(mode=mode), span_request(attributes)))
    record = run(redactor(mode=mode), log_request(body=body), Signal.LOGS).message.resource_logs[0].scope_logs[0].log_records[0]
    for holder, where in ((span, "attributes.seen."), (record, "body.headers.")):
        keys = attrs(holder)[f"{prefix}.keys"]
        assert keys == [f"{where}[REDACTED:github-pat]"] * 2
        assert GITHUB not in str(attrs(holder)[f"{prefix}.keys"])


class TestJson:
    def test_json_strings_stay_valid_json(self):
        """Secrets inside messages and nested tool arguments go; the JSON still parses."""
        messages = [
            {"role": "user", "parts": [{"type": "text", "content": f'quote " and newline\n{OPENAI}\t"end"'}]},
            {"role": "assistant", "parts": [{"type": "tool_call", "name": "http",
                                             "arguments": json.dumps({"headers": {"x": f"Bearer {GITHUB}"}})}]},
            {"role": "tool", "parts": [{"type": "tool_call_response", "response": {"password": "hunter2!"}}]},
        ]
        got = attrs(first_span(run(redactor(), span_request({"gen_ai.input.messages": json.dumps(messages)}))))
        doc = json.loads(got["gen_ai.input.messages"])
        assert doc[0]["parts"][0]["content"] == 'quote " and newline\n[REDACTED:openai-api-key]\t"end"'
        assert json.loads(doc[1]["parts"][0]["arguments"]) == {"headers": {"x": "Bearer [REDACTED:github-pat]"}}
        assert doc[2]["parts"][0]["response"] == {"password": "[REDACTED:sensitive-key]"}

    def test_a_numeric_secret_under_a_sensitive_key_is_masked_whatever_its_value(self):
        """A JSON pin or password of 0 or 1 is masked like any other number; booleans and nulls are not secrets."""
        text = json.dumps({"password": 1, "api_key": 0, "token": 12345, "secret": True, "cookie": None})
        got = attrs(first_span(run(redactor(), span_request({"tool.args": text}))))
        assert json.loads(got["tool.args"]) == {
            "password": "[REDACTED:sensitive-key]", "api_key": "[REDACTED:sensitive-key]",
            "token": "[REDACTED:sensitive-key]", "secret": True, "cookie": None,
        }

    def test_escaped_secrets_do_not_hide(self):
        """A unicode escape or an escaped newline in JSON does not hide a secret."""
        text = '{"content": "x\\n' + "\\u0073k-proj-" + OPENAI[8:] + '"}'
        got = attrs(first_span(run(redactor(), span_request({"gen_ai.output.messages": text}))))
        assert json.loads(got["gen_ai.output.messages"]) == {"content": "x\n[REDACTED:openai-api-key]"}

    def test_broken_json_is_scanned_as_text(self):
        """Truncated JSON is not decodable: the secret is still masked in the text."""
        text = '[{"content": "' + OPENAI + '", "more'
        got = attrs(first_span(run(redactor(), span_request({"gen_ai.input.messages": text}))))
        assert got["gen_ai.input.messages"] == '[{"content": "[REDACTED:openai-api-key]", "more'


class TestReplacementAndModes:
    def test_hash_replacement_correlates_without_revealing(self):
        """The same secret gets the same keyed hash everywhere; the hash is HMAC-SHA256 under the key."""
        r = redactor(replacement="hash", hash_key="k3y")
        one = attrs(first_span(run(r, span_request({"a": OPENAI, "b": f"x {OPENAI}", "c": GITHUB}))))
        digest = hmac.new(b"k3y", OPENAI.encode(), hashlib.sha256).hexdigest()[:16]
        assert one["a"] == f"[REDACTED:openai-api-key:{digest}]"
        assert one["b"] == f"x [REDACTED:openai-api-key:{digest}]"
        assert digest not in one["c"]
        assert OPENAI not in str(one)

    def test_an_escaped_secret_hashes_as_itself(self):
        """``\u0073k-...`` in prose is the same secret as ``sk-...``: the same marker, so they correlate."""
        r = redactor(replacement="hash", hash_key="k3y")
        escaped = "\\u0073" + OPENAI[1:]
        got = attrs(first_span(run(r, span_request({"a": OPENAI, "b": f"tool said: {escaped} (pasted)"}))))
        digest = hmac.new(b"k3y", OPENAI.encode(), hashlib.sha256).hexdigest()[:16]
        assert got["b"] == f"tool said: [REDACTED:openai-api-key:{digest}] (pasted)"
        assert got["a"] == f"[REDACTED:openai-api-key:{digest}]"

    def test_detect_mode_reports_and_changes_nothing(self):
        """Shadow mode: data unchanged, redaction.detected.* set, no redaction.masked.*."""
        out = first_span(run(redactor(mode="detect"), span_request({"a": OPENAI, "db.password": "pw"})))
        got = attrs(out)
        assert got["a"] == OPENAI
        assert got["db.password"] == "pw"
        assert summary(out, "redaction.detected") == (2, ["openai-api-key", "sensitive-key"],
                                                      ["attributes.a", "attributes.db.password"])
        assert summary(out) == (None, None, None)

    def test_attributes_named_like_the_summary_are_scanned_too(self):
        """A secret sent under redaction.masked.keys or gen_ai.content.dropped is no way around the rules."""
        sent = {"redaction.masked.keys": f"x {OPENAI}", "gen_ai.content.dropped": GITHUB,
                "redaction.detected.rules": OPENAI}
        got = attrs(first_span(run(redactor(), span_request(sent))))
        assert OPENAI not in str(got)
        assert GITHUB not in str(got)

    def test_a_second_pass_finds_nothing_new(self):
        """Markers match no rule: a second stage in the pipeline counts each secret once."""
        once = run(redactor(), span_request({"a": OPENAI}))
        second = Redactor(parse_config(FACTORY, {}), make_processor_settings("redaction/2", upstream=("redaction",)))
        twice = first_span(run(second, once.message))
        assert summary(twice)[0] == 1


FORGED = {"redaction.masked.count": 1000000, "redaction.masked.rules": ["spoof"],
          "redaction.masked.keys": ["attributes.made_up"], "redaction.detected.rules": ["spoof"]}


class TestSenderSummary:
    """Summary attributes a sender wrote are not the processor's: the first stage renames them."""

    @pytest.mark.parametrize("hyperscan", [True, False])
    @pytest.mark.parametrize("mode", ["redact", "detect"])
    def test_a_forged_summary_on_a_clean_span_is_renamed(self, hyperscan, mode):
        """No secret, yet the span is walked: its forged summary becomes redaction.claimed.*, in both modes."""
        r = Redactor(parse_config(FACTORY, {"mode": mode}), hyperscan=hyperscan)
        request = span_request({"gen_ai.request.model": "gpt-4o", **FORGED})
        request.resource_spans[0].scope_spans[0].spans.add(name="clean")
        out = run(r, request)
        got = attrs(first_span(out))
        assert got == {"gen_ai.request.model": "gpt-4o", "redaction.claimed.masked.count": 1000000,
                       "redaction.claimed.masked.rules": ["spoof"],
                       "redaction.claimed.masked.keys": ["attributes.made_up"],
                       "redaction.claimed.detected.rules": ["spoof"]}
        assert out.message.resource_spans[0].scope_spans[0].spans[1].name == "clean"

    def test_a_forged_summary_next_to_a_real_secret_leaves_only_the_processors_own(self):
        """The real summary names the real secret alone; the forged one is kept aside, renamed."""
        got = attrs(first_span(run(redactor(), span_request({"a": OPENAI, **FORGED}))))
        assert got["redaction.masked.count"] == 1
        assert got["redaction.masked.rules"] == ["openai-api-key"]
        assert got["redaction.masked.keys"] == ["attributes.a"]
        assert got["redaction.claimed.masked.count"] == 1000000

    def test_log_records_and_resources_too(self):
        """A record's and a resource's forged summaries are renamed (the resource by the whole-message walk)."""
        request = log_request(body="clean", attrs=FORGED)
        set_value(request.resource_logs[0].resource.attributes.add(key="redaction.masked.count").value, 5)
        out = run(redactor(), request, Signal.LOGS)
        record = out.message.resource_logs[0].scope_logs[0].log_records[0]
        assert set(attrs(record)) == {"redaction.claimed.masked.count", "redaction.claimed.masked.rules",
                                      "redaction.claimed.masked.keys", "redaction.claimed.detected.rules"}
        assert attrs(out.message.resource_logs[0].resource) == {"redaction.claimed.masked.count": 5}

    def test_trust_upstream_summary_keeps_them(self):
        """For data from a trusted obs-pipeline upstream: kept, and the clean batch keeps its bytes."""
        request = span_request(FORGED)
        batch = Batch.from_wire(Signal.TRACES, request.SerializeToString())
        out = redactor(trust_upstream_summary=True)(batch)
        assert out is batch
        assert attrs(first_span(out.settled())) == FORGED


class TestUserRules:
    def test_user_rules_disable_allowed_and_blocked(self):
        """A user rule masks its group; disable, allowed_values, blocked_keys and allowed_keys act."""
        r = redactor(
            rules=[{"id": "acme-key", "pattern": r"acme_id=(ak_[0-9a-f]{8})", "secret_group": 1}],
            disable=["github-pat"], allowed_values=["sk-proj-Ab3d.*"],
            blocked_keys=[r"^internal\."], allowed_keys=["app.session_token_name"],
        )
        got = attrs(first_span(run(r, span_request({
            "a": "acme_id=ak_0123abcd", "b": GITHUB, "c": OPENAI, "internal.x": "v",
            "app.session_token_name": "csrf",
        }))))
        assert got["a"] == "acme_id=[REDACTED:acme-key]"
        assert got["b"] == GITHUB
        assert got["c"] == OPENAI
        assert got["internal.x"] == "[REDACTED:blocked-key]"
        assert got["app.session_token_name"] == "csrf"


class TestThroughTheFactory:
    async def test_the_processor_hands_on_redacted_batches_and_counts(self):
        """Built by its factory: a redacted batch reaches the next stage, items counted."""
        metrics = SelfMetrics()
        sink = CapturingConsumer()
        settings = make_processor_settings("redaction", metrics=metrics)
        processor = FACTORY.create(settings, parse_config(FACTORY, None), sink)
        request = span_request({"input": OPENAI})
        request.resource_spans[0].scope_spans[0].spans.add(name="clean", kind=Span.SPAN_KIND_CLIENT)
        await processor.consume(Batch.from_wire(Signal.TRACES, request.SerializeToString()))
        assert sink.items == 2
        assert OPENAI.encode() not in sink.batches[0].serialized()
        assert metrics.registry.get_sample_value(
            "obs_pipeline_processor_incoming_items_total", {"processor": "redaction", "pipeline": "traces"}) == 2


def test_scan_text_names_rules_and_offsets():
    """The small pure API: (rule id, start, end) per secret."""
    text = f"a {OPENAI} b"
    assert scan_text(text) == [("openai-api-key", 2, 2 + len(OPENAI))]
    assert scan_text("nothing here") == []
