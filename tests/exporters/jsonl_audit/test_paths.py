"""Per-tenant files: path templates, sanitized values, the open-file cap."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from obs_pipeline.audit.verify import verify_trail
from obs_pipeline.auditquery.trail import trails_of
from obs_pipeline.errors import StartupError
from obs_pipeline.exporters.jsonl_audit import FACTORY
from obs_pipeline.exporters.jsonl_audit.paths import PathTemplate, TemplateError, sanitize
from obs_pipeline.testing import RecordingHost, parse_config
from tests.exporters.jsonl_audit.kit import batch_of, exporter, read_trail


def files_under(root: Path) -> list[str]:
    """Every file below ``root``, relative, sorted."""
    return sorted(str(Path(d, f).relative_to(root)) for d, _, fs in os.walk(root) for f in fs)


class TestSanitize:
    @pytest.mark.parametrize(("value", "expected"), [
        ("acme", "acme"),
        ("../../etc/passwd", "_._.._etc_passwd"),
        ("..", "_."),
        ("/abs/path", "_abs_path"),
        ("a\x00b", "a_b"),
        ("a\\b", "a_b"),
        ("C:\\win", "C__win"),
        (".hidden", "_hidden"),
        ("a b\nc", "a_b_c"),
        ("zürich-Ω", "zürich-Ω"),
        ("user@example.com", "user@example.com"),
        ("", "unknown"),
    ])
    def test_values_become_one_harmless_component(self, value, expected):
        """Separators, NUL, controls and leading dots never survive; letters and digits do."""
        assert sanitize(value, "unknown") == expected

    def test_long_values_are_cut_and_kept_apart(self):
        """A value past 100 characters is cut and tagged with its hash: two long values stay two files."""
        one, two = sanitize("x" * 300 + "1", "u"), sanitize("x" * 300 + "2", "u")
        assert len(one) == len(two) == 100
        assert one != two


class TestTemplate:
    def test_placeholders(self):
        """Line keys, resource attributes and the tenant alias; doubled braces are literal."""
        template = PathTemplate.parse("a/{tenant}/{resource.deployment.environment}/{{x}}-{session_id}.jsonl")
        assert template.resource_keys == ("tenant.id", "deployment.environment")
        assert template.line_keys == ("session_id",)
        assert template.resolve({"session_id": "s/1"}, {"tenant.id": "t"}) == Path("a/t/unknown/{x}-s_1.jsonl")
        assert template.root == Path("a")
        assert PathTemplate.parse("audit.jsonl").static

    @pytest.mark.parametrize(("source", "message"), [
        ("a/{nope}.jsonl", "unknown placeholder {nope}"),
        ("a/{resource.}.jsonl", "unknown placeholder {resource.}"),
        ("a/{tenant.jsonl", "a lone '{'"),
        ("a/}x", "a lone '}'"),
    ])
    def test_bad_templates(self, source, message):
        """Unknown placeholders and lone braces are refused."""
        with pytest.raises(TemplateError, match=message.replace("{", r"\{").replace("}", r"\}")):
            PathTemplate.parse(source)

    def test_validate_reports_a_bad_template(self, tmp_path):
        """validate (the factory's check) names the path key and the placeholder."""
        problems = FACTORY.check(parse_config(FACTORY, {"path": str(tmp_path / "{tenantt}.jsonl")}))
        assert [(p.path, p.message.split(":")[0]) for p in problems] == [("path", "unknown placeholder {tenantt}")]


class TestPerTenantFiles:
    async def test_each_tenant_gets_its_file_and_no_value_escapes_the_directory(self, tmp_path):
        """Hostile tenant ids land as sanitized names inside the directory; a missing one uses the fallback."""
        root = tmp_path / "audit"
        exp = exporter(str(root / "{tenant}" / "audit.jsonl"), hash_chain=True, path_fallback="_none")
        await exp.start(RecordingHost())
        tenants = ["acme", "../../escape", "/etc", "a\x00b", "..", None]
        for n, tenant in enumerate(tenants):
            resource = {"service.name": "svc"} | ({} if tenant is None else {"tenant.id": tenant})
            await exp.export(batch_of(n * 10, 2, resource=resource))
        await exp.shutdown()
        assert files_under(tmp_path) == sorted(f"audit/{d}/audit.jsonl" for d in
                                               ["acme", "_._.._escape", "_etc", "a_b", "_.", "_none"])
        trails = trails_of(str(root / "{tenant}" / "audit.jsonl"))
        assert len(trails) == len(tenants)
        for trail in trails:
            assert len(read_trail(trail.live)) == 2
            assert verify_trail(trail.live).intact

    async def test_line_keys_route_lines_of_one_batch(self, tmp_path):
        """{session_id} splits one batch's lines by their session: one write per file."""
        exp = exporter(str(tmp_path / "{session_id}.jsonl"))
        await exp.start(RecordingHost())
        batch = batch_of(0, 1, **{"gen_ai.conversation.id": "s1"})
        batch.message.resource_spans[0].scope_spans[0].spans.extend(
            batch_of(1, 1, **{"gen_ai.conversation.id": "s2"}).message.resource_spans[0].scope_spans[0].spans)
        await exp.export(batch)
        await exp.shutdown()
        assert files_under(tmp_path) == ["s1.jsonl", "s2.jsonl"]
        assert read_trail(tmp_path / "s2.jsonl")[0]["session_id"] == "s2"

    async def test_open_file_cap_closes_the_least_recently_used_and_chains_resume(self, tmp_path):
        """With max_open_files 2 and three tenants taking turns, every file gets its lines and an intact chain."""
        exp = exporter(str(tmp_path / "{tenant}.jsonl"), hash_chain=True, max_open_files=2,
                       checkpoint={"key": "k", "every_lines": 1000})
        await exp.start(RecordingHost())
        for round_ in range(4):
            for n, tenant in enumerate(["a", "b", "c"]):
                await exp.export(batch_of(round_ * 100 + n * 10, 3, resource={"tenant.id": tenant}))
            assert len(exp.sink.trails._open) <= 2
        await exp.shutdown()
        for tenant in "abc":
            live = tmp_path / f"{tenant}.jsonl"
            assert [x["seq"] for x in read_trail(live)] == list(range(1, 13))
            assert verify_trail(live, b"k").intact

    async def test_start_fails_when_the_template_directory_cannot_be_made(self, tmp_path):
        """A template under a file (not a directory) stops the pipeline at start, naming the directory."""
        (tmp_path / "file.txt").write_text("")
        exp = exporter(str(tmp_path / "file.txt" / "{tenant}.jsonl"))
        with pytest.raises(StartupError, match=r"cannot open .*file\.txt for append: Not a directory"):
            await exp.start(RecordingHost())
