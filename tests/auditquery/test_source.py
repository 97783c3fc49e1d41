"""Finding the trail from ``--config``: every jsonl_audit exporter's path, loaded by the normal loader."""

from __future__ import annotations

import os

import pytest
import yaml
from click.testing import CliRunner

from obs_pipeline.auditquery.source import SourceError, audit_exporters, resolve_trails
from obs_pipeline.commands import main
from tests.auditquery.trailkit import dumps, session_two


def write_config(tmp_path, exporters):
    config = {
        "receivers": {"stdin": {}},
        "exporters": exporters,
        "service": {"data_dir": str(tmp_path / "data"),
                    "pipelines": {"logs": {"receivers": ["stdin"], "exporters": list(exporters)}}},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_each_audit_exporter_path(tmp_path):
    config = write_config(tmp_path, {"jsonl_audit": {"path": str(tmp_path / "a.jsonl")},
                                     "jsonl_audit/b": {"path": str(tmp_path / "b.jsonl")}, "debug": {}})
    assert [trail.live.name for trail in resolve_trails(None, config)] == ["a.jsonl", "b.jsonl"]


def test_path_wins_over_config(tmp_path):
    config = write_config(tmp_path, {"jsonl_audit": {"path": str(tmp_path / "a.jsonl")}})
    assert [trail.live.name for trail in resolve_trails(str(tmp_path / "x.jsonl"), config)] == ["x.jsonl"]


def test_a_template_is_globbed(tmp_path):
    (tmp_path / "audit" / "acme").mkdir(parents=True)
    (tmp_path / "audit" / "acme" / "audit.jsonl").write_bytes(dumps(session_two()))
    config = write_config(tmp_path, {"jsonl_audit": {"path": str(tmp_path / "audit" / "{tenant}" / "audit.jsonl")}})
    assert [(trail.live.parent.name, trail.tenant) for trail in resolve_trails(None, config)] == [("acme", "acme")]


def test_no_audit_exporter(tmp_path):
    config = write_config(tmp_path, {"debug": {}})
    with pytest.raises(SourceError, match="no jsonl_audit exporter"):
        resolve_trails(None, config)


def test_an_invalid_config_says_why(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("receivers: {nope: {}}\n")
    with pytest.raises(SourceError, match="invalid config"):
        resolve_trails(None, path)


def test_neither_given():
    with pytest.raises(SourceError, match="--path FILE or --config"):
        resolve_trails(None, None)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes any file")
def test_a_read_only_trail_is_read_and_verified(tmp_path):
    """A read-only trail (an auditor's copy) is read and verified, though validate says it cannot be written."""
    trail_dir = tmp_path / "audit"
    trail_dir.mkdir()
    live = trail_dir / "a.jsonl"
    live.write_bytes(dumps(session_two()))
    live.chmod(0o400)
    trail_dir.chmod(0o500)
    try:
        config = write_config(tmp_path, {"jsonl_audit": {"path": str(live)}})
        assert [trail.live for trail in resolve_trails(None, config)] == [live]
        assert [(path, cfg) for path, cfg in audit_exporters(config)] == [(str(live), None)]
        done = CliRunner().invoke(main, ["audit", "verify", "--config", str(config)])
        assert done.exit_code == 1  # read and checked (this trail has no chain), not refused as a usage error
        assert "hash_chain is off" in done.output
    finally:
        trail_dir.chmod(0o700)
