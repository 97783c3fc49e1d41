"""The fast framing walk and byte-range splice give exactly what the first, whole-request ones gave.

The reference below is the first implementation (every field of every span visited, then every
field again to rebuild the request), kept here verbatim in substance: on random requests (several
resources and scopes, empty spans, one-, two- and three-byte lengths, hits in the first and the
last span, hits between spans), the items hit, the "every hit inside one item" answer and the
spliced bytes must be the same.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Iterator

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from obs_pipeline.processors.redaction import framing
from obs_pipeline.wire import len_tag, varint

Item = tuple[int, int, int]
_CHILD_FIELD = (1, 2, 2)


@pytest.fixture(autouse=True, params=["compiled", "python"])
def walks(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with the compiled walks (_framing.c) and with the Python ones alone."""
    if request.param == "python":
        monkeypatch.setattr(framing, "_walk_c", None)
        monkeypatch.setattr(framing, "_parts_hit_c", None)
    else:
        assert framing.compiled(), "the C extension was not built: `pip install -e .` needs a C compiler (setup.py)"
    return str(request.param)


# --- the reference: the first implementation -------------------------------------------------

def _ref_all_fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    pos = start
    try:
        while pos < end:
            tag_start = pos
            tag, pos = _ref_varint(data, pos)
            field, wire_type = tag >> 3, tag & 7
            value_start = pos
            if wire_type == 2:
                length, value_start = _ref_varint(data, pos)
                pos = value_start + length
            elif wire_type == 0:
                _, pos = _ref_varint(data, pos)
            elif wire_type == 1:
                pos += 8
            elif wire_type == 5:
                pos += 4
            else:
                raise framing.FramingError(f"wire type {wire_type}")
            yield field, tag_start, value_start, pos
    except IndexError as exc:
        raise framing.FramingError("truncated") from exc
    if pos != end:
        raise framing.FramingError("field runs past its parent")


def _ref_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _ref_fields(data: bytes, start: int, end: int, wanted: int) -> Iterator[tuple[int, int]]:
    for field, _tag, value_start, value_end in _ref_all_fields(data, start, end):
        if field == wanted:
            yield value_start, value_end


def ref_items(data: bytes) -> list[tuple[int, int, Item]]:
    out: list[tuple[int, int, Item]] = []
    for r, (rs_start, rs_end) in enumerate(_ref_fields(data, 0, len(data), 1)):
        for s, (ss_start, ss_end) in enumerate(_ref_fields(data, rs_start, rs_end, 2)):
            out.extend((start, end, (r, s, i)) for i, (start, end) in enumerate(_ref_fields(data, ss_start, ss_end, 2)))
    return out


def ref_can_splice(layout: list[tuple[int, int, Item]], regions: list[tuple[int, int]]) -> bool:
    starts = [start for start, _, _ in layout]
    for region_start, region_end in regions:
        k = bisect_right(starts, region_start) - 1
        if k < 0 or region_end > layout[k][1]:
            return False
    return True


def ref_splice(data: bytes, replaced: dict[Item, bytes]) -> bytes:
    out = _ref_rebuild(data, 0, len(data), 0, (), replaced=replaced)
    return data if out is None else out


def _ref_rebuild(data: bytes, start: int, end: int, depth: int, path: tuple[int, ...], *,
                 replaced: dict[Item, bytes]) -> bytes | None:
    wanted = _CHILD_FIELD[depth]
    pieces: list[bytes] = []
    cursor = start
    index = -1
    for field, tag_start, value_start, value_end in _ref_all_fields(data, start, end):
        if field != wanted:
            continue
        index += 1
        key = (*path, index)
        if depth == len(_CHILD_FIELD) - 1:
            new = replaced.get(key)  # type: ignore[call-overload]
        else:
            new = _ref_rebuild(data, value_start, value_end, depth + 1, key, replaced=replaced)
        if new is None:
            continue
        pieces += [data[cursor:tag_start], len_tag(wanted), varint(len(new)), new]
        cursor = value_end
    if not pieces:
        return None
    pieces.append(data[cursor:end])
    return b"".join(pieces)


# --- random requests ------------------------------------------------------------------------

_SIZES = (0, 3, 60, 126, 127, 128, 129, 300, 16_380, 16_384, 20_000)


def _text(rng: random.Random) -> str:
    return "v" * rng.choice(_SIZES)


def _span(rng: random.Random) -> Span:
    span = Span()
    if rng.random() < 0.15:
        return span  # an empty span: zero bytes on the wire
    span.name = rng.choice(["chat", "tool", ""]) + _text(rng)[: rng.choice((0, 10, 200))]
    span.span_id = rng.randbytes(8)
    for k in range(rng.randrange(4)):
        span.attributes.add(key=f"k{k}").value.string_value = _text(rng)
    if rng.random() < 0.2:
        span.status.message = _text(rng)
    return span


