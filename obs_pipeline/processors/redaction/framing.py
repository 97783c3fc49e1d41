"""Where each span or log record lies in a request's wire bytes, read from the protobuf framing alone.

Why: when the batch's one wide RE2 search over the wire finds something, only the spans (or
log records) that the hits fall into need walking; walking all of a 100-span request to find the
two that hold a secret costs twenty times more. Reading tags and lengths three levels deep, no
parse: resources and scopes no hit touches are skipped by their length, the walk ends past the
last hit, and the splice rewrites only the length prefixes around the items it replaces.

The walks that run once per span (hopping over the spans before a hit, reading a hit span's
fields) are also compiled (``_framing.c``, built by ``pip install``; 0.65 µs a span in Python, a
few ns in C). The C walk answers only for well-formed bytes and otherwise hands over to its
Python twin here, which raises the precise error, so both give the same answers (tested side by
side on random and broken bytes); without a compiler the Python walks run alone.

Traces and logs share the shape: request field 1 (``resource_spans`` / ``resource_logs``) ->
field 2 (``scope_spans`` / ``scope_logs``) -> field 2 (``spans`` / ``log_records``).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Literal

from obs_pipeline.wire import varint

try:  # the same walks compiled (_framing.c), built by `pip install` where a C compiler is
    from obs_pipeline.processors.redaction._framing import parts_hit as _parts_hit_c
    from obs_pipeline.processors.redaction._framing import walk as _walk_c
except ImportError:  # pragma: no cover - a build without the extension: the Python walks alone
    _walk_c = _parts_hit_c = None  # type: ignore[assignment]

__all__ = [
    "AttributesField", "FramingError", "Hits", "Item", "Layout", "compiled", "fields", "items", "items_hit", "layout",
    "replace", "splice",
]

#: (resource index, scope index, item index) of one span or log record.
Item = tuple[int, int, int]
#: Items hit -> field number -> indexes of the occurrences of that field hit (None: all of it).
Hits = dict[Item, dict[int, set[int]] | None]
#: The field numbers walked: ``resource_*`` in a request, ``scope_*`` and the items below.
Field = Literal[1, 2]
#: An item's attributes (:func:`fields`): 9 in a span, 6 in a log record.
AttributesField = Literal[6, 9]
#: What the framing walks take: a request level, or an item's attributes.
Wanted = Field | AttributesField
#: Byte ranges, ``(start, end)``.
Regions = list[tuple[int, int]]
_MAX_VARINT_SHIFT = 63


class FramingError(ValueError):
    """The bytes are not framed as expected: the caller checks every item instead."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    if first < 0x80:  # one byte: the common case
        return first, pos + 1
    second = data[pos + 1]
    if second < 0x80:  # two bytes: lengths up to 16 KiB
        return (first & 0x7F) | (second << 7), pos + 2
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > _MAX_VARINT_SHIFT:
            raise FramingError("varint too long")


@dataclass(frozen=True, slots=True)
class Layout:
    """The items found, in wire order, and where the framing of each item and its parents lies.

    A frame is ``(first byte of the length prefix, first byte of the value, end)``: what
    :func:`splice` rewrites by byte range. ``frames`` holds those of the resources ``(r,)`` and
    scopes ``(r, s)`` walked, ``children`` those of each walked scope's items listed, by index.
    """

    entries: list[tuple[int, int, Item]]
    frames: dict[tuple[int, ...], tuple[int, int, int]]
    children: dict[tuple[int, int], dict[int, tuple[int, int, int]]]

    def frame(self, key: tuple[int, ...]) -> tuple[int, int, int]:
        """The frame of a resource, scope or item (KeyError: not walked)."""
        if len(key) == 3:  # an item: (resource, scope, index)
            return self.children[key[0], key[1]][key[2]]
        return self.frames[key]


def compiled() -> bool:
    """Whether the compiled walks are here (they answer alone for well-formed bytes)."""
    return _walk_c is not None


def _walk(data: bytes, start: int, end: int, wanted: Wanted, stop: int,  # noqa: PLR0917 - the C signature
          regions: Regions | None) -> list[tuple[int, int, int, int]]:
    """``(index, length prefix, value start, value end)`` of the fields ``wanted`` that a region touches.

    Those in ``data[start:end]`` up to ``stop`` that any of ``regions`` touches (:func:`_touched`;
    None: every one). The compiled walk when it is here and the bytes are well formed; else :func:`_walk_py`, which
    also says what is wrong.
    """
    if _walk_c is not None and (found := _walk_c(data, start, end, wanted, stop, regions)) is not None:
        return found
    return _walk_py(data, start, end, wanted, stop, regions)


def _walk_py(data: bytes, start: int, end: int, wanted: Wanted, stop: int,  # noqa: PLR0917 - as _walk
             regions: Regions | None) -> list[tuple[int, int, int, int]]:
    """:func:`_walk` in Python: the reference the compiled walk must agree with."""
    return [(i, *frame) for i, frame in enumerate(_children_py(data, start, end, wanted, stop))
            if regions is None or _touched(regions, frame)]


