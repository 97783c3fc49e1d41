"""Compose ``pipeline.schema.json`` and every component schema into one self-contained document.

Editors (yaml-language-server) and ``validate`` use the same composed document, so what an
editor flags is what ``validate`` reports. One difference follows from where each one looks:
``validate`` checks values after ``${env:...}`` substitution, an editor sees the file as written,
so the copy ``obs-pipeline schema`` prints (``env_references=True``) also accepts a reference in
every typed field (a port, a duration, a boolean, an endpoint); see :func:`with_env_references`.
Component schemas are found through the registry
(``known_types`` + the factory's ``schema_path``), so third-party components join automatically.
Each referenced file is copied under ``$defs`` (``receiver.otlp``, ``common``) with its ``$id``
removed and every ``$ref`` rewritten to a pointer inside the bundle; the ``referencing`` registry,
built from every schema file by ``$id``, checks that each reference resolves.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urljoin

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from obs_pipeline.components import SCHEMA_DIR, Kind, get_factory, known_types
from obs_pipeline.config.schemawalk import SchemaWalker
from obs_pipeline.errors import ObsPipelineError

PIPELINE_SCHEMA = SCHEMA_DIR / "pipeline.schema.json"
NAME_SUFFIX = r"/[^\s/]+"  # the "/name" part of a component ID in the composed schema
log = logging.getLogger(__name__)

#: ``${env:NAME}``, ``${NAME}``, with an optional ``:-default``: what ``config/envsubst.py`` expands.
ENV_REFERENCE = r"\$\{(env:)?[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}"
#: ``$defs`` names of the two reference schemas in an editor schema.
ENV_DEFS = {
    "env_reference": {
        "type": "string",
        "pattern": ENV_REFERENCE,
        "description": "A text with an ${env:NAME} reference: obs-pipeline validate checks the value after substitution.",
    },
    "env_value": {
        "type": "string",
        "pattern": f"^{ENV_REFERENCE}$",
        "description": "An ${env:NAME} reference as the whole value, read as YAML after substitution "
                       "(8080 a number, true a boolean): obs-pipeline validate checks that value.",
    },
}
#: Keywords that describe a value rather than constrain it: they stay on a wrapped leaf itself.
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "deprecated", "$comment", "markdownDescription"})
_VALUES = frozenset({"default", "examples", "enum", "const"})  # keywords whose values are instances, not schemas
_SAMPLE_REFERENCE = "${env:NAME}"

Selection = Mapping[Kind, Mapping[str, Path | None]]  # kind -> type -> schema file (None: accept anything)


class SchemaError(ObsPipelineError):
    """A schema file is unreadable, not JSON, or has a reference that does not resolve (a bug)."""


def read_schema(path: Path) -> dict[str, Any]:
    """The JSON content of a schema file.

    Raises:
        SchemaError: the file cannot be read or is not a JSON object.
    """
    try:
        contents = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaError(f"cannot read schema {path}: {exc}") from exc
    if not isinstance(contents, dict):
        raise SchemaError(f"schema {path} is not a JSON object")
    return contents


def schema_uri(path: Path, contents: Mapping[str, Any]) -> str:
    """The URI a schema is known by: its ``$id``, else its file URI."""
    return str(contents.get("$id") or path.resolve().as_uri())


def builtin_schema_files() -> list[Path]:
    """Every schema file shipped in ``obs_pipeline/schemas``."""
    return sorted(SCHEMA_DIR.rglob("*.schema.json"))


def component_schema_path(kind: Kind, type_: str) -> Path:
    """The schema file of a component type.

    Asks the factory; when its module cannot be imported, falls back to the conventional
    ``schemas/<kind>/<type>.schema.json`` so ``schema`` and docs still work.

    Raises:
        SchemaError: neither the factory nor the conventional file is available.
    """
    try:
        return get_factory(kind, type_).schema_path
    except Exception as exc:
        fallback = SCHEMA_DIR / kind.value / f"{type_}.schema.json"
        if fallback.is_file():
            return fallback
        raise SchemaError(f"cannot load {kind.singular} type {type_!r}: {type(exc).__name__}: {exc}") from exc


def full_selection() -> dict[Kind, dict[str, Path | None]]:
    """Every registered type of every kind; types whose schema cannot be found are left out."""
    selection: dict[Kind, dict[str, Path | None]] = {}
    for kind in Kind:
        selection[kind] = {}
        for type_ in known_types(kind):
            try:
                selection[kind][type_] = component_schema_path(kind, type_)
            except SchemaError as exc:
                log.warning("left out of the schema: %s", exc)
    return selection


def compose_schema(selection: Selection | None = None, *, env_references: bool = False) -> dict[str, Any]:
    """The whole pipeline schema as one self-contained Draft 2020-12 document.

    Args:
        selection: the component types to include (default: every registered type).
        env_references: the editors' copy: a typed field also accepts ``${env:...}``
            (:func:`with_env_references`). ``validate`` uses the plain one, after substitution.

    Raises:
        SchemaError: a schema file is broken or a reference does not resolve.
    """
    if selection is None:
        selection = full_selection()
    documents: dict[str, dict[str, Any]] = {}
    for schema_file in [*builtin_schema_files(), *(p for types in selection.values() for p in types.values() if p)]:
        contents = read_schema(schema_file)
        documents.setdefault(schema_uri(schema_file, contents), contents)
    registry: Registry = Registry().with_resources(
        (uri, Resource.from_contents(doc, default_specification=DRAFT202012)) for uri, doc in documents.items()
    )
    root = read_schema(PIPELINE_SCHEMA)
    root_uri = schema_uri(PIPELINE_SCHEMA, root)
    locations: dict[str, str] = {root_uri: ""}
    component_refs: dict[Kind, dict[str, Any]] = {}
    for kind, types in selection.items():
        component_refs[kind] = {}
        for type_, path in sorted(types.items()):
            if path is None:
                component_refs[kind][type_] = True
                continue
            uri = schema_uri(path, read_schema(path))
            locations.setdefault(uri, f"/$defs/{kind.singular}.{type_}")
            component_refs[kind][type_] = {"$ref": "#" + locations[uri]}
    _locate_references(documents, locations, reserved=set(root.get("$defs", {})))
    bundle: dict[str, Any] = _rewrite(copy.deepcopy(root), root_uri, locations, registry)
    defs = bundle.setdefault("$defs", {})
    for uri, pointer in locations.items():
        if uri != root_uri:
            doc = {k: v for k, v in documents[uri].items() if k not in ("$id", "$schema")}
            defs[pointer.removeprefix("/$defs/")] = _rewrite(copy.deepcopy(doc), uri, locations, registry)
    for kind, refs in component_refs.items():
        section = bundle["properties"][kind.value]
        section["properties"] = dict(refs)
        section["patternProperties"] = {f"^{re.escape(t)}{NAME_SUFFIX}$": ref for t, ref in refs.items()}
    return with_env_references(bundle) if env_references else bundle


def with_env_references(bundle: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``bundle`` in which every typed leaf also accepts an ``${env:...}`` reference.

    A leaf is the schema of a value that is neither a mapping nor a list (those cannot come from
    the environment: substitution never injects structure). One that a reference already passes
    (a plain string) is left alone. Otherwise it becomes ``anyOf: [<the leaf>, <a reference>]``,
    with its description and default kept on the outside for editors to show: a field that
    accepts text accepts any text with a reference in it (``${env:HOST}:4317``), one that does not
    (an integer, a boolean) only a whole-value reference (``${env:PORT}``), as substitution types
    only those. Keys are never substituted, so unknown keys are still errors.
    """
    defs = bundle.get("$defs", {})
    clash = set(ENV_DEFS) & set(defs)
    if clash:
        raise SchemaError(f"$defs names reserved for ${{env:...}} references are taken: {', '.join(sorted(clash))}")
    walker = SchemaWalker(bundle)
    out: dict[str, Any] = _with_references(copy.deepcopy(bundle), walker, defs)
    out.setdefault("$defs", {}).update(copy.deepcopy(ENV_DEFS))
    return out


