"""Hits in plain string attributes are redacted in the item's bytes, with what the parse path sends on."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from obs_pipeline.batch import Batch
from obs_pipeline.processors.redaction import FACTORY, Redactor, framing
from obs_pipeline.signals import Signal
from obs_pipeline.testing import parse_config
from tests.exporters.builders import set_value

SECRET = "xai-" + "k3Y" * 20
OTHER = "ghp_" + "Ab1" * 12
UNKNOWN = b"\xa2\x06\x05extra"  # field 100, length-delimited: a field this OTLP version does not know

# Attribute sets of one item: every shape a hit attribute takes, the plain ones and the ones the
# in-place path must leave to the parse path.
CASES: dict[str, dict[str, Any]] = {
    "a secret in prose": {"gen_ai.prompt": f"please use {SECRET} now", "n": 3},
    "two secrets in one value": {"note": f"{SECRET} and {OTHER}"},
    "two attributes hit, one clean between": {"a": f"k {SECRET}", "b": "clean", "c": f"t {OTHER}"},
    "text outside ASCII around it": {"note": f"clé ünïcødé {SECRET} 日本語 ✓"},
    "JSON content": {"gen_ai.input.messages": f'[{{"role":"user","content":"key {SECRET}"}}]'},
    "JSON with an escaped secret": {"tool.args": '{"k": "\\u0078ai-' + "k3Y" * 20 + '"}'},
    "JSON with a sensitive key inside": {"tool.args": '{"api_key": "hunter2", "q": 1}'},
    "JSON whose redaction would hold a lone surrogate": {"tool.args": '{"x": "\\udcff", "k": "' + SECRET + '"}'},
    "a sensitive key": {"api_key": "anything"},
    "a secret as the key": {f"seen.{OTHER}": "v"},
    "a sender's summary key": {"redaction.masked.count": 5, "note": f"k {SECRET}"},
    "a wide match the exact rules do not take": {"note": "xai-" + "k3Y" * 3 + " is short"},
    "a value past max_value_size": {"note": "x" * 300 + SECRET},
    "bytes": {"blob": SECRET.encode()},
    "an array": {"list": ["a", f"k {SECRET}"]},
    "a kvlist": {"map": {"inner": f"k {SECRET}"}},
}


def _item(signal: Signal, attributes: dict[str, Any], extra: bytes = b"") -> bytes:
    holder = Span(name="chat", span_id=b"\x01" * 8) if signal is Signal.TRACES else LogRecord(severity_text="INFO")
    for key, value in attributes.items():
        set_value(holder.attributes.add(key=key).value, value)
    return holder.SerializeToString() + extra


def _request(signal: Signal, item: bytes) -> bytes:
    """A request of a clean item and ``item`` (its bytes as given) under one resource and scope."""
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="svc"))])
    scope = framing_field(2, _item(signal, {"k": "clean"})) + framing_field(2, item)  # spans or log_records
    return framing_field(1, framing_field(1, resource.SerializeToString()) + framing_field(2, scope))


def framing_field(number: int, payload: bytes) -> bytes:
    """A length-delimited field written by hand (protobuf would move an unknown one to the end)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(number: int) -> bytes:
    out = b""
    while number >= 0x80:
        out += bytes((number & 0x7F | 0x80,))
        number >>= 7
    return out + bytes((number,))


def _pair(**body: Any) -> tuple[Redactor, Redactor]:
    """The processor as it is, and the same with the in-place path off (every hit item parsed)."""
    cfg = parse_config(FACTORY, {"max_value_size": 256, **body})
    parsed = Redactor(cfg)
    parsed.walker.item_bytes = lambda *_: None  # type: ignore[method-assign]
    return Redactor(cfg), parsed


def _shown(signal: Signal, data: bytes) -> Any:
    message = (ExportTraceServiceRequest if signal is Signal.TRACES else ExportLogsServiceRequest).FromString(data)
    message.DiscardUnknownFields()
    return message


@pytest.mark.parametrize("body", [{}, {"mode": "detect"}, {"replacement": "hash", "hash_key": "k3y"}],
                         ids=["redact", "detect", "hash"])