def _request(rng: random.Random) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for r in range(rng.randrange(1, 4)):
        rs = request.resource_spans.add(schema_url="https://schema/" * rng.randrange(2))
        rs.resource.attributes.add(key="service.name").value.string_value = f"svc{r}" + _text(rng)[:50]
        for _ in range(rng.randrange(0, 4)):
            ss = rs.scope_spans.add(schema_url="s" * rng.randrange(3))
            ss.scope.name = "scope" * rng.randrange(2)
            for _ in range(rng.randrange(0, 6)):
                ss.spans.append(_span(rng))
    return request


def _regions(rng: random.Random, data: bytes, layout: list[tuple[int, int, Item]]) -> list[tuple[int, int]]:
    """Hits inside the first and the last span, anywhere at all, and in between."""
    regions: list[tuple[int, int]] = []
    nonempty = [(start, end) for start, end, _ in layout if end > start]
    if nonempty and rng.random() < 0.8:
        for start, end in (nonempty[0], nonempty[-1], rng.choice(nonempty)):
            a = rng.randrange(start, end)
            regions.append((a, rng.randrange(a, end) + 1))
    for _ in range(rng.randrange(3)):
        a = rng.randrange(len(data))
        regions.append((a, min(len(data), a + rng.randrange(1, 40))))
    rng.shuffle(regions)  # the scanner's regions are not always sorted
    return regions


@pytest.mark.parametrize("seed", range(300))
def test_layout_hits_and_splice_match_the_reference(seed: int) -> None:
    """Same items, same items hit (and fields), same "inside one item" answer, same spliced bytes."""
    rng = random.Random(seed)
    request = _request(rng)
    data = request.SerializeToString()
    full = ref_items(data)
    assert framing.items(data) == full
    if not data:
        return
    regions = _regions(rng, data, full)
    found = framing.layout(data, regions)
    assert framing.items_hit(data, found.entries, regions) == framing.items_hit(data, full, regions)
    assert ref_can_splice(found.entries, regions) == ref_can_splice(full, regions)
    hit = framing.items_hit(data, full, regions)
    replaced = {item: _span(rng).SerializeToString() for item in hit if rng.random() < 0.8}
    spliced = framing.splice(data, found, replaced)
    assert spliced == ref_splice(data, replaced)
    got = ExportTraceServiceRequest.FromString(spliced)
    for (r, s, i), new in replaced.items():
        assert got.resource_spans[r].scope_spans[s].spans[i].SerializeToString() == new


def test_a_splice_across_every_length_boundary_keeps_the_request_valid() -> None:
    """Items, scopes and resources whose lengths cross the 1-, 2- and 3-byte varint sizes."""
    request = ExportTraceServiceRequest()
    for size in (100, 16_000, 2_000_000):
        spans = request.resource_spans.add().scope_spans.add().spans
        spans.add(name="a" * size)
        spans.add(name="b")
    data = request.SerializeToString()
    full = framing.items(data)
    for new_size in (0, 10, 200, 20_000, 3_000_000):
        replaced = {item: Span(name="c" * new_size).SerializeToString() for _, _, item in full if item[2] == 0}
        regions = [(start, start + 1) for start, end, item in full if item in replaced and end > start]
        assert framing.splice(data, framing.layout(data, regions), replaced) == ref_splice(data, replaced)


def test_log_requests_share_the_walk() -> None:
    """Log records sit at the same depth: the same answers as the reference."""
    request = ExportLogsServiceRequest()
    for r in range(2):
        records = request.resource_logs.add().scope_logs.add().log_records
        for i in range(5):
            records.add().body.string_value = f"line {r}.{i} " + "x" * (i * 60)
    data = request.SerializeToString()
    full = framing.items(data)
    assert full == ref_items(data)
    start, end, item = full[7]
    regions = [(start + 2, end - 1)]
    found = framing.layout(data, regions)
    assert framing.items_hit(data, found.entries, regions) == framing.items_hit(data, full, regions)
    replaced = {item: b"\x12\x03\x0a\x01z"}
    assert framing.splice(data, found, replaced) == ref_splice(data, replaced)


def test_the_walk_lists_only_the_items_hit() -> None:
    """The spans before a hit are hopped over, not listed; broken bytes before it are still an error."""
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for i in range(50):
        spans.add(name=f"span {i}")
    data = request.SerializeToString()
    full = framing.items(data)
    start, end, _ = full[3]
    found = framing.layout(data, [(start, end)])
    assert [item[2] for _, _, item in found.entries] == [3]
    truncated = data[: full[2][0] + 1]
    with pytest.raises(framing.FramingError):
        framing.layout(truncated, [(full[1][0], full[1][0] + 1)])