def _with_references(node: Any, walker: SchemaWalker, defs: Mapping[str, Any]) -> Any:
    """``node`` with every value schema inside it that is a typed leaf wrapped (in place)."""
    if isinstance(node, list):
        return [_with_references(item, walker, defs) for item in node]
    if not isinstance(node, dict):
        return node
    for key, value in node.items():
        if key in _VALUES or key.startswith("x-"):
            continue  # instance data (a default mapping may well have a key named "items"), not schemas
        if key in ("properties", "patternProperties") and isinstance(value, dict):
            for name, sub in value.items():
                value[name] = _leaf_or_walk(sub, walker, defs)
        elif key in ("additionalProperties", "items") and isinstance(value, dict):
            node[key] = _leaf_or_walk(value, walker, defs)
        elif key == "prefixItems" and isinstance(value, list):
            node[key] = [_leaf_or_walk(sub, walker, defs) for sub in value]
        else:
            node[key] = _with_references(value, walker, defs)
    return node


def _leaf_or_walk(schema: Any, walker: SchemaWalker, defs: Mapping[str, Any]) -> Any:
    if not isinstance(schema, dict):
        return schema
    types = walker.types(schema)
    if not types or types & {"object", "array"}:
        return _with_references(schema, walker, defs)
    if Draft202012Validator({**schema, "$defs": defs}).is_valid(_SAMPLE_REFERENCE):
        return schema
    outer = {k: v for k, v in schema.items() if k in _ANNOTATIONS or k.startswith("x-")}
    inner = {k: v for k, v in schema.items() if k not in outer}
    reference = "#/$defs/env_reference" if "string" in types else "#/$defs/env_value"
    return {**outer, "anyOf": [inner, {"$ref": reference}]}


