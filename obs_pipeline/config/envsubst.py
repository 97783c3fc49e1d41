"""``${env:VAR}`` substitution, after YAML parsing, the way the collector's confmap does it.

* ``${env:VAR}``, ``${VAR}`` and ``${env:VAR:-default}`` (also ``${VAR:-default}``); ``$$`` is a
  literal ``$``; a bare ``$VAR`` is left alone (collector-compatible).
* Only string values are expanded, never keys, and only after parsing, so a value can never
  inject YAML structure: a whole-value reference is re-read as a YAML *scalar* (``8080`` -> int,
  ``true`` -> bool) but stays a string if it would become a mapping or a list.
* An inline reference (``http://${env:HOST}:4318``) always gives a string.
* A variable's value is never put into a message about the place it was used: :attr:`EnvResult.sources`
  and :attr:`EnvResult.expanded` remember which paths came from the environment, so messages at
  (or under) those paths, and a component's messages about its own body, show the reference
  instead. The same text elsewhere (``audit`` in ``jsonl_audit``) is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from obs_pipeline.config.document import Findings, JsonPath

NAME_PATTERN = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
MAX_NAME_LENGTH = 200
_TOKEN = re.compile(r"\$\$|\$\{([^}]*)\}|\$\{")


@dataclass
class EnvResult:
    """What substitution changed, for the passes that follow it."""

    sources: dict[JsonPath, str] = field(default_factory=dict)  # path -> the text as written
    expanded: dict[JsonPath, str] = field(default_factory=dict)  # path -> the expanded text (before re-typing)
    failed: set[JsonPath] = field(default_factory=set)  # paths whose references could not be resolved


def substitute(findings: Findings, environ: Mapping[str, str]) -> EnvResult:
    """Expand references in every string value of ``findings.doc`` in place."""
    result = EnvResult()
    _walk(findings.doc.data, (), findings, environ, result)
    return result


def _walk(node: Any, path: JsonPath, findings: Findings, environ: Mapping[str, str], result: EnvResult) -> None:
    items: list[tuple[str | int, Any]]
    if isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, list):
        items = list(enumerate(node))
    else:
        return
    for key, value in items:
        child = (*path, key)
        if isinstance(value, str) and "$" in value:
            node[key] = _expand_value(value, child, findings, environ, result)
        else:
            _walk(value, child, findings, environ, result)


def _expand_value(text: str, path: JsonPath, findings: Findings, environ: Mapping[str, str], result: EnvResult) -> Any:
    """The value for ``text``; records problems and provenance in ``findings`` and ``result``."""
    out: list[str] = []
    references = 0
    ok = True
    pos = 0
    for match in _TOKEN.finditer(text):
        out.append(text[pos : match.start()])
        pos = match.end()
        if match.group(0) == "$$":
            out.append("$")
            continue
        references += 1
        if match.group(1) is None:
            findings.add(path, 'unterminated "${" (write $$ for a literal $)')
            ok = False
            continue
        value, error = _resolve(match.group(1), environ)
        if error:
            findings.add(path, error)
            ok = False
        else:
            out.append(value)
    out.append(text[pos:])
    if not references:
        return "".join(out)
    if not ok:
        result.failed.add(path)
        return text
    expanded = "".join(out)
    result.sources[path] = text
    result.expanded[path] = expanded
    whole = references == 1 and bool(_TOKEN.fullmatch(text))
    return retype(expanded) if whole else expanded


def _resolve(reference: str, environ: Mapping[str, str]) -> tuple[str, str]:
    """``(value, "")`` for the inside of ``${...}``, or ``("", message)``."""
    default: str | None = None
    body = reference
    if ":-" in body:
        body, default = body.split(":-", 1)
    provider, sep, name = body.partition(":")
    if not sep:
        provider, name = "env", provider
    if provider != "env":
        return "", f'unsupported reference "${{{provider}:...}}": only ${{env:NAME}} is supported'
    if not NAME_PATTERN.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        shown = name if len(name) <= 60 else name[:57] + "..."
        return "", f'"{shown}" is not a valid environment variable name (letters, digits and _, not starting with a digit)'
    if name in environ:
        return environ[name], ""
    if default is not None:
        return default, ""
    return "", f'environment variable "{name}" is not set (use ${{env:{name}:-default}} to give a default)'


def retype(text: str) -> Any:
    """A whole-value expansion read as a YAML scalar: int, float, bool or null; otherwise ``text``.

    Structures (mappings, lists) and anything YAML cannot read keep the original string, so an
    environment variable can never inject config structure. An empty value stays ``""``.
    """
    if not text.strip():
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if value is None or isinstance(value, bool | int | float):
        return value
    return text
