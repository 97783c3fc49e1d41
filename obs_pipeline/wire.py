"""Protobuf wire bytes built by hand: varints, length-delimited fields, serialized OTLP attributes.

Why by hand: appending attributes to a span as bytes (one ``MergeFromString``) or splicing spans
into a request costs a fraction of building ``KeyValue`` objects one by one. Six hot paths do it
(redaction's splice and its in-place attributes, cost's and budget's span attributes, the tail
sampler's re-encoding, the audit exporter's string reader); they share these few functions so the
encoding is written and tested once. Only what they need is here: wire types LEN (2), VARINT (0)
and I64 (1), and one reader: where a plain string attribute's key and text lie (:func:`plain_string`).

The OTLP shapes (``opentelemetry/proto/common/v1/common.proto``): ``KeyValue`` is
``{1: key, 2: value}``; ``AnyValue`` is ``{1: string_value, 2: bool_value, 4: double_value, ...}``;
``Span.attributes`` is field 9.
"""

from __future__ import annotations

__all__ = [
    "SPAN_ATTRIBUTES", "any_bool", "any_string", "attribute", "double_attribute_prefix", "field", "key_value",
    "len_tag", "plain_string", "varint",
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


def plain_string(data: bytes, start: int = 0, end: int | None = None) -> tuple[int, int] | None:
    """``(key end, text start)`` of the ``KeyValue`` in ``data[start:end]`` when it is a key and a string, nothing else.

    The key is ``data[start + 2:key end]``, the string ``data[text start:end]``. Only the canonical
    encoding protobuf writes is read: ``0A <key length> key 12 <AnyValue length> 0A <string
    length> string``, a key under 128 bytes, each length the shortest varint. The bytes between key
    and string are a function of what follows the key alone (:func:`_string_header`), so one
    ``startswith`` checks them. Anything else gives None (the value first, a field twice, an
    unknown field, another kind of value): the caller parses those bytes, and what it reads here is
    then all that protobuf would show of them. The UTF-8 of key and string is not checked.
    """
    end = len(data) if end is None else end
    if end - start <= 2 or data[start] != 0x0A or data[start + 1] >= 0x80:
        return None
    key_end = start + 2 + data[start + 1]
    rest = end - key_end
    header = _HEADERS.get(rest)
    if header is None:
        if len(_HEADERS) >= _MAX_HEADERS:
            _HEADERS.clear()
        header = _HEADERS[rest] = _string_header(rest)
    if not header or not data.startswith(header, key_end):
        return None
    return key_end, key_end + len(header)


def _string_header(rest: int) -> bytes:
    """The bytes between a ``KeyValue``'s key and its string when ``rest`` bytes follow the key.

    ``12 <AnyValue length> 0A <string length>``: a function of ``rest`` alone, so it is computed
    once per length and remembered (:data:`_HEADERS`). ``b""`` when no string fits ``rest``.
    """
    for text in range(max(0, rest - 22), rest):
        inner = b"\x0a" + varint(text)
        outer = b"\x12" + varint(len(inner) + text)
        if len(outer) + len(inner) + text == rest:
            return outer + inner
    return b""


#: ``rest`` (bytes after the key) -> the header a string value of that size has.
_HEADERS: dict[int, bytes] = {}
_MAX_HEADERS = 8192
