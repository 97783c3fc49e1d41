"""Spans, log records and events -> derived samples: the rules compiled, and the hot path.

This runs on every span, so (``python-limits.md``: touching attribute values is what costs):

* spans are read through :mod:`obs_pipeline.otlp_view`: each attribute is a ``bytes`` object; one the rules do
  not read is recognized by its key bytes and skipped undecoded, a wanted one is decoded once
  per distinct ``KeyValue`` and remembered by its bytes (model, provider, operation repeat);
* the attributes every rule reads live in one slot table (canonical names and their aliases from
  :mod:`obs_pipeline.genai`, values read by :func:`obs_pipeline.genai.attributes.read_value`
  where it knows the attribute), so a span's attributes are read once, whatever the rule count;
* which samples a span makes (rule, series key) depends only on its *shape*: the attributes the
  rules match and label on, which numbers it carries (not their values), its status and its
  resource. That selection is remembered per shape (:meth:`Deriver._span`), so a span of a known
  shape costs reading its attributes, one dict lookup and the additions;
* a span's name, events and ids are decoded only when a rule needs them.

Log records and span events are read from parsed messages, through the same slot table, and
selected afresh each time (they are far fewer than spans).

Lookup order of an attribute: the item's own attributes (canonical before alias), then (for a
span event) its span's, then the resource's.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogsData
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status, TracesData

from obs_pipeline import genai
from obs_pipeline.audit import line
from obs_pipeline.batch import Batch
from obs_pipeline.errors import describe_exception
from obs_pipeline.exporters.prometheus.rules import (
    ATTRIBUTE,
    COUNTER,
    DURATION,
    LOG_RECORDS,
    SPAN_EVENTS,
    SPANS,
    Rule,
    family_name,
    value_text,
)
from obs_pipeline.exporters.prometheus.series import CounterFamily, Family, HistogramFamily, Store
from obs_pipeline.genai import attributes as attrs
from obs_pipeline.otlp_view import ResourceSpansView, TracesView

__all__ = ["CHUNK_SPANS", "LABEL_CHARS", "OTHER_ERROR", "Deriver"]

#: Spans derived between two chances for the event loop to run.
CHUNK_SPANS = 1024
#: The longest label value, in characters (longer ones are cut).
LABEL_CHARS = 256
#: ``error_type`` of a failed item that names no error type (the GenAI conventions' fallback value).
OTHER_ERROR = "_OTHER"
#: Longest serialized ``KeyValue`` (or ``Status``) that is cached; entries after which a cache restarts.
MAX_CACHED = 256
MAX_ENTRIES = 20_000
MAX_RULE_SETS = 4096
MAX_PLANS = 8192
STATUS_CODE_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR
SEVERITY_ERROR = 17  # SeverityNumber.SEVERITY_NUMBER_ERROR

_FIELDS = {"status": 0, "error_type": 1, "name": 2, "trace_id": 3, "span_id": 4}
F_STATUS, F_ERROR_TYPE, F_NAME, F_TRACE_ID, F_SPAN_ID = range(5)
ATTR, FIELD = range(2)  # kinds of label source
_UNWANTED: tuple[int, Any] = (-1, None)
_UNREAD = object()
_WANTED_INDEX = {name: i for i, name in enumerate(attrs.WANTED)}
#: Read for every item: what picks the rules (operation, span kinds, event name) and makes the status.
_BASE = (genai.OPERATION_NAME, genai.OPENINFERENCE_SPAN_KIND, genai.TRACELOOP_SPAN_KIND, genai.ERROR_TYPE,
         genai.TOOL_CALL_DECISION, genai.GUARDRAIL_ACTION, genai.EXCEPTION_TYPE, genai.EVENT_NAME)
OP, OI_KIND, TL_KIND, ERR, DECISION, GUARDRAIL, EXC_TYPE, EVENT = range(len(_BASE))


# --- values -------------------------------------------------------------------------------------

def _generic(value: AnyValue) -> Any:
    """An attribute the GenAI readers do not know: text (cut), int, float, a boolean as text, a list of texts."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value[:LABEL_CHARS]
    if kind in ("int_value", "double_value"):
        return getattr(value, kind)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "array_value":
        items = [_generic(v) for v in value.array_value.values]
        return tuple(_text(v) for v in items if v is not None and not isinstance(v, tuple))
    return None


