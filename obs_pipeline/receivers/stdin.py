"""The ``stdin`` receiver: JSON lines, OTLP/JSON lines or text lines from standard input.

A daemon thread reads the input with ``os.read`` (a pipe, a file, ``/dev/null`` or a TTY all
work, and no Python-level lock is held, so a thread still blocked at exit cannot wedge the
interpreter's shutdown) and hands 64 KiB chunks to the event loop through a small bounded
queue. The loop splits lines, decodes them (:mod:`obs_pipeline.receivers.linebatch`) and hands
a batch on whenever ``max_batch_lines`` lines are ready or no more input is waiting.

Backpressure: when the pipeline refuses a batch, the same batch is retried after the suggested
delay (capped at 1 s) and nothing more is read meanwhile, so nothing is dropped. Malformed
lines are counted, reported with their line number (never their content) and skipped. At end
of input the last batch is handed on and the host is told (``receiver_finished``), so ``run``
exits when stdin was its only input.

Every record made from a line gets the attribute ``log.record.uid``: 32 hex digits derived from
``stdin``, the time the receiver started (ns) and the line number (blank and skipped lines
count), so identical lines and separate runs over the same input get different ids, and a given
(run, line) always the same one. Values converted while decoding (see
:mod:`~obs_pipeline.receivers.linebatch`) are counted in ``obs_pipeline_receiver_repaired_values``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from obs_pipeline.batch import Batch
from obs_pipeline.components import (
    Consumer,
    Host,
    Produces,
    Receiver,
    ReceiverFactory,
    ReceiverTraits,
    Settings,
)
from obs_pipeline.errors import Problem, RefusedError, describe_exception
from obs_pipeline.receivers._common import Counters
from obs_pipeline.receivers.linebatch import FORMATS, LineBatch, MalformedLine, NoPipeline
from obs_pipeline.signals import Signal, count_items
from obs_pipeline.units import parse_size

CHUNK = 64 * 1024
QUEUED_CHUNKS = 4  # read-ahead between the reader thread and the loop
MAX_RETRY_DELAY = 1.0
MIN_RETRY_DELAY = 0.01
LOGGED_LINE_WARNINGS = 20  # after this many per run, bad lines are only counted
DEFAULT_FORMAT = "json"  # the schema's defaults, for a Config built without the config layer
DEFAULT_MAX_LINE_SIZE = 2**20  # 1MiB
DEFAULT_MAX_BATCH_LINES = 1000
SOURCE = "stdin"  # the source in each record's log.record.uid (linebatch.record_uid)
_EOF = object()


@dataclass(frozen=True)
class Config:
    """See ``schemas/receivers/stdin.schema.json``."""

    format: str = DEFAULT_FORMAT  # json | otlp_json | text
    max_line_size: int = DEFAULT_MAX_LINE_SIZE  # bytes
    max_batch_lines: int = DEFAULT_MAX_BATCH_LINES


def parse(raw: dict[str, Any]) -> Config:
    """Typed config from the validated dict (schema defaults filled in, so every key is there)."""
    return Config(
        format=raw["format"],
        max_line_size=parse_size(raw["max_line_size"]),
        max_batch_lines=raw["max_batch_lines"],
    )


class _LineSplitter:
    """Splits a byte stream into numbered lines; a line over ``max_size`` comes out as ``None``.

    An overlong line is never held in memory: once it passes the limit the rest of it is skipped.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.lineno = 0
        self._partial = bytearray()
        self._skipping = False

    def _complete(self, piece: bytes) -> bytes | None:
        self.lineno += 1
        if self._skipping:
            self._skipping = False
            return None
        if self._partial:
            self._partial += piece
            piece = bytes(self._partial)
            self._partial.clear()
        if piece.endswith(b"\r"):
            piece = piece[:-1]
        return piece if len(piece) <= self.max_size else None

    def feed(self, chunk: bytes) -> list[tuple[int, bytes | None]]:
        """The lines completed by ``chunk``."""
        out = []
        start = 0
        find = chunk.find
        while (end := find(b"\n", start)) >= 0:
            out.append((self.lineno + 1, self._complete(chunk[start:end])))
            start = end + 1
        if start < len(chunk) and not self._skipping:
            if len(self._partial) + len(chunk) - start > self.max_size + 1:  # +1: a trailing \r
                self._partial.clear()
                self._skipping = True
            else:
                self._partial += chunk[start:]
        return out

    def finish(self) -> list[tuple[int, bytes | None]]:
        """At end of input: the last line if it had no newline."""
        if self._partial or self._skipping:
            return [(self.lineno + 1, self._complete(b""))]
        return []

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line held."""
        return len(self._partial)


class StdinReceiver(Receiver):
    """Reads ``stream`` (default: the process's standard input) until end of input or shutdown."""

    def __init__(
        self, settings: Settings, cfg: Config, consumers: Mapping[Signal, Consumer], stream: BinaryIO | None = None,
    ) -> None:
        super().__init__(settings, consumers)
        self.cfg = cfg
        self.stream = stream
        self.counters = Counters(settings.metrics, self.id, "stdin")
        self._host: Host | None = None
        self._task: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[Any] | None = None
        self._stopping = asyncio.Event()
        self._thread_stop = threading.Event()
        self._slots = threading.Semaphore(QUEUED_CHUNKS)  # read-ahead chunks the thread may queue
        self._warnings = 0
        self._malformed_total = 0
        self._pending_malformed = 0
        self._pending_no_pipeline: dict[Signal, int] = {}
        self.started_ns = 0  # when reading started: with the line number, it makes each record's uid

    async def on_start(self, host: Host) -> None:
        """Start the reader thread and the batching task (supervised); returns at once."""
        self._host = host
        self.started_ns = time.time_ns()
        self._queue = asyncio.Queue()  # bounded by ``_slots``
        stream = self.stream if self.stream is not None else getattr(sys.stdin, "buffer", None)
        thread = threading.Thread(
            target=self._read_loop, args=(stream, asyncio.get_running_loop(), self._queue),
            name=f"{self.id} reader", daemon=True,
        )
        thread.start()
        self._task = self.spawn(self._run(), "read input")

    async def on_shutdown(self) -> None:
        """Stop reading, hand on what was already read, return."""
        self._thread_stop.set()
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            await task

    # -- the reader thread ------------------------------------------------------------------

    def _read_loop(self, stream: BinaryIO | None, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]) -> None:
        """Runs in the thread: read chunks until EOF, error or shutdown; hand each to the loop."""
        if stream is None:
            self._hand_over(loop, queue, OSError("standard input is closed"))
            return
        read, fd = _reader(stream)
        while not self._thread_stop.is_set():
            try:
                chunk = read(CHUNK)
            except BlockingIOError:  # an inherited O_NONBLOCK descriptor: wait until it is readable
                if fd is not None:
                    select.select([fd], [], [], 0.2)
                continue
            except (OSError, ValueError) as exc:
                self._hand_over(loop, queue, exc)
                return
            if not chunk:
                break
            if not self._hand_over(loop, queue, chunk):
                return
        self._hand_over(loop, queue, _EOF)

    def _hand_over(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any], item: Any) -> bool:
        """Queue ``item`` on the loop, waiting while the read-ahead is full; False once stopping."""
        while not self._slots.acquire(timeout=0.2):
            if self._thread_stop.is_set() or loop.is_closed():
                return False
        if self._thread_stop.is_set():
            return False
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is closed
            return False
        return True

    # -- the event-loop side ----------------------------------------------------------------

    async def _run(self) -> None:
        """Read to the end; a bug raises out of here and the supervisor reports it as fatal."""
        reached_eof = await self._consume_input()
        if reached_eof and self._host is not None:
            self._host.receiver_finished(self.id)

    async def _next_chunk(self) -> Any:
        """The next chunk, ``_EOF``, an exception from the reader, or None when shutting down."""
        assert self._queue is not None
        if not self._queue.empty():
            self._slots.release()
            return self._queue.get_nowait()
        if self._stopping.is_set():
            return None
        getter = asyncio.ensure_future(self._queue.get())
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not getter.done():
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
        if getter.done() and not getter.cancelled():
            self._slots.release()
            return getter.result()
        return None

    async def _consume_input(self) -> bool:
        """Read, decode and hand on batches; True at end of input, False when shut down."""
        assert self._queue is not None
        splitter = _LineSplitter(self.cfg.max_line_size)
        batch = self._new_batch()
        while True:
            item = await self._next_chunk()
            if item is None:  # shutdown: hand on what was read, drop an unfinished line
                if splitter.pending:
                    self.log.warning("shutdown: dropped an unfinished line %d (%d bytes)", splitter.lineno + 1, splitter.pending)
                await self._flush(batch)
                return False
            if item is _EOF or isinstance(item, BaseException):
                if isinstance(item, BaseException):
                    self.log.warning("cannot read input: %s; treating it as the end", type(item).__name__)
                batch = await self._add_lines(batch, splitter.finish())
                await self._flush(batch)
                self.log.info("end of input after %d lines (%d malformed)", splitter.lineno,
                              self._malformed_total)
                return True
            batch = await self._add_lines(batch, splitter.feed(item))
            if self._queue.empty():  # nothing more is waiting: do not hold back what we have
                batch = await self._flush(batch)

    async def _add_lines(self, batch: LineBatch, lines: list[tuple[int, bytes | None]]) -> LineBatch:
        """Decode ``lines`` into ``batch``, handing it on each time it is full."""
        observed = time.time_ns()
        for lineno, line in lines:
            if line is None:
                self._bad_line(lineno, f"longer than max_line_size ({self.cfg.max_line_size} bytes)")
                continue
            if not line.strip():
                continue
            try:
                batch.add(line, observed, lineno)
            except MalformedLine as exc:
                self._bad_line(lineno, exc.reason)
            except NoPipeline as exc:
                self._pending_no_pipeline[exc.signal] = self._pending_no_pipeline.get(exc.signal, 0) + exc.items
                self._warn(lineno, f"no pipeline takes {exc.signal.value} from this receiver")
            if batch.lines >= self.cfg.max_batch_lines:
                batch = await self._flush(batch)
        return batch

    def _new_batch(self) -> LineBatch:
        return LineBatch(self.cfg.format, self.consumers.keys(), source=SOURCE, run_ns=self.started_ns)

    def _bad_line(self, lineno: int, reason: str) -> None:
        self._pending_malformed += 1
        self._malformed_total += 1
        self._warn(lineno, reason)

    def _warn(self, lineno: int, reason: str) -> None:
        self._warnings += 1
        if self._warnings <= LOGGED_LINE_WARNINGS:
            self.log.warning("line %d skipped: %s", lineno, reason)
            if self._warnings == LOGGED_LINE_WARNINGS:
                self.log.warning("further skipped lines are counted (obs_pipeline_receiver_malformed_requests, "
                                 "..._refused_items) but not logged")

    async def _flush(self, batch: LineBatch) -> LineBatch:
        """Hand on every signal's message of ``batch``, count the batch; return a fresh batch."""
        for signal, message in batch.messages.items():
            items = count_items(signal, message)
            if items:
                await self._deliver(signal, message, items)
        if self._pending_malformed:
            self.counters.malformed(self._pending_malformed)
            if self.cfg.format != "otlp_json":  # a json or text line is exactly one log record
                self.counters.refused(Signal.LOGS, "malformed", self._pending_malformed)
            self._pending_malformed = 0
        for signal, items in self._pending_no_pipeline.items():
            self.counters.refused(signal, "no_pipeline", items)
        self._pending_no_pipeline.clear()
        for signal, repairs in batch.repairs.items():
            self.counters.repaired(signal, repairs)
        batch.repairs.clear()
        return self._new_batch() if batch.messages else batch

    async def _deliver(self, signal: Signal, message: Any, items: int) -> None:
        """Hand ``message`` on, retrying the same batch while refused; give up only when stopping."""
        consumer = self.consumers[signal]
        while True:
            try:
                await consumer.consume(Batch(signal, message, items=items))
            except RefusedError as exc:
                if self._stopping.is_set():
                    self.counters.refused(signal, "shutting_down", items)
                    self.log.warning("shutdown: the pipeline refused the last %d %s (%s)", items,
                                     signal.value, exc.reason)
                    return
                delay = min(max(exc.retry_after, MIN_RETRY_DELAY), MAX_RETRY_DELAY)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                continue
            except Exception as exc:  # a failing processor must not stop the input
                self.counters.refused(signal, "internal_error", items)
                self.log.error("dropped %d %s: unexpected %s in the pipeline", items, signal.value,
                               describe_exception(exc))
                return
            self.counters.accepted(signal).inc(items)
            return


