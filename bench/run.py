"""Throughput and memory of otlp(gRPC) -> batch -> jsonl_audit: ``python -m bench.run``.

The machine is a shared VM whose speed drifts, so every figure is reported next to, and as a
ratio of, a reference measured in the same run. Phases (bench/README.md explains each):

(a) reference: a bare upb parse loop over the very request bytes the load generator sends, in
    this process, before, between and after the load phases (a machine-speed probe; its drift
    says how far to trust the ratios).
(s) transport ceiling (``--no-sink`` skips it): the load generator at full speed against a bare
    ``grpc.aio`` server that only parses (:mod:`bench.sink`).
(b) max throughput: a fresh ``obs-pipeline run`` fed by the load generator (its own process) at
    full speed; the pipeline's CPU seconds from the first request until every acked span was
    written (so buffered work is charged), spans/s, spans per CPU-second.
(c) paced: a fresh pipeline at ``--rate`` spans/s: its CPU % of one core, peak RSS (``VmHWM``:
    a fresh process, so phase (b) does not leak into it), request latency.

After each pipeline phase the pipeline gets SIGTERM, must exit 0, and its audit file must hold
exactly one parseable line per acked span. The report is printed and written to
``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gzip
import json
import os
import platform
import queue
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
import psutil
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bench.workload import PREFIX_LEN, build_requests

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
MIB = 1024 * 1024
# python-limits.md, bench 1: FromString of this workload on the reference day (50 µs/request).
REFERENCE_PARSE_SPANS_PER_S = 2_019_000
TARGET_SPANS_PER_CPU_S = 100_000
TARGET_RSS_MIB = 100
TARGET_CPU_PCT_AT_10K = 20  # DESIGN §8: the collector's own load-test bar
LOG_PROBLEM = re.compile(r"\b(warn|warning|error|critical|fatal)\b|Traceback", re.IGNORECASE)


@dataclass
class Args:
    """Command-line options."""

    duration: float
    rate: float
    channels: int
    inflight: int
    requests: int
    seed: int
    sink: bool
    phases: tuple[str, ...]
    sink_duration: float
    batch_timeout: str
    send_batch_size: int
    processors: list[str]
    content: str
    queue_size: int
    profile: float
    profile_native: bool
    keep: bool
    out: Path


def free_port() -> int:
    """A TCP port nobody listens on right now (a small race is acceptable for a bench)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """GET ``url``: (status, body), (0, "") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # loopback only
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def proc_status(pid: int) -> dict[str, int]:
    """``VmRSS``/``VmHWM``/... of ``pid`` in bytes, from ``/proc/<pid>/status``."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("Vm"):
                key, _, value = line.partition(":")
                parts = value.split()
                if parts and parts[0].isdigit():
                    out[key] = int(parts[0]) * 1024
    return out


def cpu_s(proc: psutil.Process) -> float:
    """User + system CPU seconds of ``proc`` (all its threads)."""
    t = proc.cpu_times()
    return t.user + t.system


def thread_cpu(proc: psutil.Process) -> dict[int, float]:
    """CPU seconds per thread id."""
    return {t.id: t.user_time + t.system_time for t in proc.threads()}


def host_times() -> dict[str, float]:
    """System-wide CPU times, for host busy % and steal."""
    return psutil.cpu_times()._asdict()


def host_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Host busy % (of all cores) and steal % over an interval."""
    delta = {k: after[k] - before[k] for k in before}
    total = sum(delta.values()) or 1.0
    idle = delta.get("idle", 0.0) + delta.get("iowait", 0.0)
    return {"busy_pct": round(100 * (total - idle) / total, 1), "steal_pct": round(100 * delta.get("steal", 0.0) / total, 1)}


# ---------------------------------------------------------------- (a) the reference


def parse_probe(requests: list[bytes], rounds: int = 5, round_cpu_s: float = 0.3) -> dict[str, Any]:
    """A bare upb parse loop over ``requests``: spans per CPU-second (median of ``rounds``).

    Parsing with upb touches every byte but builds no Python objects for the fields, so this is
    the ceiling of anything that reads these requests, and a stable machine-speed probe.
    """
    from_string = ExportTraceServiceRequest.FromString
    spans = sum(len(ss.spans) for rs in from_string(requests[0]).resource_spans for ss in rs.scope_spans)
    rates = []
    for _ in range(rounds):
        n = 0
        t0 = time.process_time()
        while (elapsed := time.process_time() - t0) < round_cpu_s:
            for payload in requests:
                from_string(payload)
            n += len(requests)
        rates.append(n * spans / elapsed)
    median = statistics.median(rates)
    return {
        "spans_per_cpu_s": round(median),
        "us_per_request": round(1e6 * spans / median, 1),
        "rounds": [round(r) for r in rates],
        "mb_per_s": round(median / spans * statistics.mean(map(len, requests)) / 1e6),
    }


class ProbeSampler:
    """Short parse-loop samples taken *during* a load phase, on the core the pipeline leaves free.

    The VM's speed flips between modes within seconds, so a probe before and after a phase can
    miss what happened during it. Every ``every`` seconds this parses requests for ``cpu_s`` of
    CPU (about 2% of a core); the phase's ratios use the median of these samples.
    """

    def __init__(self, requests: list[bytes], every: float = 1.0, cpu_s: float = 0.02) -> None:
        self.requests = requests[:8]
        self.every = every
        self.cpu_s = cpu_s
        self.samples: list[float] = []  # spans per CPU-second
        self._next = 0.0

    def maybe_sample(self) -> None:
        """Take a sample if one is due."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every
        from_string = ExportTraceServiceRequest.FromString
        n = 0
        t0 = time.process_time()
        while (elapsed := time.process_time() - t0) < self.cpu_s:
            for payload in self.requests:
                from_string(payload)
            n += len(self.requests)
        self.samples.append(n * 100 / elapsed)

    def summary(self) -> dict[str, Any]:
        """Median and spread of the samples."""
        if not self.samples:
            return {}
        q = statistics.quantiles(self.samples, n=10) if len(self.samples) > 1 else self.samples * 9
        return {"spans_per_cpu_s": round(statistics.median(self.samples)), "samples": len(self.samples),
                "p10": round(q[0]), "p90": round(q[-1])}


