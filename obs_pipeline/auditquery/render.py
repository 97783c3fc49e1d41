"""Tables for people: the ``rich`` rendering of lines, cost reports, sessions and turns.

Everything here writes to a :class:`rich.console.Console` given by the command (stdout), so
tests render into a string. Cells are escaped: a line's values are data, never markup. A long
list of lines is drawn as several tables of :data:`ROWS_PER_TABLE` rows, so nothing holds more.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Final

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from obs_pipeline.audit.line import DENY, ERROR
from obs_pipeline.auditquery.cost import Amounts, CostReport
from obs_pipeline.auditquery.describe import cost_of, kind_of, subject, summary, tokens_of
from obs_pipeline.auditquery.replay import SessionSummary, Turn
from obs_pipeline.auditquery.trail import Line

__all__ = ["NARROW_WIDTH", "ROWS_PER_TABLE", "cost_table", "event_text", "lines_table", "sessions_table", "short_time",
           "turns_view"]

ROWS_PER_TABLE: Final = 1000
#: Below this many columns, tables leave out their least needed columns instead of wrapping every cell.
NARROW_WIDTH: Final = 120
_RESULT_STYLE: Final = {ERROR: "red", DENY: "yellow"}


def short_time(stamp: str) -> str:
    """``2026-03-17T10:30:45.100000Z`` -> ``2026-03-17 10:30:45.100``."""
    return stamp[:23].replace("T", " ") if len(stamp) >= 23 else stamp


def _result(line: Line) -> Text:
    result = str(line.record.get("result") or "")
    return Text(result, style=_RESULT_STYLE.get(result, ""))


def _chunks(lines: Iterable[Line]) -> Iterator[list[Line]]:
    iterator = iter(lines)
    while chunk := list(islice(iterator, ROWS_PER_TABLE)):
        yield chunk


def lines_table(lines: Iterable[Line], console: Console, *, tenants: bool = False) -> int:
    """Draw ``lines`` as tables (time, category, event, result, session, subject, summary); returns the count."""
    count = 0
    for chunk in _chunks(lines):
        narrow = console.width < NARROW_WIDTH  # an 80-column terminal: the session and tenant columns go
        table = Table(show_lines=False, header_style="bold")
        table.add_column("time", no_wrap=True)
        for column in ("category", "event", "result", *(() if narrow else ("session",)),
                       *(("tenant",) if tenants and not narrow else ()), "subject"):
            table.add_column(column, overflow="fold", no_wrap=column in ("category", "result"))
        table.add_column("summary", overflow="fold", ratio=1)
        for line in chunk:
            stamp = short_time(line.timestamp)
            cells: list[str | Text] = [stamp[5:19] if narrow else stamp,
                                       escape(str(line.record.get("category") or "")),
                                       escape(str(line.record.get("event_type") or "")), _result(line)]
            if not narrow:
                cells.append(escape(line.text("session_id") or ""))
                if tenants:
                    cells.append(escape(line.tenant or ""))
            cells += [escape(subject(line)), escape(summary(line))]
            table.add_row(*cells)
        console.print(table)
        count += len(chunk)
    if not count:
        console.print("no matching audit lines")
    return count


def _money(value: float | None) -> str:
    return "" if value is None else f"${value:,.6f}"


_TOKEN_COLUMNS: Final = (("input tok", "input"), ("output tok", "output"), ("cache read", "cache_read"),
                         ("cache write", "cache_write"), ("reasoning", "reasoning"), ("total tok", "total"))


def _amount_cells(amounts: Amounts, columns: list[str], *, priced: bool) -> list[str]:
    return [f"{amounts.calls:,}", *(f"{getattr(amounts, name):,}" for name in columns),
            _money(amounts.cost_usd) if priced else "unpriced"]


def cost_table(report: CostReport, console: Console) -> None:
    """The cost report: one row per key, the unpriced row, the total row.

    Token columns that are zero in every row (no cache, no reasoning) are left out, and figures
    are never cut to fit a narrow terminal: a long key wraps instead.
    """
    columns = [name for _, name in _TOKEN_COLUMNS if getattr(report.total, name)] or ["input", "output"]
    rows: list[tuple[Text, list[str], bool]] = [(Text(key), _amount_cells(amounts, columns, priced=True), False)
                                                for key, amounts in report.rows]
    if report.unpriced.calls:
        rows.append((Text("unpriced", style="yellow"), _amount_cells(report.unpriced, columns, priced=False), False))
    if rows:
        rows[-1] = (rows[-1][0], rows[-1][1], True)
    rows.append((Text("total", style="bold"), _amount_cells(report.total, columns, priced=True), False))
    headers = ["calls", *(header for header, name in _TOKEN_COLUMNS if name in columns), "cost USD"]
    table = Table(header_style="bold")
    table.add_column(report.by, overflow="fold")
    for index, header in enumerate(headers):
        widest = max(len(header), *(len(cells[index]) for _, cells, _ in rows))
        table.add_column(header, justify="right", min_width=widest, no_wrap=True)
    for label, cells, section in rows:
        table.add_row(label, *cells, end_section=section)
    console.print(table)
    if report.unpriced.calls:
        shown = ", ".join(f"{key} ({calls:,})" for key, calls in report.unpriced_keys[:5])
        more = f", +{len(report.unpriced_keys) - 5} more" if len(report.unpriced_keys) > 5 else ""
        console.print(Text(f"{report.unpriced.calls:,} of {report.total.calls:,} calls could not be priced "
                           f"(the total spend leaves them out); by {report.by}: {shown}{more}"))
    if report.invalid_tokens:
        console.print(Text(f"{report.invalid_tokens:,} token count(s) left out: negative or not an integer",
                           style="yellow"))


def sessions_table(sessions: list[SessionSummary], console: Console) -> None:
    """``replay list``: one row per session, most recent first (times to the minute: the JSON has them whole)."""
    if not sessions:
        console.print("no sessions in the audit trail")
        return
    narrow = console.width < NARROW_WIDTH  # an 80-column terminal: first time, unpriced and agents go
    table = Table(header_style="bold")
    table.add_column("session", overflow="fold", min_width=8)
    for column in ("last",) if narrow else ("first", "last"):
        table.add_column(column, no_wrap=True)
    for column in ("events", "llm", "tools", "errors", "cost USD", *(() if narrow else ("unpriced",))):
        table.add_column(column, justify="right", no_wrap=True)
    if not narrow:
        table.add_column("agents", overflow="fold")
    for item in sessions:
        cells: list[str | Text] = [escape(item.session)]
        if not narrow:
            cells.append(short_time(item.first)[:16])
        cells += [short_time(item.last)[:16], f"{item.events:,}", f"{item.llm_calls:,}", f"{item.tool_calls:,}",
                  Text(f"{item.errors:,}", style="red" if item.errors else ""), _money(item.cost_usd)]
        if not narrow:
            cells += [Text(f"{item.unpriced_calls:,}", style="yellow" if item.unpriced_calls else ""),
                      escape(", ".join(sorted(item.agents)))]
        table.add_row(*cells)
    console.print(table)


def _figures(line: Line) -> str:
    tokens = tokens_of(line)
    parts = []
    if tokens:
        parts.append(f"{tokens.get('input', 0):,}→{tokens.get('output', 0):,} tok" if "total" not in tokens
                     else f"{tokens['total']:,} tok")
    cost = cost_of(line)
    if cost is not None:
        parts.append(f"${cost:.6f}")
    elif line.detail.get("unpriced") is True:
        parts.append("unpriced")
    duration = line.detail.get("duration_ms")
    if isinstance(duration, (int, float)):
        parts.append(f"{duration:,.0f} ms")
    return " · ".join(parts)


def event_text(line: Line, depth: int = 0) -> Text:
    """One line as one row of a timeline: time, kind, subject, result, figures, summary."""
    text = Text(f"{short_time(line.timestamp)[11:]} ")
    text.append("  " * depth)
    text.append(f"{kind_of(line):<8} ", style="bold")
    text.append(subject(line))
    result = str(line.record.get("result") or "")
    if result in _RESULT_STYLE:
        text.append(f" [{result}]", style=_RESULT_STYLE[result])
    figures = _figures(line)
    if figures:
        text.append(f"  {figures}", style="dim")
    about = summary(line)
    if about:
        text.append(f"  {about}")
    return text


def turns_view(turns: Iterable[tuple[Turn, list[tuple[Line, int]]]], console: Console) -> None:
    """``replay show``: each turn's header and the steps chosen from it."""
    shown = False
    for turn, steps in turns:
        shown = True
        totals = turn.totals()
        head = Text(f"Turn {turn.number}", style="bold cyan")
        head.append(f"  {short_time(totals['started'])}  {subject(turn.root)}")
        parts = [f"{totals['llm_calls']} LLM", f"{totals['tool_calls']} tool"]
        if totals["errors"]:
            parts.append(f"{totals['errors']} errors")
        if totals["cost_usd"] is not None:
            parts.append(f"${totals['cost_usd']:.6f}")
        if isinstance(totals["duration_ms"], (int, float)):
            parts.append(f"{totals['duration_ms'] / 1000:.2f} s")
        head.append("  " + " · ".join(parts), style="dim")
        console.print(head)
        for line, depth in steps:
            console.print(event_text(line, depth + 1))
    if not shown:
        console.print("no matching turns")
