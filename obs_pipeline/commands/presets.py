"""``obs-pipeline presets``: list the file_tail format presets, or print one (a YAML file to copy and edit)."""

from __future__ import annotations

import sys

import click

from obs_pipeline.exitcodes import ExitCode


def preset_table() -> list[tuple[str, str, str, str]]:
    """``(name, format, written by, where it usually is)`` for every shipped preset, by name."""
    from obs_pipeline.receivers.file_tail import presets  # noqa: PLC0415 - only this command needs them

    rows = []
    for name in presets.names():
        doc = presets.load(name)
        rows.append((name, str(doc.get("format", "json")), str(doc.get("written_by", "")),
                     ", ".join(doc.get("include_example", []))))
    return rows


@click.command()
@click.argument("name", required=False)
def presets(name: str | None) -> None:
    """List the file_tail presets, or print preset NAME as YAML.

    A printed preset is exactly what a file_tail receiver accepts under mapping_file, so a
    framework with no preset starts from a copy of the closest one.
    """
    from obs_pipeline.receivers.file_tail import presets as shipped  # noqa: PLC0415

    if name is None:
        rows = preset_table()
        widths = [max(len(r[i]) for r in [("NAME", "FORMAT", "WRITTEN BY", "USUAL PATH"), *rows]) for i in range(3)]
        for row in [("NAME", "FORMAT", "WRITTEN BY", "USUAL PATH"), *rows]:
            click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
        return
    try:
        click.echo(shipped.text(name), nl=False)
    except KeyError:
        click.echo(f"obs-pipeline presets: unknown preset {name!r}; known: {', '.join(shipped.names())}", err=True)
        sys.exit(ExitCode.USAGE)
