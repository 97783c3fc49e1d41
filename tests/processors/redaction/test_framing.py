"""Only the spans and fields the wire hits point at are walked, and nothing is missed for it."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from obs_pipeline.batch import Batch
from obs_pipeline.processors.redaction import FACTORY, Redactor, framing
from obs_pipeline.signals import Signal
from obs_pipeline.testing import parse_config
from tests.processors.redaction.kit import attrs, plain, redactor

SECRET = "xai-" + "k3Y" * 20


def _request(resources: int = 2, spans: int = 30) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for r in range(resources):
        rs = request.resource_spans.add()
        rs.resource.attributes.add(key="service.name").value.string_value = f"svc{r}"
        for s in range(2):
            ss = rs.scope_spans.add()
            for i in range(spans):
                span = ss.spans.add(name=f"chat {r}.{s}.{i}", span_id=bytes([r, s, i % 256, 0]) * 2)
                for k in range(5):
                    span.attributes.add(key=f"a{k}").value.string_value = f"plain text {k}"
    return request


def test_the_layout_finds_every_span_in_wire_order():
    """The framing reader lists each span's byte range, three levels deep."""
    request = _request()
    data = request.SerializeToString()
    layout = framing.items(data)
    assert [item for _, _, item in layout] == [(r, s, i) for r in range(2) for s in range(2) for i in range(30)]
    start, end, _ = layout[37]
    assert request.resource_spans[0].scope_spans[1].spans[7].SerializeToString() == data[start:end]


def test_secrets_in_every_field_of_scattered_spans_are_all_found():
    """Hits in names, statuses, events, links and the n-th attribute of far-apart spans."""
    request = _request()
    spans = [ss.spans for rs in request.resource_spans for ss in rs.scope_spans]
    spans[0][0].name = f"call {SECRET}"
    spans[1][29].attributes[3].value.string_value = f"key {SECRET}"
    spans[2][14].status.message = SECRET
    spans[3][5].events.add(name="e").attributes.add(key="m").value.string_value = SECRET
    spans[3][6].links.add().attributes.add(key="m").value.string_value = SECRET
    spans[3][7].attributes[4].key = "db.password"
    out = redactor()(Batch.from_wire(Signal.TRACES, request.SerializeToString())).settled()
    assert SECRET.encode() not in out.serialized()
    assert out.wire == out.message.SerializeToString(), "spliced bytes are exactly the redacted message"
    got = [ss.spans for rs in out.message.resource_spans for ss in rs.scope_spans]
    keys = {(g, i): attrs(span).get("redaction.masked.keys") for g, group in enumerate(got) for i, span in enumerate(group)
            if "redaction.masked.keys" in attrs(span)}
    assert keys == {
        (0, 0): ["name"], (1, 29): ["attributes.a3"], (2, 14): ["status.message"],
        (3, 5): ["events[0].attributes.m"], (3, 6): ["links[0].attributes.m"], (3, 7): ["attributes.db.password"],
    }
    assert plain(got[3][7].attributes[4].value) == "[REDACTED:sensitive-key]"


def test_log_records_are_targeted_too():
    """Logs share the framing: the one record with a secret in its body is the one redacted."""
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    for i in range(20):
        records.add().body.string_value = f"line {i}"
    records[13].body.string_value = f"leaked {SECRET}"
    out = redactor()(Batch.from_wire(Signal.LOGS, request.SerializeToString())).settled()
    got = out.message.resource_logs[0].scope_logs[0].log_records
    assert got[13].body.string_value == "leaked [REDACTED:xai-api-key]"
    assert [i for i, r in enumerate(got) if "redaction.masked.count" in attrs(r)] == [13]


