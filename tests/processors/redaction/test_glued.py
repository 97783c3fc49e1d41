"""Secrets glued to an identifier on their left are masked (issue 8); glued look-alikes are not."""

from __future__ import annotations

import json

import pytest

from obs_pipeline.processors.redaction.rules import BUILTIN, strip_assertions
from obs_pipeline.processors.redaction.scanner import Scanner
from tests.processors.redaction import corpus, glued
from tests.processors.redaction.kit import attrs, first_span, redactor, run, span_request

CASES = glued.glued_cases()
LOOKALIKES = glued.glued_lookalikes()


@pytest.fixture(scope="module")
def default():
    return redactor()


def test_every_widened_rule_is_glued_every_way():
    """At least 40 glued secrets, over every rule whose prefix is distinctive enough to widen."""
    assert len(CASES) >= 40
    assert len({c.rule for c in CASES}) >= 20
    assert {"tool_", "KEY_", "id_", "key", "x9", "json-key-suffix", "snake_case", "camelCase"} <= {c.context for c in CASES}


def test_glued_recall_and_precision_are_total(default):
    """Every glued secret vanishes under its own rule id, the glue stays readable, no look-alike changes."""
    missed, wrong_rule, lost_glue = [], [], []
    for case in CASES:
        got = attrs(first_span(run(default, span_request({"input": case.text}))))
        out = got["input"]
        if case.secret in out:
            missed.append(case)
            continue
        if got.get("redaction.masked.rules") != [case.rule]:
            wrong_rule.append((case.rule, case.context, got.get("redaction.masked.rules")))
        if out != case.text.replace(case.secret, f"[REDACTED:{case.rule}]"):
            lost_glue.append((case.rule, case.context, out[:80]))
        if case.context == "json-key-suffix":
            json.loads(out)
    touched = []
    for value in LOOKALIKES:
        got = attrs(first_span(run(default, span_request({"input": value}))))
        if got["input"] != value or "redaction.masked.count" in got:
            touched.append(value)
    found = len(CASES) - len(missed)
    corpus.REPORT.append(f"redaction glued corpus: {len(CASES)} glued secrets over {len({c.rule for c in CASES})} "
                         f"rules, {len(LOOKALIKES)} glued look-alikes: recall {found / len(CASES):.1%}, "
                         f"precision {found / (found + len(touched)) if found else 0.0:.1%}")
    assert not missed, [(c.rule, c.context, c.text[:60]) for c in missed]
    assert not wrong_rule
    assert not lost_glue
    assert not touched, touched


def test_the_wire_prefilter_still_sees_every_glued_secret():
    """The wire-bytes prefilter (rules without assertions) never misses what the exact rules catch."""
    scanner = Scanner()
    for case in CASES:
        wire = span_request({"input": case.text}).SerializeToString()
        assert scanner.wire_may_hit(wire), (case.rule, case.context)
        assert scanner.wire_regions(wire), (case.rule, case.context)


@pytest.mark.parametrize("rule", BUILTIN.rules, ids=lambda r: r.id)
def test_each_rule_without_assertions_matches_wherever_it_does(rule):
    """Per rule: the prefilter form matches every glued and plain corpus secret the rule matches."""
    import re2  # noqa: PLC0415 - only this test compiles patterns itself

    exact, wide = re2.compile(rule.pattern), re2.compile(strip_assertions(rule.pattern))
    texts = [c.text for c in CASES] + [c.text for c in corpus.secret_cases()]
    for text in texts:
        if exact.search(text) is not None:
            assert wide.search(text) is not None, text[:60]


def test_a_secret_in_a_json_object_key_is_masked_and_the_json_stays_valid(default):
    """Object keys inside a JSON string value are scanned (a header map keyed by token, a glued key)."""
    aws = "AKIAZ7QH3K5V2M6N4PXR"
    arguments = json.dumps({aws: "x", "tool_" + aws: 1, "region": "eu-west-1"})
    got = attrs(first_span(run(default, span_request({"gen_ai.tool.call.arguments": arguments}))))
    out = got["gen_ai.tool.call.arguments"]
    assert aws not in out
    assert json.loads(out) == {"[REDACTED:aws-access-key-id]": "x", "tool_[REDACTED:aws-access-key-id]": 1,
                               "region": "eu-west-1"}
    assert got["redaction.masked.count"] == 2
    assert set(got["redaction.masked.keys"]) == {"attributes.gen_ai.tool.call.arguments"}


def test_detect_mode_leaves_a_glued_secret_in_place_and_reports_it():
    """Shadow mode reports the widened rules' hits without changing the value."""
    value = "tool_AKIAZ7QH3K5V2M6N4PXR"
    got = attrs(first_span(run(redactor(mode="detect"), span_request({"gen_ai.tool.name": value}))))
    assert got["gen_ai.tool.name"] == value
    assert got["redaction.detected.rules"] == ["aws-access-key-id"]
    assert "redaction.masked.count" not in got
