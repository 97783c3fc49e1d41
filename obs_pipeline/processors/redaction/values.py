r"""Redacting one value: strings (JSON inside them too), bytes, and nested AnyValues, failing closed.

Every value is handled on its own: a value the scanner cannot finish (too large, too deep, not
encodable, any internal error) becomes ``[REDACTED:unscanned]`` and is counted, and the rest of
the batch goes on. A marker never holds any part of the secret.

A string that is JSON (``gen_ai.input.messages``, tool arguments) is decoded, its leaves and keys
redacted, and encoded again, so it stays valid JSON, escapes such as ``\n`` or ``\u0073k-`` do
not hide a secret, and the key rules apply to its object keys. A string that only looks like
JSON is scanned as text, and a match never ends inside an escape.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from obs_pipeline.processors.redaction.escapes import decoded
from obs_pipeline.processors.redaction.rules import UNSCANNED
from obs_pipeline.processors.redaction.scanner import Scanner

__all__ = ["UNSCANNED", "Found", "Scrubber"]

#: (rule id, location) of each value redacted (or detected) in one record.
Found = list[tuple[str, str]]


class _NotJson(Exception):
    """The string is not JSON after all: scan it as text."""


class _KeyNames:
    """The keys of one map, read when its first secret key is masked: names for masked keys that no other key has.

    Why: two secret keys masked alike (``seen.ghp_a...`` and ``seen.ghp_b...`` both become
    ``seen.[REDACTED:github-pat]``) would make one map hold a key twice, and OTLP consumers and
    JSON decoders keep one of the two values. The second gets ``#2``, the next ``#3``.
    """

    __slots__ = ("_keys", "_last", "_taken")

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = keys  # (read once, only if a key is masked)
        self._taken: set[str] | None = None
        self._last: dict[str, int] = {}  # name -> its last suffix tried: n keys masked alike cost O(n), not O(n^2)

    def distinct(self, name: str) -> str:
        """``name``, or ``name#2``, ``name#3``, ...: the first no key of the map has; it is taken from now on."""
        if self._taken is None:
            self._taken = set(self._keys)
        unique, n = name, self._last.get(name, 1)
        if n > 1:
            unique = f"{name}#{n}"
        while unique in self._taken:
            n += 1
            unique = f"{name}#{n}"
        self._last[name] = n
        self._taken.add(unique)
        return unique


