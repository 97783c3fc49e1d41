"""RE2's own Match, called directly, answers exactly as the wrapper's public search does."""

from __future__ import annotations

import random

import pytest
import re2

from obs_pipeline.processors.redaction.matcher import NO_MATCH, _own_match_agrees, matcher
from obs_pipeline.processors.redaction.rules import BUILTIN, options
from tests.processors.redaction.corpus import secret_cases


@pytest.mark.parametrize("anchored", [False, True])
def test_direct_and_public_searches_agree_on_every_builtin_rule(anchored: bool) -> None:
    """Groups, offsets, anchoring, pos and endpos, over the corpus' texts (cut at random places)."""
    rng = random.Random(7)
    texts = [case.text.encode() for case in secret_cases()]
    matched = 0
    for rule in BUILTIN.rules:
        regex = re2.compile(rule.pattern.encode(), options())
        direct, public = matcher(regex, anchored=anchored), matcher(regex, anchored=anchored, own=False)
        for text in rng.sample(texts, 60):
            pos = rng.randrange(0, len(text) + 1) if rng.random() < 0.5 else 0
            endpos = rng.randrange(pos, len(text) + 1) if rng.random() < 0.3 else len(text)
            if anchored and rng.random() < 0.7:  # anchored where the rule does match
                found = regex.search(text)
                pos, endpos = (found.start(), len(text)) if found else (pos, endpos)
            got, want = direct(text, pos, endpos), public(text, pos, endpos)
            if want is NO_MATCH:
                assert got[0] == (-1, -1)
            else:
                matched += 1
                assert [tuple(span) for span in got] == list(want), (rule.id, text, pos, endpos)
    assert matched > 30  # the comparison saw real matches, groups and all


def test_the_direct_search_is_the_one_in_use_with_this_wrapper() -> None:
    """The self-check passes with the installed google-re2, so the scanner does not fall back silently."""
    assert _own_match_agrees()
