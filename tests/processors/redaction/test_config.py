"""The redaction config: schema defaults, RE2 checks that name the rule and position, strictness."""

from __future__ import annotations

import pytest
import yaml

from obs_pipeline.config import check_config
from obs_pipeline.errors import ConfigError
from obs_pipeline.processors.redaction import FACTORY, Config, check
from obs_pipeline.testing import parse_config


def problems(**body):
    return [str(p) for p in check(parse_config(FACTORY, body))]


def test_schema_defaults_equal_config_defaults():
    """Config() and the schema-filled empty body agree."""
    assert parse_config(FACTORY, None) == Config()
    assert problems() == []


def test_lookaround_is_refused_naming_rule_position_and_why():
    """RE2 cannot look around: the message names the rule, where, and says why."""
    (message,) = problems(rules=[{"id": "mine", "pattern": r"key=(?!test)\w+"}])
    assert "rules[0].pattern" in message
    assert "'mine'" in message
    assert "position 4" in message
    assert "no lookahead or lookbehind" in message


def test_backreferences_and_syntax_errors_are_refused():
    """A backreference and an unclosed class are config errors, with positions."""
    back, syntax = problems(rules=[{"id": "a", "pattern": r"(x)\1"}, {"id": "b", "pattern": "ab[cd"}])
    assert "position 3" in back
    assert "no backreferences" in back
    assert "rules[1].pattern" in syntax
    assert "position 2" in syntax


def test_ids_disable_and_hash_key_are_checked():
    """Built-in ids are not reusable, unknown disables are named, hash needs a key."""
    got = problems(rules=[{"id": "jwt", "pattern": "x"}], disable=["nope"], replacement="hash",
                   blocked_keys=["("], allowed_values=["["])
    assert any("rules[0].id" in p and "already used" in p for p in got)
    assert any("disable[0]" in p and "'nope'" in p for p in got)
    assert any(p.startswith("<config>: hash_key") for p in got)
    assert any("blocked_keys[0]" in p for p in got)
    assert any("allowed_values[0]" in p for p in got)


@pytest.mark.parametrize("rule_id", ["sensitive-key", "blocked-key", "unscanned"])
def test_ids_the_reports_give_to_keys_and_unscanned_values_are_not_reusable(rule_id):
    """A user rule may not take an id that redaction.masked.rules already gives another meaning."""
    (message,) = problems(rules=[{"id": rule_id, "pattern": "x"}])
    assert "rules[0].id" in message
    assert "already used" in message


def test_a_secret_group_the_pattern_lacks_is_refused():
    """secret_group must name a group of the pattern."""
    (message,) = problems(rules=[{"id": "a", "pattern": "x(y)", "secret_group": 2}])
    assert "secret_group 2" in message


def test_unknown_keys_and_values_fail_the_schema():
    """Strict: a typo or an unknown mode is a config error."""
    with pytest.raises(ConfigError):
        parse_config(FACTORY, {"mdoe": "detect"})
    with pytest.raises(ConfigError):
        parse_config(FACTORY, {"content": "summary"})


def test_validate_reports_bad_rules_with_file_and_line_and_hides_the_hash_key(tmp_path):
    """Through the config layer: the file position, the rule id, and never the key."""
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "processors": {"redaction": {"replacement": "hash", "hash_key": "very-secret-hmac-key",
                                     "rules": [{"id": "mine", "pattern": "(?<=a)b"}]}},
        "exporters": {"debug": None},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["redaction"],
                                             "exporters": ["debug"]}}},
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    _, found = check_config(path)
    text = "\n".join(str(p) for p in found)
    assert "'mine'" in text
    assert "lookahead" in text
    assert f"{path}:" in text
    assert "very-secret-hmac-key" not in text
