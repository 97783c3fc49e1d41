"""``obs_pipeline.wire`` builds exactly the bytes the protobuf library builds, so merged bytes parse back."""

from __future__ import annotations

import struct

import pytest
from google.protobuf.internal.encoder import _VarintBytes  # the library's own varint encoder
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from obs_pipeline import wire


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16_383, 16_384, 2**21, 2**35 + 7, 2**63 - 1])
def test_varint_is_protobufs(value: int) -> None:
    assert wire.varint(value) == _VarintBytes(value)


def test_fields_and_tags() -> None:
    assert wire.len_tag(1) == b"\x0a"
    assert wire.len_tag(9) == b"\x4a"
    assert wire.len_tag(16) == b"\x82\x01"  # fields 16 and up take two bytes
    assert wire.field(2, b"x" * 200) == b"\x12" + _VarintBytes(200) + b"x" * 200


@pytest.mark.parametrize("text", ["", "USD", "é ✓ 🙂", "x" * 300])
def test_string_attribute_is_what_the_library_serializes(text: str) -> None:
    expected = Span(attributes=[KeyValue(key="budget.state", value=AnyValue(string_value=text))])
    assert wire.attribute("budget.state", wire.any_string(text)) == expected.SerializeToString()


def test_a_lone_surrogate_becomes_a_replacement_not_an_error() -> None:
    span = Span.FromString(wire.attribute("k", wire.any_string("a\ud800b")))
    assert span.attributes[0].value.string_value == "a?b"


@pytest.mark.parametrize("value", [True, False])
def test_bool_attribute(value: bool) -> None:
    expected = Span(attributes=[KeyValue(key="gen_ai.usage.cost.unpriced", value=AnyValue(bool_value=value))])
    # protobuf leaves a false boolean out of AnyValue; ours is explicit, and both parse to the same span.
    assert Span.FromString(wire.attribute("gen_ai.usage.cost.unpriced", wire.any_bool(value))) == expected


@pytest.mark.parametrize("value", [0.0, 0.0123, 1e300, -2.5])
def test_double_prefix_plus_the_value_is_the_attribute(value: float) -> None:
    raw = wire.double_attribute_prefix("budget.spend") + struct.pack("<d", value)
    expected = Span(attributes=[KeyValue(key="budget.spend", value=AnyValue(double_value=value))])
    assert raw == expected.SerializeToString()


def test_merged_attributes_append_to_a_span() -> None:
    """What cost and budget do: merge several built attributes into a parsed span in one call."""
    span = Span(name="chat", attributes=[KeyValue(key="a", value=AnyValue(int_value=1))])
    span.MergeFromString(wire.attribute("b", wire.any_string("x")) + wire.attribute("c", wire.any_bool(True)))
    assert [(kv.key, kv.value.WhichOneof("value")) for kv in span.attributes] == [
        ("a", "int_value"), ("b", "string_value"), ("c", "bool_value")]
    assert wire.key_value("k", wire.any_string("v")) == KeyValue(key="k", value=AnyValue(string_value="v")).SerializeToString()
