"""docs/components/ is generated from the schemas; CI fails when the committed pages drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from obs_pipeline.docsgen import MARKER, write_component_docs

DOCS = Path(__file__).parents[2] / "docs" / "components"


class TestCommittedDocs:
    def test_regenerating_changes_nothing(self, tmp_path: Path):
        """Regenerate with the real registry: the same files, byte for byte (run `obs-pipeline schema --docs docs/components`)."""
        written = write_component_docs(tmp_path)
        generated = {p.relative_to(tmp_path): p.read_text(encoding="utf-8") for p in written}
        committed = {
            p.relative_to(DOCS): p.read_text(encoding="utf-8")
            for p in DOCS.rglob("*.md") if p.read_text(encoding="utf-8").startswith(MARKER)
        }
        assert sorted(committed) == sorted(generated)
        for name, text in generated.items():
            assert committed[name] == text, f"docs/components/{name} is stale: run obs-pipeline schema --docs docs/components"


@pytest.mark.usefixtures("fake_registry")
class TestWriteComponentDocs:
    def test_pages_and_index(self, tmp_path: Path):
        """One page per type (third-party included), service.md, and an index linking them all."""
        written = write_component_docs(tmp_path)
        names = {str(p.relative_to(tmp_path)) for p in written}
        assert {"receivers/otlp.md", "exporters/prom.md", "exporters/webhook.md", "service.md", "README.md"} <= names
        index = (tmp_path / "README.md").read_text()
        assert "(exporters/prom.md)" in index
        assert "The fake prom exporter." in index

    def test_table_flattens_blocks_and_resolves_refs(self, tmp_path: Path):
        """Nested options get dotted names; $ref'd types and enums are named."""
        write_component_docs(tmp_path)
        otlp = (tmp_path / "receivers" / "otlp.md").read_text()
        assert "| `protocols.grpc.endpoint` | host:port | `127.0.0.1:4317` |" in otlp
        assert "| `protocols.grpc` | mapping | off (absent) |" in otlp
        debug = (tmp_path / "exporters" / "debug.md").read_text()
        assert "| `verbosity` | `basic` \\| `normal` \\| `detailed` | `basic` |" in debug
        assert "| `sending_queue.queue_size` | integer | `20000` |" in debug
        webhook = (tmp_path / "exporters" / "webhook.md").read_text()
        assert "| `headers.<key>` | secret |" in webhook
        assert "| `timeout` | duration | `5s` |" in webhook

    def test_example_has_a_named_second_instance(self, tmp_path: Path):
        """The example shows the defaults and a `type/2` instance."""
        write_component_docs(tmp_path)
        batch = (tmp_path / "processors" / "batch.md").read_text()
        assert "processors:\n  batch:\n    send_batch_size: 2048\n" in batch
        assert "  batch/2:\n```" in batch

    def test_stale_generated_pages_are_removed(self, tmp_path: Path):
        """A generated page for a type that is gone is deleted; hand-written files are kept."""
        (tmp_path / "exporters").mkdir()
        (tmp_path / "exporters" / "gone.md").write_text(MARKER + "\nold\n")
        (tmp_path / "exporters" / "notes.md").write_text("hand-written\n")
        write_component_docs(tmp_path)
        assert not (tmp_path / "exporters" / "gone.md").exists()
        assert (tmp_path / "exporters" / "notes.md").exists()
