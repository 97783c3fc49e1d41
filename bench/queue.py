"""Throughput of the memory queue and the disk queue, in one process: ``python -m bench.queue``.

Senders (``--senders`` tasks, as a receiver's concurrent requests are) each admit 100-span GenAI
requests through the engine's own fan-out (reserve -> persist -> commit) into one exporter queue
and wait for the acknowledgement, as a receiver does before it answers; the queue's consumer
exports them. A round sends ``--requests`` requests and ends when the exporter has delivered all
of them. Rounds alternate memory, disk, memory, disk, ... (the VM's speed drifts), and each figure
is the median over ``--rounds``. Two destinations:

* ``jsonl_audit``: the real audit exporter into a file in a temp dir: what a pipeline does;
* ``null``: an exporter that does nothing: the queue's own cost, the worst case for the disk queue.

The disk queue's directory is on the temp dir's filesystem, so the fsync is that disk's.
The target: the disk queue keeps at least half the memory queue's throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.workload import build_requests
from obs_pipeline.batch import Batch
from obs_pipeline.components import ComponentID, Exporter, Kind, PartialSuccess, Settings, get_factory
from obs_pipeline.delivery import DeliverySettings, QueueSettings
from obs_pipeline.engine.fanout import ExportersFanout
from obs_pipeline.engine.queue import QueuedExporter
from obs_pipeline.signals import Signal
from obs_pipeline.telemetry.metrics import SelfMetrics


class _Host:
    def report_fatal(self, component: str, error: BaseException) -> None:
        raise RuntimeError(f"{component}: {error}")

    def receiver_finished(self, component: str) -> None:
        """Not used by exporters."""


class _Null(Exporter):
    async def export(self, batch: Batch) -> PartialSuccess | None:
        return None


def _settings(cid: str, metrics: SelfMetrics, data_dir: Path) -> Settings:
    return Settings(id=ComponentID(cid), kind=Kind.EXPORTER, metrics=metrics,
                    logger=logging.getLogger("bench.queue"), data_dir=data_dir)


def _exporter(kind: str, metrics: SelfMetrics, tmp: Path) -> Exporter:
    if kind == "null":
        return _Null(_settings("null", metrics, tmp))
    factory = get_factory(Kind.EXPORTER, "jsonl_audit")
    exporter: Exporter = factory.create(_settings("jsonl_audit", metrics, tmp),
                                        factory.parse({"path": str(tmp / "audit.jsonl"), "fsync": False}))
    return exporter


async def one_round(storage: str, kind: str, requests: list[bytes], senders: int) -> dict[str, float]:
    """Send every request once through a fresh queue; spans/s from the first admission to the last delivery."""
    with tempfile.TemporaryDirectory(prefix="obs-bench-queue-") as name:
        tmp = Path(name)
        metrics = SelfMetrics()
        exporter = _exporter(kind, metrics, tmp)
        queue = QueuedExporter(exporter, metrics, DeliverySettings(queue=QueueSettings(storage=storage)),  # type: ignore[arg-type]
                               data_dir=tmp / "data")
        await queue.start(_Host())
        fanout = ExportersFanout([queue])
        todo = iter(requests)

        async def sender() -> None:
            for wire in todo:
                while True:
                    try:
                        await fanout.consume(Batch.from_wire(Signal.TRACES, wire, items=100))
                        break
                    except Exception:  # queue full: back off as a client would
                        await asyncio.sleep(0.001)

        sent = metrics.exporter_sent.labels(exporter=queue.id, signal="traces")
        t0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(sender() for _ in range(senders)))
        while sent._value.get() < 100 * len(requests):  # noqa: ASYNC110 - polls a counter, there is no event to wait on
            await asyncio.sleep(0.001)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        groups = queue._store.group_writes if queue._store is not None else 0
        await queue.shutdown(time.monotonic() + 10)
    return {"spans_per_s": 100 * len(requests) / wall, "cpu_us_per_request": cpu * 1e6 / len(requests),
            "requests_per_fsync": len(requests) / groups if groups else 0.0}


async def run(a: argparse.Namespace) -> dict[str, Any]:
    requests = build_requests(a.requests, seed=1)
    results: dict[str, dict[str, list[dict[str, float]]]] = {k: {"memory": [], "disk": []} for k in a.exporters}
    for kind in a.exporters:
        await one_round("memory", kind, requests[: a.requests // 4], a.senders)  # warm-up
        for _ in range(a.rounds):
            for storage in ("memory", "disk"):
                results[kind][storage].append(await one_round(storage, kind, requests, a.senders))
    return results


def main(argv: list[str] | None = None) -> int:
    """Measure; print a table with the ratio disk / memory per destination."""
    p = argparse.ArgumentParser(prog="python -m bench.queue", description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=1000, help="100-span requests per round")
    p.add_argument("--senders", type=int, default=8, help="concurrent senders (requests in flight)")
    p.add_argument("--rounds", type=int, default=5, help="rounds per queue kind (median)")
    p.add_argument("--exporters", nargs="+", default=["jsonl_audit", "null"], choices=["jsonl_audit", "null"])
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    results = asyncio.run(run(a))
    print(f"{a.requests} requests x 100 spans per round, {a.senders} senders, median of {a.rounds} rounds")
    print(f"{'destination':<12} {'queue':<7} {'spans/s':>10} {'CPU µs/req':>11} {'req/fsync':>10} {'disk/memory':>12}")
    ok = True
    for kind, by_storage in results.items():
        med = {s: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for s, rows in by_storage.items()}
        ratio = med["disk"]["spans_per_s"] / med["memory"]["spans_per_s"]
        ratios = [d["spans_per_s"] / m["spans_per_s"] for m, d in zip(by_storage["memory"], by_storage["disk"],
                                                                       strict=True)]
        for storage in ("memory", "disk"):
            m = med[storage]
            shown = f"{ratio:.2f} ({min(ratios):.2f}-{max(ratios):.2f})" if storage == "disk" else ""
            per_fsync = f"{m['requests_per_fsync']:.1f}" if storage == "disk" else "-"
            print(f"{kind:<12} {storage:<7} {m['spans_per_s']:>10,.0f} {m['cpu_us_per_request']:>11,.0f} "
                  f"{per_fsync:>10} {shown:>12}")
        ok = ok and (kind != "jsonl_audit" or ratio >= 0.5)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