# ---------------------------------------------------------------- processes


class Loadgen:
    """``python -m bench.loadgen`` as a subprocess; its stdout events arrive on a queue."""

    def __init__(self, args: Args, target: str, rate: float, duration: float, tag: int) -> None:
        cmd = [sys.executable, "-m", "bench.loadgen", "--target", target, "--duration", str(duration),
               "--rate", str(rate), "--channels", str(args.channels), "--inflight", str(args.inflight),
               "--requests", str(args.requests), "--seed", str(args.seed), "--tag", str(tag)]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env={**os.environ, "PYTHONPATH": _pythonpath()})
        self.events: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            with contextlib.suppress(ValueError):
                self.events.put((time.monotonic(), json.loads(line)))
        self.events.put((time.monotonic(), {"event": "eof"}))

    def wait_event(self, name: str, timeout: float, tick: float = 0.25,
                   on_tick: Any = None) -> tuple[float, dict[str, Any]]:
        """Block until event ``name`` (calling ``on_tick`` every ``tick`` s meanwhile).

        Raises:
            RuntimeError: the load generator exited or timed out first.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                at, event = self.events.get(timeout=tick)
            except queue.Empty:
                if on_tick:
                    on_tick()
                continue
            if event.get("event") == name:
                return at, event
            if event.get("event") == "eof":
                break
        self.proc.kill()
        err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
        raise RuntimeError(f"load generator: no {name!r} event (exit {self.proc.wait()}):\n{err[-3000:]}")

    def finish(self) -> dict[str, Any]:
        """The result event; waits for the process to exit."""
        _, result = self.wait_event("result", timeout=120)
        self.proc.wait(timeout=30)
        return result


class Pipeline:
    """An ``obs-pipeline run`` subprocess: otlp (gRPC) -> batch -> jsonl_audit on free ports."""

    writes_audit = True  # run_pipeline_phase reads the audit file back

    def __init__(self, workdir: Path, args: Args) -> None:
        workdir.mkdir(parents=True)
        self.workdir = workdir
        self.grpc_port, self.metrics_port, self.health_port = free_port(), free_port(), free_port()
        self.audit_dir = workdir / "audit"
        self.config_path = workdir / "pipeline.yaml"
        self.stderr_path = workdir / "stderr.log"
        config = {
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{self.grpc_port}"}}}},
            "processors": {**dict.fromkeys(args.processors),
                           "batch": {"timeout": args.batch_timeout, "send_batch_size": args.send_batch_size}},
            "exporters": {"jsonl_audit": {"path": str(self.audit_dir / "audit.jsonl"), "content": args.content}},
            "service": {
                "data_dir": str(workdir / "data"),
                "pipelines": {"traces": {"receivers": ["otlp"], "processors": [*args.processors, "batch"],
                                         "exporters": ["jsonl_audit"]}},
                "telemetry": {
                    "logs": {"level": "info"},
                    "metrics": {"endpoint": f"127.0.0.1:{self.metrics_port}"},
                    "health": {"endpoint": f"127.0.0.1:{self.health_port}"},
                },
                "shutdown_timeout": "60s",
            },
        }
        if args.queue_size:
            config["exporters"]["jsonl_audit"]["sending_queue"] = {"queue_size": args.queue_size}
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.proc: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def target(self) -> str:
        """host:port of the OTLP/gRPC receiver."""
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout: float = 30.0) -> float:
        """Start and wait for ``/readyz``; return the seconds it took."""
        t0 = time.monotonic()
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "obs_pipeline", "run", str(self.config_path)],
            cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr,
            env={**os.environ, "PYTHONPATH": _pythonpath(), "PYTHONUNBUFFERED": "1"},
        )
        self.ps = psutil.Process(self.proc.pid)
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"obs-pipeline exited during startup ({self.proc.returncode}):\n{self.stderr()}")
            if http_get(f"http://127.0.0.1:{self.health_port}/readyz", 1)[0] == 200:
                return time.monotonic() - t0
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"obs-pipeline not ready after {timeout}s:\n{self.stderr()}")

    def cpu(self) -> float:
        """CPU seconds so far."""
        assert self.ps is not None
        return cpu_s(self.ps)

    def _samples(self) -> list[Sample] | None:
        """Every sample on the pipeline's /metrics, parsed by prometheus_client (None: no metrics)."""
        status, page = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        if status != 200:
            return None
        return [sample for family in text_string_to_metric_families(page) for sample in family.samples]

    def processor_cpu(self) -> dict[str, float]:
        """``obs_pipeline_processor_cpu_seconds_total`` by processor: the CPU each spent, measured in the pipeline."""
        totals: dict[str, float] = {}
        for sample in self._samples() or []:
            if sample.name == "obs_pipeline_processor_cpu_seconds_total":
                name = sample.labels["processor"]
                totals[name] = totals.get(name, 0.0) + sample.value
        return totals

    def exported_spans(self) -> float | None:
        """``obs_pipeline_exporter_sent_items_total`` of the audit exporter (None: no metrics)."""
        samples = self._samples()
        if samples is None:
            return None
        return next((s.value for s in samples if s.name == "obs_pipeline_exporter_sent_items_total"
                     and s.labels.get("exporter") == "jsonl_audit" and s.labels.get("signal") == "traces"), 0.0)

    def wait_exported(self, spans: int, timeout: float = 120.0) -> bool:
        """Wait until the audit exporter has written ``spans`` spans (or, without metrics, is idle)."""
        deadline = time.monotonic() + timeout
        idle_since: float | None = None
        last_cpu = self.cpu()
        while time.monotonic() < deadline:
            done = self.exported_spans()
            if done is not None and done >= spans:
                return True
            time.sleep(0.05)
            if done is None:  # no metrics endpoint: call it drained after 0.5 s without CPU use
                now_cpu = self.cpu()
                idle_since = (idle_since or time.monotonic()) if now_cpu - last_cpu < 0.002 else None
                last_cpu = now_cpu
                if idle_since and time.monotonic() - idle_since > 0.5:
                    return True
        return False

    def stop(self, timeout: float = 90.0) -> tuple[int | None, float]:
        """SIGTERM; (exit code or None if it hung and was killed, seconds to exit)."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = None
        if self._stderr:
            self._stderr.close()
        return code, time.monotonic() - t0

    def kill(self) -> None:
        """Last-resort cleanup."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stderr(self) -> str:
        """What the process logged."""
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""


