"""Benchmark: lines per CPU-second through file_tail -> jsonl_audit, per fixture shape, vs a bare read.

For each preset's fixture shape (``tests/fixtures``: an agent runtime's audit log, a policy
kernel's audit trail and JSON log, an action tracer's file, a collector's OTLP/JSON file), a file
of ``--lines`` lines is made by repeating the fixture, then in the same run:

* ``bare``: a Python loop reading the file line by line and ``orjson.loads`` on each line, the
  floor any JSON-lines reader pays;
* ``file_tail``: a ``file_tail`` receiver with the preset (``start_at: beginning``, polling)
  handing its batches to a real ``jsonl_audit`` exporter that writes the audit file; the clock
  runs from the receiver's start until the last record was exported;
* ``receiver only``: the same receiver handing its batches to a consumer that drops them: what
  reading, splitting, decoding, mapping and checkpointing cost without the audit line.

Both figures are lines per CPU-second of this process (``time.process_time``, every thread), and
the report gives their ratio, which carries over between machines better than either figure.
OTLP/JSON lines hold several spans each; they are counted as lines.

Run from the repository root: ``python -m bench.file_tail [--lines 50000]``; the figures are
also written to ``bench/results/file_tail.json``. Not ``python bench/file_tail.py``: with
``bench/`` first on the import path, ``bench/queue.py`` shadows the standard library's ``queue``,
which the event loop's worker threads import.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from obs_pipeline.batch import Batch
from obs_pipeline.components import Kind
from obs_pipeline.exporters import jsonl_audit
from obs_pipeline.receivers import file_tail
from obs_pipeline.signals import Signal
from obs_pipeline.testing import RecordingHost, make_settings, parse_config

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
SHAPES = {"missy_audit": "missy_audit", "agent_os_audit": "agent_os_audit", "agent_os_log": "agent_os_log",
          "action_trace": "action_trace", "otlp_json": "otlp_traces"}
RESULTS = Path(__file__).resolve().parent / "results" / "file_tail.json"


def make_file(fixture: Path, lines: int, out: Path) -> int:
    """``out`` with ``lines`` lines, the fixture's lines over and over; returns its size in bytes."""
    source = [line for line in fixture.read_bytes().splitlines(keepends=True) if line.strip()]
    with out.open("wb") as f:
        for i in range(lines):
            f.write(source[i % len(source)])
    return out.stat().st_size


def bare(path: Path) -> tuple[int, float]:
    """(lines, CPU seconds) of reading ``path`` line by line with ``orjson.loads``."""
    start = time.process_time()
    count = 0
    with path.open("rb") as f:
        for line in f:
            orjson.loads(line)
            count += 1
    return count, time.process_time() - start


class _Export:
    """Consumer that exports every batch to a real jsonl_audit exporter and counts the lines read."""

    def __init__(self, exporter: Any) -> None:
        self.exporter = exporter

    async def consume(self, batch: Batch) -> None:
        if self.exporter is not None:
            await self.exporter.export(batch)


async def through_file_tail(path: Path, preset: str, lines: int, workdir: Path, *, audit: bool = True) -> float:
    """CPU seconds for ``file_tail`` (preset) -> ``jsonl_audit`` (or nothing) to read all of ``path``."""
    exporter = None
    if audit:
        exporter = jsonl_audit.FACTORY.create(
            make_settings("jsonl_audit", Kind.EXPORTER),
            parse_config(jsonl_audit.FACTORY, {"path": str(workdir / "audit.jsonl")}))
        await exporter.start(RecordingHost())
    sink = _Export(exporter)
    settings = make_settings("file_tail/bench", data_dir=workdir / ("data-audit" if audit else "data-only"))
    cfg = parse_config(file_tail.FACTORY, {"include": [str(path)], "preset": preset, "start_at": "beginning",
                                           "watch": "poll", "poll_interval": "10ms"})
    receiver = file_tail.FACTORY.create(settings, cfg, {Signal.LOGS: sink, Signal.TRACES: sink})
    read = settings.metrics.file_tail_lines_read.labels(receiver="file_tail/bench")
    start = time.process_time()
    await receiver.start(RecordingHost())
    while read._value.get() < lines:  # noqa: ASYNC110 - the counter announces nothing
        await asyncio.sleep(0.002)
    cpu = time.process_time() - start
    await receiver.shutdown()
    if exporter is not None:
        await exporter.shutdown()
    return cpu


def run(lines: int, shapes: dict[str, str] | None = None) -> dict[str, dict[str, float]]:
    """The figures of every shape: lines/CPU-s of both variants and their ratio."""
    report: dict[str, dict[str, float]] = {}
    for preset, fixture in (shapes or SHAPES).items():
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            path = workdir / f"{fixture}.jsonl"
            size = make_file(FIXTURES / f"{fixture}.jsonl", lines, path)
            count, bare_cpu = bare(path)
            tail_cpu = asyncio.run(through_file_tail(path, preset, count, workdir))
            only_cpu = asyncio.run(through_file_tail(path, preset, count, workdir, audit=False))
        bare_rate, tail_rate = count / max(bare_cpu, 1e-9), count / max(tail_cpu, 1e-9)
        only_rate = count / max(only_cpu, 1e-9)
        report[preset] = {"lines": count, "bytes_per_line": size / count, "bare_lines_per_cpu_s": bare_rate,
                          "file_tail_lines_per_cpu_s": tail_rate, "ratio": tail_rate / bare_rate,
                          "receiver_only_lines_per_cpu_s": only_rate, "receiver_only_ratio": only_rate / bare_rate}
    return report


def main() -> None:
    """Run the benchmark, print the table and write the JSON figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=50_000)
    args = parser.parse_args()
    report = run(args.lines)
    header = ("preset", "B/line", "bare lines/CPU-s", "-> jsonl_audit", "ratio", "receiver only", "ratio")
    print("{:16} {:>7} {:>17} {:>15} {:>6} {:>14} {:>6}".format(*header))
    for preset, r in report.items():
        print(f"{preset:16} {r['bytes_per_line']:7.0f} {r['bare_lines_per_cpu_s']:17,.0f} "
              f"{r['file_tail_lines_per_cpu_s']:15,.0f} {r['ratio']:6.3f} "
              f"{r['receiver_only_lines_per_cpu_s']:14,.0f} {r['receiver_only_ratio']:6.3f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"lines": args.lines, "shapes": report}, indent=2) + "\n")


if __name__ == "__main__":
    main()
