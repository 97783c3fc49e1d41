"""User rules keep working through the wide search's rewrite (``rules.escape_tolerant``).

The wide forms are what the wire and value searches look for before the exact rules run; a user
rule whose wide form is invalid would stop the pipeline from starting, and one that is narrower
than the rule would let its secrets through. Each case is a user rule a review broke.
"""

from __future__ import annotations

import json

import pytest
import re2

from obs_pipeline.processors.redaction.rules import escape_tolerant
from tests.processors.redaction.kit import first_span, plain, redactor, run, span_request

CASES = [
    # A negated class of only a backslash: it must take one, and "[^]" is not a class.
    (r"key=([^\\]{8,})", "key=ab12cd34ef", "ab12cd34ef"),
    (r"sid=([^\\]{4}[0-9]{6})", "login sid=abcd123456", "abcd123456"),
    # An escaped backslash before a literal "-" at the end of a class: the "-" stays a member.
    (r"path=([a-z/\\-]{5,})", "path=ab-cd/ef;", "ab-cd/ef"),
    (r"p=([\w\s\\-]{6,})", "p=ab-cd-ef", "ab-cd-ef"),
    # Classes that take a backslash though none is written: escapes lengthen the run.
    (r"tok=([!-~]{4,12});", "tok=" + "\\\\" * 7 + "Q9;", "Q9"),
    (r"tok=([[:graph:]]{4,12});", "tok=" + "\\\\" * 7 + "Q9;", "Q9"),
    # A tab the rule spells, as JSON writes it (\t) in a value that is not itself JSON.
    (r"pw[ \t]*=[ \t]*(\w{6,})", "pw\\t=\\thunter22", "hunter22"),
    ("pw\t=(\\w{6,})", "pw\\t=hunter23", "hunter23"),
]


@pytest.mark.parametrize(("pattern", "text", "secret"), CASES)
def test_a_user_rule_masks_through_its_wide_form(pattern: str, text: str, secret: str) -> None:
    r = redactor(rules=[{"id": "mine", "pattern": pattern}])
    for value in (f"see {text} here", json.dumps({"note": f"see {text} here"})):
        span = first_span(run(r, span_request({"note": value})))
        out = plain(span.attributes[0].value)
        assert "[REDACTED:mine]" in out, (pattern, value)
        assert secret not in out, (pattern, out)


@pytest.mark.parametrize(("pattern", "_text", "_secret"), CASES)
def test_the_wide_form_is_valid_and_takes_at_least_what_the_rule_takes(pattern: str, _text: str, _secret: str) -> None:
    wide = re2.compile(escape_tolerant(pattern))
    for sample in (_text, f"x {_text} y"):
        if re2.search(pattern, sample):
            assert wide.search(sample), (pattern, escape_tolerant(pattern))


def test_bounds_stay_where_no_backslash_can_be() -> None:
    """Tight bounds where escapes cannot lengthen the run (they keep the Hyperscan forms small)."""
    assert escape_tolerant(r"AKIA[A-Z2-7]{16}") == r"AKIA[A-Z2-7]{16}"
    assert escape_tolerant(r"\d{4}-a{3}") == r"\d{4}-a{3}"
    assert escape_tolerant(r"\x5c{3}") == r"\x5c{3,}"  # a backslash spelled in hex
    assert escape_tolerant(r"\p{P}{2,3}") == r"\p{P}{2,}"
