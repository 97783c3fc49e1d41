"""Micro-benchmark: spans -> audit lines (jsonl_audit's mapping + orjson), as a ratio to a bare parse.

Workload: ``bench/workload.py``, the shared benchmark workload shaped like
``reference/python-limits.md``: 100-span requests, one resource with 7 attributes, 12 GenAI
attributes per span (operation, provider, request/response model, input/output tokens,
temperature, ``session.id``, agent, tool, a 200-500 character prompt and completion), 10
sessions per request, statuses OK or ERROR.

Reported, all in one run so machine drift cancels out (the VM's speed moves by up to 2x):

* ``parse``: ``TracesData.FromString`` of the request bytes, the ceiling the design compares with;
* ``map wire``: :meth:`SpanEncoder.encode` of a batch that has only its wire bytes, what the
  exporter does behind the ``batch`` processor (no OTLP parse at all), caches warm: the steady
  state of a long run, where models, agents, tools and token counts repeat;
* ``map wire, cold``: the same with the encoder's value caches emptied before every batch, the
  worst case: nothing seen before (a new session id, new token counts in every batch);
* ``map wire, cold, parser ints``: as cold, with token counts always read by the real
  ``KeyValue`` parser instead of the hand-written varint decoder (``spans._int_value``): what
  that decoder is worth;
* ``map message``: a batch with a parsed message and no bytes (after a mutating processor):
  each resource group is serialized once to read its view;
* ``map wire + frame``: plus :func:`writer.frame`, which makes the batch's single ``write()``;
* ``line dict, builder`` / ``line dict, literal``: the line dict of every span of a request
  made and serialized by a call of :func:`obs_pipeline.audit.line.build` and by a dict literal:
  what the one builder costs the span path.

Each variant runs in short interleaved rounds over ``--requests`` distinct requests; the figure
is the best round (least disturbed by other load on a shared VM), the median is beside it.

Run from the repository root: ``python bench/audit_mapping.py [--rounds 30] [--requests 16]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from itertools import cycle
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from bench.workload import SPANS_PER_REQUEST, build_requests
from obs_pipeline.audit import line as audit
from obs_pipeline.audit.hook import NO_HOOK
from obs_pipeline.batch import Batch
from obs_pipeline.exporters.jsonl_audit import spans, writer
from obs_pipeline.signals import Signal


def measure(variants: dict[str, Callable[[], object]], rounds: int, per_round: int) -> dict[str, list[float]]:
    """Seconds per call of each variant, one figure per round, variants interleaved."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            for _ in range(per_round):
                fn()
            times[name].append((time.perf_counter() - t0) / per_round)
    return times


def parser_ints(encoder: spans.SpanEncoder, payload: bytes) -> list[bytes]:
    """Cold mapping with token counts read by the real parser, not the hand-written varint decoder."""
    real = spans._int_value
    spans._int_value = spans._parsed_int_value
    try:
        encoder.clear()
        return encoder.encode(Batch.from_wire(Signal.TRACES, payload))
    finally:
        spans._int_value = real


def line_dicts(example: dict[str, object]) -> tuple[Callable[[], object], Callable[[], object]]:
    """Two ways to make and serialize one request's line dicts: the builder, and a literal."""
    fields = dict(example)
    t, s, k, e, c, r, d, i, tr, sp, pa, us, ag, sv = fields.values()
    dumps, build = orjson.dumps, audit.build

    def builder() -> object:
        return [dumps(build(timestamp=t, session_id=s, task_id=k, event_type=e, category=c, result=r,  # type: ignore[arg-type]
                            detail=d, event_id=i, trace_id=tr, span_id=sp, parent_span_id=pa,  # type: ignore[arg-type]
                            user_id=us, agent=ag, service=sv))  # type: ignore[arg-type]
                for _ in range(SPANS_PER_REQUEST)]

    def literal() -> object:
        return [dumps({"timestamp": t, "session_id": s, "task_id": k, "event_type": e, "category": c, "result": r,
                       "detail": d, "event_id": i, "trace_id": tr, "span_id": sp, "parent_span_id": pa,
                       "user_id": us, "agent": ag, "service": sv})
                for _ in range(SPANS_PER_REQUEST)]

    return builder, literal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--per-round", type=int, default=32)
    parser.add_argument("--requests", type=int, default=16, help="distinct requests to cycle through")
    args = parser.parse_args()

    payloads = build_requests(args.requests)
    parsed = [TracesData.FromString(p) for p in payloads]
    warm, cold, message = spans.SpanEncoder(), spans.SpanEncoder(), spans.SpanEncoder()
    for payload, data in zip(payloads, parsed, strict=True):  # warm the caches, as in a running exporter
        warm.encode(Batch.from_wire(Signal.TRACES, payload))
        message.encode(Batch(Signal.TRACES, data))
    next_payload, next_parsed = cycle(payloads).__next__, cycle(parsed).__next__

    def cold_map() -> object:
        cold.clear()
        return cold.encode(Batch.from_wire(Signal.TRACES, next_payload()))

    example = orjson.loads(warm.encode(Batch.from_wire(Signal.TRACES, payloads[0]))[1])
    builder, literal = line_dicts(example)
    variants: dict[str, Callable[[], object]] = {
        "parse (FromString)": lambda: TracesData.FromString(next_payload()),
        "map wire": lambda: warm.encode(Batch.from_wire(Signal.TRACES, next_payload())),
        "map wire, cold": cold_map,
        "map wire, cold, parser ints": lambda: parser_ints(cold, next_payload()),
        "map message": lambda: message.encode(Batch(Signal.TRACES, next_parsed())),
        "map wire + frame": lambda: writer.frame(warm.encode(Batch.from_wire(Signal.TRACES, next_payload())), NO_HOOK),
        "line dict, builder": builder,
        "line dict, literal": literal,
    }
    times = measure(variants, args.rounds, args.per_round)
    n = SPANS_PER_REQUEST
    base = min(times["parse (FromString)"])
    print(f"{args.requests} requests of {n} spans, {sum(map(len, payloads)) // args.requests:,} bytes each")
    print(f"line: {orjson.dumps(example).decode()}")
    print(f"{'variant':28s} {'best µs/span':>13s} {'median':>8s} {'ratio to parse':>15s}")
    for name, seconds in times.items():
        best, median = min(seconds), statistics.median(seconds)
        print(f"{name:28s} {best / n * 1e6:13.3f} {median / n * 1e6:8.3f} {best / base:15.2f}")
    mapping = min(times["map wire"]) / n
    print(f"mapping alone: {1 / mapping:,.0f} spans per CPU-second (warm), "
          f"{n / min(times['map wire, cold']):,.0f} (cold)")


if __name__ == "__main__":
    main()
