"""One source of defaults (STYLE rule 4), checked over every registered type with the real registry.

The schema holds the defaults; ``parse`` reads every key from the filled body; each ``Config``
dataclass keeps field defaults equal to the schema's, for code that builds one without the config
layer. So parsing an empty body, filled by the config layer's own machinery, must give exactly
the ``Config`` its dataclass defaults give (plus the required keys, taken from the schema's
``examples``), and every property of every component schema must say what it is and, when it
is optional, what it defaults to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from obs_pipeline.components import Kind, get_factory, known_types
from obs_pipeline.config import component_body, compose_schema
from obs_pipeline.config.schemas import component_schema_path
from obs_pipeline.config.schemawalk import SchemaWalker

TYPES = [(kind, type_) for kind in Kind for type_ in known_types(kind)]
IDS = [f"{kind.singular}-{type_}" for kind, type_ in TYPES]
DELIVERY_KEYS = {"timeout", "retry_on_failure", "sending_queue"}


def _schema(kind: Kind, type_: str) -> tuple[SchemaWalker, dict[str, Any]]:
    """The walker over the composed schema of this one type, and the type's resolved schema."""
    walker = SchemaWalker(compose_schema({kind: {type_: component_schema_path(kind, type_)}}))
    return walker, walker.resolve(walker.at((kind.value, type_)))


def _required_examples(walker: SchemaWalker, schema: dict[str, Any]) -> dict[str, Any]:
    """A value for each required top-level key: the first of the schema's ``examples``."""
    body: dict[str, Any] = {}
    for name in schema.get("required", []):
        examples = walker.resolve(schema["properties"][name]).get("examples")
        assert examples, f"required key {name!r} has no examples to take a value from"
        body[name] = examples[0]
    return body


def _properties(walker: SchemaWalker, schema: Any, where: str) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(dotted name, resolved schema, required) for every property, nested ones included."""
    resolved = walker.resolve(schema)
    required = set(resolved.get("required", []))
    for name, prop in resolved.get("properties", {}).items():
        yield f"{where}{name}", walker.resolve(prop), name in required
        yield from _properties(walker, prop, f"{where}{name}.")
    for pattern, prop in resolved.get("patternProperties", {}).items():
        yield from _properties(walker, prop, f"{where}<{pattern}>.")
    extra = resolved.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _properties(walker, extra, f"{where}<key>.")
    if isinstance(resolved.get("items"), dict):
        yield from _properties(walker, resolved["items"], f"{where}[].")
    for keyword in ("oneOf", "anyOf", "allOf"):
        for branch in resolved.get(keyword, []):
            yield from _properties(walker, branch, where)


def test_every_builtin_type_is_covered():
    """The parametrisation sees the built-in types (so an empty registry cannot pass vacuously)."""
    assert {("receivers", "otlp"), ("receivers", "stdin"), ("processors", "batch"),
            ("exporters", "jsonl_audit"), ("exporters", "debug")} <= {(k.value, t) for k, t in TYPES}


@pytest.mark.parametrize(("kind", "type_"), TYPES, ids=IDS)
class TestDefaults:
    def test_parse_of_the_schema_defaults_is_the_dataclass_default(self, kind: Kind, type_: str):
        """parse(empty body with the schema's defaults filled in) == Config(dataclass defaults, required examples)."""
        factory = get_factory(kind, type_)
        walker, schema = _schema(kind, type_)
        required = _required_examples(walker, schema)
        parsed = factory.parse(component_body(kind, type_, required))
        assert dataclasses.is_dataclass(parsed), f"{type_}: parse must return a Config dataclass"
        config_class = type(parsed)
        expected = config_class(**{name: getattr(parsed, name) for name in required})
        assert parsed == expected, (
            f"{kind.singular} {type_}: the schema's defaults and {config_class.__qualname__}'s field defaults differ"
        )

    def test_parse_reads_every_key_without_a_fallback(self, kind: Kind, type_: str):
        """Each top-level key of the filled body is read: without it parse fails instead of inventing a default.

        The delivery blocks an exporter's schema offers are the config layer's (``ComponentConfig.delivery``),
        so an exporter's ``parse`` need not read them.
        """
        factory = get_factory(kind, type_)
        walker, schema = _schema(kind, type_)
        filled = component_body(kind, type_, _required_examples(walker, schema))
        delivery_keys = DELIVERY_KEYS if kind is Kind.EXPORTER else set()
        quietly_defaulted = []
        for key in sorted(set(filled) - delivery_keys):
            try:
                factory.parse({k: v for k, v in filled.items() if k != key})
            except (KeyError, TypeError):
                continue
            quietly_defaulted.append(key)
        assert not quietly_defaulted, f"{kind.singular} {type_}: parse falls back to its own default for {quietly_defaulted}"

    def test_an_absent_body_parses_like_an_empty_one(self, kind: Kind, type_: str):
        """`type:` (null) and `type: {}` mean the same: every default."""
        factory = get_factory(kind, type_)
        _, schema = _schema(kind, type_)
        if schema.get("required"):
            pytest.skip(f"{type_} has required keys, so it has no empty body")
        assert factory.parse(component_body(kind, type_, None)) == factory.parse(component_body(kind, type_, {}))

    def test_every_property_is_described_and_optional_ones_have_a_default(self, kind: Kind, type_: str):
        """Descriptions everywhere; a default on every optional property except blocks (their leaves have them)."""
        walker, schema = _schema(kind, type_)
        missing = []
        for name, prop, required in _properties(walker, schema, ""):
            if not prop.get("description"):
                missing.append(f"{name}: no description")
            is_block = "object" in walker.types(prop) and "properties" in prop
            if not required and not is_block and "default" not in prop:
                missing.append(f"{name}: optional but no default")
        assert not missing, f"{kind.singular} {type_}:\n" + "\n".join(missing)