def _children_py(data: bytes, start: int, end: int, wanted: Wanted, stop: int) -> list[tuple[int, int, int]]:
    """``(length prefix, value start, value end)`` of each field ``wanted``, in Python.

    Fields are skipped by their length, and the walk ends at the first field that starts past
    ``stop`` (nothing beyond it is looked at). The compiled walk does the hot path; this one is
    the plain reference (and the walk where nothing compiled), with the one-byte varints inline.
    """
    out: list[tuple[int, int, int]] = []
    pos = start
    while pos < end and pos <= stop:
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:  # a tag of more than one byte (fields 16 and up)
            tag, pos = _varint(data, pos)
        wire_type = tag & 7
        if wire_type == 2:
            length_start = pos
            length = data[pos]
            if length < 0x80:
                pos += 1
            elif data[pos + 1] < 0x80:  # two bytes: up to 16 KiB, most spans
                length = (length & 0x7F) | (data[pos + 1] << 7)
                pos += 2
            else:
                length, pos = _varint(data, pos)
            value_start = pos
            pos += length
            if tag >> 3 == wanted:
                out.append((length_start, value_start, pos))
        elif tag >> 3 == wanted:
            raise FramingError(f"wire type {wire_type} for a message field")
        elif wire_type == 0:
            _, pos = _varint(data, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        else:
            raise FramingError(f"wire type {wire_type}")
        if pos > end:
            raise FramingError("field runs past its parent")
    return out


def layout(data: bytes, regions: list[tuple[int, int]] | None = None) -> Layout:
    """The items of a traces or logs request, all of them, or only those that ``regions`` touch.

    With ``regions`` (byte ranges), a resource or scope that no region touches is skipped by its
    length, the walk stops past the last region, and the items listed are those a region
    touches (ends included): all that :func:`items_hit`, the "inside one item" check and
    :func:`splice` need. The bytes past the last region are not looked at (the wide search found
    nothing there), and the spans before a hit in its scope are hopped over, not listed.

    Raises:
        FramingError: the bytes walked are not a request of that shape.
    """
    size = len(data)
    spans = [(0, size)] if regions is None else regions
    stop = max((end for _, end in spans), default=-1)
    entries: list[tuple[int, int, Item]] = []
    frames: dict[tuple[int, ...], tuple[int, int, int]] = {}
    children: dict[tuple[int, int], dict[int, tuple[int, int, int]]] = {}
    try:
        for r, prefix, start, end in _walk(data, 0, size, 1, stop, spans):  # resources a region touches
            frames[r,] = (prefix, start, end)
            for s, scope_prefix, scope_start, scope_end in _walk(data, start, end, 2, stop, spans):
                frames[r, s] = (scope_prefix, scope_start, scope_end)
                found = _walk(data, scope_start, scope_end, 2, stop, spans)
                children[r, s] = {i: (item_prefix, a, b) for i, item_prefix, a, b in found}
                entries += [(a, b, (r, s, i)) for i, _, a, b in found]
    except IndexError as exc:
        raise FramingError("truncated") from exc
    return Layout(entries, frames, children)


def fields(data: bytes, number: AttributesField) -> list[tuple[int, int, int]]:
    """The frame ``(length prefix, value start, end)`` of each occurrence of field ``number`` in a message's bytes.

    Raises:
        FramingError: the bytes are not framed as protobuf, or an occurrence of ``number`` is not
            length-delimited (protobuf keeps it apart, as an unknown field).
    """
    try:
        return [(prefix, start, end) for _, prefix, start, end in _walk(data, 0, len(data), number, len(data), None)]
    except IndexError as exc:
        raise FramingError("truncated") from exc


def _touched(spans: list[tuple[int, int]], frame: tuple[int, int, int]) -> bool:
    """Whether any range meets the value of ``frame`` (ends included: an empty range counts)."""
    _, start, end = frame
    return any(span_start <= end and span_end >= start for span_start, span_end in spans)


def items(data: bytes) -> list[tuple[int, int, Item]]:
    """``(start, end, item)`` of every span or log record of a traces or logs request, in order.

    Raises:
        FramingError: the bytes are not a request of that shape.
    """
    return layout(data).entries


def items_hit(data: bytes, layout: list[tuple[int, int, Item]],
              regions: list[tuple[int, int]]) -> Hits:
    """The items that any of ``regions`` (byte ranges) overlaps, and in each the fields it overlaps.

    The fields are given as field number -> the indexes of the occurrences hit (for a repeated
    field such as a span's ``attributes``, field 9, the indexes of the attributes).

    Raises:
        FramingError: an item's bytes are not framed as protobuf.
    """
    starts = [start for start, _, _ in layout]
    hit: dict[Item, list[tuple[int, int]]] = {}
    bounds: dict[Item, tuple[int, int]] = {}
    for region in regions:
        region_start, region_end = region
        k = max(0, bisect_right(starts, region_start) - 1)
        while k < len(layout) and layout[k][0] < region_end:
            start, end, item = layout[k]
            if end > region_start:
                hit.setdefault(item, []).append(region)
                bounds[item] = (start, end)
            k += 1
    return {item: _parts_hit(data, *bounds[item], item_regions) for item, item_regions in hit.items()}


def _parts_hit(data: bytes, start: int, end: int, regions: list[tuple[int, int]]) -> dict[int, set[int]]:
    """Field number -> indexes of its occurrences that a region overlaps, in one item (see :func:`_parts_hit_py`)."""
    if _parts_hit_c is not None and (parts := _parts_hit_c(data, start, end, regions)) is not None:
        return parts
    return _parts_hit_py(data, start, end, regions)


def _parts_hit_py(data: bytes, start: int, end: int, regions: list[tuple[int, int]]) -> dict[int, set[int]]:
    """Field number -> indexes of its occurrences that a region overlaps, in one item.

    A length-delimited field counts when a region overlaps its value, not only its tag and length:
    a wide match that runs on from the end of one string (``...sk-proj-abc`` then the next
    attribute's tag ``J`` and length byte, both alphanumeric) says nothing of the next field,
    whose own secrets the wide search would have found on their own (a match overlapping them or
    starting in them), so only the field it started in is walked. Only length-delimited fields
    are counted: an occurrence of another wire type (``48 00``, field 9 as a number, in a span)
    is kept apart by protobuf as an unknown field, so counting it would shift the indexes of the
    field's real occurrences and the walk would scan the wrong attribute. Every field of the
    item is read (its framing is checked to the end), in one loop with the short varints inline.
    """
    parts: dict[int, set[int]] = {}
    seen: dict[int, int] = {}
    pos = start
    try:
        while pos < end:
            counted_from = pos  # where a region must end past for the field to count
            tag = data[pos]
            if tag < 0x80:
                pos += 1
            else:
                tag, pos = _varint(data, pos)
            wire_type = tag & 7
            if wire_type == 2:
                length = data[pos]
                if length < 0x80:
                    pos += 1
                else:
                    length, pos = _varint(data, pos)
                counted_from = pos
                pos += length
            elif wire_type == 0:
                _, pos = _varint(data, pos)
            elif wire_type == 1:
                pos += 8
            elif wire_type == 5:
                pos += 4
            else:
                raise FramingError(f"wire type {wire_type}")
            if wire_type != 2:
                continue  # no occurrence of a repeated message or string field (see above)
            field = tag >> 3
            index = seen.get(field, 0)
            seen[field] = index + 1
            for region_start, region_end in regions:
                if region_start < pos and region_end > counted_from:
                    parts.setdefault(field, set()).add(index)
                    break
    except IndexError as exc:
        raise FramingError("truncated") from exc
    if pos != end:
        raise FramingError("field runs past its parent")
    return parts


def splice(data: bytes, found: Layout, replaced: dict[Item, bytes]) -> bytes:
    """``data`` with the given items' bytes replaced, every enclosing length prefix rewritten.

    By byte range: each replaced item's length prefix and bytes, and the length prefixes of its
    scope and resource, are the only pieces written; everything between them is copied as one
    slice. ``found`` must list every item replaced (any :func:`layout` that found them does).
    """
    if not replaced:
        return data
    frame = found.frame
    edits: list[tuple[int, int, bytes]] = []
    # How much each scope, then each resource, grows: its items' new bytes and length prefixes,
    # then (for a resource) its scopes' new length prefixes.
    grown: dict[tuple[int, ...], int] = {}
    for item, new in replaced.items():
        length_start, _start, end = frame(item)
        framed = varint(len(new)) + new
        edits.append((length_start, end, framed))
        grown[item[:2]] = grown.get(item[:2], 0) + len(framed) - (end - length_start)
    for scope, delta in list(grown.items()):
        length_start, start, end = frame(scope)
        prefix = varint(end - start + delta)
        edits.append((length_start, start, prefix))
        resource = scope[:1]
        grown[resource] = grown.get(resource, 0) + delta + len(prefix) - (start - length_start)
    for resource in {item[:1] for item in replaced}:
        length_start, start, end = frame(resource)
        edits.append((length_start, start, varint(end - start + grown[resource])))
    edits.sort(key=_first)
    return replace(data, edits)


def replace(data: bytes, edits: list[tuple[int, int, bytes]], tail: bytes = b"") -> bytes:
    """``data`` with each ``[start, end)`` of ``edits`` (in order, apart) replaced by its bytes, then ``tail``.

    The untouched runs are copied once, by the join.
    """
    view = memoryview(data)
    pieces: list[bytes | memoryview] = []
    cursor = 0
    for start, end, new in edits:
        pieces += (view[cursor:start], new)
        cursor = end
    pieces += (view[cursor:], tail)
    return b"".join(pieces)


def _first(edit: tuple[int, int, bytes]) -> int:
    return edit[0]
