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

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import re2

__all__ = ["NO_MATCH", "Matcher", "matcher"]

#: ``(data, pos, endpos) -> spans``: group 0 is the match, ``(-1, -1)`` for a group that did not take part.
Matcher = Callable[[bytes, int, int], Sequence[tuple[int, int]]]
NO_MATCH: tuple[tuple[int, int], ...] = ((-1, -1),)
_log = logging.getLogger(__name__)


def matcher(regex: re2._Regexp, *, anchored: bool, own: bool = True) -> Matcher:
    """The search (``anchored``: a match starting at ``pos``) of a pattern compiled from bytes.

    ``own=False``, or a wrapper whose own ``Match`` does not answer like its public API (checked
    once, :func:`_own_match_agrees`), gives the public API's search.
    """
    public = regex.match if anchored else regex.search

    def wrapped(data: bytes, pos: int, endpos: int) -> Sequence[tuple[int, int]]:
        m = public(data, pos, endpos)
        if m is None:
            return NO_MATCH
        return [m.span(g) for g in range(len(m.groups()) + 1)]

    raw: Any = getattr(regex, "_regexp", None)
    if not own or raw is None or not _own_match_agrees():
        return wrapped
    anchor = raw.Anchor.ANCHOR_START if anchored else raw.Anchor.UNANCHORED
    match = raw.Match

    def direct(data: bytes, pos: int, endpos: int) -> Sequence[tuple[int, int]]:
        return match(anchor, data, pos, endpos)  # type: ignore[no-any-return]

    return direct


@functools.cache
def _own_match_agrees() -> bool:
    """Whether RE2's own Match answers as the public API does: groups, offsets, anchoring, pos, endpos.

    A wrapper that changed what it means would make the scanner wrong, not only slower.
    """
    regex = re2.compile(rb"(a)(b)?c")
    probes = [(b"xxacxxabc", 0, 9), (b"xxacxxabc", 3, 9), (b"xxacxxabc", 2, 9), (b"xxabc", 0, 4), (b"zz", 0, 2)]
    try:
        raw = regex._regexp  # noqa: SLF001 - the point of this module
        for anchored in (False, True):
            anchor = raw.Anchor.ANCHOR_START if anchored else raw.Anchor.UNANCHORED
            public = regex.match if anchored else regex.search
            for data, pos, endpos in probes:
                m = public(data, pos, endpos)
                spans = [tuple(span) for span in raw.Match(anchor, data, pos, endpos)]
                if (m is None) != (spans[0] == (-1, -1)) or (m is not None and spans != [m.span(g) for g in range(3)]):
                    _log.info("redaction: google-re2's own Match answers differently; using its public search")
                    return False
    except Exception:
        _log.info("redaction: google-re2's own Match is not what this module expects; using its public search")
        return False
    return True