def _read_known(slot: int, value: AnyValue) -> Any:
    """A GenAI attribute read as the audit line reads it; text as a plain ``str`` cut to :data:`LABEL_CHARS`."""
    found = attrs.read_value(slot, value)
    if isinstance(found, str):
        return found[:LABEL_CHARS]  # a slice is a plain str, also of a Cut
    return found


def _reader(canonical: str) -> Any:
    wanted = _WANTED_INDEX.get(canonical)
    return _generic if wanted is None else partial(_read_known, wanted)


def _text(value: Any) -> str:
    """A value as label text (as a condition compares it): strings cut to :data:`LABEL_CHARS`."""
    if isinstance(value, str):
        return value if len(value) <= LABEL_CHARS else value[:LABEL_CHARS]
    return value_text(value)


def _number(value: Any) -> float | None:
    """A value as a sample's number (ints, floats, numeric text); None for anything else, NaN and infinities."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


class _Slots:
    """The attributes the rules read. Canonical ``i`` is slot ``i``; its aliases are ``i + n``."""

    def __init__(self, canonicals: Iterable[str]) -> None:
        self.names = list(dict.fromkeys(canonicals))
        self.n = n = len(self.names)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.by_name: dict[str, int] = dict(self.index)
        for i, name in enumerate(self.names):
            for alias in genai.ALIASES_OF.get(name, ()):
                self.by_name.setdefault(alias, i + n)
        self.by_bytes = {name.encode(): slot for name, slot in self.by_name.items()}
        self.readers = [_reader(name) for name in self.names]
        #: Slots whose value may be a list (a label of one gives one sample per element).
        self.listy = frozenset(i for i, name in enumerate(self.names)
                               if name not in _WANTED_INDEX or name == genai.FINISH_REASONS)

    def read(self, attributes: Iterable[KeyValue]) -> list[Any]:
        """Slot values of parsed ``KeyValue`` attributes (None where absent); canonical beats alias."""
        n, get, readers = self.n, self.by_name.get, self.readers
        vals: list[Any] = [None] * n
        for kv in attributes:
            slot = get(kv.key)
            if slot is None:
                continue
            if slot >= n:
                slot -= n
                if vals[slot] is not None:
                    continue
            vals[slot] = readers[slot](kv.value)
        return vals


# --- compiled rules ------------------------------------------------------------------------------

class _Compiled:
    """A rule as the hot path runs it: slots instead of names, its family, its label layout.

    A family's key puts the labels that come from the item first and constants last
    (:func:`_family_order`), so a key is ``dynamic values + constants``. Rules with the same
    dynamic sources (``provider``, ``model`` for requests, tokens, cost and duration) share a
    ``signature``: those values are computed once per item. A later rule of a family whose
    constants sit elsewhere in the key gets a ``layout`` instead.
    """

    __slots__ = ("bounds", "categories", "conds", "consts", "dynamic", "events", "explode", "family", "histogram",
                 "layout", "operations", "rule", "scale", "signature", "status", "value_kind", "value_slots")

    def __init__(self, rule: Rule, family: Family, slots: _Slots, order: Sequence[str],
                 signatures: dict[tuple[Any, ...], int]) -> None:
        self.rule = rule
        self.family = family
        self.histogram = isinstance(family, HistogramFamily)
        self.bounds = family.bounds if isinstance(family, HistogramFamily) else ()
        self.status = None if rule.status == "any" else rule.status
        self.operations = rule.operations
        self.categories = rule.categories
        self.events = rule.events
        self.conds = tuple((slots.index[c.attribute], c.allowed, c.absent_ok, c.exists) for c in rule.conditions)
        self.value_kind = rule.value.kind
        self.value_slots = tuple(slots.index[name] for name in rule.value.attributes)
        self.scale = rule.value.scale
        by_name = {label.name: label for label in rule.labels}
        dynamic: list[tuple[int, Any, str]] = []
        layout: list[tuple[int, str]] = []  # per key position: (index into the dynamic values, or -1 and the constant)
        explode = False
        for name in order:
            label = by_name[name]
            if label.value is not None:
                layout.append((-1, label.value))
                continue
            layout.append((len(dynamic), ""))
            if label.field:
                dynamic.append((FIELD, _FIELDS[label.field], label.default))
            else:
                label_slots = tuple(slots.index[a] for a in label.attributes)
                explode = explode or any(s in slots.listy for s in label_slots)
                dynamic.append((ATTR, label_slots, label.default))
        self.dynamic = tuple(dynamic)
        self.signature = signatures.setdefault(self.dynamic, len(signatures))
        self.consts = tuple(value for index, value in layout if index < 0)
        suffix = all(index >= 0 for index, _ in layout[:len(dynamic)])
        self.layout = None if suffix else tuple(layout)
        self.explode = explode

    def selects(self, operation: Any, category: str, event: Any) -> bool:
        """Whether an item of this operation, category and event name can match (the rest is per item)."""
        return ((not self.operations or operation in self.operations)
                and (not self.categories or category in self.categories)
                and (not self.events or event in self.events))

    def key(self, dynamic: tuple[Any, ...]) -> tuple[Any, ...]:
        """The series key from the item's dynamic label values."""
        if self.layout is None:
            return dynamic + self.consts if self.consts else dynamic
        return tuple(dynamic[index] if index >= 0 else value for index, value in self.layout)


