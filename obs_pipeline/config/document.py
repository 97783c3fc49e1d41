"""A parsed config file that remembers where every key and value came from.

Every later pass (env substitution, schema, graph, component checks) reports problems by JSON
path; :class:`Findings` turns a path into ``file:line:column`` by looking the path (or its nearest
ancestor, for values that only exist as defaults) up in the position maps built by ``yamlload``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from obs_pipeline.errors import Problem

JsonPath = tuple[str | int, ...]
Position = tuple[int, int]  # 1-based line and column


def format_path(path: JsonPath) -> str:
    """``("exporters", "otlp/backend", "headers", 0)`` -> ``exporters.otlp/backend.headers[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def is_under(path: JsonPath, ancestor: JsonPath) -> bool:
    """True when ``path`` is ``ancestor`` or lies inside it."""
    return path[: len(ancestor)] == ancestor


@dataclass
class Document:
    """Plain data (dicts, lists, scalars) plus the position of each key and each value."""

    file: str
    data: Any
    value_pos: dict[JsonPath, Position] = field(default_factory=dict)
    key_pos: dict[JsonPath, Position] = field(default_factory=dict)

    def exact_position(self, path: JsonPath, *, key: bool = False) -> Position | None:
        """The position written in the file for ``path`` itself, or None (a filled-in default)."""
        first, second = (self.key_pos, self.value_pos) if key else (self.value_pos, self.key_pos)
        return first.get(path) or second.get(path)

    def position(self, path: JsonPath, *, key: bool = False) -> Position:
        """Where to point for ``path``: itself, else the key of its nearest written ancestor."""
        found = self.exact_position(path, key=key)
        if found:
            return found
        parent = tuple(path)
        while parent:
            parent = parent[:-1]
            found = self.key_pos.get(parent) or self.value_pos.get(parent)
            if found:
                return found
        return (0, 0)

    def get(self, path: JsonPath, default: Any = None) -> Any:
        """The value at ``path``, or ``default`` when any step is missing or of the wrong shape."""
        node = self.data
        for part in path:
            in_list = isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node)
            if in_list or (isinstance(part, str) and isinstance(node, dict) and part in node):
                node = node[part]
            else:
                return default
        return node


@dataclass
class Findings:
    """Every problem found in one file so far, with the JSON paths that have errors."""

    doc: Document
    problems: list[Problem] = field(default_factory=list)
    error_paths: set[JsonPath] = field(default_factory=set)

    def add(self, path: JsonPath, message: str, *, key: bool = False, severity: str = "error") -> None:
        """Record a problem at ``path`` (``key=True`` points at the key rather than the value)."""
        line, column = self.doc.position(path, key=key)
        self.problems.append(Problem(format_path(path), message, self.doc.file, line, column, severity))
        if severity == "error":
            self.error_paths.add(tuple(path))

    def has_error_under(self, path: JsonPath) -> bool:
        """True when an error was recorded at ``path`` or anywhere inside it."""
        return any(is_under(p, path) for p in self.error_paths)

    def has_error_at_or_above(self, path: JsonPath) -> bool:
        """True when an error was recorded at ``path`` or at one of its ancestors."""
        return any(is_under(path, p) for p in self.error_paths)

    @property
    def has_errors(self) -> bool:
        """True when at least one problem is an error (not a warning)."""
        return any(p.severity == "error" for p in self.problems)

    def sorted(self) -> list[Problem]:
        """Problems in file order (file-level ones first), without duplicates."""
        unique = list(dict.fromkeys(self.problems))
        return sorted(unique, key=lambda p: (p.line, p.column))
