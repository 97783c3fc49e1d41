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

from obs_pipeline import wire
from obs_pipeline.batch import Batch
from obs_pipeline.processors.redaction import FACTORY, Redactor, framing
from obs_pipeline.processors.redaction.in_place import UNCHANGED
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
    "a wide match the exact rules do not take": {"note": "id AKIAIOSFODNN7EXAMPLEXYZ here"},
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
    scope = wire.field(2, _item(signal, {"k": "clean"})) + wire.field(2, item)  # spans or log_records
    return wire.field(1, wire.field(1, resource.SerializeToString()) + wire.field(2, scope))


#: The cases the in-place path answers for (the rest are left to the parse path).
IN_PLACE = ["a secret in prose", "two secrets in one value", "two attributes hit, one clean between",
            "text outside ASCII around it", "JSON content", "JSON with an escaped secret",
            "JSON with a sensitive key inside", "a wide match the exact rules do not take"]


def _pair(**body: Any) -> tuple[Redactor, Redactor]:
    """The processor as it is, and the same with the in-place path off (every hit item parsed)."""
    cfg = parse_config(FACTORY, {"max_value_size": 256, **body})
    parsed = Redactor(cfg)
    parsed.in_place = lambda *_: None  # type: ignore[assignment,method-assign]
    return Redactor(cfg), parsed


def _answers(r: Redactor) -> list[Any]:
    """Spy on ``r``'s in-place path: what it answered, call by call."""
    answers: list[Any] = []
    real = r.in_place

    def spy(*args: Any) -> Any:
        answers.append(real(*args))
        return answers[-1]

    r.in_place = spy  # type: ignore[assignment,method-assign]
    return answers


def _shown(signal: Signal, data: bytes) -> Any:
    message = (ExportTraceServiceRequest if signal is Signal.TRACES else ExportLogsServiceRequest).FromString(data)
    message.DiscardUnknownFields()
    return message


def _items(signal: Signal, message: Any) -> Any:
    if signal is Signal.TRACES:
        return message.resource_spans[0].scope_spans[0].spans
    return message.resource_logs[0].scope_logs[0].log_records


@pytest.mark.parametrize("body", [{}, {"mode": "detect"}, {"replacement": "hash", "hash_key": "k3y"}],
                         ids=["redact", "detect", "hash"])
