"""Protobuf wire bytes built by hand: varints, length-delimited fields, serialized OTLP attributes.

Why by hand: appending attributes to a span as bytes (one ``MergeFromString``) or splicing spans
into a request costs a fraction of building ``KeyValue`` objects one by one. Five hot paths do it
(redaction's splice, cost's and budget's span attributes, the tail sampler's re-encoding, the
audit exporter's string reader); they share these few functions so the encoding is written and
tested once. Only what they need is here: wire types LEN (2), VARINT (0) and I64 (1).

The OTLP shapes (``opentelemetry/proto/common/v1/common.proto``): ``KeyValue`` is
``{1: key, 2: value}``; ``AnyValue`` is ``{1: string_value, 2: bool_value, 4: double_value, ...}``;
``Span.attributes`` is field 9.
"""

from __future__ import annotations

__all__ = [
    "SPAN_ATTRIBUTES", "any_bool", "any_string", "attribute", "double_attribute_prefix", "field", "key_value",
    "len_tag", "varint",
]

#: ``Span.attributes`` (trace.proto): the field whose entries a span's attribute bytes are.
SPAN_ATTRIBUTES = 9
_DOUBLE_TAG = b"\x21"  # AnyValue.double_value: field 4, wire type I64
#: One-byte varints, prebuilt: most lengths and every small tag.
_SMALL = tuple(bytes((n,)) for n in range(0x80))


def varint(value: int) -> bytes:
    """``value`` (0 or more) as a protobuf varint: 7 bits a byte, low bits first."""
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def len_tag(number: int) -> bytes:
    """The tag of field ``number`` with wire type LEN (a string, bytes or a message)."""
    return varint(number << 3 | 2)


def field(number: int, payload: bytes) -> bytes:
    """Field ``number`` holding ``payload`` (LEN): tag, length, bytes."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def any_string(text: str) -> bytes:
    """A serialized ``AnyValue`` holding ``text`` (a lone surrogate, which UTF-8 cannot hold, becomes ``?``)."""
    return field(1, text.encode("utf-8", "replace"))


def any_bool(value: bool) -> bytes:
    """A serialized ``AnyValue`` holding a boolean."""
    return b"\x10\x01" if value else b"\x10\x00"


def key_value(key: str, any_value: bytes) -> bytes:
    """A serialized ``KeyValue`` of ``key`` and a serialized ``AnyValue``."""
    return field(1, key.encode("utf-8", "replace")) + field(2, any_value)


def attribute(key: str, any_value: bytes, number: int = SPAN_ATTRIBUTES) -> bytes:
    """One entry of a repeated ``KeyValue`` field (a span's attributes by default), ready to merge."""
    return field(number, key_value(key, any_value))


def double_attribute_prefix(key: str, number: int = SPAN_ATTRIBUTES) -> bytes:
    """:func:`attribute` of ``key`` = a double, without the value's 8 bytes.

    Callers cache it per key and add ``struct.pack("<d", value)`` per value: the hot path is one
    concatenation.
    """
    return attribute(key, _DOUBLE_TAG + bytes(8), number)[:-8]
