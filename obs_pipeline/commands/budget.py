"""``obs-pipeline budget status``: every budget's spend, state and reset time, from its state store.

It reads the store the config names (the SQLite file under ``service.data_dir``, or Redis), so
it answers whether or not the pipeline is running, and shows what every process sharing the
store sees. It never writes spend.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import click
import orjson

from obs_pipeline.errors import ConfigError, ObsPipelineError
from obs_pipeline.exitcodes import ExitCode

__all__ = ["budget", "status_rows"]


@click.group()
def budget() -> None:
    """Budgets: spend, state and reset times (see docs/budget.md)."""


@budget.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default="pipeline.yaml",
              show_default=True, help="The pipeline config whose budget processors to read.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=20, show_default=True,
              help="Scope values shown per budget, most spent first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document for scripts.")
def status(config_path: Path, limit: int, as_json: bool) -> None:
    """Spend, limit, state and reset time of every budget and its most spent scope values."""
    from obs_pipeline.config import load_config  # noqa: PLC0415 - keep the CLI's start light

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(ExitCode.FAILED)
    except OSError as exc:
        click.echo(f"error: cannot read {config_path}: {exc.strerror or type(exc).__name__}", err=True)
        sys.exit(ExitCode.FAILED)
    try:
        rows = asyncio.run(status_rows(config, limit))
    except ObsPipelineError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(ExitCode.FAILED)
    if as_json:
        sys.stdout.write(orjson.dumps({"budgets": rows}).decode() + "\n")
    else:
        _table(rows)
    sys.exit(ExitCode.OK)


async def status_rows(config: Any, limit: int) -> list[dict[str, Any]]:
    """One row per budget and scope value (a budget without spend has one row with scope_value None).

    Raises:
        StartupError: a Redis store cannot be reached.
    """
    from obs_pipeline.components import Kind  # noqa: PLC0415
    from obs_pipeline.processors.budget.config import NANO  # noqa: PLC0415
    from obs_pipeline.processors.budget.decisions import iso, state_of  # noqa: PLC0415
    from obs_pipeline.processors.budget.processor import make_store, state_path  # noqa: PLC0415
    from obs_pipeline.processors.budget.store import Reading  # noqa: PLC0415
    from obs_pipeline.processors.budget.windows import Window  # noqa: PLC0415
    from obs_pipeline.telemetry.logs import component_logger  # noqa: PLC0415

    rows: list[dict[str, Any]] = []
    for cid, component in config.components(Kind.PROCESSOR).items():
        if component.factory.type != "budget":
            continue
        cfg = component.config
        if not cfg.uses_redis and not state_path(config.data_dir, str(cid)).exists():
            scoped: dict[str, list[tuple[str, Reading]]] = {b.id: [] for b in cfg.budgets}
            store_kind = "sqlite"
        else:
            store = make_store(cfg, config.data_dir, str(cid), component_logger("processor", str(cid)))
            await store.open()
            try:
                now = time.time()
                scoped = {b.id: await store.scopes(b.id, b.window.slot(now), now, limit) for b in cfg.budgets}
            finally:
                await store.close()
            store_kind = store.kind
        now = time.time()
        for b in cfg.budgets:
            window: Window = b.window
            base = {"processor": str(cid), "store": store_kind, "budget": b.id, "scope": b.scope,
                    "window": window.text, "limit": b.limit_usd, "resets_at": iso(window.slot(now).resets_at)}
            if not scoped[b.id]:
                rows.append({**base, "scope_value": None, "spend": 0.0, "state": "ok"})
            for value, reading in scoped[b.id]:
                rows.append({**base, "scope_value": value, "spend": reading.spend / NANO, "state": state_of(b, reading)})
    return rows


_STYLE = {"ok": "green", "warning": "yellow", "exceeded": "bold red"}


def _table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console  # noqa: PLC0415 - rich loads only for a table
    from rich.markup import escape  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table(title="Budgets", title_justify="left")
    for column, justify in (("budget", "left"), ("scope", "left"), ("window", "left"), ("scope value", "left"),
                            ("spend", "right"), ("limit", "right"), ("used", "right"), ("state", "left"),
                            ("resets at (UTC)", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        used = row["spend"] / row["limit"] if row["limit"] else 0.0
        table.add_row(
            row["budget"], row["scope"], row["window"], escape(row["scope_value"] or "-"), f"${row['spend']:,.4f}",
            f"${row['limit']:,.2f}", f"{used:.0%}", f"[{_STYLE[row['state']]}]{row['state']}[/]",
            row["resets_at"] or "never",
        )
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 160, highlight=False)
    if not rows:
        console.print("no budget processors in this config")
        return
    console.print(table)