def _refs(node: Any) -> Iterator[str]:
    """Every ``$ref`` string inside ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _locate_references(documents: Mapping[str, Any], locations: dict[str, str], reserved: set[str]) -> None:
    """Give every document reachable by ``$ref`` from ``locations`` a place in the bundle.

    ``reserved`` holds ``$defs`` names the root schema already uses.
    """
    taken = reserved | {p.removeprefix("/$defs/") for p in locations.values()}
    pending = list(locations)
    while pending:
        uri = pending.pop()
        if uri not in documents:
            raise SchemaError(f"no schema file has $id {uri}")
        for ref in _refs(documents[uri]):
            target, _ = urldefrag(urljoin(uri, ref))
            if target not in locations:
                stem = target.rstrip("/").rsplit("/", 1)[-1].removesuffix(".json").removesuffix(".schema")
                name, n = stem, 2
                while name in taken:
                    name, n = f"{stem}{n}", n + 1
                taken.add(name)
                locations[target] = f"/$defs/{name}"
                pending.append(target)


def _rewrite(node: Any, base_uri: str, locations: Mapping[str, str], registry: Registry) -> Any:
    """``node`` with every ``$ref`` pointing inside the bundle."""
    if isinstance(node, list):
        return [_rewrite(item, base_uri, locations, registry) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            absolute = urljoin(base_uri, value)
            try:
                registry.resolver(base_uri).lookup(value)
            except Unresolvable as exc:
                raise SchemaError(f"$ref {value!r} in {base_uri} does not resolve: {exc}") from exc
            target, fragment = urldefrag(absolute)
            if fragment and not fragment.startswith("/"):
                raise SchemaError(f"$ref {value!r} in {base_uri}: only JSON-pointer fragments are supported")
            out[key] = "#" + locations[target] + fragment
        else:
            out[key] = _rewrite(value, base_uri, locations, registry)
    return out
