"""``batch``: group data into batches by size and time; split batches that are too large.

Acceptance: a batch counts as accepted by the pipeline once it is in this processor's buffer,
which is bounded. The buffer never drops what it accepted: when the exporters' queues are full
it keeps retrying the flush and, while its buffer is over capacity, refuses new data with a
retryable error, so backpressure reaches the sender. On shutdown it flushes everything it
holds. (The collector's batch processor returns before the export and swallows errors; this
one does neither.) With ``timeout: 0s`` nothing is buffered: each batch goes straight on (split
if needed) and the sender waits for the exporters' queues.

Merging: OTLP messages are concatenable on the wire (their only top-level field is repeated), so
the batch is made by joining the parts' serialized bytes, which receivers pass along. That costs
about a fifth of deep-copying every part with ``extend``; the joined bytes travel on as a
:class:`~obs_pipeline.batch.Batch` that is parsed only if a later stage reads the message (the
audit exporter reads the bytes), and is split only when it is over ``send_batch_max_size``.

The buffer, the flusher, refusal and the drain are :class:`BufferingProcessor`'s.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from obs_pipeline.batch import Batch
from obs_pipeline.components import Consumer, Host, ProcessorFactory, ProcessorSettings, State
from obs_pipeline.errors import Problem, RefusedError
from obs_pipeline.processors._helper import BufferingProcessor
from obs_pipeline.signals import Signal
from obs_pipeline.units import parse_duration

TYPE = "batch"
BUFFER_BATCHES = 2  # the buffer holds this many full batches before it refuses
DEFAULT_SEND_BATCH_SIZE = 2048  # the schema's defaults, for a Config built without the config layer
DEFAULT_TIMEOUT = 0.2  # seconds: the schema's 200ms
DEFAULT_SEND_BATCH_MAX_SIZE = 0  # no limit


@dataclass(frozen=True, kw_only=True)
class Config:
    """See ``schemas/processors/batch.schema.json`` for each option's meaning and default."""

    send_batch_size: int = DEFAULT_SEND_BATCH_SIZE  # items that trigger a send
    timeout: float = DEFAULT_TIMEOUT  # seconds data may wait; 0: send every batch at once
    send_batch_max_size: int = DEFAULT_SEND_BATCH_MAX_SIZE  # larger batches are split; 0: no limit

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Config:
        """From the validated dict (schema defaults filled in)."""
        return cls(
            send_batch_size=raw["send_batch_size"],
            timeout=parse_duration(raw["timeout"]),
            send_batch_max_size=raw["send_batch_max_size"],
        )


def check(cfg: Config) -> list[Problem]:
    """Cross-field rule: the hard cap cannot be below the trigger size."""
    if cfg.send_batch_max_size and cfg.send_batch_max_size < cfg.send_batch_size:
        return [Problem(
            path="send_batch_max_size",
            message=f"must be 0 or at least send_batch_size ({cfg.send_batch_size}), got {cfg.send_batch_max_size}",
        )]
    return []


class BatchProcessor(BufferingProcessor):
    """Buffers batches of one pipeline and flushes them from one background task, in order."""

    def __init__(self, settings: ProcessorSettings, cfg: Config, next_consumer: Consumer) -> None:
        super().__init__(settings, next_consumer,
                         capacity=max(cfg.send_batch_size, cfg.send_batch_max_size) * BUFFER_BATCHES)
        self.cfg = cfg
        # Serialized parts, their item counts and arrival times: bytes take half the memory of
        # messages, and joining them is how batches merge.
        self._parts: deque[tuple[bytes, int, float]] = deque()

    async def on_start(self, host: Host) -> None:
        """Start the flusher (none with ``timeout: 0s``: batches pass straight through)."""
        if self.cfg.timeout > 0:
            await super().on_start(host)

    async def consume(self, batch: Batch) -> None:
        """Buffer ``batch`` (accepted), or refuse it while the buffer is over capacity.

        With ``timeout: 0s`` the batch goes straight on, split at ``send_batch_max_size``. If the
        next stage refuses a later part after taking an earlier one, the sender's retry repeats
        the earlier part (at-least-once, as a receiver feeding several pipelines is).
        """
        if self.cfg.timeout > 0:
            await super().consume(batch)
            return
        if self.state is not State.RUNNING:
            raise RefusedError("shutting_down")
        for part in batch.split(self.cfg.send_batch_max_size):
            await self.next.consume(part)
            self.counters.incoming.inc(part.items)
            self.counters.outgoing.inc(part.items)

    def add(self, batch: Batch) -> None:
        """Keep the batch's bytes (serializing it only when a receiver did not pass them)."""
        self._parts.append((batch.serialized(), batch.items, time.monotonic()))

    def should_kick(self, batch: Batch) -> bool:
        """Wake the flusher when a batch is full, or to start the timer of a new one.

        Called after ``batch`` was added and counted in the buffer.
        """
        return len(self._parts) == 1 or self._buffered >= self.cfg.send_batch_size

    def ready(self, now: float, *, draining: bool) -> float | None:
        """Now when full or draining, else when the oldest part has waited ``timeout``."""
        if draining or self._buffered >= self.cfg.send_batch_size:
            return 0.0
        return max(0.0, self._parts[0][2] + self.cfg.timeout - now)

    def take(self) -> list[Batch]:
        """Up to one batch's worth of parts, merged by joining their bytes, split if over the cap."""
        limit = self.cfg.send_batch_max_size or self.cfg.send_batch_size
        taken: list[bytes] = []
        items = 0
        while self._parts and (not taken or items < limit):
            part, part_items, _arrived = self._parts.popleft()
            taken.append(part)
            items += part_items
        wire = taken[0] if len(taken) == 1 else b"".join(taken)
        return Batch.from_wire(self.signal, wire, items=items).split(self.cfg.send_batch_max_size)

    def discard(self) -> None:
        """Forget the buffered parts."""
        self._parts.clear()


def _create(settings: ProcessorSettings, cfg: Config, next_consumer: Consumer) -> BatchProcessor:
    return BatchProcessor(settings, cfg, next_consumer)


FACTORY = ProcessorFactory[Config](
    type=TYPE,
    signals=frozenset(Signal),
    schema="processors/batch.schema.json",
    description="Groups data into batches by size and time, and splits batches that are too large.",
    parse=Config.parse,
    create=_create,
    check=check,
)