@pytest.mark.parametrize("signal", [Signal.TRACES, Signal.LOGS])
@pytest.mark.parametrize("extra", [b"", UNKNOWN], ids=["", "unknown field elsewhere"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_in_place_path_sends_on_what_the_parse_path_does(case: str, extra: bytes, signal: Signal,
                                                             body: dict[str, Any]):
    """Same values, markers, summary (what the security line is made of) and counts, whichever path ran.

    Only unknown fields that no hit touched stay (compared with them dropped); the cases meant for
    the in-place path must have taken it, the others must not.
    """
    in_place, parsed = _pair(**body)
    answers = _answers(in_place)
    wire_bytes = _request(signal, _item(signal, CASES[case], extra))
    outs = []
    for r in (in_place, parsed):
        out = r(Batch.from_wire(signal, wire_bytes)).serialized()
        outs.append((_shown(signal, out), dict(r.walker.tally), out))
    (got, got_tally, got_bytes), (want, want_tally, want_bytes) = outs
    assert got == want
    assert got_tally == want_tally
    took = bool(answers) and all(answer is not None for answer in answers)
    # (detect mode writes no value, so text protobuf could not hold is never written)
    surrogate_detected = case == "JSON whose redaction would hold a lone surrogate" and body.get("mode") == "detect"
    assert took == (case in IN_PLACE or surrogate_detected)
    if body.get("mode") != "detect":
        for out in (got_bytes, want_bytes):
            assert SECRET.encode() not in out
            assert OTHER.encode() not in out
    if case == "JSON with an escaped secret" and body.get("mode") != "detect":
        assert b"[REDACTED:xai-api-key" in got_bytes
    if case == "a wide match the exact rules do not take":
        assert answers == [UNCHANGED]
        assert got_bytes == wire_bytes  # nothing found: the request goes on as it came


@pytest.mark.parametrize("signal", [Signal.TRACES, Signal.LOGS])
def test_an_earlier_stage_summary_is_added_to_as_the_parse_path_does(signal: Signal):
    """A trusted upstream stage's summary gets this stage's findings, once (not a second summary beside it)."""
    in_place, parsed = _pair(trust_upstream_summary=True)
    earlier = {"redaction.masked.count": 1, "redaction.masked.rules": ["github-pat"],
               "redaction.masked.keys": ["attributes.x"], "note": f"k {SECRET}"}
    wire_bytes = _request(signal, _item(signal, earlier))
    got, want = (_shown(signal, r(Batch.from_wire(signal, wire_bytes)).serialized()) for r in (in_place, parsed))
    assert got == want
    counts = [kv.value.int_value for kv in _items(signal, got)[1].attributes if kv.key == "redaction.masked.count"]
    assert counts == [2]


@pytest.mark.parametrize("signal", [Signal.TRACES, Signal.LOGS])
@pytest.mark.parametrize("case", [c for c in IN_PLACE if c != "a wide match the exact rules do not take"])
def test_plain_string_attributes_are_redacted_in_the_item_bytes(case: str, signal: Signal):
    """The hit path this is for: the attributes hit are rewritten and the rest of the item kept, an unknown field too."""
    r, _ = _pair()
    raw = _item(signal, CASES[case], UNKNOWN)
    number = 9 if signal is Signal.TRACES else 6
    out = r.in_place(signal, raw, {number: {i for i, v in enumerate(CASES[case].values()) if isinstance(v, str)}})
    assert isinstance(out, bytes)
    assert UNKNOWN in out
    assert SECRET.encode() not in out
    assert b"redaction.masked.count" in out


@pytest.mark.parametrize("case", sorted(set(CASES) - set(IN_PLACE) - {"a value past max_value_size"}))
def test_other_shapes_are_left_to_the_parse_path(case: str):
    """A key that decides the value, a value that is not a string, or text protobuf could not hold."""
    r, _ = _pair()
    raw = _item(Signal.TRACES, CASES[case])
    assert r.in_place(Signal.TRACES, raw, {9: set(range(len(CASES[case])))}) is None


def test_hits_outside_the_attributes_an_earlier_summary_or_the_content_policy_take_the_parse_path():
    """Only an item hit in its attributes alone, with no summary yet, under no content policy, is edited in place."""
    r, _ = _pair()
    raw = _item(Signal.TRACES, {"note": f"k {SECRET}"})
    assert r.in_place(Signal.TRACES, raw, {9: {0}, 5: {0}}) is None  # the name too
    assert r.in_place(Signal.TRACES, raw, None) is None  # all of it
    summarized = _item(Signal.TRACES, {"note": f"k {SECRET}", "redaction.masked.count": 1})
    assert r.in_place(Signal.TRACES, summarized, {9: {0}}) is None
    dropping = Redactor(parse_config(FACTORY, {"content": "drop"}))
    assert dropping.in_place(Signal.TRACES, raw, {9: {0}}) is None
    assert isinstance(r.in_place(Signal.TRACES, raw, {9: {0}}), bytes)
    stray = b"\x48\x00" + raw  # a field 9 that is not length-delimited: protobuf keeps it apart
    assert r.in_place(Signal.TRACES, stray, {9: {0}}) is None


_KV = KeyValue(key="k", value=AnyValue(string_value="text")).SerializeToString()


@pytest.mark.parametrize(("shape", "data"), [
    ("the value first", wire.field(2, wire.field(1, b"text")) + wire.field(1, b"k")),
    ("the key twice", wire.field(1, b"j") + _KV),
    ("the value twice", _KV + wire.field(2, wire.field(1, b"other"))),
    ("an unknown field of the KeyValue", _KV + wire.field(7, b"x")),
    ("an unknown field of the value", wire.field(1, b"k") + wire.field(2, wire.field(1, b"t") + b"\x18\x01")),
    ("an int value", KeyValue(key="k", value=AnyValue(int_value=3)).SerializeToString()),
    ("an empty value", wire.field(1, b"k") + wire.field(2, b"")),
    ("no key", wire.field(2, wire.field(1, b"text"))),
    ("truncated", _KV[:-2]),
    ("a string longer than its value", wire.field(1, b"k") + b"\x12\x06\x0a\x09text"),
    ("a length written long", wire.field(1, b"k") + b"\x12\x87\x00" + b"\x0a\x84\x00text"),
    ("a key of 128 bytes", KeyValue(key="k" * 128, value=AnyValue(string_value="t")).SerializeToString()),
])
def test_plain_string_reads_only_a_key_and_a_string(shape: str, data: bytes):
    """Bytes in which protobuf might show something other than what is read are left to the parser."""
    assert wire.plain_string(data, 0, len(data)) is None, shape


def test_plain_string_reads_the_canonical_shape_anywhere_in_the_bytes():
    """Key and string are found inside a larger buffer, by the offsets given."""
    data = b"ab" + _KV + b"cd"
    key_end, text_start = wire.plain_string(data, 2, 2 + len(_KV)) or (0, 0)
    assert (data[4:key_end], data[text_start:2 + len(_KV)]) == (b"k", b"text")
    long_text = KeyValue(key="gen_ai.prompt", value=AnyValue(string_value="x" * 20_000)).SerializeToString()
    key_end, text_start = wire.plain_string(long_text) or (0, 0)
    assert (long_text[2:key_end], len(long_text) - text_start) == (b"gen_ai.prompt", 20_000)


def test_fields_lists_each_occurrence_and_refuses_one_that_is_not_length_delimited():
    """The attributes' frames, as protobuf counts them; a field 9 of another wire type defers to the parser."""
    span = Span(name="n")
    span.attributes.add(key="k").value.string_value = "v"
    span.attributes.add(key="j").value.int_value = 1
    data = span.SerializeToString()
    assert [data[a:b] for _, a, b in framing.fields(data, 9)] == [kv.SerializeToString() for kv in span.attributes]
    with pytest.raises(framing.FramingError):
        framing.fields(b"\x48\x00" + data, 9)
