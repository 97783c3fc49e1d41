"""${env:...} substitution: syntax, re-typing, no YAML injection, and errors that name the variable."""

from __future__ import annotations

from typing import Any

import pytest

from obs_pipeline.config.document import Findings
from obs_pipeline.config.envsubst import EnvResult, retype, substitute
from obs_pipeline.config.loader import check_config, load_config
from obs_pipeline.config.yamlload import load_document


def _expand(yaml_text: str, environ: dict[str, str]) -> tuple[Any, Findings, EnvResult]:
    doc, problems = load_document(yaml_text, "t.yaml")
    assert doc is not None
    assert not problems
    findings = Findings(doc)
    result = substitute(findings, environ)
    return doc.data, findings, result


class TestSubstitute:
    @pytest.mark.parametrize("text", ["${env:V}", "${V}"])
    def test_both_spellings(self, text: str):
        """${env:VAR} and ${VAR} are the same thing."""
        data, _, _ = _expand(f"a: {text}", {"V": "hello"})
        assert data == {"a": "hello"}

    @pytest.mark.parametrize(("value", "expected"), [("8080", 8080), ("true", True), ("1.5", 1.5), ("null", None), ("", "")])
    def test_whole_value_is_retyped(self, value: str, expected: Any):
        """A value that is one reference is read as a YAML scalar (an empty value stays "")."""
        data, _, _ = _expand("a: ${env:V}", {"V": value})
        assert data["a"] == expected
        assert type(data["a"]) is type(expected)

    def test_inline_reference_stays_a_string(self):
        """A reference inside a longer string gives a string."""
        data, _, _ = _expand("a: http://${env:H}:${env:P}/v1", {"H": "collector", "P": "4318"})
        assert data == {"a": "http://collector:4318/v1"}

    @pytest.mark.parametrize("value", ["{a: 1}", "[1, 2]", "a: b", "- x", "&anchor x", "!!python/object:os.system x"])
    def test_no_yaml_injection(self, value: str):
        """A value that would parse as a structure (or anything odd) stays the exact string."""
        data, _, _ = _expand("a: ${env:V}", {"V": value})
        assert data == {"a": value}

    def test_dollar_dollar_is_a_literal_dollar(self):
        """$$ escapes a $, even before a brace."""
        data, _, result = _expand("a: cost $$5 and $${env:V}", {"V": "x"})
        assert data == {"a": "cost $5 and ${env:V}"}
        assert not result.sources

    def test_bare_dollar_name_is_left_alone(self):
        """$VAR without braces is not a reference (collector-compatible)."""
        data, _, _ = _expand("a: $HOME/x", {"HOME": "/root"})
        assert data == {"a": "$HOME/x"}

    def test_default_when_unset(self):
        """${env:VAR:-default} uses the default only when the variable is unset."""
        data, _, _ = _expand("a: ${env:V:-fallback}\nb: ${W:-8}", {})
        assert data == {"a": "fallback", "b": 8}
        data, _, _ = _expand("a: ${env:V:-fallback}", {"V": "set"})
        assert data == {"a": "set"}

    def test_values_are_expanded_once(self):
        """A variable's value that looks like a reference is not expanded again."""
        data, _, _ = _expand("a: ${env:V}", {"V": "${env:SECRET}"})
        assert data == {"a": "${env:SECRET}"}

    def test_keys_and_lists(self):
        """Keys are never expanded; list items are."""
        data, _, _ = _expand("${env:K}:\n  - ${env:V}\n  - x\n", {"K": "key", "V": "1"})
        assert data == {"${env:K}": [1, "x"]}

    def test_unset_variable_names_it_at_the_value(self):
        """An unset variable without default is an error at the value, naming the variable."""
        _, findings, result = _expand("a:\n  b: x-${env:MISSING_ONE}", {})
        (problem,) = findings.problems
        assert (problem.path, problem.line, problem.column) == ("a.b", 2, 6)
        assert 'environment variable "MISSING_ONE" is not set' in problem.message
        assert ("a", "b") in result.failed

    def test_sources_remember_what_was_written(self):
        """Values from the environment are tracked, so messages can show the reference instead."""
        _, _, result = _expand("a: ${env:T}", {"T": "hunter2"})
        assert result.sources == {("a",): "${env:T}"}


class TestRetype:
    def test_dates_stay_strings(self):
        """YAML timestamps are not JSON: they stay text."""
        assert retype("2024-01-01") == "2024-01-01"

    def test_multiline_value_stays_verbatim(self):
        """A value with a newline keeps its exact text (YAML would fold it)."""
        assert retype("a\nb") == "a\nb"


@pytest.mark.usefixtures("fake_registry")
class TestThroughTheSchema:
    def test_string_field_keeps_the_original_text(self, tmp_path):
        """A re-typed value in a string field stays the string: 0123 is not 83, true is not True."""
        path = tmp_path / "p.yaml"
        path.write_text("""
receivers: {stdin: }
exporters:
  jsonl_audit: {path: "${env:P}"}
  jsonl_audit/2: {path: "${env:Q}"}
processors:
  batch: {send_batch_size: "${env:N}"}
service:
  pipelines:
    logs: {receivers: [stdin], processors: [batch], exporters: [jsonl_audit, jsonl_audit/2]}
""")
        config = load_config(path, {"P": "0123", "Q": "true", "N": "100"})
        exporters = {str(k): v.config for k, v in config.exporters.items()}
        assert exporters["jsonl_audit"]["path"] == "0123"
        assert exporters["jsonl_audit/2"]["path"] == "true"
        assert config.processors[next(iter(config.processors))].config["send_batch_size"] == 100

    def test_failed_reference_gives_one_message(self, tmp_path):
        """An unset variable in a patterned field is reported once, not also as a bad endpoint."""
        path = tmp_path / "p.yaml"
        path.write_text("""
receivers:
  otlp: {protocols: {grpc: {endpoint: "${env:EP}"}}}
exporters: {debug: }
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [debug]}
""")
        _, problems = check_config(path, {})
        assert [p.message for p in problems] == [
            'environment variable "EP" is not set (use ${env:EP:-default} to give a default)'
        ]
