"""OTLP/JSON request bodies decoded off the event loop when they are big.

Decoding OTLP/JSON costs about 140 ms per MiB on the loop (``orjson.loads`` and, mostly,
protobuf's pure-Python ``json_format``): a 16 MB body stalled ``/healthz`` for 2.4 s. Bodies over
:data:`PROCESS_THRESHOLD` bytes (after decompression) therefore go to one worker **process**,
which sends back the serialized protobuf; the loop only parses that (upb, about 2 ms per MiB).

Why a process and not a thread: both libraries hold the GIL. In a thread the loop gets the GIL
back between ``json_format``'s Python steps, but not during the one ``orjson.loads`` call, so a
16 MB body still stopped the loop for 255-396 ms and cut its rate by a third; with the worker
process the longest stop measured was 28-33 ms (``tests/receivers/test_otlp_http_big_json.py``).

The worker is a plain ``python -c`` subprocess started on the first big body, talking over its
stdin/stdout with length-prefixed frames that the event loop writes and reads. So there is no
``multiprocessing`` (which would import the program's ``__main__`` again in the child), no
pickling, no fork of a process that runs gRPC's threads. It decodes one body at a time (a lock
keeps the frames in order), ignores SIGINT and SIGTERM (the parent decides when it stops: at the
server's cleanup, by closing its stdin), and exits when its stdin ends, so it cannot outlive the
parent. Its stderr goes nowhere: a crash in the child must not write a traceback into our logs.

If it cannot be started, big bodies are decoded in a thread instead: slower for the loop, but
nothing is lost. If it dies (or overruns :func:`body_deadline`) while decoding a body, that body
is never retried in our own process, where it could do the same damage: the sender is told to
retry (:class:`WorkerLost`, answered 503); a body that kills a worker a second time is refused for
good (``ValueError``, answered 400). Dead workers are reaped, never left as zombies.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal as signals
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from obs_pipeline import otlp_json
from obs_pipeline.signals import Message, Signal, parse

if TYPE_CHECKING:
    from obs_pipeline.telemetry.logs import ComponentLogger

__all__ = ["PROCESS_THRESHOLD", "JsonDecoder", "WorkerLost", "body_deadline", "worker_main"]

#: OTLP/JSON bodies larger than this (in bytes, after decompression) are decoded in the worker
#: process; one this size costs the loop about 35 ms when decoded in place.
PROCESS_THRESHOLD = 256 * 1024
#: After this many worker processes could not be started in a row, big bodies are decoded in threads.
MAX_WORKER_FAILURES = 3
#: Bodies that killed a worker remembered (by digest), so a second kill refuses the body for good.
REMEMBERED_POISON = 64


class WorkerLost(Exception):
    """The worker died or overran its deadline on this body; the sender should retry (503)."""


def body_deadline(size: int) -> float:
    """Seconds the worker may take for a body of ``size`` bytes (decoding runs ~7 MiB/s here)."""
    return 10.0 + size / (256 * 1024)

# A frame: one byte (request: the signal; answer: ``w`` wire bytes or ``e`` error text), then the length.
_FRAME = struct.Struct("!cQ")
_SIGNAL_CODES = {Signal.TRACES: b"t", Signal.METRICS: b"m", Signal.LOGS: b"l"}
_CODE_SIGNALS = {code: signal for signal, code in _SIGNAL_CODES.items()}
_WIRE, _ERROR = b"w", b"e"
_WORKER_CODE = "from obs_pipeline.receivers.otlp.offload import worker_main; worker_main()"
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])  # where ``obs_pipeline`` is imported from


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    """``size`` bytes from ``stream``, or None when it ends first."""
    data = stream.read(size)
    return data if len(data) == size else None


def worker_main() -> None:
    """The worker process: decode frames from stdin, answer on stdout, until stdin ends."""
    signals.signal(signals.SIGINT, signals.SIG_IGN)
    signals.signal(signals.SIGTERM, signals.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while (header := _read_exactly(stdin, _FRAME.size)) is not None:
        code, size = _FRAME.unpack(header)
        body = _read_exactly(stdin, size)
        if body is None:
            return
        signal = _CODE_SIGNALS[code]
        try:
            answer, payload = _WIRE, otlp_json.decode(signal, body).SerializeToString()
        except ValueError as exc:  # the messages name fields, never values (otlp_json)
            answer, payload = _ERROR, str(exc).encode()
        except Exception as exc:  # anything else must not stop the worker either
            answer, payload = _ERROR, f"invalid OTLP/JSON {signal}: {type(exc).__name__}".encode()
        stdout.write(_FRAME.pack(answer, len(payload)))
        stdout.write(payload)
        stdout.flush()


async def _start_worker() -> asyncio.subprocess.Process:
    """A new worker process, importing this very package (``PYTHONPATH`` points at it)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", _WORKER_CODE, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env=env,
    )


