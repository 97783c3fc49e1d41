"""RE2 searches on bytes that return group spans directly, without the wrapper's per-call Python.

Why: the google-re2 wrapper's ``search``/``match`` build a generator, clamp offsets and wrap a
``_Match`` on every call, about 1 µs of Python around a search that itself takes a fraction of
that on a few hundred bytes. The scanner makes several such calls per value it looks at (where the
matches are, which rule each is, the secret's group), so on the hit path the wrapper cost more than
RE2. The wrapper keeps RE2's own compiled object, whose ``Match(anchor, text, pos, endpos)``
returns every group's ``(start, end)``; :func:`matcher` uses it when it is there and the public
API otherwise, so another wrapper version is slower, never wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import re2

__all__ = ["NO_MATCH", "Matcher", "matcher"]

#: ``(data, pos, endpos) -> spans``: group 0 is the match, ``(-1, -1)`` for a group that did not take part.
Matcher = Callable[[bytes, int, int], list[tuple[int, int]]]
NO_MATCH: list[tuple[int, int]] = [(-1, -1)]


def matcher(regex: re2._Regexp, *, anchored: bool) -> Matcher:
    """The search (``anchored``: a match starting at ``pos``) of a pattern compiled from bytes."""
    raw: Any = getattr(regex, "_regexp", None)
    anchors: Any = getattr(raw, "Anchor", None)
    if raw is not None and anchors is not None and hasattr(raw, "Match"):
        anchor = anchors.ANCHOR_START if anchored else anchors.UNANCHORED
        match = raw.Match

        def own(data: bytes, pos: int, endpos: int) -> list[tuple[int, int]]:
            return match(anchor, data, pos, endpos)  # type: ignore[no-any-return]

        return own
    public = regex.match if anchored else regex.search

    def wrapped(data: bytes, pos: int, endpos: int) -> list[tuple[int, int]]:
        m = public(data, pos, endpos)
        if m is None:
            return NO_MATCH
        return [m.span(g) for g in range(len(m.groups()) + 1)]

    return wrapped
