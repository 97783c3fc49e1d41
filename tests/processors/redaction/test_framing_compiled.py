"""The compiled byte walks (_framing.c) answer exactly as their Python twins, or defer to them.

On well-formed requests the C walk must give the Python walk's answer; on broken bytes (cut
short, bytes flipped, varints past 64 bits, unknown wire types) it may answer None, and then the
Python twin decides, raising the precise FramingError. It must never give an answer that differs.
"""

from __future__ import annotations

import random

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from obs_pipeline.processors.redaction import framing

pytestmark = pytest.mark.skipif(not framing.compiled(), reason="the C extension was not built")
_c = framing._compiled  # the two implementations side by side


def _request(rng: random.Random) -> bytes:
    request = ExportTraceServiceRequest()
    for _ in range(rng.randrange(1, 3)):
        rs = request.resource_spans.add()
        rs.resource.attributes.add(key="service.name").value.string_value = "svc"
        for _ in range(rng.randrange(1, 3)):
            ss = rs.scope_spans.add()
            ss.scope.name = "scope"
            for i in range(rng.randrange(0, 12)):
                span = ss.spans.add(name="s" * rng.choice((1, 100, 200, 20_000)), span_id=bytes(8), kind=2)
                span.start_time_unix_nano = rng.randrange(2**64)
                for k in range(rng.randrange(4)):
                    span.attributes.add(key=f"k{k}").value.int_value = rng.randrange(-(2**63), 2**63)
                span.dropped_attributes_count = i
    return request.SerializeToString()


def _broken(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        choice = rng.random()
        if choice < 0.3 and out:
            del out[rng.randrange(len(out)):]  # cut short
        elif choice < 0.6 and out:
            out[rng.randrange(len(out))] = rng.randrange(256)  # a byte flipped
        elif choice < 0.8:
            at = rng.randrange(len(out) + 1)
            out[at:at] = b"\xff" * rng.randrange(8, 12) + bytes([rng.randrange(128)])  # a long varint
        else:
            at = rng.randrange(len(out) + 1)
            out[at:at] = bytes([rng.randrange(256) & ~7 | rng.choice((3, 4, 6, 7))])  # a bad wire type
    return bytes(out)


def _python(fn, *args):  # type: ignore[no-untyped-def]
    try:
        return fn(*args)
    except (framing.FramingError, IndexError):
        return "error"


def _hit_py(data: bytes, start: int, end: int, wanted: int, stop: int,  # noqa: PLR0917 - the C signature
            regions: list[tuple[int, int]]) -> list[tuple[int, int, int, int]]:
    return framing._children_hit_py(data, start, end, wanted, stop=stop, regions=regions)


def _regions(rng: random.Random, size: int) -> list[tuple[int, int]]:
    regions = []
    for _ in range(rng.randrange(1, 5)):
        a = rng.randrange(size + 1)
        regions.append((a, min(size, a + rng.randrange(0, 50))))
    return regions


@pytest.mark.parametrize("seed", range(400))
def test_each_walk_agrees_with_its_python_twin(seed: int) -> None:
    rng = random.Random(seed)
    data = _request(rng)
    if seed % 2:
        data = _broken(rng, data)
    size = len(data)
    regions = _regions(rng, size)
    stop = rng.choice((size, -1, rng.randrange(size + 1)))
    start = rng.randrange(size + 1)
    cases = [
        (_c.children, framing._children_py, (data, 0, size, 1, stop)),
        (_c.children, framing._children_py, (data, start, size, 2, size)),
        (_c.children_hit, _hit_py, (data, start, size, 2, stop, regions)),
        (_c.parts_hit, framing._parts_hit_py, (data, start, size, regions)),
        (_c.parts_hit, framing._parts_hit_py, (data, 0, size, regions)),
    ]
    for compiled, python, args in cases:
        got = compiled(*args)
        want = _python(python, *args)
        if got is None:
            continue  # deferred: the Python twin decides (it is what the caller then runs)
        assert want != "error", f"{compiled.__name__} answered where the Python walk finds the bytes broken"
        assert got == want, compiled.__name__


def test_well_formed_requests_never_defer() -> None:
    """The compiled walk must do the common case itself, or it buys nothing."""
    rng = random.Random(7)
    for _ in range(50):
        data = _request(rng)
        size = len(data)
        regions = _regions(rng, size)
        assert _c.children(data, 0, size, 1, size) is not None
        for _, start, end in framing._children_py(data, 0, size, 1, size):
            for _, scope_start, scope_end in framing._children_py(data, start, end, 2, size):
                assert _c.children_hit(data, scope_start, scope_end, 2, size, regions) is not None
                for _, span_start, span_end in framing._children_py(data, scope_start, scope_end, 2, size):
                    assert _c.parts_hit(data, span_start, span_end, regions) is not None


def test_odd_arguments_defer_rather_than_crash() -> None:
    """Regions that are not (int, int) pairs, too many of them, or offsets outside the bytes."""
    data = _request(random.Random(1))
    size = len(data)
    assert _c.parts_hit(data, 0, size, [(0, 1.5)]) is None
    assert _c.parts_hit(data, 0, size, [(0, 2**70)]) is None
    assert _c.parts_hit(data, 0, size, [(0, 1)] * 1000) is None
    assert _c.children_hit(data, 0, size + 1, 2, size, [(0, 1)]) is None
    assert _c.children(data, -1, size, 1, size) is None
    assert _c.children(b"", 0, 0, 1, 0) == []
