"""Benchmark: the jsonl_audit exporter's throughput with ``hash_chain: true``, next to without, in one run.

Workload: ``bench/workload.py`` (100-span GenAI requests, realistic attributes and prompt sizes),
exported as wire-bytes batches (what the exporter gets behind the ``batch`` processor) into a
real file in a temporary directory. Variants, interleaved round by round so machine drift
cancels out (the figure is the best round, the median beside it):

* ``plain``: the exporter as configured by default;
* ``hash_chain``: each line sealed (``seq``, ``prev_hash``, ``hash`` over RFC 8785 JSON);
* ``hash_chain + checkpoints``: plus an HMAC checkpoint every 1000 lines;
* ``hash_chain + rotation``: plus size rotation every 8 MiB with gzip in the background.

Reported: lines per second of each, and its ratio to ``plain``. Each round's trail is checked
with ``audit verify`` once at the end, so a fast but broken chain cannot pass.

Run from the repository root: ``python bench/audit_chain.py [--rounds 5] [--requests 40]``
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The repository root in place of bench/ itself, whose queue.py would shadow the standard
# library's (which the worker threads of to_thread import).
if sys.path[0] == str(Path(__file__).resolve().parent):
    sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workload import SPANS_PER_REQUEST, build_requests
from obs_pipeline.audit.verify import verify_trail
from obs_pipeline.batch import Batch
from obs_pipeline.components import Kind
from obs_pipeline.exporters.jsonl_audit import FACTORY
from obs_pipeline.signals import Signal
from obs_pipeline.testing import RecordingHost, make_settings, parse_config

VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "hash_chain": {"hash_chain": True},
    "hash_chain + checkpoints": {"hash_chain": True, "checkpoint": {"key": "bench-key", "every_lines": 1000}},
    "hash_chain + rotation": {"hash_chain": True, "rotation": {"max_size": "8MiB", "compress": True}},
}


async def run_round(directory: Path, payloads: list[bytes], options: dict[str, Any]) -> float:
    """Export every payload into a fresh trail under ``directory``; seconds spent in ``export``."""
    cfg = parse_config(FACTORY, {"path": str(directory / "audit.jsonl"), **options})
    exporter = FACTORY.create(make_settings("jsonl_audit", Kind.EXPORTER), cfg)
    await exporter.start(RecordingHost())
    batches = [Batch.from_wire(Signal.TRACES, payload) for payload in payloads]
    started = time.perf_counter()
    for batch in batches:
        await exporter.export(batch)
    elapsed = time.perf_counter() - started
    await exporter.shutdown()
    return elapsed


def check(directory: Path, options: dict[str, Any], lines: int) -> str:
    """``ok`` when a chained trail verifies with every line, else what is wrong."""
    if not options.get("hash_chain"):
        return "ok"
    key = b"bench-key" if "checkpoint" in options else None
    report = verify_trail(directory / "audit.jsonl", key)
    if not report.intact:
        return f"BROKEN: {report.broken}"
    return "ok" if report.lines == lines else f"{report.lines} lines verified of {lines}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=40, help="100-span requests per round and variant")
    args = parser.parse_args()
    payloads = build_requests(args.requests)
    lines = args.requests * SPANS_PER_REQUEST
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    checks: dict[str, str] = {}
    root = Path(tempfile.mkdtemp(prefix="audit-chain-bench-"))
    try:
        for index in range(args.rounds):
            for name, options in VARIANTS.items():
                directory = root / f"{index}-{len(times[name])}-{name.replace(' ', '')}"
                times[name].append(asyncio.run(run_round(directory, payloads, options)))
                if index == args.rounds - 1:
                    checks[name] = check(directory, options, lines)
                shutil.rmtree(directory)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = min(times["plain"])
    print(f"{args.rounds} rounds of {args.requests} requests x {SPANS_PER_REQUEST} spans = {lines:,} lines per variant")
    print(f"{'variant':26s} {'best lines/s':>13s} {'median':>10s} {'ratio to plain':>15s}  verify")
    for name, seconds in times.items():
        best, median = min(seconds), statistics.median(seconds)
        print(f"{name:26s} {lines / best:13,.0f} {lines / median:10,.0f} {base / best:15.2f}  {checks.get(name, '-')}")


if __name__ == "__main__":
    main()