def _reader(stream: BinaryIO) -> tuple[Callable[[int], bytes], int | None]:
    """A ``read(n)`` that returns what is available (``os.read`` on the fd when there is one), and the fd."""
    try:
        fd: int | None = stream.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    if fd is not None:
        return (lambda n: os.read(fd, n)), fd
    return getattr(stream, "read1", stream.read), None


def create(settings: Settings, cfg: Config, consumers: Mapping[Signal, Consumer]) -> StdinReceiver:
    """Build the receiver on the process's standard input."""
    return StdinReceiver(settings, cfg, consumers)


def check(cfg: Config) -> list[Problem]:
    """The format must be known (the schema's enum says so too; this guards direct use)."""
    if cfg.format not in FORMATS:
        return [Problem("format", f"must be one of {', '.join(FORMATS)}")]
    return []


FACTORY = ReceiverFactory[Config](
    type="stdin",
    signals=frozenset(Signal),
    schema="receivers/stdin.schema.json",
    description="Reads JSON lines, OTLP/JSON lines or text lines from standard input until it ends.",
    parse=parse,
    create=create,
    check=check,
    traits=ReceiverTraits(
        finite=True,
        # Two would split standard input between them and tear its lines apart.
        exclusive_use="reads standard input",
        produces=lambda cfg: {  # text lines are log bodies; json lines are logs unless they are OTLP/JSON
            "text": Produces(frozenset({Signal.LOGS}), because="with format text"),
            "json": Produces(
                frozenset(Signal), because="with format json", usual=frozenset({Signal.LOGS}),
                usual_input="plain JSON lines",
            ),
        }.get(cfg.format, Produces(frozenset(Signal))),
    ),
)

__all__ = ["FACTORY", "Config", "StdinReceiver"]
