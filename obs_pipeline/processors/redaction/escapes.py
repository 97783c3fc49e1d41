r"""JSON escapes in text that is not decoded as JSON: the text with them decoded, and where each character came from.

Why: a value that is a JSON document is decoded before it is scanned (:mod:`.values`), but JSON
quoted inside prose (``my tool said: {"key": "\u0073k-proj-..."}``), or JSON inside a JSON string
(``\\u0073k-``, decoded once), is not a document, and its escapes can spell, split or hide a secret:
``\u0073k-`` is ``sk-``, ``https:\/\/bob:pw@`` is a URL with a password, the ``n`` of ``\n`` glues
onto a token and defeats the rules' word boundaries. The scanner also scans the decoded text (and
the text decoded again, up to three times) and maps every hit back to whole escapes of the original
(:func:`unescaped`).
"""

from __future__ import annotations

from collections.abc import Iterator

import re2

__all__ = ["decoded", "unescaped"]

_ESCAPE = re2.compile(r'\\(?:u[0-9A-Fa-f]{4}|[nrtbf/"\\])')
_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "/": "/", '"': '"', "\\": "\\"}
#: How many times escapes are undone: JSON inside a JSON string inside a JSON string is escaped three times.
LEVELS = 3


def _decode(text: str) -> tuple[str, list[int]] | None:
    """``text`` with one level of escapes undone, and for each of its characters (and its end) the offset in ``text``."""
    pieces: list[str] = []
    origin: list[int] = []
    last = 0
    for m in _ESCAPE.finditer(text):
        start, end = m.span()
        pieces.append(text[last:start])
        origin.extend(range(last, start))
        escape = text[start + 1]
        pieces.append(_unicode(int(text[start + 2:end], 16)) if escape == "u" else _SIMPLE[escape])
        origin.append(start)
        last = end
    if not origin:
        return None
    pieces.append(text[last:])
    origin.extend(range(last, len(text) + 1))
    return "".join(pieces), origin


def _unicode(code: int) -> str:
    r"""The character of a ``\uXXXX``.

    A surrogate (half of an escaped emoji) becomes U+FFFD: like the emoji, no letter, and the
    decoded text stays encodable for the next level.
    """
    return "\ufffd" if 0xD800 <= code <= 0xDFFF else chr(code)


def unescaped(text: str) -> Iterator[tuple[str, list[int]]]:
    """Each decoding of ``text`` (once, twice, three times) with the map of its offsets back to ``text``.

    ``origin[i]`` is where the character ``i`` starts in ``text`` and ``origin[len]`` is
    ``len(text)``, so a hit ``[start, end)`` in the decoded text covers ``text[origin[start]:origin[end]]``,
    whole escapes included.
    """
    current, origin = text, list(range(len(text) + 1))
    for _ in range(LEVELS):
        if "\\" not in current:
            return
        step = _decode(current)
        if step is None:
            return
        current, inner = step
        origin = [origin[i] for i in inner]
        yield current, origin


def decoded(text: str) -> str:
    r"""``text`` with its JSON escapes undone as often as :func:`unescaped` undoes them.

    What a keyed hash of a secret is taken over, so that ``sk-...`` and ``sk-...`` (the same
    secret, escaped) get the same marker and still correlate.
    """
    last = text
    for current, _origin in unescaped(text):
        last = current
    return last
