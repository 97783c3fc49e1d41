"""The compiled rule set: one RE2 alternation over values, one over wire bytes, and the key rules.

Every value rule becomes one group of a single alternation, so a value costs one RE2 search
however many rules there are (with the Hyperscan prefilter, which first says which rules' widened
forms occur in the value, none when none does: then not even that); which group took part names
the rule (RE2 is leftmost-first, so at one position the earlier rule wins: specific prefixes come
first in ``rules.yaml``). Context rules (``password=...``) mask only their ``secret_group``; when
the secret they caught is itself a known token, the token's own rule id is reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import re2

from obs_pipeline.processors.redaction.escapes import unescaped
from obs_pipeline.processors.redaction.matcher import NO_MATCH, Matcher, matcher
from obs_pipeline.processors.redaction.prefilter import WirePrefilter
from obs_pipeline.processors.redaction.rules import (
    BLOCKED_KEY,
    BUILTIN,
    Rule,
    escape_tolerant,
    options,
    strip_assertions,
)

__all__ = ["Hit", "Scanner", "scan_text"]

_log = logging.getLogger(__name__)
_KEY_CACHE_LIMIT = 10_000
# JSON escapes: \uXXXX can spell anything, so text with one is always looked at value by value (JSON
# values are decoded there); \t \n \/ ... where a rule wants a space or a slash are matched by the
# wide forms themselves (rules.escape_tolerant); an escaped quote or backslash is allowed for by the
# built-in patterns, and needs the unescaped search only for user patterns (see Scanner.__init__).
_ESCAPE_MAYBE = re2.compile(r"\\u[0-9A-Fa-f]{4}")
_ESCAPE_MAYBE_BYTES = re2.compile(rb"\\u[0-9A-Fa-f]{4}")
_QUOTE_ESCAPE = re2.compile(r"\\[\"']")
_QUOTE_ESCAPE_BYTES = re2.compile(rb"\\[\"']")
# How a key ends in the wire: the KeyValue's value tag (field 2, length-delimited) follows it; a
# key inside a JSON string is followed by its closing quote, after any run of backslashes (JSON
# inside JSON); a KeyValue written value first ends the request with its key. The runs are spelled
# out (none, one, two, three or more) rather than written ``\\*``: then Hyperscan keys each on a
# literal that ends at the quote; with ``\\*`` it keyed on the key word alone, which every
# ``gen_ai.usage.*_tokens`` key in the wire holds (bench: a sixth of the prefilter's time).
_WIRE_KEY_END = r'(?:\x12|["\']|\\["\']|\\\\["\']|\\\\\\+["\']|$)'


@dataclass(frozen=True, slots=True)
class Hit:
    """One secret: the rule that caught it and where it is (character offsets, end exclusive)."""

    rule: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Group:
    index: int  # the group of the whole rule in the alternation
    secret: int  # the group that is the secret (== index when it is the whole match)
    rule: str
    context: bool  # a context rule: the secret may be a known token of its own


class Scanner:
    """Finds secrets in text, bytes and keys with the built-in rules plus the user's.

    Args:
        user_rules: value rules from the config, tried after the built-in ones.
        disable: built-in rule ids (``sensitive-key`` included) to leave out.
        blocked_keys: RE2 patterns; a matching key's whole value is a secret (rule ``blocked-key``).
        allowed_keys: keys never masked by their name.
        allowed_values: RE2 patterns; a found secret that fully matches one is left alone.
        literals: extra text whose presence in the wire means the batch must be walked (the keys
            of the content policy).
        wire_keys: attribute keys whose presence in the wire means the batch must be walked,
            Hyperscan or not (the summary keys a sender may have forged, :mod:`.values`); only
            the wire is searched for them, never a value's text.
        hyperscan: let :mod:`.prefilter` find where to look in a request, when the rules are the
            built-in ones and the wheel is here (False: always the RE2 pass, for comparisons).
    """

    def __init__(self, user_rules: tuple[Rule, ...] = (), *, disable: tuple[str, ...] = (),
                 blocked_keys: tuple[str, ...] = (), allowed_keys: tuple[str, ...] = (),
                 allowed_values: tuple[str, ...] = (), literals: tuple[str, ...] = (),
                 wire_keys: tuple[str, ...] = (), hyperscan: bool = True) -> None:
        off = set(disable)
        rules = [r for r in BUILTIN.rules if r.id not in off] + list(user_rules)
        opts = options()
        self._groups: list[_Group] = []
        parts: list[str] = []
        index = 1
        for rule in rules:
            inner = re2.compile(rule.pattern, opts).groups
            secret = index + rule.secret_group if rule.secret_group else index
            self._groups.append(_Group(index, secret, rule.id, bool(rule.secret_group)))
            parts.append(f"({rule.pattern})")
            index += 1 + inner
        # Which rules match somewhere in a value (one DFA pass), and each rule on its own, to
        # read a match's groups with a small program rather than the whole alternation's.
        self._set = re2.Set.SearchSet(opts)
        for rule in rules:
            self._set.Add(rule.pattern.encode())
        self._set.Compile()
        self._each = [matcher(re2.compile(rule.pattern.encode(), opts), anchored=True) for rule in rules]
        # Each rule's bounds alone, for a value whose candidates the prefilter named (_scan_candidates).
        yes_no_each = options()
        yes_no_each.never_capture = True
        self._bounds_each = [matcher(re2.compile(rule.pattern.encode(), yes_no_each), anchored=False) for rule in rules]
        self._rule_count = len(rules)  # (rule i is pattern i of the prefilter, when there is one)
        bytes_regex = re2.compile("|".join(parts).encode(), opts) if parts else None
        # A yes/no search: without capture groups RE2 never runs its slower submatch engine.
        yes_no = options()
        yes_no.never_capture = True
        # Where the matches are, found by the DFA alone; the groups are then read on each match only.
        self._bounds = re2.compile("|".join(parts).encode(), yes_no) if parts else None
        self._find_bounds = matcher(self._bounds, anchored=False) if self._bounds is not None else None
        self._find_first = matcher(bytes_regex, anchored=False) if bytes_regex is not None else None
        self._whole = matcher(bytes_regex, anchored=True) if bytes_regex is not None else _never
        self._allowed = re2.compile("|".join(f"(?:{p})" for p in allowed_values), opts) if allowed_values else None
        self._key_rule = None if "sensitive-key" in off else re2.compile(BUILTIN.key_rule.pattern, opts)
        self._blocked = re2.compile("|".join(f"(?:{p})" for p in blocked_keys), opts) if blocked_keys else None
        self._safe_keys = BUILTIN.safe_keys | frozenset(allowed_keys)
        self._key_cache: dict[str, str | None] = {}
        self._masked_keys: dict[str, tuple[str, str] | None] = {}
        # The built-in patterns allow any run of backslashes before a quote (JSON inside JSON);
        # a user pattern with a quote may not, so escaped text is also searched unescaped.
        self._quote_fallback = any(q in p for p in (*(r.pattern for r in user_rules), *blocked_keys) for q in "\"'")
        wide = _wide_forms(parts, with_key_rule=self._key_rule is not None)
        wide.extend(f"(?:{_wide_form(p)})" for p in blocked_keys)
        wide.extend(re2.escape(literal) for literal in literals)
        self._wide = re2.compile("|".join(wide), yes_no) if wide else None
        self._text_forms = len(wide)  # (the prefilter's patterns after these are the wire keys)
        wire = wide + [re2.escape(key) for key in wire_keys]
        self._wide_bytes = re2.compile("|".join(wire).encode(), yes_no) if wire else None
        # Only the built-in rules and the wire keys go to Hyperscan: user rules and blocked keys are
        # arbitrary RE2; a configuration with them, or with the content policy's literals, takes the RE2 pass.
        builtin_only = hyperscan and wide and not user_rules and not blocked_keys and not literals
        self._prefilter = _prefilter(wire) if builtin_only else None  # (the rules' forms and the wire keys alone)

    @property
    def prefilter(self) -> WirePrefilter | None:
        """The Hyperscan prefilter :meth:`wire_regions` asks where to look, or None (:mod:`.prefilter`)."""
        return self._prefilter

    def wire_may_hit(self, data: bytes) -> bool:
        r"""Whether serialized data may hold anything to redact (False is certain, True is a maybe).

        Text with a ``\uXXXX`` escape is always a maybe; with user patterns that hold a quote,
        escaped text is also searched with its backslashes removed (JSON inside JSON).
        """
        wide = self._wide_bytes
        if wide is None:
            return False
        if wide.search(data) is not None:
            return True
        if b"\\" not in data:
            return False
        if _ESCAPE_MAYBE_BYTES.search(data) is not None:
            return True
        if not self._quote_fallback or _QUOTE_ESCAPE_BYTES.search(data) is None:
            return False
        return wide.search(data.replace(b"\\", b"")) is not None

    def wire_regions(self, data: bytes) -> list[tuple[int, int]] | None:
        r"""Byte ranges of ``data`` that may hold something to redact ([]: nothing; None: somewhere).

        The ranges of every wide match and every ``\\uXXXX`` escape; None when only the unescaped
        search (user patterns with quotes) finds something, whose offsets do not map back.
        """
        wide = self._wide_bytes
        if wide is None:
            return []
        ends = self._prefilter.ends(data) if self._prefilter is not None else None
        if ends is not None:
            # The last two bytes of each match: what the framing needs to find its field (a key
            # rule's match ends on the byte after the key, its value's tag when the SDK wrote it).
            regions = [(max(0, end - 2), end) for end in ends]
            if b"\\" in data:
                regions += [m.span() for m in _ESCAPE_MAYBE_BYTES.finditer(data)]
            return regions
        regions = [m.span() for m in wide.finditer(data)]
        if b"\\" in data:
            regions += [m.span() for m in _ESCAPE_MAYBE_BYTES.finditer(data)]
            if not regions and self._quote_fallback and _QUOTE_ESCAPE_BYTES.search(data) is not None:
                return None if wide.search(data.replace(b"\\", b"")) is not None else []
        return regions

    def text_may_hit(self, text: str) -> bool:
        """Whether ``text`` may hold a secret, escaped or not (a cheap first look before the exact scan).

        With the prefilter, its forms (a superset of the wide ones, in bytes) answer for the wide search.
        """
        wide = self._wide
        if wide is None:
            return False
        seen = self._prefilter.matching(text.encode("utf-8", "surrogatepass")) if self._prefilter else None
        if seen is None:
            if wide.search(text) is not None:
                return True
        elif any(i < self._text_forms for i in seen):  # (the wire keys are looked for in the wire only)
            return True
        if "\\" not in text:
            return False
        if _ESCAPE_MAYBE.search(text) is not None:
            return True
        if not self._quote_fallback or _QUOTE_ESCAPE.search(text) is None:
            return False
        return wide.search(text.replace("\\", "")) is not None

    def scan(self, text: str) -> list[Hit]:
        r"""The secrets in ``text`` (character offsets), in order, not overlapping.

        Text holding JSON escapes is also scanned with them undone (up to three times, :mod:`.escapes`),
        each hit mapped back to whole escapes: JSON quoted inside prose is not decoded as a
        document, and ``sk-``, ``https:\/\/bob:pw@`` or the ``n`` of ``
        `` glued onto a
        token would otherwise hide a secret.
        """
        hits = self._scan_text(text)
        if "\\" in text:
            for decoded, origin in unescaped(text):
                found = [Hit(h.rule, origin[h.start], origin[h.end]) for h in self._scan_text(decoded)]
                hits = _union(hits, found)
        return hits

    def _scan_text(self, text: str) -> list[Hit]:
        data = text.encode("utf-8", "surrogatepass")
        hits = self._scan(data, text)
        if len(data) == len(text) or not hits:
            return hits  # ASCII: byte and character offsets agree
        return [Hit(h.rule, len(data[:h.start].decode("utf-8", "surrogatepass")),
                    len(data[:h.end].decode("utf-8", "surrogatepass"))) for h in hits]

    def matches(self, data: bytes) -> int:
        """How many matches the rules' alternation has in ``data``: one bare RE2 pass (for benchmarks)."""
        return 0 if self._bounds is None else sum(1 for _ in self._bounds.finditer(data))

    def scan_bytes(self, data: bytes) -> list[Hit]:
        """The secrets in ``data`` (byte offsets); invalid UTF-8 is just bytes that match nothing."""
        return self._scan(data, None)

    def _scan(self, data: bytes, text: str | None) -> list[Hit]:
        """The hits in ``data``, in order; after each, the search goes on where its secret ends.

        Why there and not at the end of the match: a rule's context after the secret (the
        separator that must follow a glued token) may be the context another secret needs before
        it, as the space is in ``sk-proj-... password=hunter2``.
        """
        bounds, find = self._find_bounds, self._find_first
        if bounds is None or find is None:
            return []
        hits = []
        candidates = self._candidates(data)
        if candidates == []:
            return []
        if candidates is not None:
            return self._scan_candidates(data, candidates, own_rule=text is not None)
        pos, size = 0, len(data)
        while pos < size:  # (no rule matches empty text)
            start, end = bounds(data, pos, size)[0]
            if start < 0:
                break
            pos = end if end > start else end + 1
            if candidates is None:
                candidates = sorted(self._set.Match(data) or ())
            hit = self._identify(data, start, end, candidates, find, own_rule=text is not None)
            if hit is not None:
                hits.append(hit)
                pos = hit.end  # (the next search starts where the secret ends, not the match)
        return hits

    def _scan_candidates(self, data: bytes, candidates: list[int], *, own_rule: bool) -> list[Hit]:
        """What the alternation finds in ``data``, found with the ``candidates``' own patterns alone.

        Why: no other rule can match in ``data`` (:meth:`_candidates`), so the alternation's match
        is the leftmost of theirs, the first in order at a tie (RE2 is leftmost-first, and the
        leftmost match of the rule that wins there is the one the alternation reports). Their small
        programs run cold at a fraction of the whole alternation's cost, which is how the pipeline
        runs them: between two hits its other stages evict the automata. A rule's match that
        starts at or past the next search's start stays its leftmost, so each rule is searched
        again only after its own match is taken or passed.
        """
        hits = []
        bounds, groups = self._bounds_each, self._groups
        leftmost: dict[int, Sequence[tuple[int, int]]] = {}
        pos, size = 0, len(data)
        while pos < size:  # (no rule matches empty text)
            best: Sequence[tuple[int, int]] = NO_MATCH
            winner = -1
            for i in candidates:
                spans = leftmost.get(i)
                if spans is None or 0 <= spans[0][0] < pos:
                    spans = leftmost[i] = bounds[i](data, pos, size)
                if spans[0][0] >= 0 and (winner < 0 or spans[0][0] < best[0][0]):
                    best, winner = spans, i
            if winner < 0:
                break
            start, end = best[0]
            pos = end if end > start else end + 1
            group = groups[winner]
            secret_start, secret_end = start, end
            if group.secret != group.index:  # (a context rule: its groups, read on this match only)
                secret_start, secret_end = self._each[winner](data, start, end)[group.secret - group.index]
            hit = self._finish(group, data, secret_start, secret_end, own_rule=own_rule, candidates=candidates)
            if hit is not None:
                hits.append(hit)
                pos = hit.end  # (the next search starts where the secret ends: _scan's docstring)
        return hits

    def _candidates(self, data: bytes) -> list[int] | None:
        """The rules whose wide forms occur in ``data``, in order, as the prefilter says; None: ask RE2's set.

        ``[]`` skips the RE2 search, and :meth:`_identify` takes the first of these that matches, so
        this is right only because the prefilter's byte forms match wherever a rule does (the
        guarantee the wire scan already rests on, :func:`.prefilter.byte_superset`, held by the
        tests that compare Hyperscan and RE2 on random and adversarial text). Rule ``i`` is the
        prefilter's pattern ``i``: both are built from the rules in order (a test checks each).
        """
        if self._prefilter is None:
            return None
        seen = self._prefilter.matching(data)
        if seen is None:
            return None
        return sorted(i for i in seen if i < self._rule_count)

    def _identify(self, data: bytes, start: int, end: int, candidates: list[int], find: Matcher, *,
                  own_rule: bool) -> Hit | None:
        """The hit of the match ``data[start:end]``: the first rule that matches there wins.

        The alternation is leftmost-first, so of the rules matching anywhere in the value, the
        first in order that matches at ``start`` is the one it chose.
        """
        for i in candidates:
            spans = self._each[i](data, start, end)
            if spans[0][0] < 0:
                continue
            group = self._groups[i]
            secret_start, secret_end = spans[group.secret - group.index]
            return self._finish(group, data, secret_start, secret_end, own_rule=own_rule)
        spans = self._whole(data, start, end)
        if spans[0][0] < 0:
            spans = find(data, start, len(data))
        return None if spans[0][0] < 0 else self._hit(spans, data, own_rule)

    def masked_key(self, key: str, marker: Callable[[str, str], str]) -> tuple[str, str] | None:
        """``(the key with its secrets masked by marker(rule, secret), the first rule)``, or None (cached)."""
        try:
            return self._masked_keys[key]
        except KeyError:
            pass
        result: tuple[str, str] | None = None
        if self.text_may_hit(key):
            hits = self.scan(key)
            if hits:
                pieces, last = [], 0
                for hit in hits:
                    pieces += [key[last:hit.start], marker(hit.rule, key[hit.start:hit.end])]
                    last = hit.end
                result = ("".join(pieces) + key[last:], hits[0].rule)
        if len(self._masked_keys) >= _KEY_CACHE_LIMIT:
            self._masked_keys.clear()
        self._masked_keys[key] = result
        return result

    def key_rule(self, key: str) -> str | None:
        """The rule id that makes ``key``'s whole value a secret, or None."""
        try:
            return self._key_cache[key]
        except KeyError:
            pass
        rule: str | None = None
        if key not in self._safe_keys:
            if self._blocked is not None and self._blocked.search(key):
                rule = BLOCKED_KEY
            elif self._key_rule is not None and self._key_rule.search(key):
                rule = BUILTIN.key_rule.id
        if len(self._key_cache) >= _KEY_CACHE_LIMIT:
            self._key_cache.clear()
        self._key_cache[key] = rule
        return rule

    def _hit(self, spans: Sequence[tuple[int, int]], data: bytes, own_rule: bool) -> Hit | None:
        for group in self._groups:
            if spans[group.index][0] >= 0:
                start, end = spans[group.secret]
                return self._finish(group, data, start, end, own_rule=own_rule)
        return None

    def _finish(self, group: _Group, data: bytes, start: int, end: int, *, own_rule: bool,
                candidates: list[int] | None = None) -> Hit | None:
        if start < 0 or start == end:
            return None
        secret = data[start:end].decode("utf-8", "replace")
        if self._allowed is not None and self._allowed.fullmatch(secret):
            return None
        rule = group.rule
        if group.context and own_rule:
            rule = self._own_rule(data[start:end], candidates) or rule
        return Hit(rule, start, end)

    def _own_rule(self, secret: bytes, candidates: list[int] | None) -> str | None:
        """The id of a rule that is not a context rule and matches inside ``secret`` (an assignment's token).

        ``candidates``: the prefilter's rules for the value the secret is part of. A rule matching
        in the secret has its widened form in the value, so it is one of them, and each is
        confirmed by its own search; without them, RE2's set of every rule answers.
        """
        if candidates is None:
            for i in sorted(self._set.Match(secret) or ()):
                group = self._groups[int(i)]
                if not group.context:
                    return group.rule
            return None
        for i in candidates:
            group = self._groups[i]
            if not group.context and self._bounds_each[i](secret, 0, len(secret))[0][0] >= 0:
                return group.rule
        return None


