"""``redaction``: mask secrets before any exporter sees them, and apply the content policy.

The hot path, per batch: one RE2 search over the batch's wire bytes with a widened form of every
rule (:mod:`.rules`). No hit means nothing can need redacting: the batch goes on untouched, wire
bytes and all, so a clean batch costs that scan and nothing more. On a hit, the protobuf framing
(:mod:`.framing`) says which spans or log records, and which of their fields, the hits fall in:
only those are redacted and spliced back into the bytes, so the rest of the request is never
parsed. An item whose hits all lie in plain string attributes is redacted in its bytes
(:mod:`.in_place`); any other is parsed, walked (:mod:`.walk`), its values scanned with one RE2
alternation (:mod:`.scanner`) and rewritten where they hit (:mod:`.values`), and encoded again. A
hit in a resource or scope, the content policy, metrics and bytes the framing cannot follow take
the whole-message path (the message is changed in place and its stale bytes dropped). A walk that
finds nothing (the wide search can over-report) hands the batch on unchanged, bytes and all.

Every value masked (or, in ``mode: detect``, found) is counted in
``obs_pipeline_redaction_values_total`` by rule id, once per batch, in every signal: the count
that also covers metric data points, which get no summary attributes.

Rules are data (``rules.yaml``); user rules, blocked and allowed keys, allowed values and
disabled rule ids come from the config and are checked at config time (:mod:`.config`).
"""

from __future__ import annotations

import functools
import logging
from bisect import bisect_right
from collections import Counter
from typing import Any

from google.protobuf.message import DecodeError

from obs_pipeline.batch import Batch
from obs_pipeline.components import Consumer, ProcessorFactory, ProcessorSettings
from obs_pipeline.processors._helper import FunctionProcessor
from obs_pipeline.processors.redaction.config import Config, Content, Mode, Replacement, check
from obs_pipeline.processors.redaction.content import ContentPolicy, literals
from obs_pipeline.processors.redaction.framing import (
    FramingError,
    Hits,
    Item,
    Layout,
    compiled,
    items_hit,
    layout,
    splice,
)
from obs_pipeline.processors.redaction.in_place import UNCHANGED, InPlace
from obs_pipeline.processors.redaction.scanner import Hit, Scanner, scan_text
from obs_pipeline.processors.redaction.values import Found, Scrubber
from obs_pipeline.processors.redaction.walk import HIDDEN_BYTES, ITEM_SHAPES, SENDER_SUMMARY, Walker
from obs_pipeline.signals import Signal

__all__ = ["FACTORY", "TYPE", "Config", "Hit", "Redactor", "check", "scan_text"]

TYPE = "redaction"
_log = logging.getLogger(__name__)


@functools.cache
def _say_how_framing_runs() -> None:
    """Say once when the compiled framing walk is missing: the install found no C compiler."""
    if not compiled():
        _log.info("redaction: the compiled framing walk is not built (no C compiler at install time); "
                  "the Python walk runs, slower on requests that hold a secret")


