"""The compiled byte walks (_framing.c) answer exactly as their Python twins, or defer to them.

On well-formed requests the C walk must give the Python walk's answer, and give it itself; on
broken bytes (cut short, bytes flipped, varints past 64 bits, unknown wire types, a field that
runs past its parent) it may answer None, and then the Python twin decides, raising the precise
FramingError. It must never give an answer that differs. The suite needs the extension built
(``pip install -e .`` with a C compiler): a build that silently fell back would test nothing here.
"""

from __future__ import annotations

import contextlib
import random

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from obs_pipeline.processors.redaction import framing
from obs_pipeline.processors.redaction._framing import parts_hit, walk


def test_the_extension_is_built() -> None:
    assert framing.compiled(), "the C extension was not built: `pip install -e .` needs a C compiler (setup.py)"


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


def _spans(data: bytes) -> list[tuple[int, int]]:
    """Where each span's value lies, as far as the Python walk can tell ([] when it cannot)."""
    try:
        return [(start, end) for _, _, r_start, r_end in framing._walk_py(data, 0, len(data), 1, len(data), None)
                for _, _, s_start, s_end in framing._walk_py(data, r_start, r_end, 2, r_end, None)
                for _, _, start, end in framing._walk_py(data, s_start, s_end, 2, s_end, None)]
    except (framing.FramingError, IndexError):
        return []


def _regions(rng: random.Random, size: int, data: bytes = b"") -> list[tuple[int, int]]:
    """Random ranges, and ranges that end or start exactly at a span's or an attribute's value."""
    regions = []
    for _ in range(rng.randrange(1, 5)):
        a = rng.randrange(size + 1)
        regions.append((a, min(size, a + rng.randrange(0, 50))))
    edges = _spans(data)
    with contextlib.suppress(framing.FramingError, IndexError):  # (the attributes of a broken span)
        edges += [(start, end) for span_start, span_end in edges
                  for _, start, end in framing._children_py(data, span_start, span_end, 9, span_end)]  # type: ignore[arg-type]
    for start, end in rng.sample(edges, min(len(edges), 3)):
        regions += [(start - 2, start), (end, end + 2), (start, start), (end - 1, end + 1)]
    return regions


@pytest.mark.parametrize("seed", range(400))
def test_each_walk_agrees_with_its_python_twin(seed: int) -> None:
    rng = random.Random(seed)
    data = _request(rng)
    if seed % 2:
        data = _broken(rng, data)
    size = len(data)
    regions = _regions(rng, size, data)
    start = rng.randrange(size + 1)
    end = rng.randrange(start, size + 1)  # inside the bytes: a field may run past its parent
    stop = rng.choice((size, -1, rng.randrange(size + 1)))
    wanted = rng.choice((1, 2))
    cases = [
        (walk, framing._walk_py, (data, 0, size, 1, stop, None)),
        (walk, framing._walk_py, (data, start, end, wanted, stop, None)),
        (walk, framing._walk_py, (data, start, end, wanted, stop, regions)),
        (parts_hit, framing._parts_hit_py, (data, start, end, regions)),
        (parts_hit, framing._parts_hit_py, (data, 0, size, regions)),
        *((parts_hit, framing._parts_hit_py, (data, a, b, regions)) for a, b in _spans(data)),
    ]
    for compiled, python, args in cases:
        got = compiled(*args)
        want = _python(python, *args)
        if got is None:
            continue  # deferred: the Python twin decides (it is what the caller then runs)
        assert want != "error", f"{compiled.__name__} answered where the Python walk finds the bytes broken"
        assert got == want, compiled.__name__


def test_well_formed_requests_never_defer() -> None:
    """The compiled walk must do the common case itself, many regions included, or it buys nothing."""
    rng = random.Random(7)
    for n in range(50):
        data = _request(rng)
        size = len(data)
        regions = _regions(rng, size) * (100 if n % 5 == 0 else 1)  # (a request full of \\u escapes)
        assert walk(data, 0, size, 1, size, None) is not None
        for _, _, start, end in framing._walk_py(data, 0, size, 1, size, None):
            for _, _, scope_start, scope_end in framing._walk_py(data, start, end, 2, size, None):
                assert walk(data, scope_start, scope_end, 2, size, regions) is not None
                for _, _, span_start, span_end in framing._walk_py(data, scope_start, scope_end, 2, size, None):
                    assert parts_hit(data, span_start, span_end, regions) is not None


def test_the_layout_and_items_hit_run_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a well-formed request the Python twins are never needed."""
    def refuse(*_args: object) -> None:
        raise AssertionError("the Python walk ran")

    monkeypatch.setattr(framing, "_walk_py", refuse)
    monkeypatch.setattr(framing, "_parts_hit_py", refuse)
    data = _request(random.Random(3))
    full = framing.items(data)
    regions = [(start + 1, start + 2) for start, end, _ in full if end - start > 2]
    found = framing.layout(data, regions)
    assert framing.items_hit(data, found.entries, regions)


def test_odd_arguments_defer_rather_than_crash() -> None:
    """Regions that are not (int, int) pairs, offsets outside the bytes, a field number past 15, not bytes."""
    data = _request(random.Random(1))
    size = len(data)
    assert parts_hit(data, 0, size, [(0, 1.5)]) is None  # type: ignore[list-item]
    assert parts_hit(data, 0, size, [(0, 2**70)]) is None
    assert parts_hit(data, 0, size, [(0, 1, 2)]) is None  # type: ignore[list-item]
    assert walk(data, 0, size + 1, 2, size, [(0, 1)]) is None
    assert walk(data, -1, size, 1, size, None) is None
    assert walk(data, 0, size, 17, size, None) is None
    assert walk(b"", 0, 0, 1, 0, None) == []
    assert walk(bytearray(data), 0, size, 1, size, None) is None  # type: ignore[arg-type]
    assert parts_hit(memoryview(data), 0, size, [(0, 1)]) is None  # type: ignore[arg-type]


def test_a_build_without_the_extension_says_so_once(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A pip install that found no compiler is silent about it, so the processor says it, once."""
    from obs_pipeline.processors import redaction  # noqa: PLC0415
    from obs_pipeline.processors.redaction.config import Config  # noqa: PLC0415
    from obs_pipeline.testing import parse_config  # noqa: PLC0415

    cfg: Config = parse_config(redaction.FACTORY, None)
    monkeypatch.setattr(redaction, "compiled", lambda: False)
    redaction._say_how_framing_runs.cache_clear()
    with caplog.at_level("INFO", logger="obs_pipeline.processors.redaction"):
        redaction.Redactor(cfg)
        redaction.Redactor(cfg)
    said = [r.getMessage() for r in caplog.records if "compiled framing walk" in r.getMessage()]
    assert len(said) == 1
    assert "no C compiler" in said[0]
    redaction._say_how_framing_runs.cache_clear()
    monkeypatch.setattr(redaction, "compiled", lambda: True)
    caplog.clear()
    redaction.Redactor(cfg)
    assert not caplog.records
    redaction._say_how_framing_runs.cache_clear()
