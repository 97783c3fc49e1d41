"""The reading subcommands of ``obs-pipeline audit``: ``recent``, ``security``, ``query``, ``export``.

Kept apart from ``commands/audit.py`` (the group, and ``verify``), which adds them with
:data:`READ_COMMANDS`. The work is :mod:`obs_pipeline.auditquery`; this module parses options
and prints: a table in a terminal, ``--json`` for the lines exactly as written.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from itertools import islice
from pathlib import Path
from typing import Any

import click

from obs_pipeline.auditquery.filters import security_filter
from obs_pipeline.auditquery.query import last, matching
from obs_pipeline.auditquery.trail import Line
from obs_pipeline.commands._trailcli import (
    Problems,
    console_for,
    filter_options,
    make_filter,
    source_options,
    trails_or_exit,
)
from obs_pipeline.exitcodes import ExitCode

__all__ = ["READ_COMMANDS", "export", "query", "recent", "security"]

_JSON_HELP = "JSON lines: each audit line exactly as written, for scripts."


def _show(lines: Iterable[Line], as_json: bool, *, tenants: bool) -> None:
    if as_json:
        write = sys.stdout.buffer.write
        for line in lines:
            write(line.raw + b"\n")
        sys.stdout.flush()
        return
    from obs_pipeline.auditquery.render import lines_table  # noqa: PLC0415 - rich loads only for a table

    lines_table(lines, console_for(), tenants=tenants)


def _read_last(path: str | None, config: Path | None, filters: dict[str, Any], limit: int, as_json: bool, *,
               security: bool) -> None:
    where = make_filter(filters)
    if security:
        where = security_filter(where)
    trails = trails_or_exit(path, config)
    problems = Problems()
    shown = last(matching(trails, where, problems, progress=sys.stderr), limit)
    problems.finish()
    _show(shown, as_json, tenants=any(trail.tenant is not None for trail in trails))
    sys.exit(ExitCode.OK)


@click.command()
@source_options
@filter_options
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Show the last N lines.")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
def recent(path: str | None, config: Path | None, limit: int, as_json: bool, **filters: Any) -> None:
    """The last audit lines (across rotated and compressed files), oldest of them first."""
    _read_last(path, config, filters, limit, as_json, security=False)


@click.command()
@source_options
@filter_options
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Show the last N events.")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
def security(path: str | None, config: Path | None, limit: int, as_json: bool, **filters: Any) -> None:
    """The last security events: category security (redacted secrets, guardrails) and every deny."""
    _read_last(path, config, filters, limit, as_json, security=True)


@click.command()
@source_options
@filter_options
@click.option("--limit", type=click.IntRange(min=1), help="Stop after the first N matching lines.")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
def query(path: str | None, config: Path | None, limit: int | None, as_json: bool, **filters: Any) -> None:
    """Every audit line that matches the filters, in trail order."""
    where = make_filter(filters)
    trails = trails_or_exit(path, config)
    problems = Problems()
    lines: Iterable[Line] = matching(trails, where, problems, progress=sys.stderr)
    if limit is not None:
        lines = islice(lines, limit)
    _show(lines, as_json, tenants=any(trail.tenant is not None for trail in trails))
    problems.finish()
    sys.exit(ExitCode.OK)


@click.command()
@source_options
@filter_options
@click.option("--format", "output_format", type=click.Choice(["csv", "json"]), default="csv", show_default=True,
              help="csv: one column per key plus model, tokens, cost; json: one array of the lines as written.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file (default: stdout).")
def export(path: str | None, config: Path | None, output_format: str, output: Path | None, **filters: Any) -> None:
    """Matching audit lines as a CSV or JSON file, for compliance reports."""
    from obs_pipeline.auditquery.export import export as write_export  # noqa: PLC0415

    where = make_filter(filters)
    trails = trails_or_exit(path, config)
    problems = Problems()
    lines = matching(trails, where, problems, progress=sys.stderr)
    if output is None:
        count = write_export(lines, sys.stdout, output_format)
    else:
        with output.open("w", encoding="utf-8", newline="") as stream:
            count = write_export(lines, stream, output_format)
        click.echo(f"{count} lines written to {output}", err=True)
    problems.finish()
    sys.exit(ExitCode.OK)


#: What ``commands/audit.py`` adds to its group.
READ_COMMANDS = (recent, security, query, export)
