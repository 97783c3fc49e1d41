r"""Where a request's wire bytes may hold a secret, found with Hyperscan when the rules allow it.

Why: the one RE2 pass over a request's bytes runs RE2's DFA over every byte (about 1.6 ns a byte
here, whatever the rules: an alternation of four literals costs as much), which made the scan most
of redaction's cost. Hyperscan finds the rules' literal parts with SIMD and runs its automata only
around them, about three times faster on the same bytes (``bench/redaction.py``). It only says
*where to look* (in a request, :meth:`WirePrefilter.ends`; in a value, which rules to try,
:meth:`WirePrefilter.matching`, and none when none can match, so RE2 need not run there): every
secret is still found, identified and masked by the RE2 rules (:mod:`.scanner`), so the two
engines never have to agree on a match, only this one must never miss one. That holds by
construction, given the ordering below:

* The patterns are the wide (assertion-free) forms of the built-in rules, rewritten to match a
  superset in bytes (:func:`byte_superset`): RE2 reads UTF-8 characters where Hyperscan reads
  bytes, so a bounded repeat of ``n`` characters may span ``4n`` bytes; RE2's ``\s`` is
  ``[\t\n\f\r ]`` (Hyperscan's also has ``\v``); ``.`` matches any byte.
* RE2's case folding maps two characters outside ASCII onto ASCII letters (U+017F, long s, onto
  ``s``, U+212A, Kelvin, onto ``k``), which Hyperscan's byte mode does not: a request holding
  either is given back to the RE2 scan.
* Only the built-in rules come here. User rules, blocked keys and the content policy's literals
  are arbitrary RE2, so a configuration with any of them uses the RE2 scan; so does a machine
  without the ``hyperscan`` wheel.

What :meth:`WirePrefilter.ends` gives back: for each match, where it ended. Scans stop at their
first report and resume past it, so the first report must be the match that ends first. Hyperscan's manual does not
promise ordered matches in general (assertions can report late); these patterns have none except
the key rule's end of data, which is last anyway, and a test watches every report of these very
expressions over adversarial inputs (``test_hyperscan_reports_these_rules_in_order_of_their_end``),
so a Hyperscan that delivered out of order fails CI before it can let a secret through. More than
``MAX_REPORTS`` reports, or any Hyperscan error, hands the request to the RE2 pass.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import re2

from obs_pipeline.processors.redaction.syntax import Kind, tokens

__all__ = ["MAX_REPORTS", "RE2_ASCII_FOLDS", "WirePrefilter", "byte_superset", "hyperscan_expressions"]

#: Characters RE2's ``(?i)`` folds onto ASCII letters (derived from RE2 in tests/processors/redaction).
RE2_ASCII_FOLDS = ("\u017f", "\u212a")
_SPACE = r"\t\n\f\r "
_NOT_SPACE_IN_CLASS = r"\x00-\x08\x0b\x0e-\x1f\x21-\xff"
_UTF8_MAX = 4
# Unicode classes, quoting, single bytes, and the Perl escapes Hyperscan reads otherwise than RE2.
_UNKNOWN_ESCAPES = frozenset("pPQEChHvVRKN")
# Escapes of classes that match characters outside ASCII (their repeats may be 4 bytes a character).
_BEYOND_ASCII = frozenset("DWS")
# Literal tokens that do not stand for one character: a repeat after them spans a group or any character.
_NOT_ONE_CHARACTER = frozenset("().|")
#: Matches one request may report before the RE2 pass takes over (a secret-dense request).
MAX_REPORTS = 64


def byte_superset(pattern: str) -> str:
    r"""``pattern`` (RE2, assertion-free, ASCII) as a Hyperscan byte pattern matching at least as much.

    ``\s``/``\S`` become RE2's own sets, and a bounded repeat ``{n}``/``{m,n}`` may run to ``4n``
    bytes (a character is at most four UTF-8 bytes), except a repeat of an ASCII character or of
    a class of ASCII characters only (``[A-Za-z0-9_-]{20,}``, ``\d{4}``), which is one byte a
    character: the two non-ASCII characters RE2's ``(?i)`` folds onto ASCII letters send the
    request to RE2 anyway (the module docstring). Tight bounds keep Hyperscan's automata small.
    A single atom that may be non-ASCII (``.``, ``[^...]``, ``\W``) becomes ``{1,4}`` bytes, or
    ``{0,4}`` under ``?``.

    Raises:
        ValueError: a construct whose byte meaning is not known here (``\p`` classes, ``\Q``,
            ``\x{...}``, ``\C``, ``\xNN`` above 0x7f, octal escapes, text outside ASCII, inline
            flags other than ``i``): the caller uses the RE2 pass rather than risk a prefilter
            that misses.
    """
    if not pattern.isascii():
        raise ValueError("a pattern with text outside ASCII")
    for flags in re2.findall(r"\(\?([a-zA-Z-]+)[:)]", pattern):
        if set(flags) - {"i"}:
            raise ValueError(f"inline flags {flags!r}")
    if re2.search(r"\\(?:x[89a-fA-F]|[0-7])", pattern):  # a character to RE2, one byte to Hyperscan
        raise ValueError("the escape of a byte above 0x7f, or an octal escape")
    if "\\x{" in pattern:
        raise ValueError("the escape \\x{...}")
    out: list[str] = []
    ascii_atom = ascii_class = False  # the atom just read (the class being read) matches ASCII only
    one_character = False  # the atom just read stands for one character that may be non-ASCII
    for token in tokens(pattern):
        if token.kind is Kind.QUOTED or token.escaped in _UNKNOWN_ESCAPES:
            raise ValueError(f"the escape {token.text[:2]}")
        if one_character:
            # One character is 1-4 bytes: unless a repeat follows (widened below), say so.
            one_character = False
            if token.text == "?":
                out.append(f"{{0,{_UTF8_MAX}}}")
                continue
            if token.kind is not Kind.REPEAT and token.text not in ("*", "+"):
                out.append(f"{{1,{_UTF8_MAX}}}")
        if token.text == "\\s":
            out.append(_SPACE if token.in_class else f"[{_SPACE}]")
        elif token.text == "\\S":
            out.append(_NOT_SPACE_IN_CLASS if token.in_class else f"[^{_SPACE}]")
        elif token.kind is Kind.REPEAT:
            low, comma, high = token.text[1:-1].partition(",")
            width = 1 if ascii_atom else _UTF8_MAX
            top = int(high or low) * width if (high or not comma) else ""
            out.append(f"{{{low},{top}}}")
        else:
            out.append(token.text)
        if token.kind is Kind.CLASS_OPEN:
            ascii_class = not token.negated
        elif token.kind is Kind.CLASS_CLOSE:
            ascii_atom = ascii_class
            one_character = not ascii_class
        elif token.in_class:
            ascii_class &= token.escaped not in _BEYOND_ASCII and not token.text.startswith("[:^")
        elif token.kind is Kind.ESCAPE:
            ascii_atom = token.escaped not in _BEYOND_ASCII
            one_character = not ascii_atom
        else:
            ascii_atom = token.kind is Kind.LITERAL and token.text not in _NOT_ONE_CHARACTER
            one_character = token.text == "."
    if one_character:
        out.append(f"{{1,{_UTF8_MAX}}}")
    return "".join(out)


class WirePrefilter:
    """The built-in wide rules in one Hyperscan database.

    Args:
        patterns: the wide (assertion-free) RE2 patterns to look for.

    Raises:
        ImportError: no ``hyperscan`` here.
        ValueError: Hyperscan cannot compile one of them (the caller uses RE2).
    """

    def __init__(self, patterns: list[str]) -> None:
        import hyperscan  # noqa: PLC0415 - optional at run time: without it the RE2 scan does the work

        self._terminated: type[Exception] = hyperscan.ScanTerminated
        self._error: type[Exception] = hyperscan.error
        #: What Hyperscan compiled: the byte forms of ``patterns``, then the fold characters.
        self.expressions = hyperscan_expressions(patterns)
        self._db, self._prototype = _compiled(self.expressions)
        self._folds = frozenset(range(len(patterns), len(patterns) + len(RE2_ASCII_FOLDS)))
        self._local = threading.local()  # a scratch space may serve one scan at a time

    def matching(self, data: bytes) -> set[int] | None:
        """The patterns (by index) that match somewhere in ``data``, or None: the RE2 searches must decide.

        One scan, each pattern reporting at most once: for one value, which of the rules' wide forms
        occur in it, from the automata the request's scan has just used (RE2's set of the rules
        builds its own, which the pipeline's other work evicts from the cache between two hits).
        None when ``data`` holds a character RE2 folds onto an ASCII letter, or on any Hyperscan error.
        """
        found: set[int] = set()

        def on_match(pattern: int, _start: int, _end: int, _flags: int, _ctx: object) -> None:
            found.add(pattern)

        try:
            self._db.scan(data, match_event_handler=on_match, scratch=self._scratch())
        except self._error:
            return None
        return None if found & self._folds else found

    def _scratch(self) -> Any:
        """The scratch space of the calling thread (a scratch may serve one scan at a time)."""
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = self._prototype.clone()
        return scratch

    def ends(self, data: bytes) -> list[int] | None:
        """The end offset of each match found (in order), or None: the RE2 scan must decide.

        None when the request holds a character that RE2 folds onto an ASCII letter, or more than
        ``MAX_REPORTS`` matches: each costs a scan call from Python, and a request dense with
        matches (900 KB of ``a.token"``) would take seconds here where RE2's one pass takes a tenth.
        """
        scratch = self._scratch()
        found: list[int] = []
        first: list[tuple[int, int]] = []

        def on_match(pattern: int, _start: int, end: int, _flags: int, _ctx: object) -> bool:
            first.append((pattern, end))
            return True  # stop: the scan resumes past this end

        view = memoryview(data)
        pos, size = 0, len(data)
        terminated = self._terminated
        while pos < size:
            first.clear()
            try:
                self._db.scan(view[pos:], match_event_handler=on_match, scratch=scratch)
            except terminated:  # how a scan stopped by on_match ends
                pass
            except self._error:  # any other failure: the RE2 pass decides, the batch goes on
                return None
            if not first:
                break
            pattern, end = first[0]
            if pattern in self._folds or len(found) >= MAX_REPORTS:
                return None
            pos += end
            found.append(pos)
        return found


def hyperscan_expressions(patterns: list[str]) -> tuple[bytes, ...]:
    """The Hyperscan expressions of ``patterns``: their byte forms, then the fold characters (ValueError: see byte_superset)."""
    return (*(byte_superset(p).encode() for p in patterns), *(fold.encode() for fold in RE2_ASCII_FOLDS))


@functools.lru_cache(maxsize=8)
def _compiled(expressions: tuple[bytes, ...]) -> tuple[Any, Any]:
    """The database and a scratch space to clone, once per rule set (compiling takes ~150 ms)."""
    import hyperscan  # noqa: PLC0415 - see WirePrefilter

    flags = hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_DOTALL
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    try:
        db.compile(expressions=list(expressions), ids=list(range(len(expressions))),
                   elements=len(expressions), flags=[flags] * len(expressions))
    except hyperscan.error as exc:  # the base of its exceptions
        raise ValueError(f"hyperscan cannot compile the rules: {exc}") from None
    return db, hyperscan.Scratch(db)
