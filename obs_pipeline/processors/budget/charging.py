"""One batch's budget work: read spans, charge the store, decide each span's state and events.

Pure bookkeeping over protobuf spans, apart from the one awaited :meth:`Store.apply` per batch,
which charges every (budget, scope value) the batch touches at once. Spend shown on a span is
the running spend after that span: the store's total after the batch, minus what later spans of
the batch added. An event goes to the first span of the batch at which its threshold is reached.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from obs_pipeline import wire
from obs_pipeline.genai.attributes import number, str_fallback
from obs_pipeline.processors.budget.config import NANO, Budget
from obs_pipeline.processors.budget.scope import COST_AMOUNT, COST_UNPRICED, RESERVATION_ID, ScopeReader
from obs_pipeline.processors.budget.store import EXCEEDED_BIT, Charge, Outcome, events_bits

__all__ = ["EXCEEDED", "OK", "WARNING", "Event", "Mark", "SpanCharge", "plan", "read_spans", "settle"]

OK = "ok"
WARNING = "warning"
EXCEEDED = "exceeded"
_RANK = {OK: 0, WARNING: 1, EXCEEDED: 2}
#: The largest cost one span may add: beyond it the value is bad input, not spend.
MAX_SPAN_USD = 1_000_000.0


@dataclass(frozen=True)
class Event:
    """A warning or exceeded event of one budget's scope value, on the span that reached it."""

    budget: Budget
    scope_value: str
    kind: str  # WARNING | EXCEEDED
    spend: int  # nano-dollars
    threshold: float | None  # the warn_at fraction, for warnings
    resets_at: float | None
    trace_id: bytes = b""
    span_id: bytes = b""


@dataclass(slots=True)
class SpanCharge:
    """One span's charge to one budget."""

    span: Any
    budget_index: int
    scope_value: str
    amount: int
    unpriced: bool
    carries_ours: bool = False  # the span already carries attributes this processor writes


@dataclass(slots=True)
class Mark:
    """What a span is annotated with: its most severe budget's state, and the event it fired, if any."""

    budget: Budget
    state: str
    spend: int
    event: Event | None = None
    rank: tuple[int, int, float] = field(default=(0, 0, 0.0))


def _true(value: AnyValue) -> bool:
    kind = value.WhichOneof("value")
    return (kind == "bool_value" and value.bool_value) or (kind == "string_value" and value.string_value == "true")


@dataclass
class BatchRead:
    """What :func:`read_spans` found."""

    charges: list[SpanCharge] = field(default_factory=list)
    reservations: list[str] = field(default_factory=list)
    bad_amounts: int = 0


_AMOUNT, _UNPRICED, _RESERVATION, _OURS = -1, -2, -3, -4
#: The attributes this processor writes (replaced when a span already carries them).
WRITTEN = ("budget.id", "budget.state", "budget.spend", "budget.limit", "budget.event", "budget.scope",
           "budget.scope_value", "budget.window", "budget.threshold")


def read_spans(message: Any, reader: ScopeReader, scope_of: Sequence[int]) -> BatchRead:
    """The charges of every span that carries a cost (or is unpriced) and a scope value.

    One pass over each span's attributes reads the cost, the reservation id and every scope.
    ``scope_of[i]`` is the index in ``reader.scopes`` of budget ``i``'s scope. A cost that is
    negative, not finite or absurd (over :data:`MAX_SPAN_USD`) is counted in ``bad_amounts`` and
    treated as unpriced (it follows the ``unpriced`` policy).
    """
    found = BatchRead()
    lookup: dict[str, Any] = {**reader.lookup, COST_AMOUNT: _AMOUNT, COST_UNPRICED: _UNPRICED,
                              RESERVATION_ID: _RESERVATION, **dict.fromkeys(WRITTEN, _OURS)}
    n_scopes = len(reader.scopes)
    get = lookup.get
    for rs in message.resource_spans:
        resource_values: list[str | None] | None = None
        for ss in rs.scope_spans:
            for span in ss.spans:
                amount: float | None = None
                unpriced = ours = False
                hits = []  # (scope entries, value) of the scope attributes, resolved only if charged
                for kv in span.attributes:
                    entry = get(kv.key)
                    if entry is None:
                        continue
                    if entry.__class__ is not int:
                        hits.append((entry, kv.value))
                    elif entry == _AMOUNT:
                        amount = number(kv.value)  # any number: a bad one is counted below
                    elif entry == _UNPRICED:
                        unpriced = _true(kv.value)
                    elif entry == _RESERVATION:
                        rid = kv.value.string_value or str_fallback(kv.value)
                        if rid:
                            found.reservations.append(rid)
                    else:
                        ours = True
                if amount is None and not unpriced:
                    continue
                values: list[str | None] = [None] * n_scopes
                ranks = [2] * n_scopes
                for entry, any_value in hits:
                    text = any_value.string_value or str_fallback(any_value)
                    if text:
                        for index, rank in entry:
                            if rank < ranks[index]:
                                ranks[index] = rank
                                values[index] = text
                nano = 0
                if amount is not None:
                    if math.isfinite(amount) and 0 <= amount <= MAX_SPAN_USD:
                        nano = round(amount * NANO)
                    else:  # not a cost: treated as unpriced
                        found.bad_amounts += 1
                        amount, unpriced = None, True
                for i, scope_index in enumerate(scope_of):
                    value = values[scope_index]
                    if value is None:
                        if resource_values is None:
                            resource_values = reader.values(rs.resource.attributes)
                        value = resource_values[scope_index]
                    if value is not None:
                        found.charges.append(SpanCharge(span, i, value, nano, unpriced and amount is None, ours))
    return found


