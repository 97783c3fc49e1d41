"""Cost of re-exporting over OTLP (issue 7): ``python -m bench.export``.

Three pipeline phases in one run, each a fresh ``obs-pipeline run`` fed by the load generator at
full speed (the same machinery as :mod:`bench.run`, phase (b)):

* ``audit``: otlp -> batch -> jsonl_audit (the foundation's figure, as in ``bench.run``);
* ``memory``: otlp -> batch -> otlp exporter (gRPC, ``compression: none``) into :mod:`bench.sink`,
  a bare ``grpc.aio`` server that parses and acks, with the default memory queue;
* ``disk``: the same with ``sending_queue.storage: disk`` (``service.data_dir`` in the temp dir).

Pipeline CPU is the ``obs-pipeline`` process's only (psutil, all its threads), from the first
request until its exporter has sent every acked span; the sink and the load generator are
separate processes and are not charged. Each phase's spans per CPU-second is divided by the bare
parse sampled during that phase (:class:`bench.run.ProbeSampler`), since the VM's speed drifts.
Checks: the pass-through re-export costs no more than the audit path (its ratio >= the audit
phase's), and the disk queue keeps at least half of the memory queue's throughput, both per
CPU-second (ratio) and in written spans/s. After each otlp
phase the sink must have received every acked span (at least once). Writes
``bench/results/export.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import yaml

from bench.run import (
    REPO,
    RESULTS,
    Args,
    Pipeline,
    _pythonpath,
    environment,
    http_get,
    parse_probe,
    phase_probe,
    run_pipeline_phase,
    verdict,
)
from bench.workload import build_requests

OTLP_SENT_METRIC = re.compile(
    r'^obs_pipeline_exporter_sent_items_total\{[^}]*exporter="otlp"[^}]*signal="traces"[^}]*\}\s+(\S+)', re.M)
PHASES = ("audit", "memory", "disk")
LABELS = {"audit": "otlp -> jsonl_audit (foundation)", "memory": "otlp -> otlp exporter, memory queue",
          "disk": "otlp -> otlp exporter, disk queue"}
DISK_MIN_FRACTION = 0.5


class ExportPipeline(Pipeline):
    """:class:`bench.run.Pipeline` with the otlp exporter (to ``sink_port``) in place of jsonl_audit."""

    writes_audit = False

    def __init__(self, workdir: Path, args: Args, *, sink_port: int, storage: str) -> None:
        super().__init__(workdir, args)
        config = yaml.safe_load(self.config_path.read_text())
        exporter: dict[str, Any] = {"endpoint": f"127.0.0.1:{sink_port}", "tls": {"insecure": True},
                                    "compression": "none"}
        if storage == "disk":
            exporter["sending_queue"] = {"storage": "disk"}
        config["exporters"] = {"otlp": exporter}
        config["service"]["pipelines"]["traces"]["exporters"] = ["otlp"]
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def exported_spans(self) -> float | None:
        """``obs_pipeline_exporter_sent_items_total`` of the otlp exporter (None: no metrics)."""
        status, page = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        if status != 200:
            return None
        match = OTLP_SENT_METRIC.search(page)
        return float(match.group(1)) if match else 0.0


class Sink:
    """``python -m bench.sink`` as a subprocess: the otlp exporter's destination."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.sink"], cwd=REPO, stdout=subprocess.PIPE,
                                     env={**os.environ, "PYTHONPATH": _pythonpath()})
        assert self.proc.stdout is not None
        self._stdout: IO[bytes] = self.proc.stdout
        self.port = int(json.loads(self._stdout.readline())["port"])

    def stop(self) -> int | None:
        """SIGTERM; the spans it parsed (None if it did not say)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        spans = None
        for line in self._stdout:
            event = json.loads(line)
            if event.get("event") == "stopped":
                spans = int(event["spans"])
        self.proc.wait(timeout=30)
        return spans


def run_phase(args: Args, workdir: Path, name: str, tag: int, requests: list[bytes]) -> dict[str, Any]:
    """One pipeline phase at full speed; the otlp phases with a fresh sink."""
    if name == "audit":
        return run_pipeline_phase(args, workdir, rate=0, tag=tag, name=name, requests=requests)
    sink = Sink()
    try:
        make = functools.partial(ExportPipeline, sink_port=sink.port, storage=name)
        out = run_pipeline_phase(args, workdir, rate=0, tag=tag, name=name, requests=requests, make_pipeline=make)
    finally:
        received = sink.stop()
    out["sink_received_spans"] = received
    out["delivered"] = received is not None and received >= out["acked_spans"]
    return out


def phase_ok(phase: dict[str, Any]) -> bool:
    """Exit 0 after SIGTERM, drained, and every acked span delivered (audit: exactly once; sink: at least once)."""
    delivered = phase["audit"]["ok"] if "audit" in phase else phase["delivered"]
    return bool(delivered and phase["exit_code"] == 0 and phase["drained"])


def evaluate(report: dict[str, Any]) -> dict[str, Any]:
    """Per phase: median spans/CPU-s and ratio to the in-phase bare parse over the rounds; the two checks."""
    phases: dict[str, Any] = {}
    for name in PHASES:
        runs = report["rounds"].get(name, [])
        if not runs:
            continue
        ratios = [r["spans_per_cpu_s"] / phase_probe({name: r, "evaluation_probe": report["evaluation_probe"]}, name)
                  for r in runs]
        phases[name] = {"spans_per_cpu_s": round(statistics.median(r["spans_per_cpu_s"] for r in runs)),
                        "ratio": round(statistics.median(ratios), 4), "ratios": [round(x, 4) for x in ratios],
                        "cpu_us_per_request": round(statistics.median(r["cpu_us_per_request"] for r in runs)),
                        "written_spans_per_s": round(statistics.median(r["written_spans_per_s"] for r in runs)),
                        "rss_peak_mib": max(r["rss_peak_mib"] for r in runs),
                        "delivery": verdict(all(phase_ok(r) for r in runs))}
    checks: dict[str, Any] = {}
    if "audit" in phases and "memory" in phases:
        a, m = phases["audit"]["ratio"], phases["memory"]["ratio"]
        checks["reexport_le_audit_cost"] = {"audit_ratio": a, "memory_ratio": m, "memory_vs_audit": round(m / a, 3),
                                            "verdict": verdict(m >= a)}
    if "memory" in phases and "disk" in phases:
        m, d = phases["memory"]["ratio"], phases["disk"]["ratio"]
        mw, dw = phases["memory"]["written_spans_per_s"], phases["disk"]["written_spans_per_s"]
        checks["disk_ge_half_memory"] = {"memory_ratio": m, "disk_ratio": d, "disk_vs_memory": round(d / m, 3),
                                         "written_disk_vs_memory": round(dw / mw, 3),
                                         "verdict": verdict(d >= DISK_MIN_FRACTION * m and dw >= DISK_MIN_FRACTION * mw)}
    return {"phases": phases, "checks": checks}


def render(report: dict[str, Any]) -> str:
    """The table and the checks."""
    env, ev = report["env"], report["evaluation"]
    probes = report["probes"]
    lines = [
        f"obs-pipeline export bench {report['date']}  python {env['python']}  protobuf {env['protobuf']}"
        f"  grpcio {env['grpcio']}  {env['cpus']} CPUs",
        f"workload: {report['workload']['requests']} distinct requests x 100 spans, "
        f"{report['workload']['bytes_per_request']:,} B/request; load: {report['args']['channels']} channels x "
        f"{report['args']['inflight']} in flight, {report['args']['duration']:.0f} s per phase, "
        f"{report['args']['rounds']} round(s) of {', '.join(PHASES)}",
        f"bare parse probes (spans/CPU-s): {', '.join(f'{p:,}' for p in probes)}; drift "
        f"{100 * (max(probes) - min(probes)) / statistics.mean(probes):.1f}%",
        "ratio = phase spans/CPU-s (pipeline process only) / bare parse sampled during that phase",
        "",
    ]
    header = ("phase", "spans/CPU-s", "ratio to bare parse", "CPU µs/request", "written spans/s", "peak RSS MiB",
              "delivery")
    rows = [header, ("bare parse (probe mean)", f"{round(statistics.mean(probes)):,}", "1.0000", "", "", "", "")]
    for name, p in ev["phases"].items():
        rows.append((LABELS[name], f"{p['spans_per_cpu_s']:,}", f"{p['ratio']:.4f}", f"{p['cpu_us_per_request']:,}",
                     f"{p['written_spans_per_s']:,}", f"{p['rss_peak_mib']}", p["delivery"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    lines.append("")
    c = ev["checks"]
    if "reexport_le_audit_cost" in c:
        x = c["reexport_le_audit_cost"]
        lines.append(f"re-export costs no more than the audit path (memory ratio {x['memory_ratio']:.4f} >= audit "
                     f"{x['audit_ratio']:.4f}; {x['memory_vs_audit']}x): {x['verdict']}")
    if "disk_ge_half_memory" in c:
        x = c["disk_ge_half_memory"]
        lines.append(f"disk queue keeps >= {DISK_MIN_FRACTION} x memory-queue throughput (disk ratio "
                     f"{x['disk_ratio']:.4f} vs memory {x['memory_ratio']:.4f}: {x['disk_vs_memory']}x per CPU-s, "
                     f"{x['written_disk_vs_memory']}x in written spans/s): {x['verdict']}")
    for name in PHASES:
        for i, r in enumerate(report["rounds"].get(name, [])):
            where = (f"audit {r['audit']['lines']:,} lines, duplicates {r['audit']['duplicates']}, missing "
                     f"{r['audit']['missing']}" if "audit" in r else f"sink received {r['sink_received_spans']:,}")
            lines.append(f"delivery ({name} #{i + 1}): exit {r['exit_code']}, {r['acked_spans']:,} acked, {where}"
                         f" -> {verdict(phase_ok(r))}")
            if r["stderr_problems"]["count"]:
                lines.append(f"  pipeline stderr: {r['stderr_problems']['count']} warning/error lines, first: "
                             f"{r['stderr_problems']['first'][0]}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> tuple[Args, int]:
    """Command line -> (:class:`bench.run.Args`, rounds)."""
    p = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=12.0, help="seconds of load per phase")
    p.add_argument("--rounds", type=int, default=1, help="rounds of audit, memory, disk (figures are medians)")
    p.add_argument("--channels", type=int, default=4, help="gRPC channels of the load generator")
    p.add_argument("--inflight", type=int, default=8, help="concurrent calls per channel")
    p.add_argument("--requests", type=int, default=32, help="distinct 100-span request templates")
    p.add_argument("--seed", type=int, default=1, help="workload seed")
    p.add_argument("--batch-timeout", default="200ms", help="batch processor timeout")
    p.add_argument("--send-batch-size", type=int, default=2048, help="batch processor send_batch_size")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, audit files, disk queues)")
    p.add_argument("--out", type=Path, default=RESULTS / "export.json", help="where to write the JSON report")
    a = p.parse_args(argv)
    args = Args(duration=a.duration, rate=0.0, channels=a.channels, inflight=a.inflight, requests=a.requests,
                seed=a.seed, sink=False, phases=PHASES, sink_duration=0.0, batch_timeout=a.batch_timeout,
                send_batch_size=a.send_batch_size, processors=[], content="none", queue_size=0, profile=0.0,
                profile_native=False, keep=a.keep,
                out=a.out)
    return args, a.rounds


def main(argv: list[str] | None = None) -> int:
    """Run the phases, print the table and the checks, write the JSON. Exit 1 if a check or a delivery failed."""
    args, rounds = parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="obs-bench-export-"))
    requests = build_requests(args.requests, seed=args.seed)
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "env": environment(),
        "args": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "rounds": rounds},
        "workload": {"requests": len(requests), "spans_per_request": 100,
                     "bytes_per_request": round(statistics.mean(map(len, requests)))},
        "rounds": {name: [] for name in PHASES},
    }
    probes: list[int] = []
    try:
        print("bare parse probe ...", file=sys.stderr)
        probes.append(parse_probe(requests)["spans_per_cpu_s"])
        tag = 10
        for rnd in range(rounds):
            for name in PHASES:
                tag += 1
                print(f"[{rnd + 1}/{rounds}] {LABELS[name]}, {args.duration:.0f} s ...", file=sys.stderr)
                report["rounds"][name].append(run_phase(args, workdir / f"r{rnd}", name, tag, requests))
                probes.append(parse_probe(requests)["spans_per_cpu_s"])
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report["probes"] = probes
    report["evaluation_probe"] = round(statistics.mean(probes))
    report["evaluation"] = evaluate(report)
    report["runtime_s"] = round(time.monotonic() - started, 1)
    text = render(report)
    report["text"] = text
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(text)
    print(f"\n(total {report['runtime_s']} s; JSON: {args.out})")
    ev = report["evaluation"]
    ok = all(c["verdict"] == "PASS" for c in ev["checks"].values()) and all(
        p["delivery"] == "PASS" for p in ev["phases"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
