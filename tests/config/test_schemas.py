"""Schema hygiene and composition.

Hygiene rule, for every schema file (shipped and test-only):

* every property has a ``description``, its own or the one of the definition it ``$ref``s;
* every property that is not ``required`` has a ``default``, except *blocks*: properties whose
  schema is an object with its own ``properties`` (``sending_queue``, ``protocols.grpc``,
  ``service.telemetry``). A block's defaults live on its leaves, which this rule checks in turn;
  for a block that may be ``null`` (``protocols.grpc``) absence means "off", so it has no default.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from obs_pipeline.components import Kind, known_types
from obs_pipeline.config import compose_schema
from obs_pipeline.config.document import Findings
from obs_pipeline.config.envsubst import substitute
from obs_pipeline.config.schemas import builtin_schema_files, component_schema_path, read_schema, schema_uri
from obs_pipeline.config.yamlload import load_document

TESTDATA = Path(__file__).parent / "testdata"
SCHEMA_FILES = builtin_schema_files() + sorted((TESTDATA / "schemas").glob("*.schema.json"))
REPO_PIPELINE = Path(__file__).parents[2] / "pipeline.yaml"
VALID = sorted((TESTDATA / "valid").glob("*.yaml"))


def _registry() -> Registry:
    resources = []
    for path in SCHEMA_FILES:
        contents = read_schema(path)
        resources.append((schema_uri(path, contents), Resource.from_contents(contents, default_specification=DRAFT202012)))
    return Registry().with_resources(resources)


def _resolve(registry: Registry, base: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref``s; the referring schema's own keywords win."""
    merged: dict[str, Any] = {}
    resolver = registry.resolver(base)
    while "$ref" in schema:
        merged = {**{k: v for k, v in schema.items() if k != "$ref"}, **merged}
        resolved = resolver.lookup(schema["$ref"])
        schema, resolver = resolved.contents, resolved.resolver
    return {**schema, **merged}


def _properties(node: Any, where: str = "") -> Iterator[tuple[str, str, dict[str, Any], set[str]]]:
    """(location, name, property schema, required names of its parent) for every property in a file."""
    if isinstance(node, dict):
        required = set(node.get("required", []))
        for name, prop in node.get("properties", {}).items():
            yield f"{where}/properties/{name}", name, prop, required
        for key, value in node.items():
            yield from _properties(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _properties(item, f"{where}/{i}")


class TestSchemaHygiene:
    @pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
    def test_file_is_a_valid_schema(self, path: Path):
        """Every schema file is a valid Draft 2020-12 schema with an $id."""
        contents = read_schema(path)
        Draft202012Validator.check_schema(contents)
        assert contents.get("$id")

    @pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
    def test_every_property_is_described_and_has_a_default(self, path: Path):
        """Descriptions everywhere; defaults on every optional non-block property (module docstring)."""
        registry = _registry()
        contents = read_schema(path)
        base = schema_uri(path, contents)
        missing = []
        for where, name, prop, required in _properties(contents):
            resolved = _resolve(registry, base, prop)
            if not resolved.get("description"):
                missing.append(f"{where}: no description")
            is_block = "object" in json.dumps(resolved.get("type")) and "properties" in resolved
            if name not in required and not is_block and "default" not in resolved:
                missing.append(f"{where}: optional but no default")
        assert not missing, "\n".join(missing)

    @pytest.mark.usefixtures("fake_registry")
    def test_every_registered_type_has_a_schema_file(self):
        """Each built-in type's schema file exists."""
        for kind in Kind:
            for type_ in known_types(kind):
                assert component_schema_path(kind, type_).is_file()


@pytest.mark.usefixtures("any_registry")
class TestComposeSchema:
    def test_composed_schema_is_valid_and_self_contained(self):
        """One Draft 2020-12 document whose every $ref points inside itself."""
        schema = compose_schema()
        Draft202012Validator.check_schema(schema)
        text = json.dumps(schema)
        refs = [part.split('"', 1)[0] for part in text.split('"$ref": "')[1:]]
        assert refs
        assert all(ref.startswith("#/") for ref in refs)
        assert '"$id": "https://obs-pipeline.dev/schemas/common' not in text

    def test_third_party_component_joins(self):
        """A registered component with its own schema file (outside the package) is bundled."""
        schema = compose_schema()
        exporters = schema["properties"]["exporters"]
        assert exporters["properties"]["prom"] == {"$ref": "#/$defs/exporter.prom"}
        assert exporters["patternProperties"]["^prom/[^\\s/]+$"] == {"$ref": "#/$defs/exporter.prom"}
        assert schema["$defs"]["exporter.prom"]["properties"]["endpoint"]["$ref"] == "#/$defs/common/$defs/endpoint"

    @pytest.mark.parametrize("path", [*VALID, REPO_PIPELINE], ids=lambda p: p.name)
    def test_valid_configs_pass_the_composed_schema(self, path: Path):
        """The composed schema accepts valid files (after ${env:...} substitution, which editors do not do)."""
        if not path.exists():
            pytest.skip(f"{path} does not exist")
        doc, problems = load_document(path.read_text(), str(path))
        assert doc is not None
        assert not problems
        substitute(Findings(doc), {})
        Draft202012Validator(compose_schema()).validate(doc.data)

    def test_composed_schema_rejects_unknown_types_and_ids(self):
        """Unknown types, bad component IDs and bad pipeline IDs fail in editors too."""
        validator = Draft202012Validator(compose_schema())
        base = {"receivers": {"stdin": None}, "exporters": {"debug": None},
                "service": {"pipelines": {"logs": {"receivers": ["stdin"], "exporters": ["debug"]}}}}
        assert validator.is_valid(base)
        for section, key in [("exporters", "jsonl"), ("processors", "batch/"), ("receivers", "stdin/a b")]:
            assert not validator.is_valid({**base, section: {key: None}})
        assert not validator.is_valid({**base, "service": {"pipelines": {"trace": base["service"]["pipelines"]["logs"]}}})

    def test_only_the_editors_copy_accepts_env_references(self):
        """env_references=True (what `schema` prints) takes ${env:...} in typed fields; validate's copy does not.

        validate checks values after substitution, so its copy must still reject a literal
        reference (``$${env:N}`` is the text ``${env:N}``, not a number).
        """
        editor = compose_schema(env_references=True)
        Draft202012Validator.check_schema(editor)
        text = json.dumps(editor)
        assert all(ref.startswith("#/") for ref in (p.split('"', 1)[0] for p in text.split('"$ref": "')[1:]))
        config = {"receivers": {"stdin": {"max_batch_lines": "${env:N}", "max_line_size": "${env:KIB}KiB"}},
                  "exporters": {"debug": {"verbosity": "${VERBOSITY:-basic}"}, "prom": {"endpoint": "${env:HOST}:9464"}},
                  "service": {"pipelines": {"logs": {"receivers": ["stdin"], "exporters": ["debug"]}},
                              "telemetry": {"health": {"enabled": "${env:HEALTH}"}}}}
        assert list(Draft202012Validator(editor).iter_errors(config)) == []
        assert not Draft202012Validator(compose_schema()).is_valid(config)
        # descriptions and defaults stay where editors show them
        lines = editor["$defs"]["receiver.stdin"]["properties"]["max_batch_lines"]
        assert (lines["default"], "description" in lines) == (1000, True)
        assert not Draft202012Validator(editor).is_valid({**config, "receivers": {"stdin": {"max_batch_lines": "x${env:N}"}}})
