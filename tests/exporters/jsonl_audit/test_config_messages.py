"""What `obs-pipeline validate` says about jsonl_audit options a new user gets wrong."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from obs_pipeline.commands import main


def validate(tmp_path, exporter: str) -> tuple[int, str]:
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"""
receivers:
  otlp: {{protocols: {{grpc: {{endpoint: "127.0.0.1:0"}}}}}}
exporters:
  jsonl_audit:
    path: {tmp_path / "audit" / "audit.jsonl"}
{exporter}
service:
  pipelines:
    traces: {{receivers: [otlp], exporters: [jsonl_audit]}}
""")
    done = CliRunner().invoke(main, ["validate", str(config)])
    return done.exit_code, done.output


@pytest.mark.parametrize("key", ['""', '"   "', '"\\t"'])
def test_an_empty_checkpoint_key_is_an_error(tmp_path, key):
    """An empty HMAC key signs nothing: an error on checkpoint.key, which never prints the key."""
    code, output = validate(tmp_path, f"    hash_chain: true\n    checkpoint: {{key: {key}}}")
    assert code == 1
    assert "exporters.jsonl_audit.checkpoint.key: is empty" in output


def test_a_real_checkpoint_key_validates_and_is_not_printed(tmp_path):
    code, output = validate(tmp_path, '    hash_chain: true\n    checkpoint: {key: "k3y-w1th-3ntropy"}')
    assert code == 0, output
    assert "k3y-w1th-3ntropy" not in output


@pytest.mark.parametrize("value", ["1day", "-3", "lots"])
def test_a_bad_max_size_says_it_is_not_a_size(tmp_path, value):
    """`max_size: 1day` used to read `expected null, got string`; it says what a size is."""
    code, output = validate(tmp_path, f"    rotation: {{max_size: {value}}}")
    assert code == 1
    assert "rotation.max_size:" in output
    assert "is not a size (use e.g. 100MiB" in output
    assert "expected null" not in output


@pytest.mark.parametrize("value", ["10MiB", "4096", "null"])
def test_good_max_sizes_validate(tmp_path, value):
    code, output = validate(tmp_path, f"    rotation: {{max_size: {value}}}")
    assert code == 0, output


@pytest.mark.parametrize(("value", "ok"), [("batch", True), ("true", True), ("false", True), ("sometimes", False)])
def test_fsync_takes_a_word_or_the_old_boolean(tmp_path, value, ok):
    code, output = validate(tmp_path, f"    fsync: {value}")
    assert (code == 0) == ok, output
    if not ok:
        assert "must be one of always, batch, never, true, false" in output
