"""A line's session (user, agent) through its trace, in bounded memory.

A turn's child spans end, and are written, before the span that carries the session. A reader
that streams therefore holds what it learnt from a child (its sums, its counts) per trace until
the trace's session shows, and folds it in then. Memory is bounded twice: traces whose key is
known are remembered in a least-recently-used map of :data:`MAX_TRACES` (a late line of a trace
forgotten long ago is held again), and held traces are capped too (the oldest is folded into
"no key" when the cap is reached, as are traces whose key never shows).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["MAX_TRACES", "TraceResolver"]

#: Traces remembered (known keys) and held (awaiting one), each.
MAX_TRACES = 100_000

P = TypeVar("P")


class TraceResolver(Generic[P]):
    """Per-trace partial results, folded into their key's result once the trace's key is known.

    Args:
        make: a new, empty partial result.
        fold: called with ``(key or None, partial)`` when a held partial's fate is settled.
        max_traces: the bound on known and on held traces.
    """

    def __init__(self, make: Callable[[], P], fold: Callable[[str | None, P], None],
                 max_traces: int = MAX_TRACES) -> None:
        self.make = make
        self.fold = fold
        self.max_traces = max_traces
        self.keys: OrderedDict[str, str] = OrderedDict()
        self.pending: OrderedDict[str, P] = OrderedDict()

    def known(self, trace: str) -> str | None:
        """The key of ``trace``, if a line of it had one."""
        return self.keys.get(trace)

    def learn(self, trace: str, key: str) -> None:
        """``trace`` belongs to ``key`` (the first key seen wins); what was held for it is folded in now."""
        if trace in self.keys:
            self.keys.move_to_end(trace)
            return
        self.keys[trace] = key
        if len(self.keys) > self.max_traces:
            self.keys.popitem(last=False)
        held = self.pending.pop(trace, None)
        if held is not None:
            self.fold(key, held)

    def hold(self, trace: str) -> P:
        """The partial result held for ``trace`` (new if none), to add a line without a key to."""
        held = self.pending.get(trace)
        if held is None:
            held = self.pending[trace] = self.make()
            if len(self.pending) > self.max_traces:
                _, oldest = self.pending.popitem(last=False)
                self.fold(None, oldest)
        return held

    def finish(self) -> None:
        """Fold every partial still held: its trace never showed a key."""
        while self.pending:
            _, held = self.pending.popitem(last=False)
            self.fold(None, held)
