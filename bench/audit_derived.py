"""Micro-benchmark: what the derived audit detail costs the span mapping (cost, security lines, content).

Same workload as ``bench/audit_mapping.py`` (``bench/workload.py``: 100-span requests, each span
with a 200-500 character prompt and completion), in one run so the VM's drift cancels out:

* ``parse``: ``TracesData.FromString``, the ceiling the design compares with;
* ``content none|summary|full``: :meth:`SpanEncoder.encode` of wire-only batches with the
  exporter's ``content`` option (``summary`` is the default): what prompt and completion content
  in ``detail.input`` / ``detail.output`` costs;
* ``... +cost +2% redaction``: the same requests after the ``cost`` processor (a
  ``gen_ai.usage.cost.amount`` double on every span) and ``redaction`` (2% of spans carry its
  summary attributes, so they get a ``security`` line after their own).

Figures: best µs per span over interleaved rounds, with ratios to the parse and to ``content none``.

Run from the repository root: ``python bench/audit_derived.py [--rounds 20] [--requests 16]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from itertools import cycle
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from bench.audit_mapping import measure
from bench.workload import SPANS_PER_REQUEST, build_requests
from obs_pipeline.batch import Batch
from obs_pipeline.exporters.jsonl_audit.content import Content, ContentPolicy
from obs_pipeline.exporters.jsonl_audit.spans import SpanEncoder
from obs_pipeline.signals import Signal

#: One span in this many carries the redaction processor's summary (the workload's 2% secrets).
REDACTED_EVERY = 50


def _strings(*items: str) -> AnyValue:
    return AnyValue(array_value=ArrayValue(values=[AnyValue(string_value=item) for item in items]))


def enrich(payload: bytes, seed: int) -> bytes:
    """``payload`` as the cost and redaction processors hand it on: a cost on every span, 2% redacted."""
    data = TracesData.FromString(payload)
    n = 0
    for rs in data.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                n += 1
                span.attributes.add(key="gen_ai.usage.cost.amount", value=AnyValue(double_value=1.23e-4 * n + seed))
                if n % REDACTED_EVERY == 0:
                    span.attributes.extend([
                        KeyValue(key="redaction.masked.count", value=AnyValue(int_value=1)),
                        KeyValue(key="redaction.masked.rules", value=_strings("openai-api-key")),
                        KeyValue(key="redaction.masked.keys", value=_strings("attributes.gen_ai.prompt")),
                    ])
    return data.SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=32)
    parser.add_argument("--requests", type=int, default=16, help="distinct requests to cycle through")
    args = parser.parse_args()

    plain = build_requests(args.requests)
    enriched = [enrich(p, i) for i, p in enumerate(plain)]
    encoders = {mode: SpanEncoder(content=ContentPolicy(mode)) for mode in Content}
    for encoder in encoders.values():  # warm the caches, as in a running exporter
        for payload in plain + enriched:
            encoder.encode(Batch.from_wire(Signal.TRACES, payload))
    next_plain, next_enriched = cycle(plain).__next__, cycle(enriched).__next__
    variants: dict[str, Callable[[], object]] = {"parse (FromString)": lambda: TracesData.FromString(next_plain())}
    for mode, encoder in encoders.items():
        variants[f"content {mode}"] = lambda e=encoder: e.encode(Batch.from_wire(Signal.TRACES, next_plain()))
    for mode in (Content.NONE, Content.SUMMARY):
        encoder = encoders[mode]
        variants[f"content {mode} +cost +2% redaction"] = (
            lambda e=encoder: e.encode(Batch.from_wire(Signal.TRACES, next_enriched())))
    times = measure(variants, args.rounds, args.per_round)
    n = SPANS_PER_REQUEST
    parse, none = min(times["parse (FromString)"]), min(times["content none"])
    print(f"{'variant':36s} {'best µs/span':>13s} {'median':>8s} {'x parse':>8s} {'x none':>7s}")
    for name, seconds in times.items():
        best = min(seconds)
        print(f"{name:36s} {best / n * 1e6:13.3f} {statistics.median(seconds) / n * 1e6:8.3f} "
              f"{best / parse:8.2f} {best / none:7.2f}")


if __name__ == "__main__":
    main()
