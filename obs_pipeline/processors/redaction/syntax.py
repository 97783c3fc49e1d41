r"""RE2 pattern text read as tokens: the one reader the pattern rewriters share.

Why: the wire prefilters search for rewritten forms of the rules (no assertions, through JSON
escapes, as Hyperscan bytes), and each rewrite must tell an escape from a literal, the inside of
a character class from the outside, ``\Q...\E`` from the rest. One reader keeps those rules in one
place; :func:`tokens` yields the pattern in order, and joining the texts gives it back unchanged.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

import re2

__all__ = ["Kind", "Token", "tokens"]

_REPEAT = re2.compile(r"\{\d+(?:,\d*)?\}")


class Kind(enum.Enum):
    """What a token is."""

    LITERAL = "literal"  # one character (an operator too: ( ) | * + ? . ^ $ ...)
    ESCAPE = "escape"  # a backslash and the character after it
    QUOTED = "quoted"  # \Q...\E, literal text
    REPEAT = "repeat"  # {n}, {m,}, {m,n} outside a class
    CLASS_OPEN = "class_open"  # "[" or "[^", with a "]" right after it (a literal member) included
    POSIX = "posix"  # [:alpha:] inside a class
    CLASS_CLOSE = "class_close"  # the "]" that ends a class


@dataclass(frozen=True, slots=True)
class Token:
    """One piece of a pattern: its text, what it is, and whether it stands in a (negated) class."""

    text: str
    kind: Kind
    in_class: bool = False
    negated: bool = False

    @property
    def escaped(self) -> str:
        """The character after the backslash of an escape ("" for other tokens)."""
        return self.text[1] if self.kind is Kind.ESCAPE else ""


def tokens(pattern: str) -> Iterator[Token]:
    """The tokens of ``pattern`` in order: their texts, joined, are the pattern again."""
    i, n = 0, len(pattern)
    in_class = negated = False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            if pattern[i + 1] == "Q":
                end = pattern.find("\\E", i + 2)
                end = n if end < 0 else end + 2
                yield Token(pattern[i:end], Kind.QUOTED, in_class, negated)
                i = end
            else:
                yield Token(pattern[i:i + 2], Kind.ESCAPE, in_class, negated)
                i += 2
            continue
        if in_class:
            if c == "[" and pattern.startswith("[:", i) and (end := pattern.find(":]", i + 2)) >= 0:
                yield Token(pattern[i:end + 2], Kind.POSIX, in_class, negated)
                i = end + 2
            elif c == "]":
                yield Token(c, Kind.CLASS_CLOSE, in_class, negated)
                in_class = negated = False
                i += 1
            else:
                yield Token(c, Kind.LITERAL, in_class, negated)
                i += 1
            continue
        if c == "[":
            j = i + 1
            negated = pattern.startswith("^", j)
            j += negated
            j += pattern.startswith("]", j)  # a "]" right after "[" or "[^" is a literal member
            in_class = True
            yield Token(pattern[i:j], Kind.CLASS_OPEN, in_class, negated)
            i = j
            continue
        if c == "{" and (m := _REPEAT.match(pattern, i)) is not None:
            yield Token(m.group(), Kind.REPEAT)
            i = m.end()
            continue
        yield Token(c, Kind.LITERAL)
        i += 1