def _pythonpath() -> str:
    return os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)


def log_problems(text: str, limit: int = 8) -> dict[str, Any]:
    """Count WARNING/ERROR/CRITICAL/Traceback lines in a log; keep the first few."""
    bad = [line for line in text.splitlines() if LOG_PROBLEM.search(line)]
    return {"count": len(bad), "first": [line[:300] for line in bad[:limit]]}


# ---------------------------------------------------------------- audit check


def _audit_files(audit_dir: Path) -> Iterator[Path]:
    if audit_dir.exists():
        yield from sorted(p for p in audit_dir.rglob("*") if p.is_file())


#: Audit line categories written beside a span's own line (docs/audit-line.md, "Derived lines").
DERIVED_CATEGORIES = ("security", "budget")


def verify_audit(audit_dir: Path, result: dict[str, Any], tag: int, spans_per_request: int) -> dict[str, Any]:
    """One line per acked span? Counts lines, unparseable lines, duplicates, missing and unexpected spans.

    Span ids encode (tag, sequence number, index), so each line maps to one slot. The lines the
    exporter derives from a span beside its own (``security`` after a redaction, ``budget`` at a
    budget event) carry the same span id: they are counted apart, as ``derived``.
    """
    sent = result["sent_requests"]
    counts = bytearray(sent * spans_per_request)
    lines = unparseable = foreign = no_span_id = derived = 0
    size = 0
    for path in _audit_files(audit_dir):
        size += path.stat().st_size
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                lines += 1
                try:
                    obj = orjson.loads(line)
                    if obj.get("category") in DERIVED_CATEGORIES:
                        derived += 1
                        continue
                    raw = bytes.fromhex(obj["span_id"])
                except (orjson.JSONDecodeError, TypeError):
                    unparseable += 1
                    continue
                except (KeyError, ValueError):
                    no_span_id += 1
                    continue
                seq = int.from_bytes(raw[1:PREFIX_LEN], "big") if len(raw) == 8 else -1
                index = raw[PREFIX_LEN] - 1 if len(raw) == 8 else -1
                if raw[:1] != bytes((tag,)) or not 0 <= seq < sent or not 0 <= index < spans_per_request:
                    foreign += 1
                    continue
                slot = seq * spans_per_request + index
                if counts[slot] < 255:
                    counts[slot] += 1
    not_accepted = set(result["failed_seqs"])
    unknown = set(result["unknown_seqs"])
    unexpected = missing = 0
    for seq in not_accepted | unknown:
        chunk = counts[seq * spans_per_request:(seq + 1) * spans_per_request]
        if seq in not_accepted:
            unexpected += spans_per_request - chunk.count(0)
        missing -= chunk.count(0)  # these zeros are not missing spans
    missing += counts.count(0)
    distinct = len(counts) - counts.count(0)
    duplicates = lines - derived - unparseable - foreign - no_span_id - distinct
    ok = (unparseable == foreign == no_span_id == missing == unexpected == 0
          and duplicates == 0 and lines - derived == result["acked_spans"])
    return {
        "ok": ok, "lines": lines, "acked_spans": result["acked_spans"], "distinct_spans": distinct,
        "duplicates": duplicates, "missing": missing, "unexpected": unexpected, "unparseable": unparseable,
        "without_span_id": no_span_id, "foreign": foreign, "derived": derived, "bytes": size,
        "bytes_per_line": round(size / lines) if lines else 0,
    }


