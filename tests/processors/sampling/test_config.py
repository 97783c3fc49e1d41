"""The sampling config: collector-shaped keys, defaults that keep everything, checks that name the key."""

from __future__ import annotations

import pytest

from obs_pipeline.errors import ConfigError
from obs_pipeline.processors.sampling import FACTORY, Config, check
from obs_pipeline.testing import parse_config

ISSUE_EXAMPLE = {
    "mode": "tail", "decision_wait": "10s", "num_traces": 50000, "max_memory": "64MiB",
    "policies": [
        {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
        {"name": "slow", "type": "latency", "latency": {"threshold_ms": 5000}},
        {"name": "expensive", "type": "cost", "cost": {"min_usd": 0.50}},
        {"name": "vip", "type": "string_attribute", "string_attribute": {"key": "tenant.tier", "values": ["gold"]}},
        {"name": "rest", "type": "probabilistic", "probabilistic": {"sampling_percentage": 5}},
    ],
}


def _problems(body) -> list[str]:
    return [f"{p.path}: {p.message}" for p in check(parse_config(FACTORY, body))]


class TestConfig:
    def test_empty_body_keeps_everything(self):
        """No settings: head mode at 100 %, which drops and changes nothing."""
        cfg = parse_config(FACTORY, None)
        assert cfg == Config()
        assert (cfg.mode, cfg.sampling_percentage) == ("head", 100.0)

    def test_the_issue_example_parses_and_passes(self):
        """The collector-shaped example of issue 11 is valid as written."""
        cfg = parse_config(FACTORY, ISSUE_EXAMPLE)
        assert [p.name for p in cfg.policies] == ["errors", "slow", "expensive", "vip", "rest"]
        assert (cfg.decision_wait, cfg.max_memory) == (10.0, 64 * 1024 * 1024)
        assert check(cfg) == []

    @pytest.mark.parametrize(("body", "expected"), [
        ({"policies": [{"name": "a", "type": "always_sample"}]}, "policies: policies apply to mode tail only"),
        ({"mode": "tail"}, "policies: mode tail needs at least one policy"),
        ({"mode": "tail", "policies": [{"name": "a", "type": "always_sample"}, {"name": "a", "type": "always_sample"}]},
         'policies[1].name: policy name "a" is used twice'),
        ({"mode": "tail", "policies": [{"name": "r", "type": "string_attribute", "string_attribute": {
            "key": "k", "values": ["ok", "(unclosed"], "enabled_regex_matching": True}}]},
         "policies[0].string_attribute.values[1]: is not an RE2 regular expression"),
        ({"mode": "tail", "policies": [{"name": "n", "type": "numeric_attribute", "numeric_attribute": {"key": "k"}}]},
         "policies[0].numeric_attribute: set min_value, max_value or both"),
        ({"mode": "tail", "policies": [{"name": "l", "type": "latency", "latency": {"threshold_ms": 10, "upper_threshold_ms": 5}}]},
         "policies[0].latency.upper_threshold_ms: must be 0 or at least threshold_ms"),
        ({"mode": "tail", "policies": [{"name": "none", "type": "always_sample"}]}, 'policies[0].name: "none" is reserved'),
    ], ids=["head-with-policies", "tail-without", "twice", "regex", "numeric-unbounded", "latency-bounds", "reserved"])
    def test_cross_field_problems_name_the_key(self, body, expected):
        """Each mistake the schema cannot see is reported at its key, in the user's words."""
        assert any(p.startswith(expected) for p in _problems(body)), _problems(body)

    def test_a_bad_regex_is_reported_once_in_words_and_not_on_stderr(self, capfd):
        """RE2's own error log stays quiet; the problem quotes RE2's reason as text, not bytes."""
        (problem,) = _problems({"mode": "tail", "policies": [{"name": "r", "type": "string_attribute", "string_attribute": {
            "key": "k", "values": ["(gold"], "enabled_regex_matching": True}}]})
        assert problem.endswith("is not an RE2 regular expression (missing ): (gold)")
        assert capfd.readouterr().err == ""

    @pytest.mark.parametrize("body", [
        {"mode": "tail", "policies": [{"name": "x", "type": "latency"}]},  # block missing
        {"mode": "tail", "policies": [{"name": "x", "type": "status_code", "status_code": {"status_codes": ["FAILED"]}}]},
        {"mode": "tail", "policies": [{"name": "x", "type": "and", "and": {"and_sub_policy": [
            {"name": "y", "type": "and", "and": {"and_sub_policy": []}}]}}]},  # no nesting
        {"sampling_percentage": 101},
        {"mode": "tial"},
    ], ids=["no-block", "bad-status", "nested-and", "percentage", "mode"])
    def test_schema_rejects_malformed_bodies(self, body):
        """What the collector would reject is rejected by the schema pass."""
        with pytest.raises(ConfigError):
            parse_config(FACTORY, body)
