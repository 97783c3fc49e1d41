"""A per-tenant path template whose directory already exists validates (it used to fail every second run)."""

import obs_pipeline.exporters.jsonl_audit as ja
from obs_pipeline.testing import parse_config


def test_template_dir_existing_is_fine(tmp_path):
    (tmp_path / "audit").mkdir()
    cfg = parse_config(ja.FACTORY, {"path": str(tmp_path / "audit" / "{tenant}.jsonl")})
    assert ja.FACTORY.check(cfg) == []
    (tmp_path / "f").write_text("x")
    cfg = parse_config(ja.FACTORY, {"path": str(tmp_path / "f" / "{tenant}.jsonl")})
    assert "not a directory" in str(ja.FACTORY.check(cfg))