@pytest.mark.parametrize("mode", ["redact", "detect"])
def test_spliced_items_get_the_summary_the_whole_message_walk_gives(mode: str):
    """The splice path merges a remembered summary as bytes: it equals the walk's, repeats and logs included.

    The logs come after the spans through the same redactor, one record finding what a span found.
    """
    request = _request(resources=1, spans=6)
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[0].attributes[1].value.string_value = f"key {SECRET}"
    spans[1].attributes[1].value.string_value = f"key {SECRET}"  # the same summary again: the remembered one
    spans[2].attributes[1].value.string_value = f"key {SECRET}"
    spans[2].attributes[3].value.string_value = f"{SECRET} and {SECRET}"  # the same rule, more places
    spans[4].name = SECRET
    spans[4].attributes[0].key = "api_key"  # two rules
    spans[5].attributes[2].value.string_value = f"key {SECRET}"  # the rule of span 0 at another key
    logs = ExportLogsServiceRequest()
    records = logs.resource_logs.add().scope_logs.add().log_records
    for i in range(3):
        records.add().body.string_value = f"leaked {SECRET}" if i == 0 else "clean"
    # what span 0 had found, in a record: a span's and a record's summary bytes differ (field 9 of a
    # record is its trace id), so the memory must tell them apart
    records[2].attributes.add(key=spans[0].attributes[1].key).value.string_value = f"key {SECRET}"
    r = redactor(mode=mode)
    for signal, message in ((Signal.TRACES, request), (Signal.LOGS, logs)):
        for _ in range(2):  # the second time every summary comes from the walker's memory
            spliced = r(Batch.from_wire(signal, message.SerializeToString()))
            assert spliced.wire is not None, "the splice path"
            walked = type(message)()
            walked.CopyFrom(message)
            r.walker.walk(signal, walked)
            assert spliced.wire == walked.SerializeToString()


def test_a_summary_of_many_places_is_spliced_right_and_not_remembered():
    """A span with hundreds of hits gets the walk's summary each time, and the walker keeps no copy of it."""
    request = _request(resources=1, spans=3)
    span = request.resource_spans[0].scope_spans[0].spans[1]
    for i in range(300):
        span.attributes.add(key=f"leak.{i}").value.string_value = f"key {SECRET}"
    r = redactor()
    for _ in range(2):
        spliced = r(Batch.from_wire(Signal.TRACES, request.SerializeToString()))
        assert spliced.wire is not None, "the splice path"
        walked = ExportTraceServiceRequest()
        walked.CopyFrom(request)
        r.walker.walk(Signal.TRACES, walked)
        assert spliced.wire == walked.SerializeToString()
    assert attrs(walked.resource_spans[0].scope_spans[0].spans[1])["redaction.masked.count"] == 300
    assert not r.walker._summaries


@pytest.mark.parametrize("data", [
    b"\x0a\xff\xff\xff\xff\x0f",     # a length of five bytes, nothing behind it
    b"\x0a\x05ab",                     # a one-byte length running past the end
    b"\x0a\x85\x01" + b"x" * 100,     # a two-byte length (133) running past the end
    b"\x0a\x03\x12\x05abc",           # a scope running past its resource
])
def test_unexpected_framing_falls_back_to_checking_each_item(data: bytes):
    """Bytes the framing reader cannot follow are an error it reports, never a silent skip."""
    with pytest.raises(framing.FramingError):
        framing.items(data)


def test_a_request_over_max_value_size_is_still_targeted():
    """Many small spans past max_value_size: clean goes on as it is, a secret only touches its span."""
    r = redactor(max_value_size="64KiB")
    request = _request(resources=1, spans=400)
    clean = Batch.from_wire(Signal.TRACES, request.SerializeToString())
    assert len(clean.wire) > 64 * 1024
    assert r(clean) is clean
    request.resource_spans[0].scope_spans[1].spans[399].attributes[0].value.string_value = SECRET
    out = r(Batch.from_wire(Signal.TRACES, request.SerializeToString())).settled()
    spans = out.message.resource_spans[0].scope_spans[1].spans
    assert plain(spans[399].attributes[0].value) == "[REDACTED:xai-api-key]"
    assert [i for i, span in enumerate(spans) if "redaction.masked.count" in attrs(span)] == [399]


