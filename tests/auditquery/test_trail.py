"""Reading a trail: rotated files oldest first (gzip too), then the live file; problems reported, the rest read."""

from __future__ import annotations

import gzip
import os
from datetime import UTC, datetime

import pytest

from obs_pipeline.audit.files import rotated_name
from obs_pipeline.auditquery.trail import Trail, iter_lines, trail_lines, trails_of
from tests.auditquery.trailkit import dumps, session_two, write_trail


def events(lines):
    return [line.record["event_id"].split(":")[-1] for line in lines]


class TestTrailOrder:
    def test_rotated_gzip_then_rotated_plain_then_live(self, tmp_path):
        """Every line of every file, in write order, with its file and line number."""
        live = write_trail(tmp_path / "audit" / "audit.jsonl")
        problems: list[str] = []
        lines = list(trail_lines(Trail(live), problems.append))
        assert problems == []
        assert len(lines) == 13
        assert [line.file.name for line in lines] == (
            ["audit-20260317T100100000000Z.jsonl.gz"] * 5 + ["audit-20260317T100600000000Z.jsonl"] * 5
            + ["audit.jsonl"] * 3)
        assert [line.number for line in lines] == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3]
        assert lines[0].file.name.endswith(".jsonl.gz")
        assert lines[-1].file == live
        assert lines[4].record["event_type"] == "invoke_agent"

    def test_json_keeps_the_bytes_as_written(self, tmp_path):
        """``raw`` is the line exactly as the exporter wrote it."""
        live = write_trail(tmp_path / "audit.jsonl")
        lines = list(trail_lines(Trail(live), print))
        assert lines[-1].raw + b"\n" == dumps(session_two()[-1:])


class TestBadInput:
    def test_a_garbage_line_is_named_and_skipped(self, tmp_path):
        """The file and line number are reported, never the text; every other line is read."""
        live = write_trail(tmp_path / "audit.jsonl", garbage=True)
        problems: list[str] = []
        lines = list(trail_lines(Trail(live), problems.append))
        rotated = rotated_name(live, datetime(2026, 3, 17, 10, 6, tzinfo=UTC))
        assert problems == [f"{rotated}: line 2: not JSON (16 bytes); skipped"]
        assert len(lines) == 13

    def test_a_truncated_gzip_yields_what_it_holds(self, tmp_path):
        """A compressed file cut short: its whole lines are read, the cut is reported, the next files follow."""
        live = write_trail(tmp_path / "audit.jsonl")
        (gz,) = tmp_path.glob("*.gz")
        data = gz.read_bytes()
        gz.write_bytes(data[: len(data) * 2 // 3])
        problems: list[str] = []
        lines = list(trail_lines(Trail(live), problems.append))
        assert len(problems) == 1
        assert problems[0].startswith(f"{gz}: line ")
        assert "compressed file is truncated or corrupt" in problems[0]
        assert [line.file for line in lines][-8:] == [lines[-8].file] * 5 + [live] * 3
        assert len(lines) < 13

    def test_a_missing_directory_says_so(self, tmp_path):
        """Nothing to read: one clear message naming the missing directory."""
        problems: list[str] = []
        missing = tmp_path / "nope" / "audit.jsonl"
        assert list(trail_lines(Trail(missing), problems.append)) == []
        assert problems == [f"{missing}: no audit file (the directory {missing.parent} does not exist)"]

    def test_an_unreadable_file_is_skipped_and_the_rest_read(self, tmp_path):
        """A rotated file that cannot be opened (here: a directory in its place) is reported; the others are read."""
        live = write_trail(tmp_path / "audit.jsonl")
        blocker = rotated_name(live, datetime(2026, 3, 17, 10, 3, tzinfo=UTC))
        blocker.mkdir()
        problems: list[str] = []
        lines = list(trail_lines(Trail(live), problems.append))
        assert problems == [f"{blocker}: cannot read: Is a directory; skipped"]
        assert len(lines) == 13

    @pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
    def test_a_file_without_permission_is_skipped(self, tmp_path):
        live = write_trail(tmp_path / "audit.jsonl")
        live.chmod(0)
        problems: list[str] = []
        assert len(list(trail_lines(Trail(live), problems.append))) == 10
        assert problems == [f"{live}: cannot read: Permission denied; skipped"]


class TestTemplates:
    def test_one_trail_per_tenant_with_its_value(self, tmp_path):
        """``{resource.tenant.id}`` in a directory: each tenant's live and rotated files, tenant from the path."""
        template = str(tmp_path / "audit" / "{resource.tenant.id}" / "audit.jsonl")
        write_trail(tmp_path / "audit" / "acme" / "audit.jsonl")
        (tmp_path / "audit" / "globex").mkdir()
        (tmp_path / "audit" / "globex" / "audit.jsonl").write_bytes(dumps(session_two()))
        trails = trails_of(template)
        assert [(trail.live.parent.name, trail.tenant) for trail in trails] == [("acme", "acme"), ("globex", "globex")]
        assert len(trails[0].files()) == 3

    def test_placeholder_in_the_name_tells_rotated_from_live(self, tmp_path):
        """``audit-{tenant}.jsonl``: ``audit-acme-<time>Z.jsonl.gz`` is acme's rotated file, not a tenant of its own."""
        template = str(tmp_path / "audit-{tenant}.jsonl")
        write_trail(tmp_path / "audit-acme.jsonl")
        rotated = rotated_name(tmp_path / "audit-gone.jsonl", datetime(2026, 3, 1, tzinfo=UTC))
        with gzip.open(rotated.with_name(rotated.name + ".gz"), "wb") as out:
            out.write(dumps(session_two()))
        trails = trails_of(template)
        assert [(trail.live.name, trail.tenant) for trail in trails] == [
            ("audit-acme.jsonl", "acme"), ("audit-gone.jsonl", "gone")]
        assert len(list(trail_lines(trails[1], print))) == 3  # only rotated files left: still read

    @pytest.mark.parametrize("template", ["{ tenant }/audit.jsonl", "{{x}}/{tenant}/audit.jsonl",
                                          "{resource.tenant.id}/audit.jsonl"])
    def test_the_writers_template_grammar(self, tmp_path, template):
        """Spaces in braces, {{ }} escapes and the {tenant} alias are read as the exporter writes them."""
        from obs_pipeline.exporters.jsonl_audit.paths import PathTemplate  # noqa: PLC0415

        live = PathTemplate.parse(str(tmp_path / template)).resolve({}, {"tenant.id": "acme"})
        write_trail(live)
        trails = trails_of(str(tmp_path / template))
        assert [(trail.live, trail.tenant) for trail in trails] == [(live, "acme")]
        assert len(trails[0].files()) == 3

    def test_several_trails_merge_by_time(self, tmp_path):
        """Two tenants' lines come out interleaved by timestamp, each tagged with its tenant."""
        write_trail(tmp_path / "acme" / "audit.jsonl")
        (tmp_path / "globex").mkdir()
        (tmp_path / "globex" / "audit.jsonl").write_bytes(dumps(session_two()[:1]))
        lines = list(iter_lines(trails_of(str(tmp_path / "{tenant}" / "audit.jsonl")), print))
        assert len(lines) == 14
        assert [line.tenant for line in lines if line.record["session_id"] == "s2"] == ["acme"]
        assert {line.tenant for line in lines[:10]} == {"acme"}  # 10:00-10:05, before globex's 11:00 line
        assert [line.tenant for line in lines[10:]].count("globex") == 1
        assert {line.tenant for line in lines} == {"acme", "globex"}
