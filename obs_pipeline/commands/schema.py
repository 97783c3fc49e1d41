"""``obs-pipeline schema``: the composed JSON Schema for editors, or the component docs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from obs_pipeline.exitcodes import ExitCode


@click.command()
@click.option(
    "--docs", "docs_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Instead of printing the schema, write the component reference pages into this directory.",
)
def schema(docs_dir: Path | None) -> None:
    """Print the composed JSON Schema of pipeline.yaml (for editors), or write docs with --docs."""
    from obs_pipeline.config import SchemaError, compose_schema  # noqa: PLC0415
    from obs_pipeline.docsgen import write_component_docs  # noqa: PLC0415

    try:
        if docs_dir is not None:
            for path in write_component_docs(docs_dir):
                click.echo(str(path))
            return
        # Editors read the file before ${env:...} substitution: typed fields accept references too.
        click.echo(json.dumps(compose_schema(env_references=True), indent=2, ensure_ascii=False))
    except (SchemaError, OSError) as exc:
        click.echo(f"obs-pipeline schema: {exc}", err=True)
        sys.exit(ExitCode.FAILED)
