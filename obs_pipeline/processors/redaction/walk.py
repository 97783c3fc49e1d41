"""Walking an OTLP message: every place a secret can be, and the summary attributes of each record.

Every signal: resource and scope attributes, scope names and versions, schema URLs. Traces: span
names, status messages, span attributes, event names and attributes (``exception.message``,
``exception.stacktrace`` included), link attributes and trace states. Logs: bodies of every
shape, record attributes, event names, severity texts. Metrics: metric names, descriptions and
units, data point attributes and exemplar attributes.

Each span or log record that had something redacted gets ``redaction.masked.count`` (values
masked), ``redaction.masked.rules`` (the rule of each, so as many entries as the count) and
``redaction.masked.keys`` (where each was, never what): ``redaction.detected.*`` in detect mode.
What is found in a resource or scope is counted once, on the first record under it. Metric data
points get no summary attributes: a new attribute would make a new time series.

Every value found, in every signal, is also added to :attr:`Walker.tally` (by rule id), which the
processor turns into ``obs_pipeline_redaction_values_total`` once per batch: the one count that
also covers metrics, values found in a resource with no record under it, and detect mode.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Final

from google.protobuf.message import Message
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from obs_pipeline.processors.redaction.content import CONTENT_EVENTS as _CONTENT_EVENTS
from obs_pipeline.processors.redaction.content import ContentPolicy, is_content_key
from obs_pipeline.processors.redaction.framing import AttributesField, Hits, Item
from obs_pipeline.processors.redaction.values import UNSCANNED, Found, Scrubber
from obs_pipeline.signals import Signal

__all__ = ["HIDDEN_BYTES", "ITEM_SHAPES", "SENDER_SUMMARY", "Walker"]

MASKED, DETECTED = "redaction.masked", "redaction.detected"
#: Summary attributes that arrived with the data, renamed by the first redaction stage of a
#: pipeline (``redaction.masked.count`` -> ``redaction.claimed.masked.count``): only a redaction
#: processor may say what was masked, in the audit's security lines and agent_secrets_redacted_total.
SENDER_SUMMARY: Final[Mapping[str, str]] = {
    f"{prefix}.{field}": f"redaction.claimed.{prefix.rsplit('.', 1)[1]}.{field}"
    for prefix in (MASKED, DETECTED) for field in ("count", "rules", "keys")
}
#: The location of a secret found in bytes of a span or record that protobuf does not show (a
#: field this OTLP version does not know, the first of two values of one field, a oneof value
#: overwritten later), which are dropped.
HIDDEN_BYTES: Final = "hidden_bytes"
_POINT_FIELDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")
# Field numbers (opentelemetry/proto/trace/v1/trace.proto, logs/v1/logs.proto).
_SPAN_TRACE_STATE, _SPAN_NAME, _SPAN_EVENTS, _SPAN_LINKS, _SPAN_STATUS = 3, 5, 11, 13, 15
_SPAN_ATTRIBUTES: Final = 9
_LOG_SEVERITY_TEXT, _LOG_BODY, _LOG_EVENT_NAME = 3, 5, 12
_LOG_ATTRIBUTES: Final = 6
# Id fields, bytes: (field number, name). A sender may put anything there (an exporter forwards
# them; the audit writes them as hex), so an item's ids are scanned as bytes like its strings.
_SPAN_IDS = ((1, "trace_id"), (2, "span_id"), (4, "parent_span_id"))
_LINK_IDS = ((1, "trace_id"), (2, "span_id"))
_LOG_IDS = ((9, "trace_id"), (10, "span_id"))
#: Each signal's item class and the field number of its attributes.
ITEM_SHAPES: Final[Mapping[Signal, tuple[type[Message], AttributesField]]] = {
    Signal.TRACES: (Span, _SPAN_ATTRIBUTES), Signal.LOGS: (LogRecord, _LOG_ATTRIBUTES),
}
# String fields outside attributes that exporters send on (a scope name becomes a label, a metric
# description the # HELP line of /metrics).
_SCHEMA_URLS = ("schema_url",)
_SCOPE_STRINGS = ("name", "version")
_METRIC_STRINGS = ("name", "description", "unit")
_ENTITY_STRINGS = ("type", "schema_url")
#: Summaries :meth:`Walker.fresh_summary` remembers before it starts again, each at most
#: ``_SUMMARY_CACHED_BYTES`` serialized (with its key about twice that), so a few MB at most.
_SUMMARY_CACHE_LIMIT = 1024
_SUMMARY_CACHED_BYTES = 2048
#: Field number -> indexes of its occurrences to look at.
Parts = dict[int, set[int]]
#: Walks one span or log record: (item, findings so far, the fields to walk or None for all) -> changed.
Visit = Callable[[Any, Found, Parts | None], bool]


class _Skip(enum.Enum):
    SKIP = "skip"


SKIP = _Skip.SKIP


def _wants(parts: Parts | None, field: int) -> bool:
    return parts is None or field in parts


def _which(parts: Parts | None, field: int) -> set[int] | None:
    """The occurrences of ``field`` to look at: None for all."""
    return None if parts is None else parts.get(field, set())


class Walker:
    """Redacts a whole message in place.

    Args:
        scrubber: redacts the values.
        content: the content policy.
    """

    def __init__(self, scrubber: Scrubber, content: ContentPolicy) -> None:
        self._scrubber = scrubber
        self._content = content
        self._summary = MASKED if scrubber.redact else DETECTED
        self._summary_keys = (f"{self._summary}.count", f"{self._summary}.rules", f"{self._summary}.keys")
        #: Bytes every item with summary attributes holds (their keys' common prefix).
        self.summary_key = self._summary.encode()
        #: Rule id -> values found since the caller last cleared it (the caller clears it per batch).
        self.tally: Counter[str] = Counter()
        #: (item class, what was found) -> its summary attributes serialized (:meth:`fresh_summary`).
        self._summaries: dict[tuple[type, tuple[tuple[str, str], ...]], bytes] = {}

    def walk(self, signal: Signal, message: Any, only: Hits | None = None) -> bool:
        """Redact ``message`` (an Export*ServiceRequest of ``signal``); whether anything changed.

        Args:
            signal: the message's signal.
            message: the message, changed in place.
            only: the spans or log records to walk, by (resource, scope, item) index, each with
                the fields of it to look at (:mod:`.framing`); resources and scopes are always
                walked. None: every item whose own bytes may hit, all of it.
        """
        if signal is Signal.TRACES:
            return self._grouped(message.resource_spans, "scope_spans", "spans", self._span, only)
        if signal is Signal.LOGS:
            return self._grouped(message.resource_logs, "scope_logs", "log_records", self._record, only)
        return self._metrics(message)

    @property
    def content_active(self) -> bool:
        """Whether the content policy may change records (drop or truncate)."""
        return self._content.active

    def item(self, signal: Signal, item: Any, parts: Parts | None, *, fresh: bool = False,
             dropped: Found | None = None) -> bool:
        """Redact one span or log record on its own, summary included; whether it changed.

        ``fresh``: the caller knows the item has no summary attributes yet (its bytes do not hold
        :attr:`summary_key`), so they are added without looking for ones to add to. ``dropped``:
        what the caller found in bytes of the item that it drops (:data:`HIDDEN_BYTES`), reported
        when the walk finds nothing: beside a secret the walk sees, a count from bytes scanned
        whole cannot tell a hidden one from the same secret matched again across a tag byte.
        """
        found: Found = []
        changed = self._span(item, found, parts) if signal is Signal.TRACES else self._record(item, found, parts)
        if dropped and not found:
            found = list(dropped)
        if fresh and found:
            self.count(found)
            item.MergeFromString(self.fresh_summary(type(item), found))
            return True
        return self._summarize(item.attributes, found) or changed

    def _parts(self, item: Any, index: Item, only: Hits | None) -> Parts | _Skip | None:
        """Which fields of one item to walk: the fields hit, None for all, or ``SKIP``."""
        if only is not None:
            return only.get(index, SKIP)
        return None if self._may_hit(item) else SKIP

    # -- per signal ------------------------------------------------------------------------------

    def _grouped(self, groups: Any, scopes: str, items: str, visit: Visit, only: Hits | None) -> bool:
        """Walk resource -> scope -> item (spans or log records) of one request, the same for both signals."""
        changed = False
        for r, group in enumerate(groups):
            pending: Found = []
            changed |= self._resource(group, pending)
            for s, scope in enumerate(getattr(group, scopes)):
                changed |= self._scope(scope, pending)
                for i, item in enumerate(getattr(scope, items)):
                    parts = self._parts(item, (r, s, i), only)
                    if parts is SKIP and not pending:
                        continue
                    found, pending = pending, []  # what the resource had goes on its first item
                    if parts is not SKIP:
                        changed |= visit(item, found, parts)
                        changed |= _drop_unknown(item)
                    changed |= self._summarize(item.attributes, found)
            self.count(pending)  # found in a resource with no item under it: no summary, still counted
        return changed

    def _resource(self, group: Any, found: Found) -> bool:
        """A resource's attributes and entity references, and its group's schema URL."""
        changed = self._scrubber.attributes(group.resource.attributes, "resource.attributes.", found)
        for i, ref in enumerate(getattr(group.resource, "entity_refs", ())):  # (newer OTLP protos only)
            where = f"resource.entity_refs[{i}]."
            changed |= self._strings(ref, _ENTITY_STRINGS, where, found)
            changed |= self._repeated(ref.id_keys, f"{where}id_keys", found)
            changed |= self._repeated(ref.description_keys, f"{where}description_keys", found)
        return self._strings(group, _SCHEMA_URLS, "resource.", found) or changed

    def _scope(self, group: Any, found: Found) -> bool:
        """A scope's attributes, name and version (they become labels downstream), and its schema URL."""
        changed = self._scrubber.attributes(group.scope.attributes, "scope.attributes.", found)
        changed |= self._strings(group.scope, _SCOPE_STRINGS, "scope.", found)
        return self._strings(group, _SCHEMA_URLS, "scope.", found) or changed

    def _repeated(self, values: Any, location: str, found: Found) -> bool:
        """A repeated string field, each element on its own."""
        changed = False
        for i, text in enumerate(values):
            new = self._scrubber.text(text, f"{location}[{i}]", found)
            if new is not None:
                values[i] = new
                changed = True
        return changed

    def _strings(self, holder: Any, names: tuple[str, ...], prefix: str, found: Found) -> bool:
        """The named singular string fields of ``holder`` that are set."""
        changed = False
        for name in names:
            if getattr(holder, name):
                changed |= self._field(holder, name, f"{prefix}{name}", found)
        return changed

    def _span(self, span: Any, found: Found, parts: Parts | None) -> bool:
        scrub = self._scrubber
        dropped = changed = self._content.drop(span.attributes)
        if _wants(parts, _SPAN_NAME):
            changed |= self._field(span, "name", "name", found)
        if span.status.message and _wants(parts, _SPAN_STATUS):
            changed |= self._field(span.status, "message", "status.message", found)
        if span.trace_state and _wants(parts, _SPAN_TRACE_STATE):
            changed |= self._field(span, "trace_state", "trace_state", found)
        changed |= self._ids(span, _SPAN_IDS, parts, "", found)
        # (a drop moved the attributes the framing counted: then every one is scanned)
        changed |= scrub.attributes(span.attributes, "attributes.", found,
                                    None if dropped else _which(parts, _SPAN_ATTRIBUTES))
        changed |= self._content.truncate(span.attributes)
        events = _which(parts, _SPAN_EVENTS)
        for i, event in enumerate(span.events):
            if events is not None and i not in events:
                continue
            content_event = event.name in _CONTENT_EVENTS
            changed |= self._content.drop(event.attributes, in_content_event=content_event)
            changed |= self._field(event, "name", f"events[{i}].name", found)
            changed |= scrub.attributes(event.attributes, f"events[{i}].attributes.", found)
            changed |= self._content.truncate(event.attributes, in_content_event=content_event)
        links = _which(parts, _SPAN_LINKS)
        for i, link in enumerate(span.links):
            if links is not None and i not in links:
                continue
            changed |= self._ids(link, _LINK_IDS, None, f"links[{i}].", found)
            changed |= scrub.attributes(link.attributes, f"links[{i}].attributes.", found)
            if link.trace_state:
                changed |= self._field(link, "trace_state", f"links[{i}].trace_state", found)
        return changed

    def _ids(self, holder: Any, ids: tuple[tuple[int, str], ...], parts: Parts | None, prefix: str,
             found: Found) -> bool:
        """Scan the id fields (those the framing points at) as bytes; a secret there is masked, the id no longer valid."""
        changed = False
        for field, name in ids:
            value = getattr(holder, name)
            if value and _wants(parts, field):
                new = self._scrubber.data(value, f"{prefix}{name}", found)
                if new is not None:
                    setattr(holder, name, new)
                    changed = True
        return changed

    def _record(self, record: Any, found: Found, parts: Parts | None) -> bool:
        content_event = self._content.active and _is_content_event(record)
        dropped = changed = self._content.drop(record.attributes)
        if content_event:
            changed |= self._content.body(record, record.attributes, after_redaction=False)
        if record.event_name and _wants(parts, _LOG_EVENT_NAME):
            changed |= self._field(record, "event_name", "event_name", found)
        if record.severity_text and _wants(parts, _LOG_SEVERITY_TEXT):
            changed |= self._field(record, "severity_text", "severity_text", found)
        if record.HasField("body") and _wants(parts, _LOG_BODY):
            changed |= self._scrubber.any_value(record.body, "body", found)
        changed |= self._ids(record, _LOG_IDS, parts, "", found)
        changed |= self._scrubber.attributes(record.attributes, "attributes.", found,
                                             None if dropped else _which(parts, _LOG_ATTRIBUTES))
        changed |= self._content.truncate(record.attributes)
        if content_event:
            changed |= self._content.body(record, record.attributes, after_redaction=True)
        return changed

    def _metrics(self, message: Any) -> bool:
        changed = False
        scrub = self._scrubber
        for rm in message.resource_metrics:
            found: Found = []  # no summary attributes (see the module docstring): only the tally
            changed |= self._resource(rm, found)
            for sm in rm.scope_metrics:
                changed |= self._scope(sm, found)
                for k, metric in enumerate(sm.metrics):
                    changed |= self._strings(metric, _METRIC_STRINGS, f"metrics[{k}].", found)
                    changed |= scrub.attributes(getattr(metric, "metadata", ()), f"metrics[{k}].metadata.", found)
                    which = metric.WhichOneof("data")
                    if which not in _POINT_FIELDS:
                        continue
                    for i, point in enumerate(getattr(metric, which).data_points):
                        changed |= scrub.attributes(point.attributes, f"data_points[{i}].attributes.", found)
                        for j, exemplar in enumerate(getattr(point, "exemplars", ())):
                            changed |= scrub.attributes(exemplar.filtered_attributes,
                                                    f"data_points[{i}].exemplars[{j}].filtered_attributes.", found)
            self.count(found)
        return changed

    # -- helpers ---------------------------------------------------------------------------------

    def _may_hit(self, item: Any) -> bool:
        """The wire prefilter for one span or record: serializing one is cheaper than walking it."""
        try:
            data = item.SerializeToString()
        except Exception:
            return True
        return len(data) > self._scrubber.max_value_size or self._scrubber.scanner.wire_may_hit(data)

    def _field(self, holder: Any, name: str, location: str, found: Found) -> bool:
        mark = len(found)
        new = self._scrubber.text(getattr(holder, name), location, found)
        if new is None:
            return False
        try:
            setattr(holder, name, new)
        except ValueError:  # e.g. JSON whose "\udcff" decodes to a lone surrogate protobuf cannot store
            del found[mark:]  # the value becomes one unscanned marker, counted once
            found.append((UNSCANNED, location))
            setattr(holder, name, self._scrubber.marker(UNSCANNED, ""))
        return True

    def count(self, found: Found) -> None:
        """Add what one record (or resource, or metric) had found to :attr:`tally`."""
        tally = self.tally
        for rule, _location in found:
            tally[rule] += 1

    def fresh_summary(self, kind: type, found: Found) -> bytes:
        """The summary attributes of ``found`` serialized as a ``kind`` (span or log record) holding only them.

        Merged into an item that has none yet, they are its summary: one call into protobuf
        rather than one per attribute and entry (5.1 -> 1.6 µs a span). Remembered by what was
        found, which mostly repeats (the same rule at the same key).
        """
        key = (kind, tuple(found))
        blob = self._summaries.get(key)
        if blob is None:
            holder = kind()
            self._add_summary(holder.attributes, found, {})
            blob = holder.SerializeToString()
            if len(blob) <= _SUMMARY_CACHED_BYTES:  # (a summary of thousands of places is made each time)
                if len(self._summaries) >= _SUMMARY_CACHE_LIMIT:
                    self._summaries.clear()
                self._summaries[key] = blob
        return blob

    def _summarize(self, attrs: Any, found: Found) -> bool:
        """Add ``found`` to the record's summary attributes (adding to any an earlier stage set)."""
        if not found:
            return False
        self.count(found)
        self._add_summary(attrs, found, {kv.key: kv for kv in attrs if kv.key.startswith(self._summary)})
        return True

    def _add_summary(self, attrs: Any, found: Found, existing: dict[str, Any]) -> None:
        """Add ``found`` to ``attrs``, to the summary attributes in ``existing`` (by key) or to new ones."""
        count_key, rules_key, keys_key = self._summary_keys
        count = existing.get(count_key)
        if count is None:
            attrs.add(key=count_key).value.int_value = len(found)
        else:
            count.value.int_value += len(found)
        for key, column in ((rules_key, 0), (keys_key, 1)):
            kv = existing.get(key)
            if kv is None:
                kv = attrs.add(key=key)
            values = kv.value.array_value.values  # (adding to each in place: extend copies slowly)
            for entry in found:
                values.add(string_value=entry[column])


def _drop_unknown(item: Any) -> bool:
    """Drop a walked item's unknown fields; whether it had any.

    Why: a field this OTLP version does not know is in the bytes but not in what the walk reads,
    so a secret there would go on unseen. (The splice path also catches a value given twice;
    here the message keeps only what protobuf shows when it is encoded again.)
    """
    before = item.ByteSize()
    item.DiscardUnknownFields()
    return bool(item.ByteSize() != before)


def _is_content_event(record: Any) -> bool:
    if record.event_name in _CONTENT_EVENTS:
        return True
    return any(kv.key == "event.name" and kv.value.string_value in _CONTENT_EVENTS for kv in record.attributes)


__all__ += ["is_content_key"]
