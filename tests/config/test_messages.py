"""Schema errors in the user's words, and values that must never be printed."""

from __future__ import annotations

import pytest

from obs_pipeline.config.messages import MAX_SHOWN, MessageContext, quote, suggest
from obs_pipeline.config.schemawalk import SchemaWalker

SCHEMA = {
    "type": "object",
    "properties": {
        "token": {"$ref": "#/$defs/secret"},
        "name": {"type": "string"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "auth": {"type": "object", "properties": {"value": {"type": "string", "x-secret": True}}},
    },
    "$defs": {"secret": {"type": "string", "x-secret": True}},
}


def _context(sources=None) -> MessageContext:
    return MessageContext(SchemaWalker(SCHEMA), sources or {}, lambda kind: [])


class TestShow:
    @pytest.mark.parametrize("path", [("token",), ("auth", "value"), ("headers", "X-Api"), ("my_api_key",), ("password",)])
    def test_secrets_are_hidden(self, path):
        """x-secret in the schema, or a secret-like key on the path, prints <secret>."""
        assert _context().show(path, "hunter2") == "<secret>"

    def test_plain_values_are_quoted(self):
        """Ordinary strings print quoted, other scalars as YAML spells them."""
        context = _context()
        assert context.show(("name",), "abc") == '"abc"'
        assert context.show(("name",), True) == "true"
        assert context.show(("name",), None) == "null"

    def test_environment_values_show_the_reference(self):
        """A value from the environment shows where it came from, never what it is."""
        context = _context({("name",): "${env:TOKEN}", ("other",): "Bearer ${env:TOKEN}"})
        assert context.show(("name",), "hunter2") == "<value of ${env:TOKEN}>"
        assert context.show(("other",), "Bearer hunter2") == '<value of "Bearer ${env:TOKEN}">'

    def test_long_values_are_cut(self):
        """Values longer than about 60 characters are shortened."""
        shown = quote("x" * 500)
        assert len(shown) == MAX_SHOWN + 2
        assert shown.endswith('..."')

    def test_structures_are_not_dumped(self):
        """Mappings and lists are named, not printed."""
        assert _context().show(("name",), {"a": "secret"}) == "a mapping"


class TestSuggest:
    def test_case_and_typos(self):
        """Close matches are suggested; unrelated words are not."""
        choices = ["verbosity", "sending_queue"]
        assert suggest("verBosity", choices) == "verbosity"
        assert suggest("verbosty", choices) == "verbosity"
        assert suggest("colour", choices) is None
