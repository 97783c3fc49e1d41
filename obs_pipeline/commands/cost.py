"""``obs-pipeline cost``: spend and tokens from the audit trail, grouped by one key, with totals.

The work is :func:`obs_pipeline.auditquery.cost.cost_report`; this module parses options and prints.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import orjson

from obs_pipeline.auditquery.cost import GROUPS, cost_report
from obs_pipeline.auditquery.filters import Deduper
from obs_pipeline.auditquery.query import matching
from obs_pipeline.commands._trailcli import (
    Problems,
    console_for,
    filter_options,
    make_filter,
    source_options,
    trails_or_exit,
)
from obs_pipeline.exitcodes import ExitCode


@click.command()
@source_options
@filter_options
@click.option("--by", type=click.Choice(GROUPS), default="session", show_default=True, help="Group spend by this key.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document (rows, unpriced, total) for scripts.")
def cost(path: str | None, config: Path | None, by: str, as_json: bool, **filters: Any) -> None:
    """Spend (USD) and tokens per session, model, provider, tenant, user, agent or day.

    Calls the cost processor could not price are one row of their own, never counted as $0.
    Copies of a line written by a retried batch are counted once.
    """
    where = make_filter(filters)
    trails = trails_or_exit(path, config)
    problems = Problems()
    dedupe = Deduper()
    report = cost_report(matching(trails, where, problems, progress=sys.stderr, dedupe=dedupe), by)
    report.duplicates = dedupe.dropped
    problems.finish()
    if as_json:
        sys.stdout.write(orjson.dumps(report.as_dict()).decode() + "\n")
    else:
        from obs_pipeline.auditquery.render import cost_table  # noqa: PLC0415 - rich loads only for a table

        cost_table(report, console_for())
    sys.exit(ExitCode.OK)