def _family_order(rule: Rule) -> tuple[str, ...]:
    """A new family's label order: labels from the item first, constants last."""
    return (tuple(label.name for label in rule.labels if label.value is None)
            + tuple(label.name for label in rule.labels if label.value is not None))


# --- items: what the fields of a span, a record or an event are -----------------------------------

class _SpanItem:
    """The span being derived (a view span), with its lazily decoded parts."""

    __slots__ = ("deriver", "exception", "span", "status", "status_code")

    def __init__(self, deriver: Deriver) -> None:
        self.deriver = deriver
        self.span: Any = None
        self.status_code = -1
        self.status: str | None = None
        self.exception: Any = _UNREAD  # the type of its exception event, once read

    def code(self) -> int:
        if self.status_code < 0:
            self.status_code = self.deriver.status_code(self.span.status)
        return self.status_code

    def duration(self) -> float | None:
        start, end = self.span.start_time_unix_nano, self.span.end_time_unix_nano
        return (end - start) / 1e9 if start and end >= start else None

    def failed(self, vals: list[Any]) -> bool:
        return self.code() == STATUS_CODE_ERROR or vals[ERR] is not None

    def exception_type(self) -> Any:
        if self.exception is _UNREAD:
            self.exception = _exception_type(self.span.events)
        return self.exception

    def name(self) -> str:
        return str(self.span.name)

    def ids(self) -> tuple[bytes, bytes]:
        return self.span.trace_id, self.span.span_id


class _RecordItem:
    """The log record being derived."""

    __slots__ = ("event", "record", "status")

    def __init__(self) -> None:
        self.record: Any = None
        self.event: Any = None
        self.status: str | None = None

    def duration(self) -> float | None:
        return None

    def failed(self, vals: list[Any]) -> bool:
        return self.record.severity_number >= SEVERITY_ERROR or vals[ERR] is not None

    def exception_type(self) -> Any:
        return None

    def name(self) -> str:
        return _text(self.event) if self.event is not None else ""

    def ids(self) -> tuple[bytes, bytes]:
        return self.record.trace_id, self.record.span_id


