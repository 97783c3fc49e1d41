"""The one reader of pattern text the rewriters share: lossless, and right about classes and escapes."""

from __future__ import annotations

import random

from obs_pipeline.processors.redaction.rules import BUILTIN
from obs_pipeline.processors.redaction.syntax import Kind, tokens


def test_joining_the_tokens_gives_the_pattern_back() -> None:
    rng = random.Random(3)
    alphabet = "ab\\[]^-:{},0123sQE/$()|*"
    patterns = [r.pattern for r in BUILTIN.rules] + [BUILTIN.key_rule.pattern]
    patterns += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(30))) for _ in range(2000)]
    for pattern in patterns:
        assert "".join(t.text for t in tokens(pattern)) == pattern


def test_classes_escapes_quotes_and_repeats_are_told_apart() -> None:
    got = [(t.text, t.kind, t.in_class, t.negated) for t in tokens(r"[^]\s[:alpha:]/]\Q[x\E\s{2,5}/")]
    assert got == [
        ("[^]", Kind.CLASS_OPEN, True, True), ("\\s", Kind.ESCAPE, True, True), ("[:alpha:]", Kind.POSIX, True, True),
        ("/", Kind.LITERAL, True, True), ("]", Kind.CLASS_CLOSE, True, True), ("\\Q[x\\E", Kind.QUOTED, False, False),
        ("\\s", Kind.ESCAPE, False, False), ("{2,5}", Kind.REPEAT, False, False), ("/", Kind.LITERAL, False, False),
    ]
