"""The Batch value: lazy parsing, one item count, and wire bytes that can never go stale."""

from __future__ import annotations

import pytest

from obs_pipeline.batch import Batch
from obs_pipeline.signals import Signal
from tests.enginekit import traces


class TestBatch:
    def test_a_batch_from_bytes_is_parsed_only_when_read(self):
        """Bytes in, bytes out, no parse: the batch -> audit path never pays for a message it does not read."""
        wire = traces(3).SerializeToString()
        batch = Batch.from_wire(Signal.TRACES, wire, items=3)
        assert batch.wire == wire
        assert batch.items == 3
        assert batch._message is None
        assert batch.message.resource_spans[0].scope_spans[0].spans[2].name == "span-2"

    def test_mutable_drops_the_bytes_and_the_count(self):
        """Changing the message through mutable() leaves no bytes behind and the count follows the change."""
        data = traces(4)
        batch = Batch(Signal.TRACES, data, wire=data.SerializeToString())
        message = batch.mutable()
        assert batch.wire is None
        del message.resource_spans[0].scope_spans[0].spans[:2]
        assert batch.items == 2

    def test_a_mutated_batch_never_caches_bytes_or_count_again(self):
        """Whoever holds the mutable message may go on changing it: serialized() and items stay true."""
        batch = Batch(Signal.TRACES, traces(4))
        message = batch.mutable()
        first = batch.serialized()
        assert batch.items == 4
        message.resource_spans[0].scope_spans[0].spans[0].name = "[REDACTED]"
        del message.resource_spans[0].scope_spans[0].spans[3]
        assert batch.wire is None
        assert batch.serialized() != first
        assert batch.serialized() == message.SerializeToString()
        assert batch.items == 3

    def test_settled_gives_a_batch_that_caches_again(self):
        """Once the changing stage is done, the batch it hands on remembers its bytes."""
        batch = Batch(Signal.TRACES, traces(2))
        batch.mutable()
        settled = batch.settled()
        assert settled is not batch
        assert settled.serialized() is settled.serialized()
        untouched = Batch(Signal.TRACES, traces(1))
        assert untouched.settled() is untouched

    def test_a_copy_is_independent_and_keeps_true_bytes(self):
        """The copy a mutating pipeline gets can change without touching the original."""
        data = traces(2)
        original = Batch(Signal.TRACES, data, wire=data.SerializeToString())
        clone = original.copy()
        assert clone.wire == original.wire
        clone.mutable().resource_spans[0].scope_spans[0].spans[0].name = "changed"
        assert original.message.resource_spans[0].scope_spans[0].spans[0].name == "span-0"
        assert original.wire == data.SerializeToString()

    def test_split_parts_carry_no_bytes(self):
        """Parts of a split are new messages: the whole batch's bytes do not travel with them."""
        data = traces(5)
        parts = Batch(Signal.TRACES, data, wire=data.SerializeToString()).split(2)
        assert [p.items for p in parts] == [2, 2, 1]
        assert all(p.wire is None for p in parts)

    def test_a_batch_needs_a_message_or_bytes(self):
        """An empty Batch is a bug, caught where it is made."""
        with pytest.raises(ValueError, match="message or its wire bytes"):
            Batch(Signal.TRACES)