# ---------------------------------------------------------------- phases


def run_sink(args: Args, tag: int) -> dict[str, Any]:
    """(s) The load generator against :mod:`bench.sink`: gRPC receive + parse only."""
    sink = subprocess.Popen([sys.executable, "-m", "bench.sink"], cwd=REPO, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": _pythonpath()})
    gen: Loadgen | None = None
    try:
        assert sink.stdout is not None
        port = json.loads(sink.stdout.readline())["port"]
        ps = psutil.Process(sink.pid)
        gen = Loadgen(args, f"127.0.0.1:{port}", 0, args.sink_duration, tag)
        t0, _ = gen.wait_event("start", timeout=60)
        cpu0, host0 = cpu_s(ps), host_times()
        t1, _ = gen.wait_event("end", timeout=args.sink_duration + 120)
        cpu1, host1 = cpu_s(ps), host_times()
        result = gen.finish()
    finally:
        if gen is not None and gen.proc.poll() is None:
            gen.proc.kill()
            gen.proc.wait()
        sink.send_signal(signal.SIGTERM)
        sink.wait(timeout=30)
    wall, server_cpu = t1 - t0, cpu1 - cpu0
    return {
        "spans": result["acked_spans"], "wall_s": round(wall, 2), "server_cpu_s": round(server_cpu, 2),
        "spans_per_s": round(result["acked_spans"] / wall),
        "spans_per_cpu_s": round(result["acked_spans"] / server_cpu) if server_cpu else 0,
        "cpu_us_per_request": round(1e6 * server_cpu / max(1, result["ok_requests"])),
        "server_cpu_pct": round(100 * server_cpu / wall), "loadgen_cpu_pct": round(100 * result["cpu_s"] / result["wall_s"]),
        "host": host_delta(host0, host1), "latency_ms": result["latency_ms"],
    }


def run_pipeline_phase(args: Args, workdir: Path, *, rate: float, tag: int, name: str,
                       requests: list[bytes], make_pipeline: Callable[[Path, Args], Pipeline] | None = None,
                       ) -> dict[str, Any]:
    """(b) or (c): a fresh pipeline, one load run, drain, SIGTERM, audit check.

    ``make_pipeline`` builds the pipeline (default :class:`Pipeline`); the audit file is checked
    only when the pipeline writes one (``Pipeline.writes_audit``).
    """
    probe = ProbeSampler(requests)
    pipe = (make_pipeline or Pipeline)(workdir / name, args)
    out: dict[str, Any] = {"rate_target": rate or None}
    profiler: subprocess.Popen[bytes] | None = None
    gen: Loadgen | None = None
    try:
        out["startup_s"] = round(pipe.start(), 2)
        assert pipe.ps is not None
        pid = pipe.ps.pid
        out["rss_idle_mib"] = round(proc_status(pid).get("VmRSS", 0) / MIB, 1)
        gen = Loadgen(args, pipe.target, rate, args.duration, tag)
        rss_samples: list[int] = []

        def sample() -> None:
            rss_samples.append(proc_status(pid).get("VmRSS", 0))
            probe.maybe_sample()

        t0, _ = gen.wait_event("start", timeout=60)
        cpu0, threads0, host0, processors0 = pipe.cpu(), thread_cpu(pipe.ps), host_times(), pipe.processor_cpu()
        if args.profile:
            profiler = start_profiler(args, pid, args.out.parent / f"profile-{name}.txt")
            snapshot_sources(args.out.parent / "profile-src")
        t1, _ = gen.wait_event("end", timeout=args.duration + 180, on_tick=sample)
        cpu1 = pipe.cpu()
        result = gen.finish()
        drained = pipe.wait_exported(result["acked_spans"])
        t2, cpu2, threads2, host2 = time.monotonic(), pipe.cpu(), thread_cpu(pipe.ps), host_times()
        processors2 = pipe.processor_cpu()
        status = proc_status(pid)
        if profiler is not None:
            profiler.wait(timeout=args.profile + 60)
            out["profile"] = str(args.out.parent / f"profile-{name}.txt")
        code, stop_s = pipe.stop()
    finally:
        pipe.kill()
        for child in (profiler, gen.proc if gen else None):
            if child is not None and child.poll() is None:
                child.kill()
                child.wait()
    acked = result["acked_spans"]
    load_wall, load_cpu = t1 - t0, cpu1 - cpu0
    drain_wall, drain_cpu = t2 - t0, cpu2 - cpu0
    main_thread = threads2.get(pid, 0.0) - threads0.get(pid, 0.0)
    ok_requests = result["ok_requests"] or 1
    out.update({
        "acked_spans": acked,
        "acked_spans_per_s": round(acked / load_wall),
        "written_spans_per_s": round(acked / drain_wall),
        "load_wall_s": round(load_wall, 2),
        "drain_after_load_s": round(drain_wall - load_wall, 2),
        "drained": drained,
        "pipeline_cpu_s": round(drain_cpu, 2),
        "pipeline_cpu_pct": round(100 * load_cpu / load_wall, 1),  # during the load window
        "pipeline_cpu_pct_incl_drain": round(100 * drain_cpu / drain_wall, 1),
        "spans_per_cpu_s": round(acked / drain_cpu) if drain_cpu else 0,
        "cpu_us_per_request": round(1e6 * drain_cpu / ok_requests),
        "main_thread_cpu_share_pct": round(100 * main_thread / drain_cpu) if drain_cpu else 0,
        # Each processor's own CPU (its metric, thread time inside its function) over the pipeline's, same window.
        "processor_cpu_share_pct": {name: round(100 * (total - processors0.get(name, 0.0)) / drain_cpu, 1)
                                    for name, total in processors2.items()} if drain_cpu else {},
        "loadgen_cpu_pct": round(100 * result["cpu_s"] / result["wall_s"]),
        "host": host_delta(host0, host2),
        "rss_peak_mib": round(status.get("VmHWM", 0) / MIB, 1),
        "rss_end_mib": round(status.get("VmRSS", 0) / MIB, 1),
        "rss_max_sampled_mib": round(max(rss_samples, default=0) / MIB, 1),
        "latency_ms": result["latency_ms"],
        "latency_with_retries_ms": result["latency_with_retries_ms"],
        "backpressure_retries": result["retries"],
        "errors": result["errors"],
        "late_requests": result["late_requests"],
        "max_lag_ms": result["max_lag_ms"],
        "acked_per_second": result["acked_per_second"],
        "exit_code": code,
        "stop_s": round(stop_s, 2),
        "stderr_problems": log_problems(pipe.stderr()),
        "parse_during": probe.summary(),
    })
    out["load_result"] = {k: result[k] for k in ("sent_requests", "ok_requests", "acked_spans") if k in result}
    if not pipe.writes_audit:
        return out
    out["audit"] = verify_audit(pipe.audit_dir, result, tag, 100)
    if not args.keep:
        shutil.rmtree(pipe.audit_dir, ignore_errors=True)
    return out


def snapshot_sources(dest: Path) -> None:
    """Copy ``obs_pipeline/`` next to the profile: line numbers must match the code that ran."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(REPO / "obs_pipeline", dest / "obs_pipeline", ignore=shutil.ignore_patterns("__pycache__"))


def start_profiler(args: Args, pid: int, path: Path) -> subprocess.Popen[bytes]:
    """py-spy in raw (collapsed-stack) format on the pipeline for ``--profile`` seconds."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    cmd = [exe, "record", "--format", "raw", "-o", str(path), "-d", str(int(args.profile)), "-p", str(pid)]
    # --native needs to stop the process per sample (slower, and it perturbs more): sample less often.
    cmd += ["-r", "100", "--native"] if args.profile_native else ["-r", "200", "--nonblocking"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ---------------------------------------------------------------- report


def verdict(ok: bool) -> str:
    """PASS or FAIL."""
    return "PASS" if ok else "FAIL"


def phase_probe(report: dict[str, Any], name: str) -> int:
    """The bare-parse figure a phase is compared with: sampled during it, else the run's mean probe."""
    during = report.get(name, {}).get("parse_during") or {}
    return during.get("spans_per_cpu_s") or report["evaluation_probe"]


def evaluate(report: dict[str, Any]) -> dict[str, Any]:
    """Ratios against the bare parse loop, and the targets.

    A ratio is a phase's spans per CPU-second over the bare parse's, sampled during that phase.
    "At reference speed" multiplies a ratio by the parse figure of python-limits.md (2,019,000
    spans/s), which puts it on that day's machine speed, where the targets were set.
    """
    probes = [report[k]["spans_per_cpu_s"] for k in ("parse_before", "parse_between", "parse_after") if k in report]
    probe = statistics.mean(probes)
    report["evaluation_probe"] = round(probe)
    ratios: dict[str, Any] = {"machine_speed_vs_python_limits": round(probe / REFERENCE_PARSE_SPANS_PER_S, 2),
                              "probe_drift_pct": round(100 * (max(probes) - min(probes)) / probe, 1)}
    targets: dict[str, Any] = {}
    if "sink" in report:
        ratios["sink_vs_parse"] = round(report["sink"]["spans_per_cpu_s"] / report["parse_before"]["spans_per_cpu_s"], 4)
    if "max" in report:
        eff = report["max"]["spans_per_cpu_s"]
        ratio = eff / phase_probe(report, "max")
        ratios["pipeline_vs_parse"] = round(ratio, 4)
        if "sink" in report:
            ratios["pipeline_vs_sink"] = round(eff / report["sink"]["spans_per_cpu_s"], 3)
        normalized = ratio * REFERENCE_PARSE_SPANS_PER_S
        targets["spans_per_cpu_s"] = {
            "target": TARGET_SPANS_PER_CPU_S, "measured": eff, "verdict": verdict(eff >= TARGET_SPANS_PER_CPU_S),
            "at_reference_speed": round(normalized), "verdict_at_reference_speed": verdict(normalized >= TARGET_SPANS_PER_CPU_S),
            "target_as_parse_ratio": round(TARGET_SPANS_PER_CPU_S / REFERENCE_PARSE_SPANS_PER_S, 4),
        }
    if "paced" in report:
        paced = report["paced"]
        ratios["paced_vs_parse"] = round(paced["spans_per_cpu_s"] / phase_probe(report, "paced"), 4)
        targets["rss_at_rate"] = {"target_mib": TARGET_RSS_MIB, "measured_mib": paced["rss_peak_mib"],
                                  "verdict": verdict(paced["rss_peak_mib"] <= TARGET_RSS_MIB)}
        cpu_pct = paced["pipeline_cpu_pct"]
        at_reference = cpu_pct * phase_probe(report, "paced") / REFERENCE_PARSE_SPANS_PER_S
        targets["cpu_at_rate"] = {"target_pct": TARGET_CPU_PCT_AT_10K, "measured_pct": cpu_pct,
                                  "at_reference_speed_pct": round(at_reference, 1),
                                  "verdict": verdict(cpu_pct <= TARGET_CPU_PCT_AT_10K),
                                  "verdict_at_reference_speed": verdict(at_reference <= TARGET_CPU_PCT_AT_10K),
                                  "note": "DESIGN §8 bar (the collector's load test); not in the issue's targets"}
    for name in ("max", "paced"):
        if name in report:
            phase = report[name]
            targets[f"delivery_{name}"] = {
                "verdict": verdict(phase["audit"]["ok"] and phase["exit_code"] == 0 and phase["drained"]),
                "exit_code": phase["exit_code"], "audit_ok": phase["audit"]["ok"]}
    return {"reference_parse_spans_per_cpu_s": round(probe), "ratios": ratios, "targets": targets}


def render(report: dict[str, Any]) -> str:
    """The human-readable report."""
    env, ev = report["env"], report["evaluation"]
    probe = ev["reference_parse_spans_per_cpu_s"]
    rows: list[tuple[str, str, str]] = []

    def row(name: str, value: float | str, ratio: float | None = None) -> None:
        text = f"{value:,.0f}" if isinstance(value, (int, float)) else value
        rows.append((name, text, "" if ratio is None else f"{ratio:.4f}"))

    probes = [report[k] for k in ("parse_before", "parse_between", "parse_after") if k in report]
    for key, label in (("parse_before", "before"), ("parse_between", "between (b) and (c)"), ("parse_after", "after")):
        if key in report:
            row(f"(a) bare parse {label}, spans/CPU-s", report[key]["spans_per_cpu_s"], report[key]["spans_per_cpu_s"] / probe)
    row("(a) bare parse, µs/request", " / ".join(str(p["us_per_request"]) for p in probes))
    if "sink" in report:
        s = report["sink"]
        row("(s) gRPC receive+parse sink, spans/s", s["spans_per_s"])
        row("(s) sink spans/CPU-s (server)", s["spans_per_cpu_s"], ev["ratios"]["sink_vs_parse"])
        row("(s) sink CPU µs per 100-span request", s["cpu_us_per_request"])
        row("(s) sink CPU % / loadgen CPU % / host busy %",
            f"{s['server_cpu_pct']} / {s['loadgen_cpu_pct']} / {s['host']['busy_pct']}")
    if "max" in report:
        m = report["max"]
        row("(b) max: acked spans/s (load window)", m["acked_spans_per_s"])
        row("(b) max: written spans/s (start→all written)", m["written_spans_per_s"])
        row("(b) max: bare parse during the phase, spans/CPU-s", phase_probe(report, "max"), 1.0)
        row("(b) max: pipeline spans/CPU-s", m["spans_per_cpu_s"], ev["ratios"]["pipeline_vs_parse"])
        row("(b) max: pipeline CPU µs per 100-span request", m["cpu_us_per_request"])
        row("(b) max: pipeline CPU % / loadgen CPU % / host busy % / steal %",
            f"{m['pipeline_cpu_pct']} / {m['loadgen_cpu_pct']} / {m['host']['busy_pct']} / {m['host']['steal_pct']}")
        row("(b) max: event-loop thread share of pipeline CPU %", m["main_thread_cpu_share_pct"])
        for name, share in m.get("processor_cpu_share_pct", {}).items():
            row(f"(b) max: {name}'s own share of pipeline CPU % (its metric)", share)
        row("(b) max: peak RSS MiB", m["rss_peak_mib"])
        row("(b) max: backpressure retries", json.dumps(m["backpressure_retries"]) or "{}")
        row("(b) max: latency p50 / p99 ms", f"{m['latency_ms'].get('p50')} / {m['latency_ms'].get('p99')}")
    if "paced" in report:
        c = report["paced"]
        row(f"(c) paced {c['rate_target']:,.0f}/s: achieved spans/s", c["acked_spans_per_s"])
        row("(c) paced: pipeline CPU % of one core", c["pipeline_cpu_pct"])
        row("(c) paced: bare parse during the phase, spans/CPU-s", phase_probe(report, "paced"), 1.0)
        row("(c) paced: pipeline spans/CPU-s", c["spans_per_cpu_s"], ev["ratios"]["paced_vs_parse"])
        row("(c) paced: peak RSS (VmHWM) MiB / idle RSS MiB", f"{c['rss_peak_mib']} / {c['rss_idle_mib']}")
        row("(c) paced: latency p50 / p99 ms", f"{c['latency_ms'].get('p50')} / {c['latency_ms'].get('p99')}")
        row("(c) paced: late requests / max lag ms", f"{c['late_requests']} / {c['max_lag_ms']}")
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    lines = [
        f"obs-pipeline bench {report['date']}  python {env['python']}  protobuf {env['protobuf']} ({env['protobuf_backend']})"
        f"  grpcio {env['grpcio']}  {env['cpus']} CPUs",
        f"workload: {report['workload']['requests']} distinct requests x 100 spans, "
        f"{report['workload']['bytes_per_request']:,} B/request; load: {report['args']['channels']} channels x "
        f"{report['args']['inflight']} in flight, {report['args']['duration']:.0f} s per phase",
        f"machine speed vs python-limits.md day: {ev['ratios']['machine_speed_vs_python_limits']:.2f}x "
        f"(bare-parse probe / 2,019,000 spans/s); probe drift between phases: {ev['ratios']['probe_drift_pct']}%",
        "ratios of (b) and (c) are to the bare parse sampled during that phase; (s) to the probe just before it",
        "",
        f"{'figure':<{width}}  {'value':>{vwidth}}  ratio to bare parse",
    ]
    lines += [f"{n:<{width}}  {v:>{vwidth}}  {r}" for n, v, r in rows]
    lines.append("")
    t = ev["targets"]
    if "spans_per_cpu_s" in t:
        x = t["spans_per_cpu_s"]
        lines.append(f"target >= {x['target']:,} spans/CPU-s: {x['measured']:,} -> {x['verdict']}; at reference machine "
                     f"speed {x['at_reference_speed']:,} -> {x['verdict_at_reference_speed']} "
                     f"(target as parse ratio: {x['target_as_parse_ratio']})")
    if "rss_at_rate" in t:
        x = t["rss_at_rate"]
        lines.append(f"target <= {x['target_mib']} MiB peak RSS at {report['args']['rate']:,.0f} spans/s: "
                     f"{x['measured_mib']} MiB -> {x['verdict']}")
    if "cpu_at_rate" in t:
        x = t["cpu_at_rate"]
        lines.append(f"DESIGN §8 bar <= {x['target_pct']}% of a core at {report['args']['rate']:,.0f} spans/s: "
                     f"{x['measured_pct']}% -> {x['verdict']}; at reference machine speed "
                     f"{x['at_reference_speed_pct']}% -> {x['verdict_at_reference_speed']}")
    for name in ("max", "paced"):
        if name in report:
            p, a = report[name], report[name]["audit"]
            lines.append(
                f"delivery ({name}): exit {p['exit_code']} after SIGTERM in {p['stop_s']} s; audit {a['lines']:,} lines "
                f"for {a['acked_spans']:,} acked spans; duplicates {a['duplicates']}, missing {a['missing']}, "
                f"unexpected {a['unexpected']}, unparseable {a['unparseable']} -> {t[f'delivery_{name}']['verdict']}")
            if p["stderr_problems"]["count"]:
                lines.append(f"  pipeline stderr: {p['stderr_problems']['count']} warning/error lines, first: "
                             f"{p['stderr_problems']['first'][0]}")
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    """Versions and machine, for the report header."""
    import google.protobuf  # noqa: PLC0415
    import grpc  # noqa: PLC0415
    from google.protobuf.internal import api_implementation  # noqa: PLC0415

    return {"python": platform.python_version(), "protobuf": google.protobuf.__version__,
            "protobuf_backend": api_implementation.Type(), "grpcio": grpc.__version__,
            "cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}


def parse_args(argv: list[str] | None = None) -> Args:
    """Command line → :class:`Args`."""
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load in phases (b) and (c)")
    p.add_argument("--rate", type=float, default=10_000.0, help="spans/s of the paced phase (c)")
    p.add_argument("--channels", type=int, default=4, help="gRPC channels of the load generator")
    p.add_argument("--inflight", type=int, default=8, help="concurrent calls per channel")
    p.add_argument("--requests", type=int, default=32, help="distinct 100-span request templates")
    p.add_argument("--seed", type=int, default=1, help="workload seed")
    p.add_argument("--no-sink", dest="sink", action="store_false", help="skip the gRPC receive+parse phase (s)")
    p.add_argument("--phases", default="max,paced", help="pipeline phases to run: max, paced or both (comma-separated)")
    p.add_argument("--sink-duration", type=float, default=8.0, help="seconds of phase (s)")
    p.add_argument("--processors", type=lambda text: [name for name in text.split(",") if name], default=[],
                   help="processors ahead of batch, comma-separated (the default pipeline.yaml: redaction,cost)")
    p.add_argument("--content", default="none", choices=["none", "summary", "full"],
                   help="jsonl_audit content (the exporter's default: summary; none is the foundation's line)")
    p.add_argument("--batch-timeout", default="200ms", help="batch processor timeout (pipeline.yaml: 200ms)")
    p.add_argument("--send-batch-size", type=int, default=2048, help="batch processor send_batch_size (the schema default)")
    p.add_argument("--queue-size", type=int, default=0,
                   help="jsonl_audit sending_queue.queue_size (0: its default); small values exercise backpressure")
    p.add_argument("--profile", type=float, default=0.0,
                   help="run py-spy on the pipeline for this many seconds of phases (b) and (c): bench/results/profile-{max,paced}.txt")
    p.add_argument("--profile-native", action="store_true", help="py-spy --native (C frames too)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, audit files)")
    p.add_argument("--out", type=Path, default=RESULTS / "latest.json", help="where to write the JSON report")
    a = p.parse_args(argv)
    return Args(duration=a.duration, rate=a.rate, channels=a.channels, inflight=a.inflight, requests=a.requests,
                seed=a.seed, sink=a.sink, phases=tuple(x for x in a.phases.split(",") if x), sink_duration=a.sink_duration, batch_timeout=a.batch_timeout,
                send_batch_size=a.send_batch_size, processors=a.processors, content=a.content, queue_size=a.queue_size, profile=a.profile, profile_native=a.profile_native,
                keep=a.keep, out=a.out)


def main(argv: list[str] | None = None) -> int:
    """Run every phase, print the report, write the JSON. Exit 1 if delivery was not exactly-once."""
    args = parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="obs-bench-"))
    requests = build_requests(args.requests, seed=args.seed)
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "env": environment(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "workload": {"requests": len(requests), "spans_per_request": 100,
                     "bytes_per_request": round(statistics.mean(map(len, requests)))},
    }
    try:
        print("(a) bare parse probe ...", file=sys.stderr)
        report["parse_before"] = parse_probe(requests)
        if args.sink:
            print(f"(s) gRPC receive+parse sink, {args.sink_duration:.0f} s ...", file=sys.stderr)
            report["sink"] = run_sink(args, tag=3)
        if "max" in args.phases:
            print(f"(b) pipeline at full speed, {args.duration:.0f} s ...", file=sys.stderr)
            report["max"] = run_pipeline_phase(args, workdir, rate=0, tag=1, name="max", requests=requests)
        if "max" in args.phases and "paced" in args.phases:
            report["parse_between"] = parse_probe(requests)
        if "paced" in args.phases:
            print(f"(c) pipeline paced at {args.rate:,.0f} spans/s, {args.duration:.0f} s ...", file=sys.stderr)
            report["paced"] = run_pipeline_phase(args, workdir, rate=args.rate, tag=2, name="paced",
                                                 requests=requests)
        print("(a) bare parse probe again ...", file=sys.stderr)
        report["parse_after"] = parse_probe(requests)
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report["evaluation"] = evaluate(report)
    report["runtime_s"] = round(time.monotonic() - started, 1)
    text = render(report)
    report["text"] = text
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(text)
    print(f"\n(total {report['runtime_s']} s; JSON: {args.out})")
    delivered = all(report[n]["audit"]["ok"] and report[n]["exit_code"] == 0 for n in ("max", "paced") if n in report)
    return 0 if delivered else 1


if __name__ == "__main__":
    sys.exit(main())
