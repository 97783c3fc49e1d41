"""What cost plus budget add: µs per span in-process, and spans/s through a real pipeline, both as ratios.

Workload: ``bench/workload.py`` (100-span requests of GenAI spans; every trace has a ``session.id``,
so a request touches 10 sessions). Budgets: ``session-cap`` (scope session, $5, window session)
and ``service-daily`` (scope ``service.name``, a resource attribute, $1M, window 1d, warnings at
50% and 80%), state in SQLite in a temp dir. Two parts, each measured in one run so the VM's
drift cancels out:

1. in-process, per span of the workload: ``parse`` (``TracesData.FromString``: the reference),
   ``cost`` (the cost function after the parse), ``budget`` (the budget processor after cost:
   scan, one SQLite transaction per batch, annotate), in short interleaved rounds (best, median);
2. throughput: ``otlp -> cost -> budget -> batch -> jsonl_audit`` next to the foundation's
   ``otlp -> batch -> jsonl_audit``, each a fresh ``obs-pipeline run`` fed at full speed by the
   load generator of ``bench/run.py`` (``--duration`` seconds), spans/s and spans per CPU-second.

Run from the repository root: ``python -m bench.budget [--rounds 20] [--duration 8] [--no-pipeline]``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from bench import run as bench_run
from bench.workload import build_requests
from obs_pipeline.batch import Batch
from obs_pipeline.processors import budget, cost
from obs_pipeline.processors.cost.pricing import PriceBook
from obs_pipeline.processors.cost.processor import CostFunction
from obs_pipeline.signals import Signal
from obs_pipeline.testing import CapturingConsumer, RecordingHost, make_processor_settings, parse_config

__all__ = ["BUDGETS", "measure", "measure_pipelines"]

BUDGETS: list[dict[str, Any]] = [
    {"id": "session-cap", "scope": "session", "limit_usd": 5, "window": "session"},
    {"id": "service-daily", "scope": "service.name", "limit_usd": 1_000_000, "window": "1d", "warn_at": [0.5, 0.8]},
]


def measure(rounds: int = 20, requests: int = 8) -> dict[str, tuple[float, float]]:
    """(best, median) µs per workload span: parse, cost after the parse, budget after cost."""
    return asyncio.run(_measure(rounds, requests))


async def _measure(rounds: int, requests: int) -> dict[str, tuple[float, float]]:
    payloads = build_requests(requests)
    spans = sum(len(ss.spans) for rs in TracesData.FromString(payloads[0]).resource_spans for ss in rs.scope_spans)
    spans *= len(payloads)
    price = CostFunction(make_processor_settings("cost"), parse_config(cost.FACTORY, None), PriceBook())
    workdir = Path(tempfile.mkdtemp(prefix="obs-bench-budget-"))
    try:
        cfg = parse_config(budget.FACTORY, {"budgets": BUDGETS, "endpoint": None})
        proc = budget.FACTORY.create(make_processor_settings("budget", data_dir=workdir), cfg, CapturingConsumer())
        await proc.start(RecordingHost())
        times: dict[str, list[float]] = {"parse": [], "cost": [], "budget": []}
        for round_ in range(rounds + 1):
            t_parse = t_cost = t_budget = 0.0
            for payload in payloads:
                t0 = time.perf_counter()
                TracesData.FromString(payload)
                t1 = time.perf_counter()
                priced = price(Batch.from_wire(Signal.TRACES, payload))
                t2 = time.perf_counter()
                assert priced is not None
                await proc.process(priced)
                t3 = time.perf_counter()
                t_parse += t1 - t0
                t_cost += max(0.0, (t2 - t1) - (t1 - t0))  # the cost function parses the bytes itself
                t_budget += t3 - t2
            if round_:  # round 0 warms caches and creates the SQLite rows
                for name, seconds in (("parse", t_parse), ("cost", t_cost), ("budget", t_budget)):
                    times[name].append(seconds / spans * 1e6)
        await proc.shutdown()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out = {name: (min(t), statistics.median(t)) for name, t in times.items()}
    out["cost + budget"] = (out["cost"][0] + out["budget"][0], out["cost"][1] + out["budget"][1])
    return out


class BudgetPipeline(bench_run.Pipeline):
    """The bench pipeline with cost and budget before the batch processor."""

    def __init__(self, workdir: Path, args: bench_run.Args) -> None:
        super().__init__(workdir, args)
        config = yaml.safe_load(self.config_path.read_text())
        config["processors"] = {"cost": {}, "budget": {"budgets": BUDGETS, "endpoint": f"127.0.0.1:{bench_run.free_port()}"},
                                **config["processors"]}
        config["service"]["pipelines"]["traces"]["processors"] = ["cost", "budget", "batch"]
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def measure_pipelines(duration: float) -> dict[str, dict[str, Any]]:
    """Both pipelines at full speed, the foundation's first: spans/s, spans per CPU-second, exit code."""
    args = bench_run.parse_args(["--duration", str(duration), "--no-sink", "--phases", "max"])
    requests = build_requests(args.requests, seed=args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="obs-bench-budget-"))
    keys = ("acked_spans_per_s", "written_spans_per_s", "spans_per_cpu_s", "pipeline_cpu_pct", "exit_code")
    try:
        out = {}
        makers: dict[str, Callable[[Path, bench_run.Args], bench_run.Pipeline] | None] = {
            "otlp -> batch -> jsonl_audit": None,
            "otlp -> cost -> budget -> batch -> jsonl_audit": BudgetPipeline,
        }
        for tag, (name, maker) in enumerate(makers.items(), 1):
            print(f"{name}, {duration:.0f} s ...", file=sys.stderr)
            result = bench_run.run_pipeline_phase(args, workdir, rate=0, tag=tag, name=f"p{tag}", requests=requests,
                                                  make_pipeline=maker)
            out[name] = {k: result[k] for k in keys} | {"audit_ok": result["audit"]["ok"]}
        return out
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Print both parts; each figure beside its ratio to the reference measured in the same run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per pipeline")
    parser.add_argument("--no-pipeline", dest="pipeline", action="store_false", help="only the in-process part")
    args = parser.parse_args(argv)
    figures = measure(args.rounds, args.requests)
    parse_best = figures["parse"][0]
    print(f"{'per span (in-process)':<26}{'best µs':>10}{'median':>10}{'x parse':>9}")
    for name, (best, median) in figures.items():
        print(f"{name:<26}{best:>10.2f}{median:>10.2f}{best / parse_best:>9.2f}")
    if not args.pipeline:
        return 0
    results = measure_pipelines(args.duration)
    base = next(iter(results.values()))
    print(f"\n{'pipeline (max speed)':<48}{'spans/s':>10}{'spans/cpu-s':>13}{'x base':>8}{'exit':>6}")
    for name, r in results.items():
        ratio = r["spans_per_cpu_s"] / base["spans_per_cpu_s"] if base["spans_per_cpu_s"] else 0.0
        print(f"{name:<48}{r['acked_spans_per_s']:>10,}{r['spans_per_cpu_s']:>13,}{ratio:>8.2f}{r['exit_code']:>6}")
    return 0 if all(r["exit_code"] == 0 and r["audit_ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