def test_a_match_running_into_the_next_attribute_walks_only_its_own():
    """A secret ending a value bleeds into the next attribute's tag; that attribute is not walked for it.

    Its own secrets are still found: one right at the start of its value, and one in its key.
    """
    request = _request(resources=1, spans=3)
    span = request.resource_spans[0].scope_spans[0].spans[1]
    span.attributes[1].value.string_value = f"ends with {SECRET}"
    data = request.SerializeToString()
    regions = redactor().scanner.wire_regions(data)
    found = framing.layout(data, regions)
    assert framing.items_hit(data, found.entries, regions) == {(0, 0, 1): {9: {1}}}

    span.attributes[2].value.string_value = f"{SECRET} starts this one"
    span.attributes[3].key = "api_key"
    out = redactor()(Batch.from_wire(Signal.TRACES, request.SerializeToString())).settled()
    got = out.message.resource_spans[0].scope_spans[0].spans[1]
    assert SECRET.encode() not in out.serialized()
    assert attrs(got)["redaction.masked.keys"] == ["attributes.a1", "attributes.a2", "attributes.api_key"]
    assert plain(got.attributes[3].value) == "[REDACTED:sensitive-key]"


def _varint(number: int) -> bytes:
    out = b""
    while number >= 0x80:
        out += bytes((number & 0x7F | 0x80,))
        number >>= 7
    return out + bytes((number,))


