"""``obs-pipeline replay list | show SESSION | tail SESSION``: a session's timeline from the audit trail.

The work is :mod:`obs_pipeline.auditquery.replay` (turns) and :mod:`obs_pipeline.auditquery.follow`
(``tail``); this module parses options and prints.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import orjson

from obs_pipeline.auditquery.describe import KINDS, is_problem, kind_of
from obs_pipeline.auditquery.filters import Deduper, Filter
from obs_pipeline.auditquery.query import matching
from obs_pipeline.auditquery.replay import build_turns, list_sessions, select_steps
from obs_pipeline.commands._trailcli import (
    Problems,
    console_for,
    filter_options,
    make_filter,
    source_options,
    trails_or_exit,
)
from obs_pipeline.exitcodes import ExitCode

_KIND_CHOICE = click.Choice([*KINDS, "other"])


@click.group()
def replay() -> None:
    """Sessions and their timelines, turn by turn, read from the audit trail."""


@replay.command("list")
@source_options
@filter_options
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="The most recent N sessions.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one session each.")
def list_command(path: str | None, config: Path | None, limit: int, as_json: bool, **filters: Any) -> None:
    """The sessions in the trail, most recent first: events, calls, errors, spend."""
    where = make_filter(filters)
    trails = trails_or_exit(path, config)
    problems = Problems()
    sessions = list_sessions(matching(trails, where, problems, progress=sys.stderr, dedupe=Deduper()))[:limit]
    problems.finish()
    if as_json:
        for item in sessions:
            sys.stdout.write(orjson.dumps(item.as_dict()).decode() + "\n")
    else:
        from obs_pipeline.auditquery.render import sessions_table  # noqa: PLC0415

        sessions_table(sessions, console_for())
    sys.exit(ExitCode.OK)


def _step_options(command: Any) -> Any:
    command = click.option("--raw", is_flag=True, help="The audit lines as written (JSON lines), in timeline order.")(command)
    command = click.option("--json", "as_json", is_flag=True,
                           help="JSON lines: one turn each, with its figures and steps.")(command)
    command = click.option("--kind", "kinds", multiple=True, type=_KIND_CHOICE,
                           help="Only steps of this kind (may be repeated).")(command)
    return click.option("--errors", is_flag=True, help="Only steps whose result is error or deny.")(command)


@replay.command("show")
@click.argument("session")
@source_options
@_step_options
@click.option("--turn", type=click.IntRange(min=1), help="Only turn N (numbered from 1 in start order).")
def show(*, session: str, path: str | None, config: Path | None, errors: bool, kinds: tuple[str, ...],
         as_json: bool, raw: bool, turn: int | None) -> None:
    """SESSION's timeline: turns (agent invocations) with their LLM calls, tool calls, errors, budget and security events."""
    trails = trails_or_exit(path, config)
    problems = Problems()
    lines = list(matching(trails, Filter(sessions=frozenset({session})), problems, progress=sys.stderr,
                          dedupe=Deduper()))
    problems.finish()
    if not lines:
        click.echo(f"no audit lines for session {session!r}", err=True)
        sys.exit(ExitCode.FAILED)
    chosen = select_steps(build_turns(lines), kinds=frozenset(kinds), errors=errors, turn=turn)
    if raw:
        for _, steps in chosen:
            for line, _depth in steps:
                sys.stdout.write(line.raw.decode("utf-8", errors="replace") + "\n")
    elif as_json:
        for each, steps in chosen:
            document = {**each.totals(), "steps": [{"depth": depth, "kind": kind_of(line), "line": line.record}
                                                   for line, depth in steps]}
            sys.stdout.write(orjson.dumps(document).decode() + "\n")
    else:
        from obs_pipeline.auditquery.render import turns_view  # noqa: PLC0415

        console = console_for()
        console.print(f"session {session}: {len(lines)} lines")
        turns_view(chosen, console)
    sys.exit(ExitCode.OK)


@replay.command("tail")
@click.argument("session")
@source_options
@_step_options
@click.option("--poll", type=click.FloatRange(min=0.01), default=0.25, show_default=True,
              help="Seconds between looks at the file when nothing new came.")
def tail(*, session: str, path: str | None, config: Path | None, errors: bool, kinds: tuple[str, ...],
         as_json: bool, raw: bool, poll: float) -> None:
    """Follow SESSION as its lines arrive (its past lines first), across rotations, until Ctrl-C."""
    from obs_pipeline.auditquery.follow import tail_session  # noqa: PLC0415
    from obs_pipeline.auditquery.render import event_text  # noqa: PLC0415

    trails = trails_or_exit(path, config, must_exist=False)  # a live file not written yet is waited for
    problems = Problems()
    console = console_for()
    wanted = frozenset(kinds)
    try:
        for line in tail_session(trails, frozenset({session}), problems, poll=poll):
            if (wanted and kind_of(line) not in wanted) or (errors and not is_problem(line)):
                continue
            if raw or as_json:
                sys.stdout.write(line.raw.decode("utf-8", errors="replace") + "\n")
                sys.stdout.flush()
            else:
                console.print(event_text(line))
    except KeyboardInterrupt:
        pass
    sys.exit(ExitCode.OK)