class _EventItem:
    """A span event being derived, with its span for status and ids."""

    __slots__ = ("event", "parent", "status")

    def __init__(self, parent: _SpanItem, event: Any) -> None:
        self.parent = parent
        self.event = event
        self.status: str | None = None

    def duration(self) -> float | None:
        return None

    def failed(self, vals: list[Any]) -> bool:
        return self.parent.failed(vals)

    def exception_type(self) -> Any:
        return None

    def name(self) -> str:
        return str(self.event.name)

    def ids(self) -> tuple[bytes, bytes]:
        return self.parent.ids()


Item = _SpanItem | _RecordItem | _EventItem


def _exception_type(raw_events: Iterable[bytes]) -> str | None:
    """``exception.type`` of a span's first ``exception`` event (error spans only get here)."""
    for raw in raw_events:
        if b"exception.type" not in raw:
            continue
        event = Span.Event.FromString(raw)
        if event.name == genai.EXCEPTION_EVENT:
            for kv in event.attributes:
                if kv.key == genai.EXCEPTION_TYPE and kv.value.string_value:
                    return line.cap(kv.value.string_value)
    return None


def _status(item: Item, vals: list[Any]) -> str:
    """``error``, ``denied`` or ``ok``, computed once per item."""
    found = item.status
    if found is None:
        if item.failed(vals):
            found = "error"
        elif attrs.decision_result(vals[DECISION], vals[GUARDRAIL]) is not None:
            found = "denied"
        else:
            found = "ok"
        item.status = found
    return found


def _field(field_id: int, item: Item, vals: list[Any]) -> str:
    if field_id == F_STATUS:
        return _status(item, vals)
    if field_id == F_ERROR_TYPE:
        # error.type, else an exception.type attribute, else (a failed span) its exception event's type.
        found = vals[ERR] if vals[ERR] is not None else vals[EXC_TYPE]
        failed = item.failed(vals)
        if found is None and failed:
            found = item.exception_type()
        if found is not None:
            return _text(found)
        return OTHER_ERROR if failed else ""
    if field_id == F_NAME:
        return _text(item.name())
    trace_id, span_id = item.ids()
    return (trace_id if field_id == F_TRACE_ID else span_id).hex()


def _keys(key: list[Any]) -> list[tuple[Any, ...]]:
    """A label list with list values -> one key per element of the first list (later lists joined by ",")."""
    first = next(i for i, v in enumerate(key) if isinstance(v, tuple | list))
    rest = [",".join(map(_text, v)) if isinstance(v, tuple | list) and i != first else v for i, v in enumerate(key)]
    return [(*rest[:first], _text(element), *rest[first + 1:]) for element in key[first]]


#: ``(required slot or None, status or None, conditions, rules)``: rules that match alike, checked once.
_Group = tuple[int | None, str | None, tuple[tuple[int, frozenset[str], bool, bool | None], ...], tuple["_Compiled", ...]]
#: A sample an item makes: value kind, value slots, scale, family, histogram, bounds, series key.
_Sample = tuple[str, tuple[int, ...], float, Any, bool, tuple[float, ...], tuple[Any, ...]]


def _groups(rules: Iterable[_Compiled]) -> tuple[_Group, ...]:
    """Rules grouped by their status and conditions, in first-seen order.

    ``required`` is a slot some condition needs present (an equality without ``null``, or
    ``exists: true``): an item without it skips the group at the cost of one list index.
    """
    grouped: dict[tuple[Any, ...], list[_Compiled]] = {}
    for rule in rules:
        grouped.setdefault((rule.status, rule.conds), []).append(rule)
    out: list[_Group] = []
    for (status, conds), members in grouped.items():
        required = next((slot for slot, _allowed, absent_ok, exists in conds
                         if exists is True or (exists is None and not absent_ok)), None)
        out.append((required, status, conds, tuple(members)))
    return tuple(out)


# --- the deriver ----------------------------------------------------------------------------------