def _wide_form(pattern: str) -> str:
    """What the wire and ``*_may_hit`` searches look for: no assertions, and through escaped spaces and slashes."""
    return escape_tolerant(strip_assertions(pattern))


def _wide_forms(parts: list[str], *, with_key_rule: bool) -> list[str]:
    wide = [_wide_form(p) for p in parts]
    if with_key_rule:
        wide.append(_wide_form(BUILTIN.key_rule.pattern) + _WIRE_KEY_END)
    return wide


def _prefilter(wide: list[str]) -> WirePrefilter | None:
    """The Hyperscan prefilter of these wide forms, or None (logged): the RE2 pass does the work, slower, never wrong."""
    try:
        return WirePrefilter(wide)
    except (ImportError, ValueError) as exc:
        _log.info("redaction: the Hyperscan prefilter is off (%s); RE2 searches every request", exc)
        return None


def _never(_data: bytes, _pos: int, _endpos: int) -> Sequence[tuple[int, int]]:
    return NO_MATCH


def _union(first: list[Hit], second: list[Hit]) -> list[Hit]:
    """Both scans' hits in order; overlapping ones become one (the earlier's rule, the larger extent)."""
    merged: list[Hit] = []
    for hit in sorted({*first, *second}, key=lambda h: (h.start, -h.end)):
        if merged and hit.start < merged[-1].end:
            last = merged[-1]
            if hit.end > last.end:
                merged[-1] = Hit(last.rule, last.start, hit.end)
            continue
        merged.append(hit)
    return merged


_DEFAULT: Scanner | None = None


def scan_text(text: str) -> list[tuple[str, int, int]]:
    """``(rule_id, start, end)`` of every secret the built-in value rules find in ``text``.

    A small pure API for tests and tools: no config, no key-name rules, no JSON decoding.
    """
    global _DEFAULT  # noqa: PLW0603 - one compiled default scanner, built on first use
    if _DEFAULT is None:
        _DEFAULT = Scanner()
    return [(h.rule, h.start, h.end) for h in _DEFAULT.scan(text)]
