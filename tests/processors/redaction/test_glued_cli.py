"""Issue 8's reproduction through ``obs-pipeline test``: glued secrets in a tool name are masked."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from obs_pipeline.commands import main

CONFIG = """
receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:0"}}}}
processors:
  redaction: {}
  batch: {timeout: 5s}
exporters: {debug: {}}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [redaction, batch], exporters: [debug]}
"""

# The secrets are made up, in their providers' formats.
AWS = "AKIAZ7QH3K5V2M6N4PXR"
GITHUB = "ghp_R8mK2vX9qL4wN7tY1zB5cF3hJ6sD0gA8pQ2e"
OPENAI = "sk-proj-Xk3vR9mQ2pL7wN4tY8zB1cF6hJ0sD5gA"

TESTS = f"""
tests:
  - name: an AWS key id glued to a tool name is masked, the glue kept
    input:
      span:
        name: execute_tool tool_{AWS}
        attributes:
          gen_ai.operation.name: execute_tool
          gen_ai.tool.name: tool_{AWS}
    expect:
      redacted: [aws-access-key-id]
      not_contains: [{AWS}]
      attributes:
        gen_ai.tool.name: "tool_[REDACTED:aws-access-key-id]"
      name: "execute_tool tool_[REDACTED:aws-access-key-id]"
      untouched: [gen_ai.operation.name]
  - name: every glue of the trial report is masked
    input:
      span:
        name: chat
        attributes:
          a: id_{GITHUB}
          b: KEY_{OPENAI}
          c: key{AWS}
    expect:
      redacted: [aws-access-key-id, github-pat, openai-api-key]
      not_contains: [{AWS}, {GITHUB}, {OPENAI}]
      attributes:
        a: "id_[REDACTED:github-pat]"
        b: "KEY_[REDACTED:openai-api-key]"
        c: "key[REDACTED:aws-access-key-id]"
  - name: words ending in sk before a key-like prefix stay
    input:
      span:
        name: chat
        attributes:
          a: the task-proj-management-dashboard-quarterly-review
          b: risk-score for task_id 42
    expect:
      redacted: []
      untouched: [a, b]
"""


def test_obs_pipeline_test_masks_glued_secrets(tmp_path: Path) -> None:
    """The CLI passes every case (exit 0) and its JUnit file records no failure."""
    config, tests, junit = tmp_path / "pipeline.yaml", tmp_path / "tests.yaml", tmp_path / "junit.xml"
    config.write_text(CONFIG)
    tests.write_text(TESTS)
    result = CliRunner().invoke(main, ["test", str(config), str(tests), "--junit", str(junit)])
    assert result.exit_code == 0, result.output
    assert result.output.count("PASS ") == 3
    assert AWS not in result.output
    report = junit.read_text()
    assert 'failures="0"' in report
    assert AWS not in report
