"""A byte-level first look that spares parsing the lines a filter cannot match.

Parsing is most of a query's cost (``bench/audit_query.py``), and most lines of a selective query
(``--result error``, ``--category security``) are thrown away after it. A line can only have
``"category": "tool"`` if its bytes hold ``"tool"``, whatever the writer's spacing, so
:class:`QuickCheck` asks that first: one substring search per filter value, in C. A line that
fails it is handed to the reader as a blank line, which keeps the line numbers and costs nothing.

Only what looks like a whole JSON object (``{`` ... ``}`` and its newline) is skipped this way:
a garbage line, a partial last line and anything else odd still go to the parser, and are
reported as before. (Damage *inside* a well-formed-looking line that no filter value matches is
not reported: ``audit verify`` is the integrity check.) Values that are not plain ASCII, or
hold a quote or a backslash, may be written escaped, so they turn the check off for their filter.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator

import orjson

from obs_pipeline.audit.reader import BadLine, Entry, read_entries

__all__ = ["QuickCheck", "quick_entries"]


class QuickCheck:
    """Whether a line's bytes may match: for every filter, one of its values appears as a JSON string.

    Args:
        groups: one set of accepted values per filter (an empty set: no such filter).
    """

    def __init__(self, groups: Iterable[frozenset[str]]) -> None:
        self.groups: list[tuple[bytes, ...]] = []
        for values in groups:
            if not values or any(not value.isascii() or '"' in value or "\\" in value for value in values):
                continue
            self.groups.append(tuple(orjson.dumps(value) for value in values))

    def __bool__(self) -> bool:
        """Whether there is anything to check (else every line is parsed)."""
        return bool(self.groups)

    def may_match(self, line: bytes) -> bool:
        """False only for a whole-looking object line that holds none of some filter's values."""
        if not (line.startswith(b"{") and line.endswith(b"}\n")):
            return True
        return all(any(token in line for token in tokens) for tokens in self.groups)


def quick_entries(path: str | os.PathLike[str], check: QuickCheck,
                  on_bad: Callable[[BadLine], None] | None = None) -> Iterator[Entry]:
    """As :func:`obs_pipeline.audit.reader.read_entries`, parsing only the lines ``check`` lets through.

    Raises:
        OSError: the file cannot be opened or read.
    """
    return read_entries(path, on_bad, keep=check.may_match)