class Scrubber:
    """Redacts values in place and records what it found.

    Args:
        scanner: the compiled rules.
        redact: False in detect mode: find and record, change nothing.
        hash_key: with a key, a marker carries the HMAC-SHA256 of the secret (16 hex digits).
        max_value_size: longer values are not scanned but masked as unscanned.
        max_depth: nesting (AnyValue arrays and kvlists, JSON) deeper than this is masked as unscanned.
        renamed_keys: attribute keys renamed wherever they are met, in both modes (a sender's own
            ``redaction.*`` summary, which must not pass for this processor's); the scanner must
            know them as wire keys, so no request holding one skips the walk.
    """

    def __init__(self, scanner: Scanner, *, redact: bool, hash_key: bytes | None,
                 max_value_size: int, max_depth: int, renamed_keys: Mapping[str, str] | None = None) -> None:
        self.scanner = scanner
        self._renamed = renamed_keys or {}
        self.redact = redact
        self._hash_key = hash_key
        self.max_value_size = max_value_size
        self._max_depth = max_depth

    # -- markers ---------------------------------------------------------------------------------

    def marker(self, rule: str, secret: str | bytes) -> str:
        """``[REDACTED:<rule>]``, or with a hash key ``[REDACTED:<rule>:<hex16>]``."""
        if self._hash_key is None or rule == UNSCANNED:
            return f"[REDACTED:{rule}]"
        if isinstance(secret, str) and "\\" in secret:
            secret = decoded(secret)  # an escaped secret hashes as itself: the markers still correlate
        data = secret.encode("utf-8", "surrogatepass") if isinstance(secret, str) else secret
        digest = hmac.new(self._hash_key, data, hashlib.sha256).hexdigest()[:16]
        return f"[REDACTED:{rule}:{digest}]"

    # -- strings and bytes -----------------------------------------------------------------------

    def text(self, text: str, location: str, found: Found, depth: int = 0) -> str | None:
        """The redacted text, or None when nothing changes (detect mode: never changes)."""
        local: Found = []
        try:
            out = self._text(text, location, local, depth)
        except Exception:
            found.append((UNSCANNED, location))
            return self.marker(UNSCANNED, "") if self.redact else None
        found.extend(local)
        return out if self.redact else None

    def _text(self, text: str, location: str, found: Found, depth: int) -> str | None:
        if len(text) > self.max_value_size:
            found.append((UNSCANNED, location))
            return self.marker(UNSCANNED, "")
        if text.lstrip()[:1] in ("{", "["):
            if not self.scanner.text_may_hit(text):  # wide: escaped secrets count as maybe
                return None
            try:
                return self._json(text, location, found, depth)
            except _NotJson:
                pass
        return self._raw(text, location, found)  # plain text: the exact scan is the only test needed

    def _raw(self, text: str, location: str, found: Found) -> str | None:
        hits = self.scanner.scan(text)
        if not hits:
            return None
        pieces: list[str] = []
        last = 0
        for hit in hits:
            end = hit.end
            while end > hit.start + 1 and text[end - 1] == "\\":  # never cut into an escape
                end -= 1
            found.append((hit.rule, location))
            pieces.append(text[last:hit.start])
            pieces.append(self.marker(hit.rule, text[hit.start:end]))
            last = end
        pieces.append(text[last:])
        return "".join(pieces)

    def _json(self, text: str, location: str, found: Found, depth: int) -> str | None:
        if depth >= self._max_depth:
            raise _NotJson
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise _NotJson from exc
        before = len(found)
        root: list[Any] = [doc]
        stack: list[tuple[Any, int]] = [(root, depth)]
        while stack:
            node, level = stack.pop()
            if level > self._max_depth:
                raise _NotJson  # scanned as text instead: still complete, only less exact
            if isinstance(node, dict):
                self._json_keys(node, location, found)
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for slot, value in list(items):
                rule = self.scanner.key_rule(slot) if isinstance(slot, str) else None
                if rule is not None and value is not None and value != "" and not isinstance(value, bool):
                    found.append((rule, location))
                    node[slot] = self.marker(rule, json.dumps(value))
                elif isinstance(value, str):
                    new = self._text(value, location, found, level + 1)
                    if new is not None:
                        node[slot] = new
                elif isinstance(value, (dict, list)):
                    stack.append((value, level + 1))
        if len(found) == before:
            return None
        compact = '": ' not in text and '", ' not in text
        return json.dumps(root[0], ensure_ascii=False, separators=(",", ":") if compact else None)

    def _json_keys(self, node: dict[str, Any], location: str, found: Found) -> None:
        """Mask secrets inside the object keys of a JSON document (``{"tool_AKIA...": 1}``), order kept."""
        renamed: dict[str, str] = {}
        names = _KeyNames(node)
        for key in node:
            masked = self.scanner.masked_key(key, self.marker)
            if masked is not None:
                found.append((masked[1], location))
                renamed[key] = names.distinct(masked[0])
        if renamed:
            items = [(renamed.get(key, key), value) for key, value in node.items()]
            node.clear()
            node.update(items)

    def data(self, data: bytes, location: str, found: Found) -> bytes | None:
        """The redacted bytes, or None when nothing changes."""
        try:
            if len(data) > self.max_value_size:
                found.append((UNSCANNED, location))
                return self.marker(UNSCANNED, b"").encode() if self.redact else None
            if not self.scanner.wire_may_hit(data):
                return None
            hits = self.scanner.scan_bytes(data)
        except Exception:
            found.append((UNSCANNED, location))
            return self.marker(UNSCANNED, b"").encode() if self.redact else None
        if not hits:
            return None
        pieces: list[bytes] = []
        last = 0
        for hit in hits:
            found.append((hit.rule, location))
            pieces += [data[last:hit.start], self.marker(hit.rule, data[hit.start:hit.end]).encode()]
            last = hit.end
        pieces.append(data[last:])
        return b"".join(pieces) if self.redact else None

    # -- OTLP values -----------------------------------------------------------------------------

    def whole(self, value: AnyValue, rule: str, location: str, found: Found) -> bool:
        """Mask all of ``value`` (its key is sensitive); False for an empty value or a boolean."""
        which = value.WhichOneof("value")
        if which is None or which == "bool_value" or (which == "string_value" and not value.string_value):
            return False
        found.append((rule, location))
        if self.redact:
            secret = value.string_value if which == "string_value" else value.SerializeToString()
            value.string_value = self.marker(rule, secret)
        return self.redact

    def attributes(self, attrs: Any, prefix: str, found: Found, indexes: set[int] | None = None) -> bool:
        """Redact a repeated ``KeyValue`` field; ``prefix`` is the location before each key.

        Args:
            attrs: the repeated field.
            prefix: the location before each key (``attributes.``).
            found: where to record what is found.
            indexes: only these attributes (None: all).
        """
        changed = False
        chosen = attrs if indexes is None else [attrs[i] for i in sorted(indexes) if i < len(attrs)]
        names = _KeyNames(kv.key for kv in attrs)
        renamed = self._renamed
        for kv in chosen:  # our own summary attributes too: a value under their names is scanned like any other
            if self.plain_key(kv.key):  # (the one test of it, shared with the in-place path)
                changed |= self.any_value(kv.value, f"{prefix}{kv.key}", found, 0)
                continue
            if renamed and kv.key in renamed:
                kv.key = names.distinct(renamed[kv.key])
                changed = True
            key_changed, name = self.key_secret(kv, prefix, found, names)
            changed |= key_changed
            changed |= self.key_value(kv, f"{prefix}{name}", found, 0)
        return changed

    def plain_key(self, key: str) -> bool:
        """Whether a value under ``key`` is redacted as a value alone: the key is not a secret, nor sensitive, nor renamed.

        :meth:`attributes` scans the value of such a key alone, and the in-place path
        (:mod:`.in_place`) handles only such attributes.
        """
        if key in self._renamed or self.scanner.key_rule(key) is not None:
            return False
        return self.scanner.masked_key(key, self.marker) is None

    def key_secret(self, kv: KeyValue, prefix: str, found: Found, names: _KeyNames) -> tuple[bool, str]:
        """Mask a secret in the key itself (a header map keyed by token); return (changed, the key's name in locations).

        The name is the masked key (one no other key of the map has, ``names``) in both modes, so
        no location echoes the secret: in ``detect`` mode the key itself stays as it was, but the
        summary and the security line name it masked.
        """
        masked = self.scanner.masked_key(kv.key, self.marker)
        if masked is None:
            return False, kv.key
        name = names.distinct(masked[0])
        found.append((masked[1], f"{prefix}{name}"))
        if self.redact:
            kv.key = name
        return self.redact, name

    def key_value(self, kv: KeyValue, location: str, found: Found, depth: int) -> bool:
        """Redact one attribute: by its key's name, else by its value."""
        rule = self.scanner.key_rule(kv.key)
        if rule is not None:
            return self.whole(kv.value, rule, location, found)
        return self.any_value(kv.value, location, found, depth)

    def any_value(self, value: AnyValue, location: str, found: Found, depth: int = 0) -> bool:
        """Redact ``value`` and everything nested in it, iteratively, at most ``max_depth`` deep."""
        changed = False
        stack = [(value, location, depth)]
        while stack:
            av, loc, level = stack.pop()
            mark = len(found)
            try:
                changed |= self._one(av, loc, level, found, stack)
            except Exception:
                del found[mark:]  # the value becomes one unscanned marker, counted once
                found.append((UNSCANNED, loc))
                if self.redact:
                    av.string_value = self.marker(UNSCANNED, "")
                    changed = True
        return changed

    def _one(self, av: AnyValue, loc: str, level: int, found: Found, stack: list[tuple[AnyValue, str, int]]) -> bool:
        which = av.WhichOneof("value")
        if which == "string_value":
            new = self.text(av.string_value, loc, found)
            if new is None:
                return False
            av.string_value = new
            return True
        if which == "bytes_value":
            data = self.data(av.bytes_value, loc, found)
            if data is None:
                return False
            av.bytes_value = data
            return True
        if which not in ("array_value", "kvlist_value"):
            return False
        if level >= self._max_depth:
            found.append((UNSCANNED, loc))
            if self.redact:
                av.string_value = self.marker(UNSCANNED, "")
            return self.redact
        if which == "array_value":
            stack.extend((child, f"{loc}[{i}]", level + 1) for i, child in enumerate(av.array_value.values))
            return False
        changed = False
        entries = av.kvlist_value.values
        names = _KeyNames(kv.key for kv in entries)
        for kv in entries:
            key_changed, name = self.key_secret(kv, f"{loc}.", found, names)
            changed |= key_changed
            rule = self.scanner.key_rule(kv.key)
            if rule is not None:
                changed |= self.whole(kv.value, rule, f"{loc}.{name}", found)
            else:
                stack.append((kv.value, f"{loc}.{name}", level + 1))
        return changed