def _tag(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _ld(field: int, payload: bytes) -> bytes:
    """One length-delimited field, written by hand (protobuf would move an unknown field to the end)."""
    return _tag(field, 2) + _varint(len(payload)) + payload


@pytest.mark.parametrize("walk", ["compiled", "python"])
@pytest.mark.parametrize("hyperscan", [True, False])
@pytest.mark.parametrize(("signal", "item_field", "stray"), [
    (Signal.TRACES, 9, b"\x48\x00"),    # span attributes, with a field 9 sent as a number ahead of them
    (Signal.TRACES, 11, b"\x58\x00"),   # span events
    (Signal.TRACES, 13, b"\x68\x00"),   # span links
    (Signal.LOGS, 6, b"\x30\x00"),      # record attributes
])
def test_a_field_of_another_wire_type_does_not_shift_the_indexes(  # noqa: PLR0917 - pytest parameters
        signal, item_field, stray, hyperscan, walk,
        monkeypatch):
    """protobuf keeps ``48 00`` apart as an unknown field: the framing must count only real occurrences.

    Counted, it made the secret in the one real attribute (event, link) index 1 of a list of one:
    the walk scanned nothing, and the secret left the processor in clear.
    """
    if walk == "python":
        monkeypatch.setattr(framing, "_parts_hit_c", None)
    kv = KeyValue(key="note", value=AnyValue(string_value=f"key {SECRET}")).SerializeToString()
    if item_field in {9, 6}:
        inner = kv
    elif item_field == 11:
        inner = Span.Event(name="e").SerializeToString() + _ld(3, kv)
    else:
        inner = Span.Link(trace_id=b"1" * 16, span_id=b"2" * 8).SerializeToString() + _ld(4, kv)
    if signal is Signal.TRACES:
        item = Span(name="s", trace_id=b"1" * 16, span_id=b"2" * 8).SerializeToString() + stray + _ld(item_field, inner)
        clean = Span(name="clean").SerializeToString()
    else:
        item = LogRecord(severity_text="INFO").SerializeToString() + stray + _ld(item_field, inner)
        clean = LogRecord(severity_text="clean").SerializeToString()
    wire = _ld(1, _ld(2, _ld(2, clean) + _ld(2, item)))  # spans or log_records (field 2 of their scope)
    out = Redactor(parse_config(FACTORY, {}), hyperscan=hyperscan)(Batch.from_wire(signal, wire)).serialized()
    assert SECRET.encode() not in out
    assert b"[REDACTED:xai-api-key]" in out


_HIDDEN = {  # a span's bytes -> what protobuf shows of them, with the secret where it does not look
    "the first of two names": lambda s: _ld(5, s) + Span(name="n").SerializeToString(),
    "an unknown field": lambda s: Span(name="n").SerializeToString() + _ld(100, s),
    "an unknown field of an attribute's value": lambda s: _ld(9, _ld(1, b"k") + _ld(2, _ld(1, b"v") + _ld(50, s))),
    "a oneof overwritten": lambda s: _ld(9, _ld(1, b"k") + _ld(2, _ld(1, s)) + _ld(2, _tag(3, 0) + b"\x01")),
    "a group": lambda s: _tag(9, 3) + _ld(1, s) + _tag(9, 4) + Span(name="n").SerializeToString(),
    "a length-delimited end time": lambda s: _ld(8, s) + Span(name="n").SerializeToString(),
}


@pytest.mark.parametrize("hyperscan", [True, False])
@pytest.mark.parametrize("where", sorted(_HIDDEN))
def test_a_secret_where_protobuf_does_not_show_it_never_goes_on(where, hyperscan):
    """Bytes the parsed span does not show may hold what the scan found: the span goes on as protobuf reads it."""
    item = _HIDDEN[where](SECRET.encode())
    wire = _ld(1, _ld(2, _ld(2, Span(name="clean").SerializeToString()) + _ld(2, item)))
    seen = ExportTraceServiceRequest.FromString(wire)
    assert SECRET not in str(seen), "protobuf shows nothing of it"
    out = Redactor(parse_config(FACTORY, {}), hyperscan=hyperscan)(Batch.from_wire(Signal.TRACES, wire)).serialized()
    assert SECRET.encode() not in out
    got = ExportTraceServiceRequest.FromString(out)
    seen.DiscardUnknownFields()
    _drop_summaries(got)  # (what was dropped is reported: the next test)
    assert got == seen  # what protobuf showed is what goes on


def _drop_summaries(request: ExportTraceServiceRequest) -> None:
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                kept = [kv for kv in span.attributes if not kv.key.startswith("redaction.")]
                del span.attributes[:]
                span.attributes.extend(kept)


@pytest.mark.parametrize("hyperscan", [True, False])
def test_a_secret_in_an_id_field_is_masked(hyperscan):
    """Ids are bytes a sender chooses: a trace, parent or link id holding a secret is masked like a value."""
    secret = SECRET.encode()
    request = _request(resources=1, spans=3)
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[0].trace_id = secret
    spans[1].parent_span_id = b"id " + secret
    spans[2].links.add(trace_id=b"1" * 16, span_id=secret)
    logs = ExportLogsServiceRequest()
    logs.resource_logs.add().scope_logs.add().log_records.add(trace_id=secret, severity_text="INFO")
    r = Redactor(parse_config(FACTORY, {}), hyperscan=hyperscan)
    for signal, message in ((Signal.TRACES, request), (Signal.LOGS, logs)):
        out = r(Batch.from_wire(signal, message.SerializeToString())).serialized()
        assert secret not in out
    got = r(Batch.from_wire(Signal.TRACES, request.SerializeToString())).settled().message
    spans = got.resource_spans[0].scope_spans[0].spans
    assert spans[0].trace_id == b"[REDACTED:xai-api-key]"
    assert attrs(spans[1])["redaction.masked.keys"] == ["parent_span_id"]
    assert attrs(spans[2])["redaction.masked.keys"] == ["links[0].span_id"]


@pytest.mark.parametrize("hyperscan", [True, False])
def test_the_whole_message_walk_drops_an_unknown_field_of_an_item_it_walks(hyperscan):
    """A resource hit sends the request down the whole-message walk: a walked span's unknown field goes too."""
    item = Span(name="n").SerializeToString() + _ld(100, SECRET.encode())
    resource = _ld(1, _ld(1, _ld(1, b"note") + _ld(2, _ld(1, f"key {SECRET}".encode()))))
    wire = _ld(1, resource + _ld(2, _ld(2, item)))
    out = Redactor(parse_config(FACTORY, {}), hyperscan=hyperscan)(Batch.from_wire(Signal.TRACES, wire)).serialized()
    assert SECRET.encode() not in out
    assert ExportTraceServiceRequest.FromString(out).resource_spans[0].scope_spans[0].spans[0].name == "n"


_SPAN = _ld(2, Span(name="n").SerializeToString())
_OUTSIDE = {  # a request's bytes with the secret outside every span, where protobuf does not show it
    "a resource's unknown field": lambda s: _ld(1, _ld(1, _ld(100, s)) + _ld(2, _SPAN)),
    "a scope's unknown field": lambda s: _ld(1, _ld(2, _ld(1, _ld(100, s)) + _SPAN)),
    "a scope group's unknown field": lambda s: _ld(1, _ld(2, _ld(100, s) + _SPAN)),
    "a resource group's unknown field": lambda s: _ld(1, _ld(100, s) + _ld(2, _SPAN)),
    "the request's unknown field": lambda s: _ld(100, s) + _ld(1, _ld(2, _SPAN)),
    "the first of two scope names": lambda s: _ld(1, _ld(2, _ld(1, _ld(1, s) + _ld(1, b"lib")) + _SPAN)),
}


@pytest.mark.parametrize("content", ["keep", "drop"])
@pytest.mark.parametrize("hyperscan", [True, False])
@pytest.mark.parametrize("where", sorted(_OUTSIDE))
def test_a_secret_protobuf_does_not_show_outside_the_spans_never_goes_on(where, hyperscan, content):
    """The whole-message walk: what goes on is what protobuf shows, whatever the hit's level."""
    wire = _OUTSIDE[where](SECRET.encode())
    seen = ExportTraceServiceRequest.FromString(wire)
    assert SECRET not in str(seen), "protobuf shows nothing of it"
    r = Redactor(parse_config(FACTORY, {"content": content}), hyperscan=hyperscan)
    out = r(Batch.from_wire(Signal.TRACES, wire)).serialized()
    assert SECRET.encode() not in out
    seen.DiscardUnknownFields()
    assert ExportTraceServiceRequest.FromString(out) == seen


@pytest.mark.parametrize("hyperscan", [True, False])
@pytest.mark.parametrize("where", sorted(set(_HIDDEN) - {"a group"}))  # (a group: the whole-message path)
def test_a_secret_where_protobuf_does_not_show_it_is_reported_where_it_was(where, hyperscan):
    """Dropped, but not unseen: the span's summary and the count name its rule, at ``hidden_bytes``."""
    item = _HIDDEN[where](SECRET.encode())
    wire = _ld(1, _ld(2, _ld(2, Span(name="clean").SerializeToString()) + _ld(2, item)))
    r = Redactor(parse_config(FACTORY, {}), hyperscan=hyperscan)
    out = ExportTraceServiceRequest.FromString(r(Batch.from_wire(Signal.TRACES, wire)).serialized())
    got = attrs(out.resource_spans[0].scope_spans[0].spans[1])
    assert (got["redaction.masked.rules"], got["redaction.masked.keys"]) == (["xai-api-key"], ["hidden_bytes"])
    assert dict(r.walker.tally) == {"xai-api-key": 1}


@pytest.mark.parametrize("hyperscan", [True, False])
@pytest.mark.parametrize(("span", "where"), [
    (_ld(5, SECRET.encode()) + _ld(100, b"nothing here"), "name"),
    # the review's case: in the raw bytes the key ends at an unknown field, re-encoded at the kind's
    # tag "0": a boundary only the raw bytes have must not count it twice
    (_tag(6, 0) + b"\x02" + _ld(5, b"AKIAIOSFODNN7EXAMPLE") + _ld(100, b"benign"), "name"),
])
def test_a_secret_protobuf_shows_beside_unknown_bytes_is_reported_once(span, where, hyperscan):
    """Benign unknown bytes are dropped from a hit span, and nothing is reported of them."""
    wire = _ld(1, _ld(2, _ld(2, span)))
    r = Redactor(parse_config(FACTORY, {}), hyperscan=hyperscan)
    out = ExportTraceServiceRequest.FromString(r(Batch.from_wire(Signal.TRACES, wire)).serialized())
    got = attrs(out.resource_spans[0].scope_spans[0].spans[0])
    assert got["redaction.masked.keys"] == [where]
    assert sum(r.walker.tally.values()) == 1