class Redactor:
    """The processor's function: ``Batch -> Batch``, built once from the config.

    Args:
        cfg: the parsed config.
        settings: where the values found are counted (None: counted nowhere, for tests of the rules).
        hyperscan: False to always search with RE2 alone, the wire and each value (:mod:`.prefilter`;
            for comparisons).
    """

    def __init__(self, cfg: Config, settings: ProcessorSettings | None = None, *, hyperscan: bool = True) -> None:
        _say_how_framing_runs()
        self.cfg = cfg
        # The first redaction stage of a pipeline is where a sender's own summary stops passing for one.
        trusted = cfg.trust_upstream_summary or (settings is not None and TYPE in settings.upstream)
        renamed = {} if trusted else SENDER_SUMMARY
        self.scanner = Scanner(
            cfg.rules, disable=cfg.disable, blocked_keys=cfg.blocked_keys, allowed_keys=cfg.allowed_keys,
            allowed_values=cfg.allowed_values, literals=literals(cfg.content), wire_keys=tuple(renamed),
            hyperscan=hyperscan,
        )
        hash_key = cfg.hash_key.reveal().encode() if cfg.replacement is Replacement.HASH and cfg.hash_key else None
        self.scrubber = Scrubber(self.scanner, redact=cfg.mode is Mode.REDACT, hash_key=hash_key,
                                 max_value_size=cfg.max_value_size, max_depth=cfg.max_depth, renamed_keys=renamed)
        self.walker = Walker(self.scrubber, ContentPolicy(cfg.content, cfg.max_content_chars))
        self.in_place = InPlace(self.scrubber, self.walker)
        self._values: Any = None
        self._labels: dict[str, str] = {}
        self._children: dict[str, Any] = {}
        if settings is not None:
            mode = "masked" if cfg.mode is Mode.REDACT else "detected"
            self._values = settings.metrics.redaction_values.labels
            self._labels = {"processor": str(settings.id), "pipeline": settings.pipeline, "mode": mode}

    def __call__(self, batch: Batch) -> Batch:
        """Redact ``batch``: the same batch when nothing changed (wire bytes kept), else a redacted one."""
        tally = self.walker.tally
        tally.clear()
        out = self._redact(batch)
        if tally and self._values is not None:
            for rule, count in tally.items():
                child = self._children.get(rule)
                if child is None:
                    child = self._children[rule] = self._values(**self._labels, rule=rule)
                child.inc(count)
        return out

    def _redact(self, batch: Batch) -> Batch:
        wire = self._wire(batch)
        regions = self.scanner.wire_regions(wire) if wire is not None else None
        limit = self.cfg.max_value_size
        if wire is not None and regions is not None and not regions and len(wire) <= limit:
            return batch  # the common clean batch: one scan, nothing more
        if wire is None or regions is None or batch.signal is Signal.METRICS:
            return self._walk(batch, None)
        try:
            # Over max_value_size every item's size matters; else only the items a hit touches.
            found = layout(wire, None if len(wire) > limit else regions)
            only = items_hit(wire, found.entries, regions)
        except FramingError:
            return self._walk(batch, None)
        if len(wire) > limit:
            # Values over max_value_size must become the unscanned marker: items that could hold
            # one are walked whole; if the rest of the request could, the message path takes it.
            for start, end, item in found.entries:
                if end - start > limit:
                    only[item] = None
            if len(wire) - sum(end - start for start, end, _ in found.entries) > limit:
                return self._walk(batch, only or {_RESOURCE_ONLY: {}})
            if not only and not regions:  # (a hit outside every item, in a resource or scope, still needs the walk)
                return batch
        inside = _inside_items(found.entries, regions)
        if inside and not self.walker.content_active:  # (the content policy also marks records: the message path)
            return self._splice(batch, wire, found, only)
        return self._walk(batch, only or {_RESOURCE_ONLY: {}}, hits_outside_items=not inside)

    def _wire(self, batch: Batch) -> bytes | None:
        """The batch's bytes (None when they cannot be had)."""
        try:
            return batch.serialized()
        except Exception:
            return None

    def _walk(self, batch: Batch, only: Hits | None, *, hits_outside_items: bool = True) -> Batch:
        """Redact the batch's message in place (the spans or records in ``only``, or each one).

        What goes on is what protobuf shows (:func:`_longer_than_shown`): the scan hit somewhere, and
        a hit in bytes the walk cannot see (an unknown field of a resource, a name given twice)
        must not go on in them. Unknown fields are dropped from the whole message when a hit may
        lie outside the items walked (they drop their own); an unchanged message is encoded
        again when its bytes are longer than what protobuf shows.
        """
        wire = batch.wire
        message = batch.message
        try:
            changed = self.walker.walk(batch.signal, message, only)
        except BaseException:
            batch.mutable()  # the message may have been changed part way: its bytes must go
            raise
        if hits_outside_items:
            message.DiscardUnknownFields()
        if changed or (wire is not None and _longer_than_shown(message, wire)):
            batch.mutable()
        return batch

    def _splice(self, batch: Batch, wire: bytes, found: Layout, only: Hits) -> Batch:
        """Redact only the spans or records hit, and splice them into the bytes.

        Each is redacted in its bytes where it can be (:mod:`.in_place`), else parsed, walked and
        encoded again. The rest of the request is neither parsed nor serialized, and the result is
        bytes again, which is what the batch processor and the audit exporter want.
        """
        replaced: dict[Item, bytes] = {}
        summary_key = self.walker.summary_key
        for item, parts in only.items():
            _, start, end = found.frame(item)
            raw = wire[start:end]
            edited = self.in_place(batch.signal, raw, parts)
            if edited is UNCHANGED:
                continue
            if edited is not None:  # (the hits were in plain string attributes)
                replaced[item] = edited
                continue
            try:
                record = ITEM_SHAPES[batch.signal][0].FromString(raw)
            except DecodeError:  # e.g. nested deeper than protobuf parses: the message path copes
                self.walker.tally.clear()  # it walks the items counted so far again
                return self._walk(batch, only)
            record.DiscardUnknownFields()  # (a hit item goes on as protobuf shows it: see _longer_than_shown)
            hidden = _longer_than_shown(record, raw)
            dropped = _hidden_secrets(self.scanner, raw, record) if hidden else []
            if self.walker.item(batch.signal, record, parts, fresh=summary_key not in raw, dropped=dropped) or hidden:
                replaced[item] = record.SerializeToString()
        if not replaced:
            return batch
        return Batch.from_wire(batch.signal, splice(wire, found, replaced), items=batch.items)


