"""Micro-benchmark: spans -> audit lines (jsonl_audit's mapping + orjson), as a ratio to a bare parse.

Workload: ``bench/workload.py``, the shared benchmark workload shaped like
``reference/python-limits.md``: 100-span requests, one resource with 7 attributes, 12 GenAI
attributes per span (operation, provider, request/response model, input/output tokens,
temperature, ``session.id``, agent, tool, a 200-500 character prompt and completion), 10
sessions per request, statuses OK or ERROR.

Reported, all in one run so machine drift cancels out (the VM's speed moves by up to 2x):

* ``parse``: ``TracesData.FromString`` of the request bytes, the ceiling the design compares with;
* ``map``: :func:`encode_traces` on parsed requests (what the exporter does), caches warm: the
  steady state of a long run, where models, agents, tools and token counts repeat;
* ``map, cold caches``: the same with the exporter's value caches emptied before every batch,
  the worst case: nothing seen before (a new session id, new token counts in every batch);
* ``map + join``: plus the ``b"\\n".join`` that makes the batch's single ``write()``.

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

from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from bench.workload import SPANS_PER_REQUEST, build_requests
from obs_pipeline.exporters.jsonl_audit import spans


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


def cold(parsed: TracesData) -> list[bytes]:
    """Map with every value cache empty, as if nothing in the batch had been seen before."""
    spans._KV_CACHE.clear()
    spans._INT_VALUES.clear()
    spans._STATUS_CACHE.clear()
    return spans.encode_traces(parsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--per-round", type=int, default=32)
    parser.add_argument("--requests", type=int, default=16, help="distinct requests to cycle through")
    args = parser.parse_args()

    payloads = build_requests(args.requests)
    parsed = [TracesData.FromString(p) for p in payloads]
    for data in parsed:  # warm the caches, as in a running exporter
        spans.encode_traces(data)
    next_payload, next_parsed = cycle(payloads).__next__, cycle(parsed).__next__
    variants: dict[str, Callable[[], object]] = {
        "parse (FromString)": lambda: TracesData.FromString(next_payload()),
        "map (encode_traces)": lambda: spans.encode_traces(next_parsed()),
        "map, cold caches": lambda: cold(next_parsed()),
        "map + join": lambda: b"\n".join(spans.encode_traces(next_parsed())) + b"\n",
    }
    times = measure(variants, args.rounds, args.per_round)
    n = SPANS_PER_REQUEST
    base = min(times["parse (FromString)"])
    example = spans.encode_traces(parsed[0])[1]
    print(f"{args.requests} requests of {n} spans, {sum(map(len, payloads)) // args.requests:,} bytes each")
    print(f"line ({len(example)} bytes): {example.decode()}")
    print(f"{'variant':24s} {'best µs/span':>13s} {'median':>8s} {'ratio to parse':>15s}")
    for name, seconds in times.items():
        best, median = min(seconds), statistics.median(seconds)
        print(f"{name:24s} {best / n * 1e6:13.3f} {median / n * 1e6:8.3f} {best / base:15.2f}")
    mapping = min(times["map (encode_traces)"]) / n
    print(f"mapping alone: {1 / mapping:,.0f} spans per CPU-second (warm), "
          f"{n / min(times['map, cold caches']):,.0f} (cold)")


if __name__ == "__main__":
    main()
