"""A raw-bytes OTLP/gRPC replay client: ``python -m bench.loadgen --target 127.0.0.1:4317 ...``.

Why not the OpenTelemetry SDK: it cannot produce more than about 10k spans/s per process
(python-limits.md, bench 6). This client sends pre-serialized ``ExportTraceServiceRequest``
bytes (:mod:`bench.workload`) with an identity request serializer, so its cost per request is a
``bytes.join`` plus the gRPC call, and one process can offer several hundred thousand spans/s.

It opens ``--channels`` channels (each its own TCP connection) with ``--inflight`` concurrent
calls each, and either sends as fast as it can for ``--duration`` seconds or paces requests at
``--rate`` spans/s (open loop with bounded concurrency: request *k* is due at ``t0 + k·100/rate``
and a late request goes out as soon as a slot is free). UNAVAILABLE and RESOURCE_EXHAUSTED are
the pipeline's backpressure: they are retried after the delay in the status's ``RetryInfo``
(or a short backoff) with the same bytes, until ``--drain-timeout`` after the end.

It runs as its own process so its CPU is not charged to the pipeline. On stdout it prints JSON
lines: ``{"event": "start"}`` when the first request goes out, ``{"event": "end"}`` when every
request has an outcome, then ``{"event": "result", ...}`` (see :class:`LoadResult`).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc
import grpc.aio
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from bench.workload import SPANS_PER_REQUEST, Template, build_templates, id_prefix

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
BACKPRESSURE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
# The server may or may not have accepted these: the audit may or may not hold their spans.
UNKNOWN_OUTCOME = frozenset({grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED})
MAX_MESSAGE = 64 * 1024 * 1024
DEFAULT_BACKOFF = 0.05


@dataclass
class LoadConfig:
    """What to send, where, and how fast."""

    target: str
    duration: float = 20.0
    rate: float = 0.0  # spans/s; 0 = as fast as possible
    channels: int = 4
    inflight: int = 8  # concurrent calls per channel
    requests: int = 32  # distinct request templates, replayed round-robin
    spans: int = SPANS_PER_REQUEST
    seed: int = 1
    tag: int = 1  # first id byte: keeps ids of different runs apart
    timeout: float = 30.0  # per call
    drain_timeout: float = 60.0  # how long refused requests are retried after the end


@dataclass
class LoadResult:
    """Outcome of one run. Sequence numbers 0..sent_requests-1 were used, each exactly once."""

    config: dict[str, Any]
    wall_s: float = 0.0  # first send → last outcome
    cpu_s: float = 0.0  # this process, all threads, same window
    sent_requests: int = 0
    ok_requests: int = 0
    acked_spans: int = 0  # OK responses, minus partial-success rejections
    rejected_spans: int = 0  # partial_success.rejected_spans
    retries: dict[str, int] = field(default_factory=dict)  # backpressure replies, by status
    errors: dict[str, int] = field(default_factory=dict)  # final non-OK outcomes, by status
    failed_seqs: list[int] = field(default_factory=list)  # not accepted (no audit line expected)
    unknown_seqs: list[int] = field(default_factory=list)  # outcome unknown (timeouts)
    late_requests: int = 0  # paced mode: sent more than 5 ms after their due time
    max_lag_ms: float = 0.0  # paced mode: worst send delay behind schedule
    latency_ms: dict[str, float] = field(default_factory=dict)  # last attempt: p50, p90, p99, max
    latency_with_retries_ms: dict[str, float] = field(default_factory=dict)
    acked_per_second: list[int] = field(default_factory=list)  # spans acked in each second of the run

    @property
    def spans_per_s(self) -> float:
        """Acked spans per wall second."""
        return self.acked_spans / self.wall_s if self.wall_s else 0.0


def retry_delay(metadata: Any) -> float | None:
    """The ``RetryInfo.retry_delay`` in a gRPC status's trailing details, in seconds, if any."""
    for key, value in metadata or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max of ``values`` (nearest rank), rounded to 0.01."""
    if not values:
        return {}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50": rank(0.50), "p90": rank(0.90), "p99": rank(0.99), "max": round(ordered[-1], 2)}


class LoadGenerator:
    """Replays templates over several channels; one instance per run."""

    def __init__(self, cfg: LoadConfig, templates: list[Template]) -> None:
        self.cfg = cfg
        self.templates = templates
        self.result = LoadResult(config=asdict(cfg))
        self._seq = 0
        self._t0 = 0.0
        self._end = 0.0
        self._give_up = 0.0
        self._interval = cfg.spans / cfg.rate if cfg.rate > 0 else 0.0
        self._latencies: list[float] = []
        self._latencies_total: list[float] = []
        self._per_second: collections.Counter[int] = collections.Counter()
        self._retries: collections.Counter[str] = collections.Counter()
        self._errors: collections.Counter[str] = collections.Counter()

    async def run(self) -> LoadResult:
        """Connect, send for ``duration``, wait for every outcome; print start/end events."""
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.use_local_subchannel_pool", 1),  # one TCP connection per channel
        ]
        channels = [grpc.aio.insecure_channel(self.cfg.target, options=options) for _ in range(self.cfg.channels)]
        try:
            await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in channels)), 30)
            stubs = [c.unary_unary(EXPORT_METHOD, request_serializer=None,
                                   response_deserializer=ExportTraceServiceResponse.FromString) for c in channels]
            loop = asyncio.get_running_loop()
            cpu0 = time.process_time()
            self._t0 = loop.time()
            self._end = self._t0 + self.cfg.duration
            self._give_up = self._end + self.cfg.drain_timeout
            emit({"event": "start"})
            await asyncio.gather(*(self._worker(stub) for stub in stubs for _ in range(self.cfg.inflight)))
            self.result.wall_s = loop.time() - self._t0
            self.result.cpu_s = time.process_time() - cpu0
            emit({"event": "end"})
        finally:
            await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)
        r = self.result
        r.sent_requests = self._seq
        r.retries, r.errors = dict(self._retries), dict(self._errors)
        r.failed_seqs.sort()
        r.unknown_seqs.sort()
        r.latency_ms = percentiles(self._latencies)
        r.latency_with_retries_ms = percentiles(self._latencies_total)
        r.max_lag_ms = round(r.max_lag_ms, 2)
        seconds = max(self._per_second, default=-1) + 1
        r.acked_per_second = [self._per_second[s] for s in range(seconds)]
        return r

    def _next(self, now: float) -> tuple[int, float] | None:
        """The next sequence number and its due time, or None when the run is over."""
        due = self._t0 + self._seq * self._interval if self._interval else now
        if due >= self._end or now >= self._end:
            return None
        seq = self._seq
        self._seq += 1
        return seq, due

    async def _worker(self, stub: Any) -> None:
        loop = asyncio.get_running_loop()
        n_templates = len(self.templates)
        tag = self.cfg.tag
        while (nxt := self._next(loop.time())) is not None:
            seq, due = nxt
            now = loop.time()
            if due > now:
                await asyncio.sleep(due - now)
            elif self._interval:
                lag = (now - due) * 1000
                self.result.max_lag_ms = max(self.result.max_lag_ms, lag)
                if lag > 5:
                    self.result.late_requests += 1
            template = self.templates[seq % n_templates]
            await self._send(stub, seq, template.render(id_prefix(tag, seq)), template.spans)

    async def _send(self, stub: Any, seq: int, payload: bytes, spans: int) -> None:
        """One request until it has an outcome: OK, a final error, or retries given up."""
        loop = asyncio.get_running_loop()
        first = loop.time()
        backoff = DEFAULT_BACKOFF
        while True:
            started = loop.time()
            try:
                response = await stub(payload, timeout=self.cfg.timeout)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code in BACKPRESSURE and loop.time() < self._give_up:
                    self._retries[code.name] += 1
                    hint = retry_delay(exc.trailing_metadata())
                    await asyncio.sleep(hint if hint is not None else backoff)
                    backoff = min(backoff * 2, 1.0)
                    continue
                self._errors[code.name] += 1
                (self.result.unknown_seqs if code in UNKNOWN_OUTCOME else self.result.failed_seqs).append(seq)
                return
            done = loop.time()
            self._latencies.append((done - started) * 1000)
            self._latencies_total.append((done - first) * 1000)
            rejected = response.partial_success.rejected_spans
            self.result.ok_requests += 1
            self.result.acked_spans += spans - rejected
            self.result.rejected_spans += rejected
            self._per_second[int(done - self._t0)] += spans - rejected
            return


def emit(event: dict[str, Any]) -> None:
    """One JSON line on stdout, flushed at once (the bench reads it as it happens)."""
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def parse_args(argv: list[str] | None = None) -> LoadConfig:
    """Command line → :class:`LoadConfig`."""
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default="127.0.0.1:4317", help="host:port of the OTLP/gRPC receiver")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of sending")
    p.add_argument("--rate", type=float, default=0.0, help="spans/s to pace at; 0 = as fast as possible")
    p.add_argument("--channels", type=int, default=4, help="gRPC channels (TCP connections)")
    p.add_argument("--inflight", type=int, default=8, help="concurrent calls per channel")
    p.add_argument("--requests", type=int, default=32, help="distinct request templates")
    p.add_argument("--spans", type=int, default=SPANS_PER_REQUEST, help="spans per request")
    p.add_argument("--seed", type=int, default=1, help="workload seed")
    p.add_argument("--tag", type=int, default=1, help="run tag (first byte of every id), 0..255")
    p.add_argument("--timeout", type=float, default=30.0, help="per-call deadline, seconds")
    p.add_argument("--drain-timeout", type=float, default=60.0, help="retry refused requests this long after the end")
    a = p.parse_args(argv)
    return LoadConfig(target=a.target, duration=a.duration, rate=a.rate, channels=a.channels, inflight=a.inflight,
                      requests=a.requests, spans=a.spans, seed=a.seed, tag=a.tag, timeout=a.timeout,
                      drain_timeout=a.drain_timeout)


def main(argv: list[str] | None = None) -> int:
    """Build the workload, run, print the result line. Exit 0 unless nothing was acked."""
    cfg = parse_args(argv)
    templates = build_templates(cfg.requests, cfg.spans, cfg.seed)
    result = asyncio.run(LoadGenerator(cfg, templates).run())
    emit({"event": "result", **asdict(result), "spans_per_s": round(result.spans_per_s)})
    return 0 if result.acked_spans else 1


if __name__ == "__main__":
    sys.exit(main())