def plan(found: BatchRead, budgets: Sequence[Budget], now: float, *, fail_closed: bool) -> list[Charge]:
    """One charge per (budget, scope value) the batch touches, in first-seen order."""
    totals: dict[tuple[int, str], list[int]] = {}
    for sc in found.charges:
        entry = totals.setdefault((sc.budget_index, sc.scope_value), [0, 0])
        entry[0] += sc.amount
        entry[1] |= int(sc.unpriced and fail_closed)
    out = []
    for (index, value), (amount, block) in totals.items():
        budget = budgets[index]
        out.append(Charge(budget=budget.id, scope_value=value, slot=budget.window.slot(now), amount=amount,
                          limit=budget.limit_nano, thresholds=budget.thresholds_nano(), block=bool(block)))
    return out


def settle(found: BatchRead, budgets: Sequence[Budget], charges: Sequence[Charge], outcomes: Sequence[Outcome],
           *, fail_closed: bool) -> tuple[dict[int, Mark], list[Event]]:
    """Each charged span's :class:`Mark` (by ``id(span)``) and every event fired, in span order."""
    after: dict[tuple[int, str], tuple[Charge, Outcome]] = {}
    ids = {b.id: i for i, b in enumerate(budgets)}
    for charge, outcome in zip(charges, outcomes, strict=True):
        after[(ids[charge.budget], charge.scope_value)] = (charge, outcome)
    running: dict[tuple[int, str], list[Any]] = {}
    for (key, (charge, outcome)) in after.items():
        # [spend before this batch's spans, blocked so far, event bits still to place]
        running[key] = [outcome.spend - charge.amount, outcome.blocked and not charge.block, outcome.fired]
    marks: dict[int, Mark] = {}
    events: list[Event] = []
    for sc in found.charges:
        key = (sc.budget_index, sc.scope_value)
        budget = budgets[sc.budget_index]
        charge, _outcome = after[key]
        state = running[key]
        state[0] += sc.amount
        if sc.unpriced and fail_closed:
            state[1] = True
        spend, blocked = state[0], state[1]
        bits = events_bits(spend, charge.limit, charge.thresholds, blocked=blocked)
        hit = state[2] & bits
        event = None
        if hit:
            state[2] &= ~hit
            event = _event(budget, sc, spend, hit, charge)
            events.append(event)
        status = EXCEEDED if bits & EXCEEDED_BIT else WARNING if bits else OK
        ratio = spend / charge.limit if charge.limit else 0.0
        rank = (_RANK[event.kind] + 1 if event else 0, _RANK[status], ratio)
        current = marks.get(id(sc.span))
        if current is None or rank > current.rank:
            marks[id(sc.span)] = Mark(budget, status, spend, event, rank)
    return marks, events


def _event(budget: Budget, sc: SpanCharge, spend: int, hit: int, charge: Charge) -> Event:
    span = sc.span
    if hit & EXCEEDED_BIT:
        return Event(budget, sc.scope_value, EXCEEDED, spend, None, charge.slot.resets_at, span.trace_id, span.span_id)
    highest = hit.bit_length() - 1  # bit i is warn_at[i - 1]
    return Event(budget, sc.scope_value, WARNING, spend, budget.warn_at[highest - 1], charge.slot.resets_at,
                 span.trace_id, span.span_id)


def annotate(span: Any, mark: Mark, *, state_attributes: bool, event_attributes: bool, replace: bool) -> None:
    """Write the budget attributes of ``mark`` on ``span``; ``replace``: first remove those it carries.

    The attributes are appended as serialized ``KeyValue`` fields with one ``MergeFromString``
    (a third of the cost of adding them one by one through the protobuf API).
    """
    event = mark.event if event_attributes else None
    if not state_attributes and event is None:
        return
    if replace:
        keep = [kv for kv in span.attributes if kv.key not in WRITTEN]
        del span.attributes[:]
        span.attributes.extend(keep)
    budget = mark.budget
    parts = [_state_bytes(budget.id, mark.state), _SPEND, _pack(mark.spend / NANO), _LIMIT, _pack(budget.limit_usd)]
    if event is not None:
        parts += [_text_kv("budget.event", event.kind), _text_kv("budget.scope", budget.scope),
                  _text_kv("budget.scope_value", event.scope_value), _text_kv("budget.window", budget.window.text)]
        if event.threshold is not None:
            parts += [_THRESHOLD, _pack(event.threshold)]
    span.MergeFromString(b"".join(parts))


# --- the attribute encoder (obs_pipeline.wire): span attributes as bytes, merged in one call -------
_pack = struct.Struct("<d").pack


def _text_kv(key: str, text: str) -> bytes:
    return wire.attribute(key, wire.any_string(text))


_SPEND = wire.double_attribute_prefix("budget.spend")
_LIMIT = wire.double_attribute_prefix("budget.limit")
_THRESHOLD = wire.double_attribute_prefix("budget.threshold")


@functools.lru_cache(maxsize=1024)
def _state_bytes(budget_id: str, state: str) -> bytes:
    return _text_kv("budget.id", budget_id) + _text_kv("budget.state", state)