def _hidden_secrets(scanner: Scanner, raw: bytes, shown: Any) -> Found:
    r"""What the rules find in an item's bytes ``raw`` beyond what they find in ``shown`` (parsed from it), by rule.

    Why: bytes protobuf does not show are dropped when the item is encoded again
    (:func:`_longer_than_shown`); a secret in them must still be reported and counted, or a
    sender's leak would vanish unseen. Both encodings are scanned as bytes, framing and all, and
    counted by rule (a match may run into a tag byte, so matches are not compared as text). So a
    match that a tag or length byte breaks (a ``\b`` next to a letter) is not counted, though it is
    dropped all the same, and the walker reports these only where it finds nothing else
    (:meth:`.walk.Walker.item`).
    """
    extra = Counter(hit.rule for hit in scanner.scan_bytes(raw))
    extra.subtract(hit.rule for hit in scanner.scan_bytes(shown.SerializeToString()))
    return [(rule, HIDDEN_BYTES) for rule, n in extra.items() for _ in range(n)]


def _inside_items(layout: list[tuple[int, int, Item]], regions: list[tuple[int, int]]) -> bool:
    """Whether every hit lies inside one span or record, so the rest need not be parsed (nor re-encoded)."""
    starts = [start for start, _, _ in layout]
    for region_start, region_end in regions:
        k = bisect_right(starts, region_start) - 1
        if k < 0 or region_end > layout[k][1]:
            return False
    return True


def _longer_than_shown(message: Any, raw: bytes) -> bool:
    """Whether ``raw`` holds more than ``message`` (parsed from it, unknown fields dropped) shows.

    Why: a secret in a field this OTLP version does not know, in the first of two values of a
    singular field, or in a oneof overwritten later, is in the bytes but not in the message the
    walk reads. The canonical encoding of what protobuf shows is never longer than any encoding
    of it, so bytes longer than it hold something hidden: the message is then encoded again.
    """
    return bool(message.ByteSize() != len(raw))


#: Marks "walk the resources and scopes only": a hit outside every span or record.
_RESOURCE_ONLY: Item = (-1, -1, -1)


def _create(settings: ProcessorSettings, cfg: Config, next_consumer: Consumer) -> FunctionProcessor:
    # It never drops anything: the one reason it counts under is the helper's own processing_error.
    return FunctionProcessor(settings, next_consumer, Redactor(cfg, settings), drop_reason="processing_error")


FACTORY = ProcessorFactory[Config](
    type=TYPE,
    signals=frozenset(Signal),
    schema="processors/redaction.schema.json",
    description="Masks secrets (API keys, tokens, passwords, private keys) in every string of spans, logs and "
                "metrics, and keeps, drops or truncates prompt and completion content.",
    parse=Config.parse,
    create=_create,
    check=check,
    mutates_data=True,
)

# Re-exported for callers that build configs in code.
__all__ += ["Content", "Mode", "Replacement"]
