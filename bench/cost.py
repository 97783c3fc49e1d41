"""Micro-benchmark: what the ``cost`` processor adds per span, as a ratio to a bare parse of the same spans.

Workload: ``bench/workload.py`` (100-span requests of GenAI spans: ``invoke_agent`` roots, ``chat``
calls of 11 models of 4 providers with token counts, ``execute_tool``). Reported, in one run so the
VM's drift cancels out, per span of the workload (every span, not only the priced ones):

* ``parse``: ``TracesData.FromString`` of the request bytes: the reference;
* ``cost``: parse, then the cost function on the batch (scan, price, write the attributes), minus
  the parse: what the processor itself costs, with the (provider, model, day) cache warm;
* ``cost, cold cache``: the same with a new price book for every batch (every lookup goes through
  genai-prices once per model in the batch);
* ``genai-prices calc_price``: ``genai_prices.calc_price`` once per inference span of the batch,
  the per-call cost the cache avoids (reference/genai.md §2.1 measured ~50 µs a call);
* ``clean batch``: a batch without inference spans (tool and agent spans only), parse excluded:
  the scan that hands it on with its wire bytes.

Each variant runs in short interleaved rounds; the figure is the best round, the median beside it.
Run from the repository root: ``python -m bench.cost [--rounds 20] [--requests 8]``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from genai_prices import Usage, calc_price
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from bench.workload import build_requests
from obs_pipeline.batch import Batch
from obs_pipeline.processors import cost
from obs_pipeline.processors.cost.pricing import PriceBook
from obs_pipeline.processors.cost.processor import CostFunction
from obs_pipeline.processors.cost.providers import PROVIDER_IDS
from obs_pipeline.signals import Signal
from obs_pipeline.testing import make_processor_settings, parse_config

__all__ = ["measure", "workload"]


def workload(requests: int) -> tuple[list[bytes], list[bytes], int]:
    """Request bytes, the same requests without their inference spans, and spans per request."""
    full = build_requests(requests)
    clean: list[bytes] = []
    for payload in full:
        data = TracesData.FromString(payload)
        for rs in data.resource_spans:
            for ss in rs.scope_spans:
                keep = [s for s in ss.spans if s.attributes[0].value.string_value != "chat"]
                del ss.spans[:]
                ss.spans.extend(keep)
        clean.append(data.SerializeToString())
    spans = sum(len(ss.spans) for rs in TracesData.FromString(full[0]).resource_spans for ss in rs.scope_spans)
    return full, clean, spans


def _function(book: PriceBook | None = None) -> CostFunction:
    cfg = parse_config(cost.FACTORY, None)
    return CostFunction(make_processor_settings("cost"), cfg, book or PriceBook())


def _calc_price_loop(payloads: list[bytes]) -> Callable[[], None]:
    """genai-prices' own call for every chat span of the requests (parsed beforehand)."""
    calls: list[tuple[str, str, Usage]] = []
    for payload in payloads:
        for rs in TracesData.FromString(payload).resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    attrs = {kv.key: kv.value for kv in span.attributes}
                    if attrs["gen_ai.operation.name"].string_value != "chat":
                        continue
                    provider = PROVIDER_IDS.get(attrs["gen_ai.provider.name"].string_value) or "openai"
                    usage = Usage(input_tokens=attrs["gen_ai.usage.input_tokens"].int_value,
                                  output_tokens=attrs["gen_ai.usage.output_tokens"].int_value)
                    calls.append((provider, attrs["gen_ai.request.model"].string_value, usage))
    when = datetime.now(UTC)

    def run() -> None:
        for provider, model, usage in calls:
            with contextlib.suppress(LookupError):
                calc_price(usage, model, provider_id=provider, genai_request_timestamp=when)
    return run


def measure(rounds: int = 20, requests: int = 8) -> dict[str, tuple[float, float]]:
    """(best, median) µs per workload span of each variant (see the module docstring)."""
    full, clean, per_request = workload(requests)
    spans = per_request * requests
    warm = _function()

    def parse() -> None:
        for payload in full:
            TracesData.FromString(payload)

    def priced(fn: Callable[[], CostFunction]) -> Callable[[], None]:
        def run() -> None:
            for payload in full:
                fn()(Batch.from_wire(Signal.TRACES, payload))
        return run

    def scan_clean() -> None:
        for payload in clean:
            warm(Batch.from_wire(Signal.TRACES, payload))

    def parse_clean() -> None:
        for payload in clean:
            TracesData.FromString(payload)

    variants: dict[str, Callable[[], None]] = {
        "parse": parse, "parse+cost": priced(lambda: warm), "parse+cost, cold cache": priced(_function),
        "genai-prices calc_price": _calc_price_loop(full), "parse clean": parse_clean, "parse+scan clean": scan_clean,
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for variant in variants.values():
        variant()  # warm-up: imports, caches
    for _ in range(rounds):
        for name, variant in variants.items():
            start = time.perf_counter()
            variant()
            times[name].append((time.perf_counter() - start) / spans * 1e6)
    best = {name: (min(t), statistics.median(t)) for name, t in times.items()}

    def minus(a: str, b: str) -> tuple[float, float]:
        return (max(0.0, best[a][0] - best[b][0]), max(0.0, best[a][1] - best[b][1]))
    return {
        "parse": best["parse"],
        "cost": minus("parse+cost", "parse"),
        "cost, cold cache": minus("parse+cost, cold cache", "parse"),
        "genai-prices calc_price": best["genai-prices calc_price"],
        "clean batch": minus("parse+scan clean", "parse clean"),
    }


def main(argv: list[str] | None = None) -> int:
    """Print the figures, each as µs per span and as a ratio to the parse."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--requests", type=int, default=8)
    args = parser.parse_args(argv)
    figures = measure(args.rounds, args.requests)
    parse_best = figures["parse"][0]
    out = sys.stdout
    out.write(f"{'variant':<26}{'best µs/span':>14}{'median':>10}{'x parse':>9}\n")
    for name, (best, median) in figures.items():
        out.write(f"{name:<26}{best:>14.2f}{median:>10.2f}{best / parse_best:>9.2f}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
