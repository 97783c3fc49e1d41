"""Big OTLP/JSON bodies are decoded off the event loop; deep OTLP/JSON is refused in a few words."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path
from typing import Self

import orjson
import pytest

from obs_pipeline.signals import Signal
from obs_pipeline.testing import CapturingConsumer
from tests.receivers.test_otlp_http import FIXTURE_LINES, JSON, PROTOBUF, post, running, traces_request

MAX_LOOP_GAP = 0.5  # seconds


def big_json_body(size: int = 16 * 2**20) -> tuple[bytes, int]:
    """An OTLP/JSON traces body of about ``size`` bytes made of the fixture's resource spans, and its span count."""
    objects = [orjson.loads(line) for line in FIXTURE_LINES]
    resource_spans: list = []
    length = 0
    while length < size:
        for obj in objects:
            resource_spans.extend(obj["resourceSpans"])
            length += sum(len(orjson.dumps(rs)) + 1 for rs in obj["resourceSpans"])
    spans = sum(len(ss["spans"]) for rs in resource_spans for ss in rs["scopeSpans"])
    return orjson.dumps({"resourceSpans": resource_spans}), spans


def deep_json(levels: int) -> bytes:
    """A span attribute of ``levels`` nested arrays, as OTLP/JSON text (orjson cannot write it past 255 levels)."""
    value = b'{"arrayValue":{"values":[' * levels + b'{"stringValue":"leaf"}' + b"]}}" * levels
    return (b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"x","attributes":[{"key":"deep","value":'
            + value + b"}]}]}]}]}")


def worker_pids() -> list[int]:
    """Our child processes that run the OTLP/JSON worker."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and b"worker_main" in cmdline:
            pids.append(int(proc.name))
    return pids


class Heartbeat:
    """A task that sleeps 10 ms at a time and records the longest time between two wake-ups."""

    def __init__(self) -> None:
        self.max_gap = 0.0
        self.beats = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            self.max_gap = max(self.max_gap, now - last)
            self.beats += 1
            last = now

    def __enter__(self) -> Self:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()

    async def stopped(self) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task


class TestBigJsonBodies:
    async def test_16mb_json_body_does_not_block_the_loop(self, metrics):
        """While a ~16 MB OTLP/JSON body is decoded, the loop keeps answering small requests within 500 ms."""
        body, span_count = big_json_body()
        assert len(body) > 16 * 2**20
        traces, logs = CapturingConsumer(), CapturingConsumer()
        async with running({Signal.TRACES: traces, Signal.LOGS: logs}, metrics) as (receiver, session):
            # Warm the decoder up first, so the measurement is of the steady state (the worker
            # process starts on the first big body).
            warm = await post(session, "/v1/traces", big_json_body(2 * 2**20)[0], JSON)
            assert warm.status == 200
            pings: list[float] = []

            async def ping_loopback() -> None:
                """An empty logs request every 10 ms on its own connection: the loop answering at all."""
                import aiohttp  # noqa: PLC0415

                async with aiohttp.ClientSession(f"http://127.0.0.1:{receiver.http_port}") as other:
                    while True:
                        started = time.perf_counter()
                        answer = await post(other, "/v1/logs", b"", PROTOBUF)
                        assert answer.status == 200
                        pings.append(time.perf_counter() - started)
                        await asyncio.sleep(0.01)

            heartbeat = Heartbeat()
            with heartbeat:
                pinger = asyncio.create_task(ping_loopback())
                await asyncio.sleep(0.05)
                started = time.perf_counter()
                answer = await post(session, "/v1/traces", body, JSON)
                took = time.perf_counter() - started
                pinger.cancel()
            await heartbeat.stopped()
        assert answer.status == 200
        assert traces.items == span_count + big_json_body(2 * 2**20)[1]
        summary = (f"16 MB OTLP/JSON: answered in {took:.2f}s; loop gap max {heartbeat.max_gap * 1000:.0f} ms over "
                   f"{heartbeat.beats} beats; loopback ping max {max(pings) * 1000:.0f} ms over {len(pings)} pings")
        logging.getLogger(__name__).warning("%s", summary)  # shown with -rA or --log-cli-level=WARNING
        assert heartbeat.max_gap < MAX_LOOP_GAP, summary
        assert len(pings) > 10, summary
        assert max(pings) < MAX_LOOP_GAP, summary

    async def test_worker_is_shut_down_with_the_server(self, metrics):
        """One worker process decodes big bodies (small ones never start it); it exits when the receiver stops."""
        async with running({Signal.TRACES: CapturingConsumer()}, metrics) as (_receiver, session):
            assert (await post(session, "/v1/traces", traces_request(1), PROTOBUF)).status == 200
            small = await post(session, "/v1/traces", FIXTURE_LINES[0], JSON)
            assert small.status == 200
            assert worker_pids() == []
            for _ in range(2):
                answer = await post(session, "/v1/traces", big_json_body(2 * 2**20)[0], JSON)
                assert answer.status == 200
            assert len(worker_pids()) == 1
        assert worker_pids() == []

    async def test_a_worker_that_dies_or_gets_ctrl_c_costs_nothing(self, metrics):
        """Ctrl-C (SIGINT to the process group) does not stop the worker; a killed worker is replaced."""
        body, span_count = big_json_body(2 * 2**20)
        consumer = CapturingConsumer()
        async with running({Signal.TRACES: consumer}, metrics) as (_receiver, session):
            assert (await post(session, "/v1/traces", body, JSON)).status == 200
            (pid,) = worker_pids()
            os.kill(pid, signal.SIGINT)
            assert (await post(session, "/v1/traces", body, JSON)).status == 200
            assert worker_pids() == [pid]
            os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.1)
            assert (await post(session, "/v1/traces", body, JSON)).status == 200  # a new worker, or a thread
            assert (await post(session, "/v1/traces", body, JSON)).status == 200
            assert len(worker_pids()) == 1
            assert worker_pids() != [pid]
        assert consumer.items == 4 * span_count

    async def test_big_body_errors_read_like_small_ones(self, metrics):
        """A bad id in a big body is the same 400, naming the field, as in a small one."""
        body, _spans = big_json_body(2 * 2**20)
        obj = orjson.loads(body)
        obj["resourceSpans"][3]["scopeSpans"][0]["spans"][1]["traceId"] = "sk-leaked-secret"
        async with running({Signal.TRACES: CapturingConsumer()}, metrics) as (_receiver, session):
            answer = await post(session, "/v1/traces", orjson.dumps(obj), JSON)
        assert answer.status == 400
        message = orjson.loads(answer.body)["message"]
        assert "resourceSpans[3].scopeSpans[0].spans[1].traceId" in message
        assert "sk-leaked" not in message

    async def test_without_a_worker_process_big_bodies_are_decoded_in_a_thread(self, metrics, monkeypatch):
        """If no process can be started, big bodies still go through (in a thread)."""
        from obs_pipeline.receivers.otlp import offload  # noqa: PLC0415

        async def no_processes() -> None:
            raise OSError("no processes here")

        monkeypatch.setattr(offload, "_start_worker", no_processes)
        body, span_count = big_json_body(2 * 2**20)
        consumer = CapturingConsumer()
        async with running({Signal.TRACES: consumer}, metrics) as (_receiver, session):
            answer = await post(session, "/v1/traces", body, JSON)
        assert answer.status == 200
        assert consumer.items == span_count


class TestDeepJson:
    @pytest.mark.parametrize("levels", [48, 60, 300])
    async def test_deep_json_is_400_naming_the_cause_briefly(self, metrics, levels):
        """OTLP/JSON nested past protobuf's limit is a 400 that says so, with a short path."""
        async with running({Signal.TRACES: CapturingConsumer()}, metrics) as (_receiver, session):
            answer = await post(session, "/v1/traces", deep_json(levels), JSON)
        assert answer.status == 400
        message = orjson.loads(answer.body)["message"]
        assert "nesting deeper than 100 levels at resourceSpans[0].scopeSpans[0].spans[0].attributes[0]" in message
        assert "wrong type" not in message
        assert len(message) < 200

    async def test_deepest_legal_json_is_accepted(self, metrics):
        """47 array levels under a span attribute fit protobuf's limit and are accepted."""
        consumer = CapturingConsumer()
        async with running({Signal.TRACES: consumer}, metrics) as (_receiver, session):
            answer = await post(session, "/v1/traces", deep_json(47), JSON)
            small = await post(session, "/v1/traces", traces_request(1), PROTOBUF)
        assert (answer.status, small.status) == (200, 200)
