"""What sampling costs, in one process: ``python -m bench.sampling``.

The GenAI workload of ``bench/workload.py`` (100-span requests, 20 spans per trace, every request
with its own trace ids) goes through each variant as the engine would run it: a processor built by
its factory, fed ``Batch`` objects made from the request bytes, handing on to a sink that takes
each batch's wire bytes (what an exporter would send, so a mutated batch pays its serialization):

* ``parse``: ``TracesData.FromString`` of each request, the yardstick of the other benches;
* ``pass-through``: a function processor that reads each batch's message and hands it on;
* ``head 10%``: ``sampling`` in head mode at 10 % (W3C randomness, ``th`` written);
* ``tail, 5 policies``: ``sampling`` in tail mode with the issue's five policies (errors,
  latency, cost, a string attribute, 5 % probabilistic), every trace buffered, then decided and
  released by the drain (``decision_wait`` 1h), so the figure covers buffering, deciding and
  re-encoding.

Figures are spans per CPU-second, medians over ``--rounds`` interleaved rounds, with their ratio to
pass-through and to parse from the same run (the VM's speed drifts; ratios carry over). Then the
tail buffer's memory per buffered span: what tracemalloc sees Python allocate, beside what the
buffer accounts for ``max_memory``; and what one decision-cache entry takes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import tracemalloc
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from bench.workload import build_templates, id_prefix
from obs_pipeline.batch import Batch
from obs_pipeline.components import Kind, get_factory
from obs_pipeline.processors._helper import FunctionProcessor
from obs_pipeline.signals import Signal
from obs_pipeline.testing import RecordingHost, make_processor_settings, parse_config

POLICIES = [
    {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
    {"name": "slow", "type": "latency", "latency": {"threshold_ms": 5000}},
    {"name": "expensive", "type": "cost", "cost": {"min_usd": 0.50}},
    {"name": "vip", "type": "string_attribute", "string_attribute": {"key": "gen_ai.agent.name", "values": ["planner"]}},
    {"name": "rest", "type": "probabilistic", "probabilistic": {"sampling_percentage": 5}},
]
TAIL = {"mode": "tail", "decision_wait": "1h", "num_traces": 1_000_000, "max_memory": "4GiB", "policies": POLICIES}


class Sink:
    """Takes every batch's wire bytes, as an exporter would, and counts spans."""

    def __init__(self) -> None:
        self.items = 0

    async def consume(self, batch: Batch) -> None:
        """Serialize (if it must) and count."""
        batch.serialized()
        self.items += batch.items


def requests(count: int, seed: int) -> list[bytes]:
    """``count`` requests, each with its own trace and span ids."""
    templates = build_templates(8, seed=seed)
    return [templates[i % len(templates)].render(id_prefix(1, i)) for i in range(count)]


def make(body: dict[str, Any] | None, sink: Sink) -> Any:
    """A ``sampling`` processor with ``body``, or (None) the pass-through function processor."""
    settings = make_processor_settings("sampling" if body is not None else "passthrough")
    if body is None:
        return FunctionProcessor(settings, sink, _read, drop_reason="none")
    factory = get_factory(Kind.PROCESSOR, "sampling")
    return factory.create(settings, parse_config(factory, body), sink)


def _read(batch: Batch) -> Batch:
    """The pass-through function: read the message (as any processor must), hand the batch on."""
    assert batch.message is not None
    return batch


async def run_through(body: dict[str, Any] | None, wires: list[bytes]) -> int:
    """Feed every request through a fresh processor, drain it; the spans handed on."""
    sink = Sink()
    proc = make(body, sink)
    await proc.start(RecordingHost())
    for wire in wires:
        await proc.consume(Batch.from_wire(Signal.TRACES, wire, items=100))
    await proc.shutdown()
    return sink.items


def cpu(fn: Callable[[], Coroutine[Any, Any, Any]] | Callable[[], Any]) -> float:
    """CPU seconds of one call (a coroutine function runs in a fresh event loop)."""
    t0 = time.process_time()
    result = fn()
    if asyncio.iscoroutine(result):
        asyncio.run(result)
    return time.process_time() - t0


def throughput(wires: list[bytes], rounds: int) -> dict[str, float]:
    """Median spans per CPU-second of each variant, rounds interleaved."""
    spans = 100 * len(wires)
    variants: dict[str, Callable[[], Any]] = {
        "parse": lambda: [TracesData.FromString(w) for w in wires],
        "pass-through": lambda: run_through(None, wires),
        "head 10%": lambda: run_through({"sampling_percentage": 10}, wires),
        "tail, 5 policies": lambda: run_through(TAIL, wires),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():  # warm-up
        cpu(fn)
    for _ in range(rounds):
        for name, fn in variants.items():
            times[name].append(cpu(fn))
    return {name: spans / statistics.median(values) for name, values in times.items()}


async def _buffer_memory(wires: list[bytes]) -> tuple[float, float]:
    sink = Sink()
    proc = make(TAIL, sink)
    await proc.start(RecordingHost())
    batches = [Batch.from_wire(Signal.TRACES, w, items=100) for w in wires]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for batch in batches:
        await proc.consume(batch)
    del batches
    allocated = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    spans = 100 * len(wires)
    accounted = proc.accounted_bytes()
    await proc.shutdown()
    return allocated / spans, accounted / spans


def cache_entry_bytes(entries: int = 50_000) -> float:
    """Bytes one decision-cache entry (a 16-byte trace id in an OrderedDict) takes."""
    keys = [i.to_bytes(16, "big") for i in range(entries)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    cache: OrderedDict[bytes, None] = OrderedDict((k, None) for k in keys)
    size = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del cache
    return (size + 16 * 33 + entries * 33) / entries  # plus the key objects themselves (33 B header + 16)


def main(argv: list[str] | None = None) -> int:
    """Measure; print a table."""
    p = argparse.ArgumentParser(prog="python -m bench.sampling", description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=200, help="100-span requests per round")
    p.add_argument("--rounds", type=int, default=5, help="repetitions per variant (median)")
    p.add_argument("--seed", type=int, default=1, help="workload seed")
    a = p.parse_args(argv)
    wires = requests(a.requests, a.seed)
    rates = throughput(wires, a.rounds)
    base, parse = rates["pass-through"], rates["parse"]
    lines = [f"{'variant':<20} {'spans/CPU-s':>12} {'vs pass-through':>16} {'vs parse':>9}"]
    lines += [f"{name:<20} {rate:>12,.0f} {rate / base:>16.2f} {rate / parse:>9.3f}" for name, rate in rates.items()]
    allocated, accounted = asyncio.run(_buffer_memory(wires))
    lines.append(f"tail buffer: {allocated:,.0f} B allocated per buffered span (tracemalloc), "
                 f"{accounted:,.0f} B accounted towards max_memory (ratio {accounted / allocated:.2f})")
    lines.append(f"decision cache: {cache_entry_bytes():,.0f} B per remembered trace id")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
