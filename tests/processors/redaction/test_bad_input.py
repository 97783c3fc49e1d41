"""Fail closed, per value: huge values, deep nesting, invalid UTF-8 and internal errors never leak or crash."""

from __future__ import annotations

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from obs_pipeline.batch import Batch
from obs_pipeline.processors.redaction.scanner import Scanner
from obs_pipeline.signals import Signal
from tests.processors.redaction.kit import attrs, first_span, redactor, run, span_request

SECRET = "ghp_" + "Zx9" * 12


def test_a_10mb_attribute_is_masked_unscanned_and_the_rest_redacted():
    """Over max_value_size: the value becomes the unscanned marker; its neighbours are scanned."""
    big = "a" * (10 << 20) + SECRET
    out = first_span(run(redactor(), span_request({"huge": big, "small": SECRET})))
    got = attrs(out)
    assert got["huge"] == "[REDACTED:unscanned]"
    assert got["small"] == "[REDACTED:github-pat]"
    assert got["redaction.masked.rules"] == ["unscanned", "github-pat"]


def test_a_resource_secret_in_a_request_larger_than_max_value_size_is_masked():
    """Two spans of 0.7 MB each (no value over the limit) and a secret in the resource: still masked."""
    request = span_request({"a": "x" * 700_000})
    spans = request.resource_spans[0].scope_spans[0].spans
    spans.add(name="second").attributes.add(key="b").value.string_value = "y" * 700_000
    request.resource_spans[0].resource.attributes.add(key="note").value.string_value = f"token {SECRET}"
    out = run(redactor(), request)
    resource = {kv.key: kv.value.string_value for kv in out.message.resource_spans[0].resource.attributes}
    assert resource == {"note": "token [REDACTED:github-pat]"}
    assert attrs(first_span(out))["redaction.masked.keys"] == ["resource.attributes.note"]
    assert SECRET.encode() not in out.serialized()


def test_a_10000_deep_kvlist_is_cut_at_max_depth():
    """Nesting past max_depth is replaced by the unscanned marker; the batch still serializes."""
    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    node = record.body
    for _ in range(10_000):
        node = node.kvlist_value.values.add(key="k").value
    node.string_value = SECRET
    out = redactor()(Batch(Signal.LOGS, request)).settled()
    record = out.message.resource_logs[0].scope_logs[0].log_records[0]
    assert SECRET.encode() not in out.serialized()
    assert attrs(record)["redaction.masked.rules"] == ["unscanned"]
    depth, node = 0, record.body
    while node.WhichOneof("value") == "kvlist_value":
        node, depth = node.kvlist_value.values[0].value, depth + 1
    assert depth == 32
    assert node.string_value == "[REDACTED:unscanned]"


def test_json_too_deep_to_decode_is_scanned_as_text():
    """A 10,000-deep JSON string cannot be decoded: its secret is still found in the text."""
    deep = "[" * 10_000 + f'"{SECRET}"' + "]" * 10_000
    got = attrs(first_span(run(redactor(), span_request({"gen_ai.input.messages": deep}))))
    assert SECRET not in got["gen_ai.input.messages"]
    assert got["redaction.masked.rules"] == ["github-pat"]


def test_invalid_utf8_in_bytes_and_repaired_strings_does_not_crash():
    """Bytes that are not UTF-8 are scanned as bytes; a repaired string (U+FFFD) as text."""
    request = span_request({"raw": b"\xc3\x28\xff" + SECRET.encode() + b"\x80", "text": f"\ufffd\ufffd{SECRET}\ufffd"})
    got = attrs(first_span(run(redactor(), request)))
    assert got["raw"] == b"\xc3\x28\xff[REDACTED:github-pat]\x80"
    assert got["text"] == "\ufffd\ufffd[REDACTED:github-pat]\ufffd"


class _Broken(Scanner):
    """A scanner that fails on one value, as an internal error would."""

    def scan(self, text):
        if "boom" in text:
            raise RuntimeError("internal")
        return super().scan(text)


def test_an_internal_error_masks_only_that_value():
    """The failing value is masked unscanned and counted; the batch and the other values go on."""
    r = redactor()
    r.scrubber.scanner = _Broken()
    got = attrs(first_span(run(r, span_request({"bad": f"boom {SECRET}", "good": f"ok {SECRET}"}))))
    assert got["bad"] == "[REDACTED:unscanned]"
    assert got["good"] == "ok [REDACTED:github-pat]"
    assert sorted(got["redaction.masked.rules"]) == ["github-pat", "unscanned"]


def test_markers_never_echo_the_secret():
    """Neither marker form holds any part of what it replaced."""
    for body in ({}, {"replacement": "hash", "hash_key": "x"}):
        got = attrs(first_span(run(redactor(**body), span_request({"a": SECRET}))))
        assert "Zx9" not in got["a"]
