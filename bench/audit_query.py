"""Bench: ``audit query`` and ``cost`` over a 1,000,000-line trail, next to a bare line count of the same files.

The trail is generated here (``--lines``, default 1,000,000, about 400 bytes each, shaped like
the exporter's lines: turns of an agent, each an ``invoke_agent`` line over chats with tokens and
cost and tool calls, child lines without ``session_id``, 1% unpriced calls), split as a real one
is: a gzip-compressed rotated file (20%), a plain rotated file (40%) and the live file (40%).

Each phase runs in its own subprocess, so its peak RSS (``ru_maxrss``) is its own:

* ``count``: the baseline, a bare ``for line in file`` over the same files (gzip too);
* ``query``: ``audit query --category tool --since ...`` as the command streams it (every line
  parsed and filtered, the matches counted);
* ``query-rare``: ``audit query --result error`` (about 0.06% of the lines): most lines are ruled out
  by their bytes before any parse (``obs_pipeline/auditquery/quick.py``);
* ``query-session``: one session, which costs the first pass over its traces;
* ``cost``: ``cost --by session`` with duplicate dropping (every line parsed, summed per trace).

Reported: lines/s and the ratio to ``count`` (the VM's speed cancels out), and each phase's RSS
beside ``count``'s: streaming means the same order, whatever the trail's size.

Run from the repository root: ``python bench/audit_query.py [--lines 1000000]``
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from obs_pipeline.audit.files import audit_files
from obs_pipeline.auditquery.cost import cost_report
from obs_pipeline.auditquery.filters import Deduper, Filter
from obs_pipeline.auditquery.query import matching
from obs_pipeline.auditquery.trail import Trail

PHASES = ("count", "query", "query-rare", "query-session", "cost")
LINES_PER_TURN = 8  # invoke_agent + 4 chats + 3 tools
SESSIONS = 2000


def _turn(number: int) -> list[bytes]:
    """The lines of turn ``number``: its children first (they end first), then its invoke_agent line."""
    trace = f"{number:032x}"
    session = f"session-{number % SESSIONS:05d}"
    root = f"{number % (1 << 60):016x}"
    stamp = f"2026-03-{1 + number % 28:02d}T{number % 24:02d}:{number % 60:02d}:{(number * 7) % 60:02d}.000000Z"
    lines = []
    for call in range(4):
        unpriced = number % 100 == 0 and call == 0
        detail = {"model": ("mystery" if unpriced else "claude-sonnet-4-5"), "provider": "anthropic",
                  "tokens": {"input": 1000 + call, "output": 100 + call}, "duration_ms": 1234.5,
                  **({"unpriced": True} if unpriced else {"cost_usd": 0.0045 + call / 1e4}),
                  "input": {"text": "user: please look at the quarterly invoice and file it"}}
        failed = number % 200 == 1 and call == 1  # 0.5% of the calls: what `--result error` finds
        lines.append(_line(stamp, None, "chat", "llm", detail, trace, f"{call + 1:016x}", root,
                           result="error" if failed else "allow"))
    for tool in range(3):
        detail = {"tool": ("search", "shell", "fetch")[tool], "duration_ms": 12.5,
                  "input": {"text": '{"query": "invoice 2026"}'}, "output": {"text": "3 results"}}
        lines.append(_line(stamp, None, "execute_tool", "tool", detail, trace, f"{tool + 9:016x}", root))
    lines.append(_line(stamp, session, "invoke_agent", "agent", {"duration_ms": 5000.0}, trace, root, None,
                       agent="support-agent"))
    return lines


def _line(stamp: str, session: str | None, event_type: str, category: str, detail: dict,  # noqa: PLR0917
          trace: str, span: str, parent: str | None, agent: str | None = None, result: str = "allow") -> bytes:
    return orjson.dumps({
        "timestamp": stamp, "session_id": session, "task_id": None, "event_type": event_type,
        "category": category, "result": result, "detail": detail, "event_id": f"{trace}:{span}",
        "trace_id": trace, "span_id": span, "parent_span_id": parent, "user_id": "user-1", "agent": agent,
        "service": "support",
    })


def generate(directory: Path, lines: int) -> Path:
    """Write a trail of about ``lines`` lines under ``directory``; returns its live path."""
    live = directory / "audit.jsonl"
    turns = max(1, lines // LINES_PER_TURN)
    cuts = (turns // 5, turns * 3 // 5)
    with (gzip.open(directory / "audit-20260301T000000000000Z.jsonl.gz", "wb", compresslevel=1) as oldest,
          (directory / "audit-20260315T000000000000Z.jsonl").open("wb") as middle, live.open("wb") as newest):
        for number in range(turns):
            out = oldest if number < cuts[0] else middle if number < cuts[1] else newest
            out.write(b"\n".join(_turn(number)) + b"\n")
    return live


def run_phase(phase: str, live: Path) -> dict[str, float]:
    """Run one phase in this process: its line count (or result size) and seconds."""
    trails = [Trail(live)]
    started = time.perf_counter()
    if phase == "count":
        seen = 0
        for file in audit_files(live):
            opener = gzip.open if file.suffix == ".gz" else open
            with opener(file, "rb") as stream:
                for _ in stream:
                    seen += 1
        result = seen
    elif phase == "query":
        where = Filter(categories=frozenset({"tool"}), since="2026-03-02T00:00:00.000000Z")
        result = sum(1 for _ in matching(trails, where, _fail))
    elif phase == "query-rare":
        result = sum(1 for _ in matching(trails, Filter(results=frozenset({"error"})), _fail))
    elif phase == "query-session":
        result = sum(1 for _ in matching(trails, Filter(sessions=frozenset({"session-00007"})), _fail))
    elif phase == "cost":
        report = cost_report(matching(trails, Filter(), _fail, dedupe=Deduper()), "session")
        result = report.total.calls
    else:
        raise ValueError(phase)
    seconds = time.perf_counter() - started
    return {"result": result, "seconds": seconds,
            "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _fail(message: str) -> None:
    raise AssertionError(message)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)  # a child's one phase
    parser.add_argument("--live", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, args.live)))
        return
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp:
        started = time.perf_counter()
        live = generate(Path(tmp), args.lines)
        total = sum(f.stat().st_size for f in audit_files(live))
        print(f"trail: {args.lines:,} lines, {total / 2**20:.0f} MiB on disk (gzip part included), "
              f"generated in {time.perf_counter() - started:.1f} s")
        figures: dict[str, dict[str, float]] = {}
        for phase in PHASES:
            out = subprocess.run([sys.executable, __file__, "--phase", phase, "--live", str(live)],
                                 capture_output=True, text=True, check=True)
            figures[phase] = json.loads(out.stdout)
        base = figures["count"]
        lines = base["result"]
        print(f"{'phase':<15} {'lines/s':>12} {'vs count':>9} {'peak RSS':>10}  result")
        for phase, got in figures.items():
            rate = lines / got["seconds"]
            print(f"{phase:<15} {rate:>12,.0f} {base['seconds'] / got['seconds']:>9.3f} "
                  f"{got['max_rss_mib']:>7.1f} MiB  {got['result']:,}")


if __name__ == "__main__":
    main()
