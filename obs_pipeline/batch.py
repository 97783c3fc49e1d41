"""``Batch``: the one value that travels through the graph.

A batch is a signal, its OTLP message, its item count (computed once) and, while they are still
true, the message's wire bytes. Receivers make batches from the request bytes they parsed; the
``batch`` processor joins parts by their bytes instead of deep-copying messages; an exporter that
writes bytes or reads a raw view skips re-serializing.

Stale bytes cannot come from the API: :meth:`Batch.mutable` is the only accessor for a message
one may change, and it drops the bytes and the item count first; from then on the batch never
caches either again (whoever holds the message may still be changing it), so neither can go
stale. :attr:`Batch.message` is for reading. Python cannot freeze a protobuf message, so a
processor that wrote through :attr:`Batch.message` would still keep old bytes: a compliance test
runs every registered processor and checks that what comes out has no bytes or bytes equal to
its message's serialization.

A batch made from bytes alone parses them on first use, so a path that only needs the bytes
(``batch`` → ``jsonl_audit``) never pays for a parse it does not need.
"""

from __future__ import annotations

from typing import Final, final

from obs_pipeline.signals import Message, Signal, copy, count_items, parse, split

__all__ = ["Batch"]


@final
class Batch:
    """One signal's data on its way through the pipeline.

    Args:
        signal: traces, metrics or logs.
        message: the ``TracesData``/``MetricsData``/``LogsData``; None when ``wire`` is given
            and the message should be parsed from it on first use.
        wire: the exact serialization of ``message`` (the request bytes a receiver parsed), if known.
        items: the item count, if the caller already knows it (it is trusted).

    Raises:
        ValueError: neither ``message`` nor ``wire`` was given.
    """

    __slots__ = ("__weakref__", "_items", "_message", "_mutated", "_wire", "signal")

    def __init__(
        self, signal: Signal, message: Message | None = None, *, wire: bytes | None = None, items: int | None = None,
    ) -> None:
        if message is None and wire is None:
            raise ValueError("a Batch needs a message or its wire bytes")
        self.signal: Final = signal
        self._message = message
        self._wire = wire
        self._items = items
        self._mutated = False

    @classmethod
    def from_wire(cls, signal: Signal, wire: bytes, items: int | None = None) -> Batch:
        """A batch of serialized OTLP data, parsed lazily.

        The bytes are not validated here: a receiver that must answer a malformed request parses
        first and passes both.
        """
        return cls(signal, None, wire=wire, items=items)

    @property
    def message(self) -> Message:
        """The message, for reading. Never change it: use :meth:`mutable` for that.

        Raises:
            google.protobuf.message.DecodeError: a lazily parsed batch's bytes are not valid.
        """
        if self._message is None:
            assert self._wire is not None
            self._message = parse(self.signal, self._wire)
        return self._message

    @property
    def wire(self) -> bytes | None:
        """The message's exact serialization, or None once it may have changed."""
        return self._wire

    @property
    def items(self) -> int:
        """Spans, metric data points or log records: the unit of every item counter."""
        if self._items is not None:
            return self._items
        items = count_items(self.signal, self.message)
        if not self._mutated:
            self._items = items
        return items

    @property
    def mutated(self) -> bool:
        """Whether :meth:`mutable` was called: the batch then caches neither bytes nor count."""
        return self._mutated

    def mutable(self) -> Message:
        """The message, to change in place. Its wire bytes and item count are dropped first."""
        message = self.message
        self._wire = None
        self._items = None
        self._mutated = True
        return message

    def serialized(self) -> bytes:
        """The wire bytes, serializing them when they are not known (and remembering them unless mutated)."""
        if self._wire is not None:
            return self._wire
        wire = self.message.SerializeToString()
        if not self._mutated:
            self._wire = wire
        return wire

    def copy(self) -> Batch:
        """An independent batch with equal content, for a pipeline that mutates a shared batch.

        A batch whose message is not parsed yet shares its (immutable) bytes: each copy parses
        its own message from them when used.
        """
        if self._message is None:
            assert self._wire is not None
            return Batch(self.signal, None, wire=self._wire, items=self._items)
        return Batch(self.signal, copy(self._message), wire=self._wire, items=self._items)

    def settled(self) -> Batch:
        """Return a batch that may cache again: itself, or after :meth:`mutable` a fresh one around its message.

        For the stage that changed the message, once it is done changing it (the function
        processor calls this on a function's result).
        """
        return Batch(self.signal, self.message) if self._mutated else self

    def split(self, max_items: int) -> list[Batch]:
        """Batches of at most ``max_items`` items each (``[self]`` when it is small enough).

        The parts are new messages, so they carry no bytes; a metric is never split.
        """
        if max_items <= 0 or self.items <= max_items:
            return [self]
        return [Batch(self.signal, part) for part in split(self.signal, self.message, max_items)]

    def __repr__(self) -> str:
        state = "with wire bytes" if self._wire is not None else "without wire bytes"
        return f"Batch({self.signal.value}, {self.items} items, {state})"