class Deriver:
    """Derives the rules' samples into ``store``; its caches live as long as the exporter.

    Deriving an item is two steps: :meth:`_select` decides which samples it makes (rule, series
    key), :func:`_apply` adds their values. The first depends only on the item's *shape*: the
    attributes the rules match and label on (operation, provider, model, tool...), its status
    and its resource; not on the numbers it adds (tokens, cost, duration). So a span's selection
    is remembered by its shape (a *plan*), and a span of a known shape costs reading its
    attributes, one lookup and the additions.

    Args:
        rules: the rules, defaults first (already checked).
        store: where the derived families are registered.
        namespace: the metric name prefix.
    """

    def __init__(self, rules: Sequence[Rule], store: Store, namespace: str) -> None:
        needed: list[str] = list(_BASE)
        shaped: set[str] = set(_BASE)
        for rule in rules:
            needed += [c.attribute for c in rule.conditions]
            needed += rule.value.attributes
            needed += [name for label in rule.labels for name in label.attributes]
            shaped.update(c.attribute for c in rule.conditions)
            shaped.update(name for label in rule.labels for name in label.attributes)
        self.slots = slots = _Slots(needed)
        #: Per slot: read only as a number to add, so it is no part of an item's shape.
        self._value_only = [name not in shaped for name in slots.names]
        compiled: list[_Compiled] = []
        signatures: dict[tuple[Any, ...], int] = {}
        for rule in rules:
            family = self._family(store, namespace, rule)
            order = family.label_names if isinstance(family, CounterFamily | HistogramFamily) else ()
            compiled.append(_Compiled(rule, family, slots, order, signatures))
        self._n_signatures = len(signatures)
        self.span_rules = [c for c in compiled if SPANS in c.rule.sources]
        self.record_rules = [c for c in compiled if LOG_RECORDS in c.rule.sources]
        self.event_rules = [c for c in compiled if SPAN_EVENTS in c.rule.sources]
        self.event_names = frozenset(name for c in self.event_rules for name in c.events)
        self._event_bytes = tuple(name.encode() for name in self.event_names)
        fields = {label.field for c in self.span_rules for label in c.rule.labels}
        #: Plans need a shape that decides everything: ids are never one; a span name is, when a label uses it.
        self._plans_enabled = not fields & {"trace_id", "span_id"}
        self._name_shapes = "name" in fields
        self._error_type_field = "error_type" in fields
        self._kv_cache: dict[bytes, tuple[int, Any]] = {}
        self._status_cache: dict[bytes, int] = {}
        self._rule_sets: dict[tuple[Any, ...], tuple[_Group, ...]] = {}
        self._plans: dict[tuple[Any, ...], tuple[_Sample, ...]] = {}
        self._resources: dict[tuple[Any, ...], int] = {}
        #: Items seen and items whose derivation raised since the last :meth:`take_failures`, and the first one's error.
        self.seen = 0
        self.failures = 0
        self.first_failure = ""

    @staticmethod
    def _family(store: Store, namespace: str, rule: Rule) -> Family:
        """The family ``rule`` feeds, made by the first rule that names it."""
        name = family_name(namespace, rule)
        family = store.derived.get(name)
        if family is None:
            help_ = rule.description or f"Derived by the rule {rule.name} ({rule.where})."
            labels = _family_order(rule)
            family = (CounterFamily(name, help_, store, labels) if rule.kind == COUNTER
                      else HistogramFamily(name, help_, store, labels, rule.bounds))
            store.add_derived(family)
        elif rule.description and family.help.startswith("Derived by the rule "):
            family.help = rule.description
        return family

    def take_failures(self) -> tuple[int, int, str]:
        """``(failed, seen, first error)``: items that could not be derived, of those seen, since the last call."""
        found = self.failures, self.seen, self.first_failure
        self.failures, self.seen, self.first_failure = 0, 0, ""
        return found

    def _failed(self, exc: BaseException) -> None:
        if not self.failures:
            self.first_failure = describe_exception(exc)
        self.failures += 1

    # --- reading ----------------------------------------------------------------------------------

    def read_raw(self, raw_attributes: Iterable[bytes]) -> tuple[list[Any], list[Any]]:
        """``(slot values, shape)`` of serialized ``KeyValue`` attributes (a view span's).

        Values are None where absent, canonical names beat aliases. The shape is the sequence of
        ``(slot, value)`` hits, where a value-only slot (a number to add) stands for itself: its
        presence is part of the shape, its value is not.

        A short ``KeyValue`` is looked up by its bytes first (a repeated one, wanted or not, costs
        one dict lookup); a long one (a prompt) is never hashed: its key bytes say whether it is
        wanted, and an unwanted one is skipped undecoded.
        """
        slots = self.slots
        n, by_bytes, cache, value_only = slots.n, slots.by_bytes, self._kv_cache, self._value_only
        vals: list[Any] = [None] * n
        shape: list[Any] = []
        for raw in raw_attributes:
            if len(raw) <= MAX_CACHED:
                hit = cache.get(raw)
                if hit is None:
                    hit = self._classify(raw)
            elif raw[0] == 10 and raw[1] < 128 and raw[2:2 + raw[1]] not in by_bytes:
                continue  # the usual layout: field 1 (the key, tag 0x0A), a one-byte length, the key
            else:
                hit = self._classify(raw)
            slot, value = hit
            if slot < 0:
                continue
            if slot >= n:
                slot -= n
                shape.append(slot if value_only[slot] else hit)
                if vals[slot] is not None:
                    continue
            else:
                shape.append(slot if value_only[slot] else hit)
            vals[slot] = value
        return vals, shape

    def _classify(self, raw: bytes) -> tuple[int, Any]:
        """``(slot, value)`` of a serialized ``KeyValue`` (slot -1: unwanted); cached when short.

        An unwanted one is recognized by its key bytes without decoding it.
        """
        size = len(raw)
        if size > 1 and raw[0] == 10 and raw[1] < 128 and raw[2:2 + raw[1]] not in self.slots.by_bytes:
            hit = _UNWANTED
        else:
            kv = KeyValue.FromString(raw)
            slot = self.slots.by_name.get(kv.key)
            hit = _UNWANTED if slot is None else (slot, self.slots.readers[slot % self.slots.n](kv.value))
        if size <= MAX_CACHED:
            if len(self._kv_cache) >= MAX_ENTRIES:
                self._kv_cache.clear()
            self._kv_cache[raw] = hit
        return hit

    def status_code(self, raw: bytes) -> int:
        """The code of a serialized ``Status`` (0 when unset)."""
        if not raw:
            return 0
        code = self._status_cache.get(raw)
        if code is None:
            code = Status.FromString(raw).code
            if len(raw) <= MAX_CACHED:
                if len(self._status_cache) >= MAX_ENTRIES:
                    self._status_cache.clear()
                self._status_cache[raw] = code
        return code

    def _rules_for(self, kind: int, candidates: Sequence[_Compiled], vals: list[Any], event: Any) -> tuple[_Group, ...]:
        """The rules an item with these selectors can match, as match groups; remembered per distinct selectors."""
        operation, span_kind = vals[OP], vals[OI_KIND] or vals[TL_KIND]
        key = (kind, operation, span_kind, event)
        found = self._rule_sets.get(key)
        if found is None:
            category = genai.category(operation if isinstance(operation, str) else None,
                                      span_kind if isinstance(span_kind, str) else None)
            found = _groups(c for c in candidates if c.selects(operation, category, event))
            if len(self._rule_sets) >= MAX_RULE_SETS:
                self._rule_sets.clear()
            self._rule_sets[key] = found
        return found

    # --- selecting and adding ---------------------------------------------------------------------

    def _select(self, groups: Iterable[_Group], vals: list[Any], item: Item) -> tuple[_Sample, ...]:
        """The samples ``item`` makes: every rule in ``groups`` it matches, with its series key.

        A group's status and conditions are checked once for all its rules; labels that come
        from the item are computed once per distinct set of sources (``memo``). A rule whose
        number the item does not carry is left out; what the number is decides nothing here
        (:func:`_apply` adds it), so items of one shape select the same samples.
        """
        memo: list[Any] = [None] * self._n_signatures
        samples: list[_Sample] = []
        for required, wanted_status, conds, members in groups:
            if required is not None and vals[required] is None:
                continue
            if wanted_status is not None and _status(item, vals) != wanted_status:
                continue
            if conds and not _conditions_hold(conds, vals):
                continue
            for rule in members:
                if rule.value_slots and all(vals[slot] is None for slot in rule.value_slots):
                    continue  # nothing to add (presence is part of the shape, so plans stay right)
                dynamic = memo[rule.signature]
                if dynamic is None:
                    dynamic = memo[rule.signature] = _dynamic(rule.dynamic, vals, item)
                head = (rule.value_kind, rule.value_slots, rule.scale, rule.family, rule.histogram, rule.bounds)
                if rule.explode and any(isinstance(v, tuple | list) for v in dynamic):
                    samples += [(*head, key) for key in _keys(list(rule.key(dynamic)))]
                else:
                    samples.append((*head, rule.key(dynamic)))
        return tuple(samples)

    # --- traces -----------------------------------------------------------------------------------

    def traces(self, batch: Batch, now: float, chunk: int = CHUNK_SPANS) -> Iterator[None]:
        """Derive every span (and span event) of ``batch``; yields every ``chunk`` spans so the loop can run.

        Raises:
            google.protobuf.message.DecodeError: the batch's bytes are not valid traces.
        """
        if not self.span_rules and not self.event_rules:
            return
        wire = batch.wire
        groups: Iterable[Any]
        if wire is not None:
            groups = TracesView.FromString(wire).resource_spans
        else:
            message = batch.message
            assert isinstance(message, TracesData)
            groups = (ResourceSpansView.FromString(rs.SerializeToString()) for rs in message.resource_spans)
        item = _SpanItem(self)
        done = 0
        for group in groups:
            resource = self._resource_pairs(KeyValue.FromString(raw) for raw in group.resource.attributes)
            resource_id = self._resource_id(resource)
            for scope in group.scope_spans:
                for span in scope.spans:
                    try:
                        self._span(span, resource, resource_id, item, now)
                    except Exception as exc:
                        self._failed(exc)
                    done += 1
                    if done % chunk == 0:
                        yield
        self.seen += done

    def _resource_pairs(self, attributes: Iterable[KeyValue]) -> tuple[tuple[int, Any], ...]:
        """The slots a resource fills, as ``(slot, value)``: what its items fall back to."""
        try:
            vals = self.slots.read(attributes)
        except DecodeError:
            return ()
        return tuple((i, v) for i, v in enumerate(vals) if v is not None)

    def _resource_id(self, resource: tuple[tuple[int, Any], ...]) -> int:
        """A small number per distinct resource, for plan keys (the plans go when the numbers restart)."""
        found = self._resources.get(resource)
        if found is None:
            if len(self._resources) >= MAX_RULE_SETS:
                self._resources.clear()
                self._plans.clear()
            found = self._resources[resource] = len(self._resources)
        return found

    def _span(self, span: Any, resource: tuple[tuple[int, Any], ...], resource_id: int, item: _SpanItem,
              now: float) -> None:
        vals, shape = self.read_raw(span.attributes)
        for slot, value in resource:
            if vals[slot] is None:
                vals[slot] = value
        raw_status = span.status
        code = (self._status_cache.get(raw_status) or self.status_code(raw_status)) if raw_status else 0
        item.span, item.status_code, item.status, item.exception = span, code, None, _UNREAD
        if self.span_rules:
            # What the shape does not say: the span's name (when a label uses it), and the type of
            # its exception event (when error_type would fall back to it).
            exception = (item.exception_type() if self._error_type_field and code == STATUS_CODE_ERROR
                         and vals[ERR] is None and vals[EXC_TYPE] is None else None)
            key = (resource_id, code, span.name if self._name_shapes else None, exception, *shape)
            plan = self._plans.get(key)
            if plan is None:
                plan = self._select(self._rules_for(0, self.span_rules, vals, None), vals, item)
                if self._plans_enabled:
                    if len(self._plans) >= MAX_PLANS:
                        self._plans.clear()
                    self._plans[key] = plan
            if plan:
                _apply(plan, vals, item, now)
        if self.event_rules and span.events:
            self._span_events(span.events, vals, item, now)

    def _span_events(self, raw_events: Iterable[bytes], span_vals: list[Any], parent: _SpanItem, now: float) -> None:
        for raw in raw_events:
            if not any(name in raw for name in self._event_bytes):
                continue
            event = Span.Event.FromString(raw)
            if event.name not in self.event_names:
                continue
            vals = self.slots.read(event.attributes)
            for slot, value in enumerate(span_vals):
                if vals[slot] is None:
                    vals[slot] = value
            groups = self._rules_for(1, self.event_rules, vals, event.name)
            if groups:
                item = _EventItem(parent, event)
                _apply(self._select(groups, vals, item), vals, item, now)

    # --- logs -------------------------------------------------------------------------------------

    def logs(self, data: LogsData, now: float) -> None:
        """Derive every log record of ``data``."""
        if not self.record_rules:
            return
        item = _RecordItem()
        for group in data.resource_logs:
            resource = self._resource_pairs(group.resource.attributes)
            for scope in group.scope_logs:
                for record in scope.log_records:
                    try:
                        self._record(record, resource, item, now)
                    except Exception as exc:
                        self._failed(exc)
                self.seen += len(scope.log_records)

    def _record(self, record: Any, resource: tuple[tuple[int, Any], ...], item: _RecordItem, now: float) -> None:
        vals = self.slots.read(record.attributes)
        for slot, value in resource:
            if vals[slot] is None:
                vals[slot] = value
        event = record.event_name or vals[EVENT] or None
        item.record, item.event, item.status = record, event, None
        groups = self._rules_for(2, self.record_rules, vals, event)
        if groups:
            _apply(self._select(groups, vals, item), vals, item, now)


