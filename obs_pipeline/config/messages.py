"""Turn ``jsonschema`` validation errors into short messages in the user's key names.

Raw validator output (``'abc' is not of type 'integer'``, a dump of a ``oneOf``) is for schema
authors; users get ``expected integer, got string "abc"``, ``unknown key "verBosity"; did you mean
"verbosity"?`` or a definition's ``x-error`` (``"localhost" is not host:port``).

Values are shown only through :meth:`MessageContext.show`: secrets (``x-secret`` in the schema,
or a key such as ``token`` or ``headers`` on the path) print as ``<secret>``, values that came
from the environment print as the reference (``<value of ${env:TOKEN}>``), and long values are cut.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema.exceptions import ValidationError, best_match

from obs_pipeline.components import TYPE_PATTERN, Kind
from obs_pipeline.config.document import JsonPath
from obs_pipeline.config.schemawalk import SchemaWalker, json_type
from obs_pipeline.signals import Signal

MAX_SHOWN = 60
SECRET_KEY = re.compile(r"token|passw(or)?d|secret|authorization|api[_-]?key|headers|credential|private[_-]?key|cookie", re.I)
_TYPE_NOUN = {"object": "mapping", "array": "list"}
_SECTIONS = {kind.value: kind for kind in Kind}

Finding = tuple[JsonPath, str, bool]  # path, message, point at the key (not the value)


def _noun(schema_type: str) -> str:
    return _TYPE_NOUN.get(schema_type, schema_type)


def quote(text: str) -> str:
    """``text`` in double quotes, cut to about :data:`MAX_SHOWN` characters."""
    if len(text) > MAX_SHOWN:
        text = text[: MAX_SHOWN - 3] + "..."
    return json.dumps(text, ensure_ascii=False)


def _literal(value: Any) -> str:
    """An enum/const/limit value as YAML would spell it."""
    return value if isinstance(value, str) else json.dumps(value)


def suggest(word: str, choices: list[str]) -> str | None:
    """The choice ``word`` was probably meant to be, if any is close."""
    lowered = {c.lower(): c for c in choices}
    if word.lower() in lowered:
        return lowered[word.lower()]
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.7)
    return lowered[close[0]] if close else None


@dataclass
class MessageContext:
    """What message-writing needs to know beyond the error itself."""

    walker: SchemaWalker
    env_sources: Mapping[JsonPath, str]
    known_types: Callable[[Kind], list[str]]

    def is_secret(self, path: JsonPath, schema: Any = None) -> bool:
        """True for values that must never be printed."""
        if isinstance(schema, dict) and schema.get("x-secret"):
            return True
        if any(isinstance(part, str) and SECRET_KEY.search(part) for part in path):
            return True
        return self.walker.is_secret(path)

    def show(self, path: JsonPath, value: Any, schema: Any = None) -> str:
        """``value`` as it may appear in a message."""
        if path in self.env_sources:
            source = self.env_sources[path]
            shown = source if source.startswith("${") and source.endswith("}") and len(source) <= MAX_SHOWN else quote(source)
            return f"<value of {shown}>"
        if self.is_secret(path, schema):
            return "<secret>"
        if isinstance(value, dict):
            return "a mapping"
        if isinstance(value, list):
            return "a list"
        if isinstance(value, str):
            return quote(value)
        return json.dumps(value)

    def got(self, path: JsonPath, value: Any, schema: Any = None) -> str:
        """``string "abc"``, ``mapping``, ``null``: what was found, for type messages."""
        kind = _noun(json_type(value))
        if value is None or isinstance(value, dict | list):
            return kind
        return f"{kind} {self.show(path, value, schema)}"

    def unknown_key(self, parent: JsonPath, key: str, schema: dict[str, Any]) -> str:
        """The message for a key the schema does not allow under ``parent``."""
        if len(parent) == 1 and parent[0] in _SECTIONS:
            return self._component_key(_SECTIONS[str(parent[0])], key)
        if parent == ("service", "pipelines"):
            return _pipeline_key(key)
        allowed = sorted(schema.get("properties", {}))
        message = f"unknown key {quote(key)}"
        guess = suggest(key, allowed)
        if guess:
            return f'{message}; did you mean "{guess}"?'
        return f"{message}; valid keys: {', '.join(allowed)}" if allowed else f"{message}; no keys are allowed here"

    def _component_key(self, kind: Kind, key: str) -> str:
        type_, sep, name = key.partition("/")
        if not TYPE_PATTERN.fullmatch(type_):
            return f"invalid component ID {quote(key)}: the type must start with a letter and contain only letters, digits and _"
        if sep and not name:
            return f'invalid component ID {quote(key)}: the name after "/" is empty'
        known = self.known_types(kind)
        if type_ not in known:
            message = f"unknown {kind.singular} type {quote(type_)}; known types: {', '.join(known) or '(none)'}"
            guess = suggest(type_, known)
            return f'{message}; did you mean "{guess}"?' if guess else message
        return f'invalid component ID {quote(key)}: the name after "/" must not contain spaces or "/"'


def _pipeline_key(key: str) -> str:
    signal, sep, name = key.partition("/")
    signals = [s.value for s in Signal]
    if signal not in signals:
        message = f"unknown pipeline signal {quote(signal)}; a pipeline ID is traces, metrics or logs, optionally followed by /name"
        guess = suggest(signal, signals)
        return f'{message}; did you mean "{guess}"?' if guess else message
    if sep and not name:
        return f'invalid pipeline ID {quote(key)}: the name after "/" is empty'
    return f'invalid pipeline ID {quote(key)}: the name after "/" must not contain spaces or "/"'


def describe(error: ValidationError, ctx: MessageContext) -> Iterator[Finding]:
    """The problems one validation error stands for, with paths from the document root."""
    path: JsonPath = tuple(error.absolute_path)
    keyword, schema, instance = error.validator, error.schema, error.instance
    schema = schema if isinstance(schema, dict) else {}
    if keyword == "additionalProperties" and isinstance(instance, dict):
        known = set(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        for key in instance:
            if key not in known and not any(re.search(p, key) for p in patterns):
                yield (*path, key), ctx.unknown_key(path, key, schema), True
        return
    if keyword == "required" and isinstance(instance, dict):
        required: list[str] = error.validator_value  # type: ignore[assignment]  # a list for "required"
        for key in required:
            if key not in instance:
                yield path, f'missing required key "{key}"', True
        return
    if schema.get("x-error") and keyword not in ("properties", "patternProperties"):
        yield path, f"{ctx.show(path, instance, schema)} {schema['x-error']}", False
        return
    if keyword in ("oneOf", "anyOf") and error.context:
        best = best_match(error.context)
        if best is not None:
            yield from describe(best, ctx)
            return
    yield path, _simple(error, path, ctx), False


def _simple(error: ValidationError, path: JsonPath, ctx: MessageContext) -> str:
    """The message for a single-keyword failure."""
    keyword, instance = error.validator, error.instance
    limit: Any = error.validator_value  # its type depends on the keyword
    schema = error.schema if isinstance(error.schema, dict) else {}
    shown = ctx.show(path, instance, schema)
    if keyword == "type":
        expected = [limit] if isinstance(limit, str) else list(limit)
        return f"expected {' or '.join(_noun(t) for t in expected)}, got {ctx.got(path, instance, schema)}"
    if keyword == "enum":
        return f"must be one of {', '.join(_literal(v) for v in limit)} (got {shown})"
    if keyword == "const":
        return f"must be {_literal(limit)} (got {shown})"
    if keyword == "pattern":
        return f"{shown} does not match the pattern {limit}"
    bounds = {
        "minimum": f"must be at least {limit}",
        "maximum": f"must be at most {limit}",
        "exclusiveMinimum": f"must be greater than {limit}",
        "exclusiveMaximum": f"must be less than {limit}",
        "multipleOf": f"must be a multiple of {limit}",
    }
    if keyword in bounds:
        return f"{bounds[keyword]} (got {shown})"
    if keyword in ("minLength", "minItems", "minProperties") and limit == 1:
        return "must not be empty"
    sizes = {
        "minLength": f"must be at least {limit} characters long",
        "maxLength": f"must be at most {limit} characters long",
        "minItems": f"must list at least {limit} items",
        "maxItems": f"must list at most {limit} items",
        "minProperties": f"must have at least {limit} keys",
        "maxProperties": f"must have at most {limit} keys",
        "uniqueItems": "must not list the same value twice",
        "not": "is not allowed here",
        "dependentRequired": "is missing keys that other keys here require",
        "propertyNames": "has a key that is not allowed here",
    }
    if keyword in sizes:
        return sizes[keyword]
    if keyword is None or keyword == "false":
        return "is not allowed here"
    return f'is not valid (fails the schema\'s "{keyword}" rule)'
