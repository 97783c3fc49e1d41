"""Builders for the sampling tests: traces with chosen ids, attributes, status and cost."""

from __future__ import annotations

import random
from collections.abc import Iterable

from opentelemetry.proto.logs.v1.logs_pb2 import LogsData
from opentelemetry.proto.trace.v1.trace_pb2 import Status, TracesData

from obs_pipeline.batch import Batch
from obs_pipeline.signals import Signal

COST = "gen_ai.usage.cost.amount"


def trace_ids(n: int, seed: int = 7) -> list[bytes]:
    """``n`` distinct random 16-byte trace ids (a seeded generator, so every run sees the same)."""
    rng = random.Random(seed)
    ids: set[bytes] = set()
    while len(ids) < n:
        ids.add(rng.randbytes(16))
    return sorted(ids)


def spans(
    items: Iterable[tuple[bytes, int]], *, error: set[tuple[bytes, int]] = frozenset(), cost: float | None = None,
    duration_ms: int = 10, attributes: dict[str, object] | None = None, tracestate: str = "", service: str = "agent",
) -> Batch:
    """One batch with a span per (trace id, span number); ``error`` lists the ones with status ERROR."""
    data = TracesData()
    rs = data.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    ss = rs.scope_spans.add()
    ss.scope.name = "test"
    for trace_id, number in items:
        span = ss.spans.add(name=f"call-{number}", trace_id=trace_id, span_id=(number + 1).to_bytes(8, "big"),
                            start_time_unix_nano=1_000_000_000 + number, trace_state=tracestate)
        span.end_time_unix_nano = span.start_time_unix_nano + duration_ms * 1_000_000
        if (trace_id, number) in error:
            span.status.code = Status.STATUS_CODE_ERROR
        if cost is not None:
            attr = span.attributes.add()
            attr.key, attr.value.double_value = COST, cost
        for key, value in (attributes or {}).items():
            attr = span.attributes.add()
            attr.key = key
            if isinstance(value, bool):
                attr.value.bool_value = value
            elif isinstance(value, int):
                attr.value.int_value = value
            elif isinstance(value, float):
                attr.value.double_value = value
            else:
                attr.value.string_value = str(value)
    return Batch(Signal.TRACES, data)


def logs(ids: Iterable[bytes | None]) -> Batch:
    """One log record per id (None: a record without a trace id)."""
    data = LogsData()
    records = data.resource_logs.add().scope_logs.add().log_records
    for i, trace_id in enumerate(ids):
        record = records.add()
        record.body.string_value = f"record {i}"
        if trace_id is not None:
            record.trace_id = trace_id
    return Batch(Signal.LOGS, data)


def span_ids(batches: Iterable[Batch]) -> list[tuple[bytes, str]]:
    """(trace id, span name) of every span in ``batches``, in order."""
    return [(s.trace_id, s.name) for b in batches for rs in b.message.resource_spans
            for ss in rs.scope_spans for s in ss.spans]


def kept_trace_ids(batches: Iterable[Batch]) -> set[bytes]:
    """The distinct trace ids of every span or log record in ``batches``."""
    found: set[bytes] = set()
    for b in batches:
        if b.signal is Signal.LOGS:
            found |= {r.trace_id for rl in b.message.resource_logs for sl in rl.scope_logs for r in sl.log_records}
        else:
            found |= {t for t, _ in span_ids([b])}
    return found
