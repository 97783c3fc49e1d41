"""Path templates: ``audit/{resource.tenant.id}/{session_id}.jsonl``, one trail per value.

A placeholder is ``{<line key>}`` (a top-level key of the audit line: ``session_id``,
``service``, ``agent``, ``user_id``, ``task_id``, ``category``, ``event_type``, ``result``),
``{resource.<attribute>}`` (a resource attribute of the span or log record), or ``{tenant}``,
short for ``{resource.tenant.id}``. ``{{`` and ``}}`` are literal braces.

Values come from the telemetry, so they are never trusted as path parts: a missing or empty
value becomes the fallback (``path_fallback``), and a value is *sanitized* to one harmless file
name component. Only letters, digits and ``. _ - @ + =`` are kept (any other character,
separators, NUL and controls included, becomes ``_``), a leading dot becomes ``_`` (no ``..``,
no hidden files), and a value longer than :data:`MAX_VALUE_CHARS` is cut and given 8 hex digits
of its SHA-256 (two long values stay apart). Two values that sanitize alike share a file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LINE_KEYS", "MAX_VALUE_CHARS", "PathTemplate", "TemplateError", "sanitize"]

#: The audit line's keys a template may name.
LINE_KEYS = frozenset({"session_id", "service", "agent", "user_id", "task_id", "category", "event_type", "result"})
RESOURCE_PREFIX = "resource."
ALIASES = {"tenant": "resource.tenant.id"}
MAX_VALUE_CHARS = 100
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_KEEP = frozenset("._-@+=")


class TemplateError(ValueError):
    """The template cannot be used (an unknown placeholder, a lone brace)."""


def sanitize(value: str, fallback: str) -> str:
    """``value`` as one safe file name component (``fallback`` when it is empty)."""
    if not value:
        value = fallback
    cleaned = "".join(c if c.isalnum() or c in _KEEP else "_" for c in value)
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    if len(cleaned) > MAX_VALUE_CHARS:
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        cleaned = f"{cleaned[:MAX_VALUE_CHARS - 9]}-{digest}"
    return cleaned


@dataclass(frozen=True)
class PathTemplate:
    """A parsed ``path``: literal text and placeholders, alternating (``parts[1::2]`` are the names)."""

    source: str
    parts: tuple[str, ...]
    fallback: str

    @classmethod
    def parse(cls, source: str, fallback: str = "unknown") -> PathTemplate:
        """Parse ``source``.

        Raises:
            TemplateError: a lone brace, or a placeholder that is neither a line key nor ``resource.<attr>``.
        """
        parts: list[str] = []
        text: list[str] = []
        pos = 0
        for match in _PLACEHOLDER.finditer(source):
            text.append(source[pos:match.start()])
            pos = match.end()
            token = match.group(0)
            if token in ("{{", "}}"):
                text.append(token[0])
                continue
            name = match.group(1)
            if name is None:
                raise TemplateError(f"a lone {token!r} at character {match.start() + 1} (write {token * 2} for a brace)")
            name = ALIASES.get(name.strip(), name.strip())
            if name not in LINE_KEYS and not (name.startswith(RESOURCE_PREFIX) and len(name) > len(RESOURCE_PREFIX)):
                known = ", ".join(sorted(LINE_KEYS | ALIASES.keys()))
                raise TemplateError(f"unknown placeholder {{{name}}}: use {known} or resource.<attribute>")
            parts += ["".join(text), name]
            text = []
        text.append(source[pos:])
        parts.append("".join(text))
        return cls(source, tuple(parts), sanitize(fallback, "unknown"))

    @property
    def static(self) -> bool:
        """Whether the path has no placeholder (one file, the fast path)."""
        return len(self.parts) == 1

    @property
    def resource_keys(self) -> tuple[str, ...]:
        """The resource attributes the template reads."""
        return tuple(n[len(RESOURCE_PREFIX):] for n in self.parts[1::2] if n.startswith(RESOURCE_PREFIX))

    @property
    def line_keys(self) -> tuple[str, ...]:
        """The line keys the template reads."""
        return tuple(n for n in self.parts[1::2] if n in LINE_KEYS)

    @property
    def root(self) -> Path:
        """The directory every resolved path lies under: the literal text before the first placeholder."""
        head = Path(self.parts[0]).expanduser()
        return head if self.static or self.parts[0].endswith("/") else head.parent

    def resolve(self, line: dict[str, Any], resource: dict[str, str]) -> Path:
        """The file for a line with top-level keys ``line`` from a resource with attributes ``resource``."""
        out = [self.parts[0]]
        for index in range(1, len(self.parts), 2):
            name = self.parts[index]
            raw = resource.get(name[len(RESOURCE_PREFIX):]) if name.startswith(RESOURCE_PREFIX) else line.get(name)
            out += [sanitize(raw if isinstance(raw, str) else "", self.fallback), self.parts[index + 1]]
        return Path("".join(out)).expanduser()

