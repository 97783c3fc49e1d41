"""Walk a config alongside the composed schema: nulls to ``{}``, defaults filled, subschema lookups.

JSON Schema validators only check; they never fill in defaults. These helpers follow the bundle's
internal ``$ref`` pointers (a ``$ref``'s sibling keywords, such as a property's own ``default``
and ``description``, win over the referenced definition's).

Two conventions, documented in the schemas' style:

* A ``null`` where the schema allows an object means "an empty block" (``batch:``,
  ``protocols: {grpc: }``), as collector users expect (collector bug #15728).
* An absent property whose schema is a plain ``"type": "object"`` with ``properties`` is created
  as ``{}`` and filled (``sending_queue``, ``retry_on_failure``, ``service.telemetry``). An absent
  property whose type also allows ``null`` is a switch that is *off* when absent
  (``protocols.grpc``) and is not created.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from obs_pipeline.config.document import JsonPath
from obs_pipeline.secret import Secret

_JSON_TYPE = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null", dict: "object", list: "array"}


def json_type(value: Any) -> str:
    """The JSON Schema type name of a Python value from YAML."""
    return _JSON_TYPE.get(type(value), "string")


class SchemaWalker:
    """Lookups in one self-contained (bundled) schema document."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def pointer(self, ref: str) -> Any:
        """The schema at an internal ``#/...`` reference."""
        if not ref.startswith("#"):
            raise ValueError(f"not an internal reference: {ref}")
        node: Any = self.root
        for raw in ref[1:].split("/")[1:]:
            part = raw.replace("~1", "/").replace("~0", "~")
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node

    def resolve(self, schema: Any) -> dict[str, Any]:
        """``schema`` with its ``$ref`` chain followed; outer sibling keywords override inner ones."""
        overrides: dict[str, Any] = {}
        for _ in range(64):  # a reference cycle is a schema bug; stop rather than loop
            if schema is True or schema is None:
                return dict(overrides)
            if schema is False:
                return {"not": {}, **overrides}
            if "$ref" not in schema:
                return {**schema, **overrides}
            overrides = {**{k: v for k, v in schema.items() if k != "$ref"}, **overrides}
            schema = self.pointer(schema["$ref"])
        return dict(overrides)

    def types(self, schema: Any) -> set[str]:
        """The JSON types ``schema`` accepts (empty: it does not say)."""
        resolved = self.resolve(schema)
        declared = resolved.get("type")
        if isinstance(declared, str):
            return {declared}
        if isinstance(declared, list):
            return set(declared)
        if "enum" in resolved:
            return {json_type(v) for v in resolved["enum"]}
        if "const" in resolved:
            return {json_type(resolved["const"])}
        found: set[str] = set()
        for keyword in ("oneOf", "anyOf"):
            for branch in resolved.get(keyword, []):
                found |= self.types(branch)
        return found

    def child(self, schema: Any, key: str | int) -> Any:
        """The subschema for ``key`` of an instance of ``schema``, or None when it has none."""
        resolved = self.resolve(schema)
        if isinstance(key, int):
            return resolved.get("items")
        if key in resolved.get("properties", {}):
            return resolved["properties"][key]
        for pattern, sub in resolved.get("patternProperties", {}).items():
            if re.search(pattern, key):
                return sub
        extra = resolved.get("additionalProperties")
        return extra if isinstance(extra, dict) else None

    def at(self, path: JsonPath) -> Any:
        """The subschema for ``path`` from the root, or None."""
        schema: Any = self.root
        for key in path:
            schema = self.child(schema, key)
            if schema is None:
                return None
        return schema

    def is_secret(self, path: JsonPath) -> bool:
        """True when the schema marks ``path`` or one of its ancestors ``x-secret``."""
        schema: Any = self.root
        for key in path:
            schema = self.child(schema, key)
            if schema is None:
                return False
            if self.resolve(schema).get("x-secret"):
                return True
        return False

    def with_secrets(self, data: Any, schema: Any, *, inherited: bool = False) -> Any:
        """A copy of ``data`` (an instance of ``schema``) with every string marked ``x-secret`` a :class:`Secret`.

        A mark on a block covers everything inside it. The copy is what a component's ``parse``
        gets, so the document itself keeps plain strings for the passes that print nothing.
        """
        secret = inherited or (schema is not None and bool(self.resolve(schema).get("x-secret")))
        if isinstance(data, str):
            return Secret(data) if secret else data
        if isinstance(data, dict):
            return {key: self.with_secrets(value, self.child(schema, key), inherited=secret) for key, value in data.items()}
        if isinstance(data, list):
            return [self.with_secrets(value, self.child(schema, index), inherited=secret) for index, value in enumerate(data)]
        return data

    def normalize_nulls(self, data: Any, schema: Any = None) -> None:
        """Replace, in place, every ``null`` whose schema allows an object with ``{}``."""
        schema = self.root if schema is None else schema
        items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
        for key, value in list(items):
            sub = self.child(schema, key)
            if sub is None:
                continue
            if value is None and "object" in self.types(sub):
                data[key] = {}
            self.normalize_nulls(data[key], sub)

    def fill_defaults(self, data: Any, schema: Any = None) -> None:
        """Add, in place, every absent property that has a default (see the module docstring)."""
        schema = self.root if schema is None else schema
        if isinstance(data, dict):
            for name, prop in self.resolve(schema).get("properties", {}).items():
                if name in data:
                    continue
                resolved = self.resolve(prop)
                if "default" in resolved:
                    data[name] = copy.deepcopy(resolved["default"])
                elif resolved.get("type") == "object" and "properties" in resolved:
                    data[name] = {}
        items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
        for key, value in list(items):
            sub = self.child(schema, key)
            if sub is not None and isinstance(value, dict | list):
                self.fill_defaults(value, sub)
