"""One bad value never costs the batch: invalid UTF-8 and too-deep AnyValues are repaired, not refused.

Driven through real gRPC and HTTP servers on loopback. The requests are built with protobuf and
then broken at the byte level (a placeholder of the same length is overwritten), since protobuf
itself will not serialize an invalid UTF-8 string.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogsData
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from obs_pipeline.signals import Signal
from obs_pipeline.testing import CapturingConsumer
from tests.receivers.conftest import sample
from tests.receivers.test_otlp_grpc import TRACE_EXPORT, channel_to
from tests.receivers.test_otlp_grpc import running as running_grpc
from tests.receivers.test_otlp_http import PROTOBUF, post
from tests.receivers.test_otlp_http import running as running_http

# Protobuf's nesting limit: the root message is level 0, a message at level 101 is refused.
LIMIT = 100
# Where the first AnyValue of a span attribute sits:
# TracesData 0 > ResourceSpans 1 > ScopeSpans 2 > Span 3 > KeyValue 4 > AnyValue 5.
SPAN_ATTRIBUTE_DEPTH = 5
TRUNCATED = f"[truncated: nested deeper than protobuf's {LIMIT} message levels]"


def nested_arrays(levels: int, leaf: str = "leaf") -> AnyValue:
    """``levels`` arrays, each holding the next, around a string."""
    value = AnyValue(string_value=leaf)
    for _ in range(levels):
        outer = AnyValue()
        outer.array_value.values.add().CopyFrom(value)
        value = outer
    return value


def nested_kvlists(levels: int, leaf: str = "leaf") -> AnyValue:
    """``levels`` kvlists ``{"k": ...}``, each holding the next, around a string."""
    value = AnyValue(string_value=leaf)
    for _ in range(levels):
        outer = AnyValue()
        outer.kvlist_value.values.add(key="k").value.CopyFrom(value)
        value = outer
    return value


def traces(*attributes: tuple[str, AnyValue], names: tuple[str, ...] = ("first", "second", "third")) -> TracesData:
    data = TracesData()
    rs = data.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "svc-XX"
    scope = rs.scope_spans.add()
    for i, name in enumerate(names):
        span = scope.spans.add(name=name, trace_id=b"\x01" * 16, span_id=(i + 1).to_bytes(8, "big"))
        if i == 0:
            for key, value in attributes:
                span.attributes.add(key=key).value.CopyFrom(value)
    return data


def break_utf8(wire: bytes, placeholder: bytes = b"XX", count: int = -1) -> bytes:
    """``wire`` with each ``placeholder`` overwritten by two bytes that are not UTF-8 (same length)."""
    assert placeholder in wire
    return wire.replace(placeholder, b"\xff\xfe", count)


def spans(message) -> list:
    return [s for rs in message.resource_spans for ss in rs.scope_spans for s in ss.spans]


def attrs(span) -> dict[str, AnyValue]:
    return {kv.key: kv.value for kv in span.attributes}


def descend(value: AnyValue) -> tuple[int, AnyValue]:
    """Follow single-element arrays/kvlists down; return how many levels and the value found there."""
    levels = 0
    while True:
        kind = value.WhichOneof("value")
        if kind == "array_value":
            value = value.array_value.values[0]
        elif kind == "kvlist_value":
            value = value.kvlist_value.values[0].value
        else:
            return levels, value
        levels += 1


def repaired(metrics, transport: str, reason: str, signal: str = "traces") -> float:
    return sample(metrics, "receiver_repaired_values", receiver="otlp", transport=transport, signal=signal,
                  reason=reason)


class TestGrpc:
    async def test_invalid_utf8_is_repaired_and_the_batch_kept(self, metrics):
        """Invalid UTF-8 in a span name, an attribute key, a string value and the resource becomes U+FFFD."""
        good = traces(("tool-XX", AnyValue(string_value="out-XX")), ("fine", AnyValue(int_value=7)),
                      names=("call-XX", "second", "third"))
        wire = break_utf8(good.SerializeToString())
        consumer = CapturingConsumer()
        async with running_grpc({Signal.TRACES: consumer}, metrics) as receiver, channel_to(receiver) as channel:
            await channel.unary_unary(TRACE_EXPORT)(wire)
        (batch,) = consumer.batches
        first, second, third = spans(batch.message)
        assert first.name == "call-\ufffd\ufffd"
        assert {k: v.WhichOneof("value") for k, v in attrs(first).items()} == {
            "tool-\ufffd\ufffd": "string_value", "fine": "int_value"}
        assert attrs(first)["tool-\ufffd\ufffd"].string_value == "out-\ufffd\ufffd"
        assert attrs(first)["fine"].int_value == 7
        assert (second.name, third.name) == ("second", "third")
        assert first.trace_id == b"\x01" * 16
        resource = batch.message.resource_spans[0].resource
        assert resource.attributes[0].value.string_value == "svc-\ufffd\ufffd"
        assert batch.wire != wire  # never the request bytes: they are not what the message holds
        assert repaired(metrics, "grpc", "invalid_utf8") == 4
        assert repaired(metrics, "grpc", "too_deep") == 0
        assert sample(metrics, "receiver_accepted_items", receiver="otlp", transport="grpc", signal="traces") == 3
        assert sample(metrics, "receiver_malformed_requests", receiver="otlp", transport="grpc") == 0

    async def test_too_deep_any_value_is_truncated_at_the_limit(self, metrics):
        """A 60-level array attribute keeps the 47 levels protobuf can hold; the rest becomes a marker."""
        data = traces(("deep", nested_arrays(60)), ("kept", AnyValue(string_value="yes")))
        wire = data.SerializeToString()
        with pytest.raises(Exception, match="MaxDepth"):
            TracesData.FromString(wire)  # the strict parse refuses it: this is what the receiver gets
        consumer = CapturingConsumer()
        async with running_grpc({Signal.TRACES: consumer}, metrics) as receiver, channel_to(receiver) as channel:
            await channel.unary_unary(TRACE_EXPORT)(wire)
        (batch,) = consumer.batches
        first = spans(batch.message)[0]
        levels, found = descend(attrs(first)["deep"])
        # AnyValues sit at depth 5, 7, 9, ...: the one at 99 cannot hold an array (its values would be
        # at 101), so it is the one replaced.
        assert SPAN_ATTRIBUTE_DEPTH + 2 * levels == LIMIT - 1
        assert levels == 47
        assert found.string_value == TRUNCATED
        assert attrs(first)["kept"].string_value == "yes"
        assert len(spans(batch.message)) == 3
        assert batch.wire is None or TracesData.FromString(batch.wire) == batch.message
        assert repaired(metrics, "grpc", "too_deep") == 1

    async def test_kvlist_nesting_is_cut_where_protobuf_stops(self, metrics):
        """kvlists cost three levels each: 31 fit under a span attribute, the 32nd is the marker."""
        data = traces(("deep", nested_kvlists(40)))
        consumer = CapturingConsumer()
        async with running_grpc({Signal.TRACES: consumer}, metrics) as receiver, channel_to(receiver) as channel:
            await channel.unary_unary(TRACE_EXPORT)(data.SerializeToString())
        levels, found = descend(attrs(spans(consumer.messages[0])[0])["deep"])
        assert levels == 31
        assert SPAN_ATTRIBUTE_DEPTH + 3 * levels == LIMIT - 2
        assert found.string_value == TRUNCATED

    async def test_deepest_legal_nesting_is_not_cut_when_only_utf8_is_wrong(self, metrics):
        """The fallback cuts only what protobuf cannot hold: 47 array levels stay whole."""
        data = traces(("deep", nested_arrays(47, leaf="bottom")), names=("bad-XX", "b", "c"))
        wire = break_utf8(data.SerializeToString())
        consumer = CapturingConsumer()
        async with running_grpc({Signal.TRACES: consumer}, metrics) as receiver, channel_to(receiver) as channel:
            await channel.unary_unary(TRACE_EXPORT)(wire)
        first = spans(consumer.messages[0])[0]
        assert first.name == "bad-\ufffd\ufffd"
        assert descend(attrs(first)["deep"]) == (47, AnyValue(string_value="bottom"))
        assert repaired(metrics, "grpc", "too_deep") == 0

    async def test_invalid_utf8_inside_a_nested_value_and_a_deep_value_together(self, metrics):
        """Repairs inside kvlists nested in arrays, and a cut, in one request; both are counted."""
        inner = AnyValue()
        inner.kvlist_value.values.add(key="key-XX").value.string_value = "val-XX"
        holder = AnyValue()
        holder.array_value.values.add().CopyFrom(inner)
        data = traces(("nested", holder), ("deep", nested_arrays(80)))
        wire = break_utf8(data.SerializeToString())
        consumer = CapturingConsumer()
        async with running_grpc({Signal.TRACES: consumer}, metrics) as receiver, channel_to(receiver) as channel:
            await channel.unary_unary(TRACE_EXPORT)(wire)
        first = spans(consumer.messages[0])[0]
        kv = attrs(first)["nested"].array_value.values[0].kvlist_value.values[0]
        assert (kv.key, kv.value.string_value) == ("key-\ufffd\ufffd", "val-\ufffd\ufffd")
        assert descend(attrs(first)["deep"])[1].string_value == TRUNCATED
        assert repaired(metrics, "grpc", "invalid_utf8") == 3  # the two nested strings and service.name
        assert repaired(metrics, "grpc", "too_deep") == 1

    async def test_big_request_is_repaired_in_a_worker_thread(self, metrics, monkeypatch):
        """A request over lenient.THREAD_THRESHOLD is repaired off the event loop, with the same result."""
        from obs_pipeline.receivers.otlp import lenient  # noqa: PLC0415

        threads: list[str] = []
        real_decode = lenient.decode

        def recording_decode(signal, payload):
            import threading  # noqa: PLC0415

            threads.append(threading.current_thread().name)
            return real_decode(signal, payload)

        monkeypatch.setattr(lenient, "decode", recording_decode)
        names = (*(f"span-{i:05d}-" + "p" * 40 for i in range(6000)), "last-XX")
        wire = break_utf8(traces(names=names).SerializeToString())
        assert len(wire) > lenient.THREAD_THRESHOLD
        consumer = CapturingConsumer()
        async with running_grpc({Signal.TRACES: consumer}, metrics, max_recv_msg_size="8MiB") as receiver, \
                channel_to(receiver) as channel:
            await channel.unary_unary(TRACE_EXPORT)(wire)
        assert consumer.items == 6001
        assert spans(consumer.messages[0])[-1].name == "last-\ufffd\ufffd"
        assert len(threads) == 1
        assert threads[0] != "MainThread"

    async def test_what_is_not_protobuf_is_still_invalid_argument(self, metrics):
        """A truncated request is not repairable: INVALID_ARGUMENT, counted as malformed, nothing repaired."""
        wire = break_utf8(traces(names=("a-XX", "b", "c")).SerializeToString())[:-3]
        async with running_grpc({Signal.TRACES: CapturingConsumer()}, metrics) as receiver, \
                channel_to(receiver) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await channel.unary_unary(TRACE_EXPORT)(wire)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            # and a good request after it still goes through the fast path
            await trace_service_pb2_grpc.TraceServiceStub(channel).Export(traces())
        assert sample(metrics, "receiver_malformed_requests", receiver="otlp", transport="grpc") == 1
        assert repaired(metrics, "grpc", "invalid_utf8") == 0

    async def test_a_good_request_keeps_its_wire_bytes(self, metrics):
        """The fast path is unchanged: a request the strict parse takes carries its own bytes on."""
        wire = traces().SerializeToString()
        consumer = CapturingConsumer()
        async with running_grpc({Signal.TRACES: consumer}, metrics) as receiver, channel_to(receiver) as channel:
            await channel.unary_unary(TRACE_EXPORT)(wire)
        assert consumer.batches[0].wire == wire


class TestHttp:
    async def test_protobuf_body_with_invalid_utf8_is_200_and_repaired(self, metrics):
        """OTLP/HTTP protobuf: the same repair; the answer is 200."""
        wire = break_utf8(traces(names=("x-XX", "y", "z")).SerializeToString(), count=1)
        consumer = CapturingConsumer()
        async with running_http({Signal.TRACES: consumer}, metrics) as (_receiver, session):
            answer = await post(session, "/v1/traces", wire, PROTOBUF)
        assert answer.status == 200
        (batch,) = consumer.batches
        assert batch.message.resource_spans[0].resource.attributes[0].value.string_value == "svc-\ufffd\ufffd"
        assert [s.name for s in spans(batch.message)] == ["x-XX", "y", "z"]
        assert batch.wire != wire
        assert repaired(metrics, "http", "invalid_utf8") == 1

    async def test_deep_log_body_is_truncated(self, metrics):
        """A log body nested past the limit is cut; the record and its neighbours arrive."""
        data = LogsData()
        scope = data.resource_logs.add().scope_logs.add()
        scope.log_records.add().body.CopyFrom(nested_arrays(70))
        scope.log_records.add().body.string_value = "next"
        consumer = CapturingConsumer()
        async with running_http({Signal.LOGS: consumer}, metrics) as (_receiver, session):
            answer = await post(session, "/v1/logs", data.SerializeToString(), PROTOBUF)
        assert answer.status == 200
        records = consumer.messages[0].resource_logs[0].scope_logs[0].log_records
        # LogsData 0 > ResourceLogs 1 > ScopeLogs 2 > LogRecord 3 > body 4: AnyValues at 4, 6, ..., 100;
        # the one at 100 may hold a string but no array.
        assert descend(records[0].body) == (48, AnyValue(string_value=TRUNCATED))
        assert records[1].body.string_value == "next"
        assert repaired(metrics, "http", "too_deep", signal="logs") == 1

    async def test_garbage_is_still_400(self, metrics):
        """Bytes that are not protobuf at all stay a 400."""
        async with running_http({Signal.TRACES: CapturingConsumer()}, metrics) as (_receiver, session):
            answer = await post(session, "/v1/traces", b"\x0a\xff\xff\xff\xff\x0f", PROTOBUF)
        assert answer.status == 400
        assert answer.status_message().code == 3


class TestDecodeDirectly:
    def test_marker_names_the_limit(self):
        from obs_pipeline.receivers.otlp import lenient  # noqa: PLC0415

        assert (lenient.TRUNCATED, lenient.MAX_DEPTH) == (TRUNCATED, LIMIT)

    def test_large_body_with_one_bad_string_keeps_every_span(self):
        """5,000 spans with one bad name: every span is kept, one repair is counted."""
        from obs_pipeline.receivers.otlp import lenient  # noqa: PLC0415

        data = traces(names=(*(f"span-{i}" for i in range(4999)), "bad-XX"))
        result = lenient.decode(Signal.TRACES, break_utf8(data.SerializeToString()))
        assert len(spans(result.message)) == 5000
        assert spans(result.message)[-1].name == "bad-\ufffd\ufffd"
        assert result.repairs == {"invalid_utf8": 2}  # the span name and service.name
        assert TracesData.FromString(result.wire) == result.message

    @pytest.mark.parametrize("wire", [b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x05ab"])
    def test_not_protobuf_raises_decode_error(self, wire):
        from obs_pipeline.receivers.otlp import lenient  # noqa: PLC0415

        with pytest.raises(DecodeError):
            lenient.decode(Signal.TRACES, wire)
