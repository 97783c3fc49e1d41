"""Redacting a span's or log record's plain string attributes in its bytes, without parsing it.

Why: on the hit path, parsing a hit item with protobuf, walking it and encoding it again cost
about as much as scanning its values. Most hits are a secret pasted into a prompt or a tool
argument: a string attribute. Such an attribute is read from the item's bytes
(:func:`obs_pipeline.wire.plain_string`), its string redacted exactly as the walk would
(:meth:`.values.Scrubber.text`: the same markers, locations and summary) and written again; the
summary attributes are appended (protobuf merges a repeated field's occurrences), and the rest of
the item is copied as it came.

It answers only where the result is what the walk would send on: the hits are in the
attributes alone, each of them is the canonical encoding of a key and a string, the key is plain
(:meth:`.values.Scrubber.plain_key`), the item has no summary yet, the content policy is off, and
the redacted text is valid UTF-8. The bytes no hit touches go on as they came, unknown fields
included, as in every item the wide search found nothing in; the parse path drops a hit item's
unknown fields, since the walk cannot see them.
"""

from __future__ import annotations

import enum

from obs_pipeline import wire
from obs_pipeline.processors.redaction.framing import FramingError, fields, replace
from obs_pipeline.processors.redaction.values import Found, Scrubber
from obs_pipeline.processors.redaction.walk import ITEM_SHAPES, Parts, Walker
from obs_pipeline.signals import Signal

__all__ = ["UNCHANGED", "InPlace", "Unchanged"]


class Unchanged(enum.Enum):
    """What :class:`InPlace` answers for an item in which nothing was found (the wide search over-reports)."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED


class InPlace:
    """Redacts the hit attributes of one item in its bytes, where that gives what the walk would.

    Args:
        scrubber: redacts each string, and says which keys are plain.
        walker: counts what is found, and makes the summary attributes.
    """

    def __init__(self, scrubber: Scrubber, walker: Walker) -> None:
        self._scrubber = scrubber
        self._walker = walker

    def __call__(self, signal: Signal, raw: bytes, parts: Parts | None) -> bytes | Unchanged | None:
        """The item's new bytes, :data:`UNCHANGED`, or None: the caller parses the item and walks it.

        Args:
            signal: traces or logs.
            raw: the span's or log record's bytes.
            parts: the fields the hits fall into, field number -> occurrences (:mod:`.framing`).
        """
        kind, number = ITEM_SHAPES[signal]
        walker = self._walker
        if parts is None or parts.keys() != {number} or walker.content_active or walker.summary_key in raw:
            return None
        try:
            frames = fields(raw, number)
        except FramingError:
            return None
        found: Found = []
        edits: list[tuple[int, int, bytes]] = []
        for index in sorted(parts[number]):
            if index >= len(frames):
                return None
            length_start, start, end = frames[index]
            entry = self._attribute(raw, start, end, found)
            if entry is None:
                return None
            if entry is not UNCHANGED:
                edits.append((length_start, end, wire.varint(len(entry)) + entry))
        if not found:
            return UNCHANGED
        walker.count(found)
        return replace(raw, edits, walker.fresh_summary(kind, found))

    def _attribute(self, raw: bytes, start: int, end: int, found: Found) -> bytes | Unchanged | None:
        """The new bytes of the ``KeyValue`` in ``raw[start:end]``, :data:`UNCHANGED`, or None (not plain)."""
        where = wire.plain_string(raw, start, end)
        if where is None:
            return None
        key_end, text_start = where
        try:
            key, text = raw[start + 2:key_end].decode(), raw[text_start:end].decode()
        except UnicodeDecodeError:  # (protobuf refuses such a string: the parse path says so)
            return None
        if not self._scrubber.plain_key(key):
            return None
        new = self._scrubber.text(text, f"attributes.{key}", found)
        if new is None:
            return UNCHANGED
        try:
            encoded = new.encode()
        except UnicodeEncodeError:  # a lone surrogate from JSON: the parse path masks the value
            return None
        return wire.key_value(key, wire.field(1, encoded))
