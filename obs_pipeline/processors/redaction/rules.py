r"""The rule set as data (``rules.yaml``) and what RE2 makes of a pattern: compile errors, prefilter form.

Why a prefilter form: the processor first searches the batch's whole wire bytes once, and hands a
batch without a hit on unchanged. A string value's bytes appear verbatim in the wire, but what
surrounds them there (a length prefix, a field tag) is not what surrounds them in the value, so a
zero-width assertion (``\b``, ``^``, ``$``) can hold in the value and fail in the wire. Removing
the assertions only widens what a pattern matches, so :func:`strip_assertions` gives a pattern
that matches in the wire wherever the original matches in any value: a safe prefilter.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import re2
import yaml

from obs_pipeline.errors import Problem
from obs_pipeline.processors.redaction.syntax import Kind, Token, tokens

__all__ = ["BLOCKED_KEY", "BUILTIN", "UNSCANNED", "Rule", "RuleSet", "compile_problem", "escape_tolerant", "options",
           "strip_assertions"]

#: Rule ids of what no value rule finds: a key matching ``blocked_keys``, a value that could not be scanned.
BLOCKED_KEY = "blocked-key"
UNSCANNED = "unscanned"
_ASSERTION_ESCAPES = frozenset("bBAz")
_LOOKAROUND = ("(?=", "(?!", "(?<=", "(?<!")


@dataclass(frozen=True)
class Rule:
    """One value rule: a stable id, an RE2 pattern and which group of it is the secret (0: all)."""

    id: str
    pattern: str
    secret_group: int = 0
    description: str = ""


@dataclass(frozen=True)
class RuleSet:
    """The shipped rules: value rules in order, the sensitive-key rule, and the safe keys."""

    rules: tuple[Rule, ...]
    key_rule: Rule
    safe_keys: frozenset[str]


#: RE2's memory budget per pattern (most of it the lazily built DFA). The default 8 MiB is too
#: small for the widened alternation of every rule: RE2 then falls back to its slower engine
#: (measured: 62 MB/s at 8 MiB, 315 MB/s at 64 MiB on the bench workload).
MAX_MEM = 64 << 20


def options() -> re2.Options:
    """RE2 options for every pattern here: errors are raised, not also logged to stderr."""
    opts = re2.Options()
    opts.log_errors = False
    opts.max_mem = MAX_MEM
    return opts


@cache
def _load() -> RuleSet:
    text = resources.files("obs_pipeline.processors.redaction").joinpath("rules.yaml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    rules = tuple(Rule(id=r["id"], pattern=r["pattern"], secret_group=r.get("secret_group", 0),
                       description=r.get("description", "")) for r in data["rules"])
    key = data["sensitive_keys"]
    return RuleSet(rules, Rule(id=key["id"], pattern=key["pattern"]), frozenset(data["safe_keys"]))


BUILTIN = _load()


def compile_problem(pattern: str, name: str, path: str, *, groups_at_least: int = 0) -> Problem | None:
    """Why ``pattern`` is not a usable RE2 pattern (naming ``name`` and the position), or None.

    Args:
        pattern: the user's pattern.
        name: the rule id (or option entry) to name in the message.
        path: the problem's path relative to the component body.
        groups_at_least: the pattern must have at least this many groups (its ``secret_group``).
    """
    try:
        compiled = re2.compile(pattern, options())
    except re2.error as exc:
        detail = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        fragment = detail.rpartition(": ")[2]
        position = pattern.find(fragment) if fragment else -1
        where = f" at position {position}" if position >= 0 else ""
        hint = ""
        if any(op in pattern for op in _LOOKAROUND):
            hint = " (RE2 has no lookahead or lookbehind: it never backtracks, so matching stays linear)"
        elif "invalid escape sequence: \\" in detail and fragment[1:2].isdigit():
            hint = " (RE2 has no backreferences)"
        return Problem(path=path, message=f"rule {name!r}: not a valid RE2 pattern{where}: {detail}{hint}")
    if compiled.groups < groups_at_least:
        return Problem(path=path, message=f"rule {name!r}: secret_group {groups_at_least} but the pattern has "
                                          f"{compiled.groups} groups")
    return None


def strip_assertions(pattern: str) -> str:
    r"""``pattern`` without its zero-width assertions (``\b \B \A \z ^ $``): it matches a superset."""
    return "".join(t.text for t in tokens(pattern) if not _is_assertion(t))


def _is_assertion(token: Token) -> bool:
    if token.in_class:
        return False
    if token.kind is Kind.ESCAPE:
        return token.escaped in _ASSERTION_ESCAPES
    return token.kind is Kind.LITERAL and token.text in "^$"


# Where a rule wants a space or a slash, JSON may hold it escaped, after any run of backslashes.
_OUTSIDE_WIDENING = {"\\s": r"(?:\s|\\+[nrtbf])", "\\/": r"(?:/|\\+/)", "/": r"(?:/|\\+/)"}
_CLASS_WIDENING = {"\\s": "\\\\nrtbf", "\\/": "\\\\", "/": "\\\\"}
# A tab, newline, carriage return or form feed a rule spells (escaped or as itself): JSON writes \t ...
_SPELLED = {(spelling, letter) for letter, char in (("t", "\t"), ("n", "\n"), ("r", "\r"), ("f", "\f"))
            for spelling in ("\\" + letter, char)}
_OUTSIDE_WIDENING.update({spelling: f"(?:\\{letter}|\\\\+{letter})" for spelling, letter in _SPELLED})
_CLASS_WIDENING.update({spelling: "\\\\" + letter for spelling, letter in _SPELLED})
# Escapes that spell one character with the literals after them (``\x5c``, ``\pP``, ``\p{P}``).
_SPELLING_ESCAPES = frozenset("xpP")


@lru_cache(maxsize=1024)
def _takes_backslash(klass: str) -> bool:
    """Whether the class matches a backslash, as RE2 reads it (True when RE2 cannot say)."""
    try:
        return re2.fullmatch(klass, "\\") is not None
    except re2.error:
        return True


def escape_tolerant(pattern: str) -> str:
    r"""``pattern`` (assertion-free) also matching through the JSON escapes of spaces and slashes.

    Why: a value holding JSON (``{"env": "password\t=\t..."}``, ``"https:\/\/bob:pw@..."``) carries
    ``\t`` or ``\/`` where a rule wants a space or a slash, so in the wire (and in the undecoded
    value) the wide search would not see the rule match, and the value would not be decoded and
    scanned. Where a rule wants ``\s`` it also takes ``\n \r \t \b \f``, where it wants ``/`` also
    ``\/``, after any run of backslashes (JSON inside a JSON string is escaped twice); a class that
    takes either also takes a backslash (and the escape letters), and a negated class no longer
    refuses one (``password=ab\/cd``: the value class ``[^\s"'...\\]`` stopped at the escape). A
    bounded repeat of anything that takes a backslash loses its upper bound: the user part of
    ``https://\\\\...:pw@`` escaped is twice as long as decoded, and ``{1,64}`` would stop
    short of the ``:``. It only widens the pattern.
    """
    out: list[str] = []
    members: list[str] = []  # of the class being read, and what it must also take
    opened = widen = ""
    takes_backslash = False  # the atom just written: a repeat of it may be spelled with escapes
    since_spelling = len(pattern)  # tokens since an escape that spells a character (\x5c, \pP)
    for token in tokens(pattern):
        if token.kind is Kind.CLASS_OPEN:
            opened, members, widen = token.text, [], ""
        elif token.kind is Kind.CLASS_CLOSE:
            if members and members[-1] == "-":  # a literal "-" (an escaped one is "\-") must stay last
                body = "".join(members[:-1]) + widen + "-"
            else:
                body = "".join(members) + widen
            klass = r"[\s\S]" if opened == "[^" and not body else opened + body + token.text  # [^\\] refuses nothing now
            out.append(klass)
            takes_backslash = _takes_backslash(klass)
        elif token.in_class:
            widen += "" if token.negated else _CLASS_WIDENING.get(token.text, "")
            if not (token.negated and token.text == "\\\\"):  # a class that refused a backslash takes it
                members.append(token.text)
        elif token.kind is Kind.REPEAT:
            # {m,n} -> {m,} after anything that may be a backslash: escapes lengthen the run.
            out.append(token.text.partition(",")[0].rstrip("}") + ",}" if takes_backslash else token.text)
            takes_backslash = False
        else:
            out.append(_OUTSIDE_WIDENING.get(token.text, token.text) if token.kind is not Kind.QUOTED else token.text)
            if token.kind is Kind.ESCAPE:  # \d and \w never match a backslash; any other escape may
                takes_backslash = token.escaped not in "dw"
                since_spelling = 0 if token.escaped in _SPELLING_ESCAPES else len(pattern)
            else:  # only a letter or digit of its own is surely not a backslash
                since_spelling += 1
                takes_backslash = not (token.kind is Kind.LITERAL and token.text.isalnum() and since_spelling > 2)
    return "".join(out)
