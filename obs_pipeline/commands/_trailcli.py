"""The options and plumbing that ``audit``, ``cost`` and ``replay`` share: where the trail is, the filters, output.

Problems met while reading (a skipped line, an unreadable file) go to stderr as they are found,
the first :data:`MAX_REPORTS` of them in full and then a count, so a badly damaged trail
does not drown the output. A trail that cannot be found at all exits 1.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click

from obs_pipeline.auditquery.filters import Filter, parse_when
from obs_pipeline.auditquery.source import SourceError, resolve_trails
from obs_pipeline.auditquery.trail import Trail
from obs_pipeline.exitcodes import ExitCode

__all__ = ["MAX_REPORTS", "Problems", "console_for", "filter_options", "make_filter", "source_options", "trails_or_exit"]

MAX_REPORTS = 20
#: Width of tables written to a pipe or file (a terminal uses its own).
PIPE_WIDTH = 160

F = TypeVar("F", bound=Callable[..., Any])


def source_options(command: F) -> F:
    """``--path`` and ``--config``: where the trail is."""
    command = click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
                           help="A pipeline.yaml: read every jsonl_audit exporter's path.")(command)
    return click.option("--path", "path", metavar="FILE",
                        help="The live audit file (its rotated files are read too); {placeholders} are globbed.")(command)


def filter_options(command: F) -> F:
    """The filters every reading command takes (each may be given several times: any of them matches)."""
    options = [
        click.option("--until", help="Only lines before this time (ISO 8601, or an age: 15m, 2h, 1d)."),
        click.option("--since", help="Only lines at or after this time (ISO 8601, or an age: 15m, 2h, 1d)."),
        click.option("--user", "users", multiple=True, help="Only this user_id."),
        click.option("--agent", "agents", multiple=True, help="Only this agent."),
        click.option("--service", "services", multiple=True, help="Only this service."),
        click.option("--tenant", "tenants", multiple=True,
                     help="Only this tenant (the value of the path's {resource.tenant.id} placeholder)."),
        click.option("--event-type", "event_types", multiple=True, help="Only this event_type (chat, execute_tool...)."),
        click.option("--result", "results", multiple=True, help="Only this result (allow, deny, error)."),
        click.option("--category", "categories", multiple=True,
                     help="Only this category (llm, tool, agent, security, budget, config, other)."),
        click.option("--session", "sessions", multiple=True,
                     help="Only this session (lines of its traces without a session_id included)."),
    ]
    for option in options:
        command = option(command)
    return command


def make_filter(options: dict[str, Any]) -> Filter:
    """The :class:`Filter` of the parsed filter options.

    Raises:
        click.BadParameter: a ``--since``/``--until`` that is neither a time nor an age.
    """
    bounds: dict[str, str | None] = {}
    for name in ("since", "until"):
        value = options.get(name)
        try:
            bounds[name] = None if value is None else parse_when(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=f"--{name}") from None
    def values(name: str) -> frozenset[str]:
        return frozenset(options.get(name) or ())

    return Filter(categories=values("categories"), results=values("results"), event_types=values("event_types"),
                  sessions=values("sessions"), tenants=values("tenants"), services=values("services"),
                  agents=values("agents"), users=values("users"), since=bounds["since"], until=bounds["until"])


def trails_or_exit(path: str | None, config: Path | None, *, must_exist: bool = True) -> list[Trail]:
    """The trails named by ``--path``/``--config``; a clear message and exit 1 when there are none.

    With ``must_exist`` (all but ``replay tail``, which waits for a file to appear), trails that
    have no file at all (a mistyped path, a missing directory) count as none.
    """
    try:
        trails = resolve_trails(path, config)
    except SourceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(ExitCode.FAILED)
    if must_exist and not any(trail.files() for trail in trails):
        where = ", ".join(str(trail.live) for trail in trails)
        missing = [str(trail.live.parent) for trail in trails if not trail.live.parent.is_dir()]
        because = f" (the directory {', '.join(missing)} does not exist)" if missing else ""
        click.echo(f"error: no audit file at {where}{because}", err=True)
        sys.exit(ExitCode.FAILED)
    return trails


@dataclass
class Problems:
    """Collects reading problems and shows them on stderr (the first ones in full, then a count)."""

    stream: TextIO = field(default_factory=lambda: sys.stderr)
    count: int = 0

    def __call__(self, message: str) -> None:
        """Report one problem."""
        self.count += 1
        if self.count <= MAX_REPORTS:
            self.stream.write(f"warning: {message}\n")

    def finish(self) -> None:
        """Say how many were not shown."""
        if self.count > MAX_REPORTS:
            self.stream.write(f"warning: {self.count - MAX_REPORTS} more problems not shown ({self.count} in all)\n")


def console_for(stream: TextIO | None = None) -> Any:
    """A rich console on stdout: the terminal's width there, :data:`PIPE_WIDTH` into a pipe or file."""
    from rich.console import Console  # noqa: PLC0415 - rich loads only for a table

    out = sys.stdout if stream is None else stream
    terminal = out.isatty()
    width = None if terminal else max(PIPE_WIDTH, shutil.get_terminal_size((PIPE_WIDTH, 24)).columns)
    return Console(file=out, width=width, soft_wrap=False, highlight=False)
