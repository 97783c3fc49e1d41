"""The ``obs-pipeline`` command: a thin shim over plain functions that tests call directly.

Only this module calls ``sys.exit``. Exit codes are named constants (DESIGN §7).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from obs_pipeline import __version__

EXIT_OK = 0
EXIT_INVALID = 1  # invalid config, or a component failed to start
EXIT_USAGE = 2  # click's own code for bad arguments


@click.group(context_settings={"auto_envvar_prefix": "OBS_PIPELINE", "help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="obs-pipeline")
def main() -> None:
    """obs-pipeline: a telemetry pipeline for AI agents.

    One YAML file wires receivers (OTLP, stdin) through processors (batch, ...) to exporters
    (JSONL audit log, debug, ...). See docs/ for every component and option.
    """


@main.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
def run(config: Path) -> None:
    """Validate CONFIG, then run the pipeline until SIGTERM/SIGINT (or end of stdin)."""
    from obs_pipeline.run import run_pipeline  # noqa: PLC0415  (keeps `validate` light)

    sys.exit(run_pipeline(config))


@main.command()
@click.argument("configs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True,
    envvar="OBS_PIPELINE_VALIDATE_FORMAT",
    help="json prints one machine-readable report for CI.",
)
def validate(configs: tuple[Path, ...], output_format: str) -> None:
    """Check CONFIGS (schema and graph) without starting anything. Exit 0 valid, 1 invalid, 2 usage.

    The report goes to stdout: one file:line:col line per problem, then a summary line per file.
    """
    from obs_pipeline.config import validate_files  # noqa: PLC0415

    sys.exit(validate_files(list(configs), output_format=output_format))


@main.command()
@click.option(
    "--docs", "docs_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Instead of printing the schema, write the component reference pages into this directory.",
)
def schema(docs_dir: Path | None) -> None:
    """Print the composed JSON Schema of pipeline.yaml (for editors), or write docs with --docs."""
    import json  # noqa: PLC0415

    from obs_pipeline.config import SchemaError, compose_schema  # noqa: PLC0415
    from obs_pipeline.docsgen import write_component_docs  # noqa: PLC0415

    try:
        if docs_dir is not None:
            for path in write_component_docs(docs_dir):
                click.echo(str(path))
            return
        click.echo(json.dumps(compose_schema(), indent=2, ensure_ascii=False))
    except (SchemaError, OSError) as exc:
        click.echo(f"obs-pipeline schema: {exc}", err=True)
        sys.exit(EXIT_INVALID)