@pytest.mark.parametrize("signal", [Signal.TRACES, Signal.LOGS])
@pytest.mark.parametrize("extra", [b"", UNKNOWN], ids=["", "unknown field elsewhere"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_in_place_path_sends_on_what_the_parse_path_does(case: str, extra: bytes, signal: Signal,
                                                             body: dict[str, Any]):
    """Same values, markers, summary, counts and security findings; only unknown fields no hit touched stay."""
    in_place, parsed = _pair(**body)
    wire = _request(signal, _item(signal, CASES[case], extra))
    outs = []
    for r in (in_place, parsed):
        out = r(Batch.from_wire(signal, wire)).serialized()
        outs.append((_shown(signal, out), dict(r.walker.tally), out))
    (got, got_tally, got_bytes), (want, want_tally, want_bytes) = outs
    assert got == want
    assert got_tally == want_tally
    if body.get("mode") != "detect":
        assert SECRET.encode() not in got_bytes
        assert SECRET.encode() not in want_bytes


@pytest.mark.parametrize("signal", [Signal.TRACES, Signal.LOGS])
def test_an_earlier_stage_summary_is_added_to_as_the_parse_path_does(signal: Signal):
    """A trusted upstream stage's summary gets this stage's findings, once (not a second summary beside it)."""
    in_place, parsed = _pair(trust_upstream_summary=True)
    earlier = {"redaction.masked.count": 1, "redaction.masked.rules": ["github-pat"],
               "redaction.masked.keys": ["attributes.x"], "note": f"k {SECRET}"}
    wire = _request(signal, _item(signal, earlier))
    got, want = (_shown(signal, r(Batch.from_wire(signal, wire)).serialized()) for r in (in_place, parsed))
    assert got == want
    items = got.resource_spans[0].scope_spans[0].spans if signal is Signal.TRACES else \
        got.resource_logs[0].scope_logs[0].log_records
    assert [kv.value.int_value for kv in items[1].attributes if kv.key == "redaction.masked.count"] == [2]


@pytest.mark.parametrize("signal", [Signal.TRACES, Signal.LOGS])
@pytest.mark.parametrize("case", ["a secret in prose", "two secrets in one value", "text outside ASCII around it",
                                  "two attributes hit, one clean between", "JSON content",
                                  "JSON with an escaped secret", "JSON with a sensitive key inside",
                                  "a wide match the exact rules do not take", "a value past max_value_size"])
def test_plain_string_attributes_are_redacted_without_a_parse(case: str, signal: Signal):
    """The hit path this is for: the item's bytes are edited, the rest of them kept (an unknown field too)."""
    r, _ = _pair()
    raw = _item(signal, CASES[case], UNKNOWN)
    number = 9 if signal is Signal.TRACES else 6
    hit = {number: {i for i, value in enumerate(CASES[case].values()) if isinstance(value, str)}}
    out = r.walker.item_bytes(signal, raw, hit)
    assert out is not None
    assert UNKNOWN in out
    assert SECRET.encode() not in out
    if case == "a wide match the exact rules do not take":
        assert out is raw


@pytest.mark.parametrize("case", ["a sensitive key", "a secret as the key", "a sender's summary key", "bytes",
                                  "an array", "a kvlist", "JSON whose redaction would hold a lone surrogate"])
def test_other_shapes_are_left_to_the_parse_path(case: str):
    """A key that decides the value, a value that is not a string, or text protobuf could not hold."""
    r, _ = _pair()
    raw = _item(Signal.TRACES, CASES[case])
    assert r.walker.item_bytes(Signal.TRACES, raw, {9: set(range(len(CASES[case])))}) is None


def test_hits_outside_the_attributes_an_earlier_summary_or_the_content_policy_take_the_parse_path():
    r, _ = _pair()
    raw = _item(Signal.TRACES, {"note": f"k {SECRET}"})
    assert r.walker.item_bytes(Signal.TRACES, raw, {9: {0}, 5: {0}}) is None  # the name too
    assert r.walker.item_bytes(Signal.TRACES, raw, None) is None  # all of it
    summarized = _item(Signal.TRACES, {"note": f"k {SECRET}", "redaction.masked.count": 1})
    assert r.walker.item_bytes(Signal.TRACES, summarized, {9: {0}}) is None
    dropping = Redactor(parse_config(FACTORY, {"content": "drop"}))
    assert dropping.walker.item_bytes(Signal.TRACES, raw, {9: {0}}) is None
    assert r.walker.item_bytes(Signal.TRACES, raw, {9: {0}}) is not None


_KV = KeyValue(key="k", value=AnyValue(string_value="text")).SerializeToString()


@pytest.mark.parametrize(("shape", "data"), [
    ("the value first", framing_field(2, framing_field(1, b"text")) + framing_field(1, b"k")),
    ("the key twice", framing_field(1, b"j") + _KV),
    ("the value twice", _KV + framing_field(2, framing_field(1, b"other"))),
    ("an unknown field of the KeyValue", _KV + framing_field(7, b"x")),
    ("an unknown field of the value", framing_field(1, b"k") + framing_field(2, framing_field(1, b"t") + b"\x18\x01")),
    ("an int value", KeyValue(key="k", value=AnyValue(int_value=3)).SerializeToString()),
    ("an empty value", framing_field(1, b"k") + framing_field(2, b"")),
    ("no key", framing_field(2, framing_field(1, b"text"))),
    ("truncated", _KV[:-2]),
    ("a string longer than its value", framing_field(1, b"k") + b"\x12\x06\x0a\x09text"),
])
def test_string_attribute_reads_only_a_key_and_a_string(shape: str, data: bytes):
    """Bytes in which protobuf might show something other than what is read are refused."""
    assert framing.string_attribute(data, 0, len(data)) is None, shape


def test_string_attribute_reads_the_plain_shape():
    data = b"ab" + _KV + b"cd"
    key, start, end = framing.string_attribute(data, 2, 2 + len(_KV)) or (b"", 0, 0)
    assert (key, data[start:end], end) == (b"k", b"text", 2 + len(_KV))
    overlong = framing_field(1, b"k") + b"\x12\x87\x00" + b"\x0a\x84\x00text"  # lengths as two-byte varints
    key, start, end = framing.string_attribute(overlong, 0, len(overlong)) or (b"", 0, 0)
    assert (key, overlong[start:end]) == (b"k", b"text")
    assert KeyValue.FromString(overlong).value.string_value == "text"


def test_fields_refuses_an_occurrence_that_is_not_length_delimited():
    span = Span(name="n")
    span.attributes.add(key="k").value.string_value = "v"
    data = span.SerializeToString()
    assert [data[a:b] for _, a, b in framing.fields(data, 9)] == [span.attributes[0].SerializeToString()]
    with pytest.raises(framing.FramingError):
        framing.fields(b"\x48\x00" + data, 9)
