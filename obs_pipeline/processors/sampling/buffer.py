"""The tail buffer's storage: spans kept as bytes per trace, their accounting, and the release.

A span is held as its own serialization, beside a shared :class:`Header` (its resource and scope,
serialized once per batch). Holding a span's protobuf object instead would keep the whole
request it came in alive, and would make ``max_memory`` a guess; bytes make it a sum. Each trace's
cost is its spans' bytes plus fixed bookkeeping estimates (``SPAN_OVERHEAD``, ``TRACE_OVERHEAD``,
measured with tracemalloc by ``bench/sampling.py``), and a header's bytes count once while any
buffered trace uses it.

A released group of traces is written straight to OTLP wire bytes (``TracesData``: one
``ResourceSpans`` per header), so the next stage gets a batch it parses only if it must.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from obs_pipeline.processors.sampling.policies import Summary
from obs_pipeline.wire import varint

SPAN_OVERHEAD = 100  # bytes object, tuple and list slot of one buffered span
TRACE_OVERHEAD = 600  # the trace's object, summary, spans list, trace-id key and table entry
HEADER_OVERHEAD = 200  # the header object and its two bytes objects
_TAG_1, _TAG_2, _TAG_3 = b"\x0a", b"\x12", b"\x1a"  # fields 1, 2, 3 with wire type LEN


def _field(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload if payload else b""


class Header:
    """A resource and scope, serialized, shared by the spans that came under them.

    ``key`` is (resource part, scope part): the buffer keeps one header per key while buffered
    traces use it, so a trace whose spans come in many requests holds its resource once.
    """

    __slots__ = ("key", "refs", "resource", "scope", "size")

    def __init__(self, key: tuple[bytes, bytes]) -> None:
        self.key = key
        self.resource, self.scope = key
        self.size = len(self.resource) + len(self.scope) + HEADER_OVERHEAD
        self.refs = 0  # buffered traces that use it

    @staticmethod
    def key_of(resource_spans: Any, scope_spans: Any) -> tuple[bytes, bytes]:
        """The wire parts of a resource and scope: ResourceSpans and ScopeSpans fields 1 and 3."""
        resource = _field(_TAG_1, resource_spans.resource.SerializeToString()) + _field(
            _TAG_3, resource_spans.schema_url.encode())
        scope = _field(_TAG_1, scope_spans.scope.SerializeToString()) + _field(_TAG_3, scope_spans.schema_url.encode())
        return resource, scope


class Trace:
    """One buffered trace: its spans (header, bytes), summary, deadline and accounted bytes."""

    __slots__ = ("deadline", "headers", "nbytes", "spans", "summary")

    def __init__(self, deadline: float, summary: Summary) -> None:
        self.deadline = deadline
        self.summary = summary
        self.spans: list[tuple[Header, bytes]] = []
        self.headers: list[Header] = []  # distinct, usually one
        self.nbytes = TRACE_OVERHEAD

    def add(self, header: Header, span: bytes) -> int:
        """Append a span; the bytes it adds to the accounted total (its header's the first time)."""
        self.spans.append((header, span))
        added = len(span) + SPAN_OVERHEAD
        self.nbytes += added
        if (not self.headers or self.headers[-1] is not header) and header not in self.headers:
            self.headers.append(header)
            header.refs += 1
            if header.refs == 1:
                added += header.size
        return added

    def release(self, headers: dict[tuple[bytes, bytes], Header]) -> int:
        """Drop the trace's claim on its headers (forgotten from ``headers`` when unused): the bytes freed."""
        freed = 0
        for header in self.headers:
            header.refs -= 1
            if header.refs == 0:
                freed += header.size
                if headers.get(header.key) is header:
                    del headers[header.key]
        return freed


def encode(groups: Iterable[list[tuple[Header, bytes]]]) -> bytes:
    """``TracesData`` wire bytes of the spans of ``groups``: one ``ResourceSpans`` per header, in order."""
    by_header: dict[Header, list[bytes]] = {}
    for spans in groups:
        for header, span in spans:
            by_header.setdefault(header, []).append(span)
    out: list[bytes] = []
    for header, wires in by_header.items():
        scope_spans = header.scope + b"".join(_TAG_2 + varint(len(w)) + w for w in wires)
        resource_spans = header.resource + _TAG_2 + varint(len(scope_spans)) + scope_spans
        out.append(_TAG_1 + varint(len(resource_spans)) + resource_spans)
    return b"".join(out)


__all__ = ["HEADER_OVERHEAD", "SPAN_OVERHEAD", "TRACE_OVERHEAD", "Header", "Trace", "encode", "varint"]
