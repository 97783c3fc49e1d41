"""``audit export``: lines for compliance reports, as CSV (a spreadsheet) or JSON (one array).

CSV has one column per audit key in :data:`~obs_pipeline.audit.line.KEYS` order (``detail`` as
its compact JSON), then the trail's ``tenant`` and the figures people sort by (model, provider,
tool, tokens, cost, duration), so a report needs no JSON parsing; a text cell that a spreadsheet
would take for a formula (``=``, ``+``, ``-``, ``@``) is quoted with a leading ``'``. JSON is the lines as written,
in one array, streamed. Either way, nothing is held but the current line.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, Final, TextIO

import orjson

from obs_pipeline.audit.line import KEYS
from obs_pipeline.auditquery.describe import cost_of, tokens_of
from obs_pipeline.auditquery.trail import Line

__all__ = ["CSV_COLUMNS", "FORMATS", "export"]

FORMATS: Final = ("csv", "json")
_EXTRA: Final = ("tenant", "model", "provider", "tool", "input_tokens", "output_tokens", "cost_usd", "unpriced",
                 "duration_ms")
CSV_COLUMNS: Final = (*KEYS, *_EXTRA)


#: A text cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection").
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """A CSV cell: JSON for objects, and text that a spreadsheet would run as a formula quoted with ``'``.

    Audit values come from agents and models (a tool's arguments, a prompt): opening a report must
    not run ``=HYPERLINK(...)`` written by one. Numbers are left as they are.
    """
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        value = orjson.dumps(value).decode()
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _row(line: Line) -> list[Any]:
    record, detail = line.record, line.detail
    tokens = tokens_of(line)
    extra = [line.tenant, detail.get("model"), detail.get("provider"), detail.get("tool"), tokens.get("input"),
             tokens.get("output"), cost_of(line), detail.get("unpriced"), detail.get("duration_ms")]
    return [_cell(record.get(key)) for key in KEYS] + [_cell(value) for value in extra]


def export(lines: Iterable[Line], out: TextIO, output_format: str) -> int:
    """Write ``lines`` to ``out`` as ``csv`` or ``json``; returns how many were written.

    Raises:
        ValueError: unknown ``output_format``.
    """
    if output_format not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, not {output_format!r}")
    count = 0
    if output_format == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for line in lines:
            writer.writerow(_row(line))
            count += 1
        return count
    out.write("[")
    for line in lines:
        out.write(",\n" if count else "\n")
        out.write(line.raw.decode("utf-8", errors="replace"))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count
