"""Where the pipeline's CPU goes, stage by stage, in one process: ``python -m bench.stages``.

``bench.run`` measures the whole otlp -> batch -> jsonl_audit path from outside; this times the
in-process stages of that path on the same workload, through the same public pieces the engine
uses, each as CPU µs per 100-span request and as a ratio to the bare parse measured alongside:

* ``parse``: ``TracesData.FromString`` of each request (what the OTLP receiver does);
* ``batch merge``: :func:`obs_pipeline.signals.merge_into` of each request into a batch of
  ``--batch`` spans (what the batch processor's flush does);
* ``export, /dev/null``: the ``jsonl_audit`` exporter's ``export`` of each batch to
  ``/dev/null``: mapping to audit lines and encoding, without the file write;
* ``export, file``: the same into a real file in a temp dir: the difference is the write.

The gRPC transport (receive, reply, event loop) is not here: ``bench.run``'s sink phase (s)
measures it. Numbers are medians of ``--rounds`` rounds that interleave the stages (the VM's speed drifts).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from bench.workload import build_requests
from obs_pipeline.batch import Batch
from obs_pipeline.components import ComponentID, Kind, Settings, get_factory
from obs_pipeline.signals import Signal, merge_into, new_message
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.testing import parse_config


class _Host:
    def report_fatal(self, component: str, error: BaseException) -> None:
        raise RuntimeError(f"{component}: {error}")

    def receiver_finished(self, component: str) -> None:
        """Not used by exporters."""


def cpu_times(stages: list[tuple[str, Callable[[], Any]]], rounds: int) -> dict[str, float]:
    """Median CPU seconds of each stage. Rounds interleave the stages, so machine noise hits all alike."""
    for _, fn in stages:  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name, _ in stages}
    for _ in range(rounds):
        for name, fn in stages:
            t0 = time.process_time()
            fn()
            times[name].append(time.process_time() - t0)
    return {name: statistics.median(values) for name, values in times.items()}


def make_exporter(path: str) -> Any:
    """A started ``jsonl_audit`` exporter writing to ``path``, built through its factory."""
    factory = get_factory(Kind.EXPORTER, "jsonl_audit")
    settings = Settings(id=ComponentID("jsonl_audit"), kind=Kind.EXPORTER, metrics=SelfMetrics(),
                        logger=logging.getLogger("bench.stages"), data_dir=Path(tempfile.gettempdir()))
    exporter = factory.create(settings, parse_config(factory, {"path": path}))
    asyncio.run(exporter.start(_Host()))
    return exporter


def main(argv: list[str] | None = None) -> int:
    """Time each stage; print a table."""
    p = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=82, help="100-span requests per round (82 = one 8,192-span batch)")
    p.add_argument("--batch", type=int, default=8192, help="spans per batch (batch processor send_batch_size)")
    p.add_argument("--rounds", type=int, default=7, help="repetitions per stage (median)")
    p.add_argument("--seed", type=int, default=1, help="workload seed")
    a = p.parse_args(argv)
    requests = build_requests(a.requests, seed=a.seed)
    n = len(requests)
    parsed = [TracesData.FromString(r) for r in requests]

    def parse() -> None:
        for r in requests:
            TracesData.FromString(r)

    per_batch = max(1, -(-a.batch // 100))  # the batch flushes once it holds >= --batch spans
    groups = [parsed[i:i + per_batch] for i in range(0, n, per_batch)]

    def merge() -> list[Any]:
        batches = []
        for group in groups:
            batch = new_message(Signal.TRACES)
            for part in group:
                merge_into(Signal.TRACES, batch, part)
            batches.append(batch)
        return batches

    batches = merge()
    loop = asyncio.new_event_loop()
    with tempfile.TemporaryDirectory(prefix="obs-bench-stages-") as tmp:
        null_exporter = make_exporter("/dev/null")
        file_exporter = make_exporter(str(Path(tmp) / "audit.jsonl"))

        def export(exporter: Any) -> Callable[[], None]:
            async def run() -> None:
                for batch in batches:
                    await exporter.export(Batch(Signal.TRACES, batch))
            return lambda: loop.run_until_complete(run())

        stages = [
            ("bare parse (reference)", parse),
            ("batch merge (merge_into)", merge),
            ("export, /dev/null (map + encode)", export(null_exporter)),
            ("export, file (map + encode + write)", export(file_exporter)),
            ("bare parse, again", parse),
        ]
        results = {name: t * 1e6 / n for name, t in cpu_times(stages, a.rounds).items()}
        loop.run_until_complete(null_exporter.shutdown())
        loop.run_until_complete(file_exporter.shutdown())
    loop.close()
    parse_us = statistics.mean([results["bare parse (reference)"], results["bare parse, again"]])
    write_us = results["export, file (map + encode + write)"] - results["export, /dev/null (map + encode)"]
    total = results["bare parse (reference)"] + results["batch merge (merge_into)"] + results[
        "export, file (map + encode + write)"]
    print(f"{n} requests x 100 spans, batches of {per_batch * 100} spans; CPU µs per request (median of {a.rounds})")
    print(f"{'stage':<40} {'µs/request':>11} {'x bare parse':>13}")
    for name, us in results.items():
        print(f"{name:<40} {us:>11.1f} {us / parse_us:>13.2f}")
    print(f"{'  of which the write (file - /dev/null)':<40} {write_us:>11.1f} {write_us / parse_us:>13.2f}")
    print(f"{'parse + merge + export (no gRPC)':<40} {total:>11.1f} {total / parse_us:>13.2f}"
          f"   -> {1e6 * 100 / total:,.0f} spans/CPU-s before transport")
    return 0


if __name__ == "__main__":
    sys.exit(main())