def _apply(samples: Iterable[_Sample], vals: list[Any], item: Item, now: float) -> None:
    """Add each sample's value (1, the item's duration or an attribute's number) to its series.

    A sample whose number the item does not carry (or not as a number) adds nothing; a counter
    never takes a negative number. A series is created only when a value is added to it.
    """
    for kind, value_slots, scale, family, histogram, bounds, key in samples:
        if kind == ATTRIBUTE:
            number = None
            for slot in value_slots:
                found = vals[slot]
                if found is not None:
                    number = float(found) if type(found) is int else _number(found)
                    break
            if number is None:
                continue
            value = number * scale
        elif kind == DURATION:
            duration = item.duration()
            if duration is None:
                continue
            value = duration
        else:
            value = 1.0
        if value < 0 and not histogram:
            continue  # a counter only goes up
        state = family.series.get(key)
        if state is None:
            state = family.add(key, now)
        if histogram:
            state.counts[bisect.bisect_left(bounds, value)] += 1
            state.sum += value
            state.count += 1
        else:
            state.value += value
        state.updated = now


def _conditions_hold(conds: Iterable[tuple[int, frozenset[str], bool, bool | None]], vals: list[Any]) -> bool:
    for slot, allowed, absent_ok, exists in conds:
        value = vals[slot]
        if exists is not None:
            if (value is not None) is not exists:
                return False
        elif value is None:
            if not absent_ok:
                return False
        elif isinstance(value, tuple | list):
            if not any(_text(v) in allowed for v in value):
                return False
        elif _text(value) not in allowed:
            return False
    return True


def _dynamic(specs: Iterable[tuple[int, Any, str]], vals: list[Any], item: Item) -> tuple[Any, ...]:
    """The values of the labels that come from the item: attributes (the first present) and fields."""
    key: list[Any] = []
    for kind, arg, default in specs:
        if kind == ATTR:
            found: Any = default
            for slot in arg:
                value = vals[slot]
                if value is not None:
                    found = value if type(value) is str or isinstance(value, tuple | list) else _text(value)
                    break
            key.append(found)
        else:
            key.append(_field(arg, item, vals) or default)
    return tuple(key)