class JsonDecoder:
    """Decodes the OTLP/JSON bodies of one HTTP server; owns its worker process (see the module doc)."""

    def __init__(self, log: ComponentLogger) -> None:
        self.log = log
        self._worker: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._failures = 0
        self._closed = False
        self._poison: dict[bytes, None] = {}  # digests of bodies that killed a worker, oldest first
        self._reapers: set[asyncio.Task[Any]] = set()

    async def decode(self, signal: Signal, body: bytes) -> tuple[Message, bytes | None]:
        """The message, and its serialization when it was made in the worker (else None).

        Raises:
            ValueError: not JSON, or not OTLP/JSON for ``signal`` (see :func:`otlp_json.from_dict`),
                or a body that killed a worker twice.
            WorkerLost: the worker died on this body; the sender should retry.
        """
        if len(body) <= PROCESS_THRESHOLD:
            return otlp_json.decode(signal, body), None
        if self._failures < MAX_WORKER_FAILURES:
            async with self._lock:
                wire = None if self._closed else await self._in_worker(signal, body)
            if wire is not None:
                return parse(signal, wire), wire
        return await asyncio.to_thread(otlp_json.decode, signal, body), None

    async def _in_worker(self, signal: Signal, body: bytes) -> bytes | None:
        """The worker's answer; None when there is no working worker (the caller uses a thread).

        Raises:
            ValueError: the worker's error for this body.
        """
        worker = self._worker
        if worker is None or worker.returncode is not None:
            try:
                worker = self._worker = await _start_worker()
            except (OSError, ValueError) as exc:
                self._failed(f"cannot start a worker process for big OTLP/JSON bodies ({type(exc).__name__})")
                return None
        assert worker.stdin is not None
        assert worker.stdout is not None
        try:
            async with asyncio.timeout(body_deadline(len(body))):
                worker.stdin.write(_FRAME.pack(_SIGNAL_CODES[signal], len(body)))
                worker.stdin.write(body)
                await worker.stdin.drain()
                answer, size = _FRAME.unpack(await worker.stdout.readexactly(_FRAME.size))
                payload = await worker.stdout.readexactly(size)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            self._kill()
            self._lost_on(body, "overran its deadline" if isinstance(exc, TimeoutError) else "died")
        except asyncio.CancelledError:
            self._kill()  # its answer would be read as the next body's
            raise
        self._failures = 0
        if answer == _ERROR:
            raise ValueError(payload.decode())
        return payload

    def _lost_on(self, body: bytes, what: str) -> None:
        """The worker was lost on ``body``: a retry for the sender, or a refusal if it happened before.

        Raises:
            WorkerLost: the first time for this body.
            ValueError: the second time: the body is refused for good.
        """
        digest = hashlib.blake2b(body, digest_size=16).digest()
        if digest in self._poison:
            self.log.warning("the OTLP/JSON worker process %s again on the same body; refusing it", what)
            raise ValueError("invalid OTLP/JSON: the body cannot be decoded (the decoder process stopped on it twice)")
        self._poison[digest] = None
        if len(self._poison) > REMEMBERED_POISON:
            del self._poison[next(iter(self._poison))]
        self.log.warning("the OTLP/JSON worker process %s on a body; the sender is asked to retry", what)
        raise WorkerLost(what)

    def _failed(self, what: str) -> None:
        self._failures += 1
        later = "; from now on in threads" if self._failures >= MAX_WORKER_FAILURES else ""
        self.log.warning("%s; decoding this body in a thread%s", what, later)

    def _kill(self) -> None:
        """Kill the worker and reap it in the background (``close`` waits for the reaping)."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        if worker.returncode is None:
            worker.kill()
        reaper = asyncio.ensure_future(worker.wait())
        self._reapers.add(reaper)
        reaper.add_done_callback(self._reapers.discard)

    async def close(self) -> None:
        """Stop the worker: end its input, so it exits after what it is doing (killed after 1 s)."""
        self._closed = True
        if self._reapers:
            await asyncio.gather(*self._reapers, return_exceptions=True)
        worker, self._worker = self._worker, None
        if worker is None or worker.returncode is not None:
            return
        assert worker.stdin is not None
        worker.stdin.close()
        try:
            await asyncio.wait_for(worker.wait(), 1.0)
        except TimeoutError:
            worker.kill()
            await worker.wait()

    async def on_cleanup(self, _app: Any) -> None:
        """For ``aiohttp.web.Application.on_cleanup``: the server's runner cleanup stops the worker."""
        await self.close()
