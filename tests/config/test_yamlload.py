"""YAML loading: positions, duplicate keys, merge keys, hostile files, syntax errors."""

from __future__ import annotations

import sys

import pytest
import yaml

from obs_pipeline.config import yamlload
from obs_pipeline.config.yamlload import MAX_DEPTH, MAX_NODES, load_document


def _load(text: str):
    doc, problems = load_document(text, "t.yaml")
    return doc, [p for _, p in problems]


class TestLoadDocument:
    def test_positions_of_keys_and_values(self):
        """Every key and value has a 1-based line and column."""
        doc, _ = _load("a:\n  b: [1, 2]\n")
        assert doc.key_pos[("a", "b")] == (2, 3)
        assert doc.value_pos[("a", "b")] == (2, 6)
        assert doc.value_pos[("a", "b", 1)] == (2, 10)

    def test_duplicate_key_is_an_error(self):
        """The second occurrence is reported, naming the line of the first."""
        doc, problems = _load("a: 1\nb: 2\na: 3\n")
        assert doc.data == {"a": 1, "b": 2}
        (problem,) = problems
        assert (problem.line, problem.column, problem.path) == (3, 1, "a")
        assert problem.message == 'duplicate key "a" (first defined at line 1)'

    def test_keys_stay_strings(self):
        """YAML 1.1 would turn on/yes/1 keys into bools and ints; config keys stay the text written."""
        doc, _ = _load("on: 1\nyes: 2\n1: 3\n")
        assert doc.data == {"on": 1, "yes": 2, "1": 3}

    def test_timestamps_stay_strings(self):
        """Dates are not JSON values; they stay text."""
        doc, _ = _load("a: 2024-01-01\n")
        assert doc.data == {"a": "2024-01-01"}

    def test_merge_keys(self):
        """<< merges a mapping; explicit keys win and are not duplicates."""
        doc, problems = _load("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\n")
        assert doc.data["c"] == {"y": 3, "x": 1}
        assert not problems
        assert doc.key_pos[("c", "y")] == (4, 3)

    def test_alias_bomb_is_stopped(self):
        """An alias "billion laughs" stops with a clear problem instead of eating memory."""
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
        doc, problems = _load("\n".join(lines))
        assert doc is None
        assert str(MAX_NODES) in problems[-1].message

    def test_syntax_error_has_a_position(self):
        """A YAML syntax error is one problem at file:line:col, no traceback."""
        doc, problems = _load("a: [1, 2\nb: 3\n")
        assert doc is None
        (problem,) = problems
        assert problem.line == 2
        assert problem.message.startswith("invalid YAML: ")

    def test_several_documents(self):
        """A second document in the file is a syntax error."""
        doc, problems = _load("a: 1\n---\nb: 2\n")
        assert doc is None
        assert "expected a single document" in problems[0].message

    def test_unknown_tag(self):
        """A tag PyYAML's safe loader cannot build is reported at the value."""
        doc, problems = _load("a: !!python/name:os.system x\n")
        assert doc is not None
        (problem,) = problems
        assert (problem.path, problem.line) == ("a", 1)

    def test_nul_byte(self):
        """Characters YAML forbids are a clear problem."""
        doc, problems = _load("a: \x00\n")
        assert doc is None
        assert "unacceptable character #x0000" in problems[0].message

    def test_deep_flow_nesting_is_a_problem_not_a_traceback(self):
        """500 nested lists would overflow PyYAML's recursive composer; it is one problem with a position."""
        doc, problems = _load("a: " + "[" * 500 + "]" * 500 + "\n")
        assert doc is None
        (problem,) = problems
        assert problem.message == f"YAML is nested too deeply (more than {MAX_DEPTH} levels)"
        assert (problem.file, problem.line, problem.column) == ("t.yaml", 1, 4 + MAX_DEPTH)  # the first list too deep

    def test_deep_block_nesting_is_a_problem(self):
        """Block mappings nested 1000 deep: the same problem, at the first key too deep."""
        text = "".join(f"{'  ' * i}k:\n" for i in range(1000))
        doc, problems = _load(text)
        assert doc is None
        (problem,) = problems
        assert "nested too deeply" in problem.message
        assert (problem.line, problem.column) == (MAX_DEPTH + 1, 2 * MAX_DEPTH + 1)

    def test_nesting_up_to_the_limit_loads(self):
        """Exactly MAX_DEPTH levels below the top is still fine."""
        doc, problems = _load("a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n")
        assert doc is not None
        assert not problems

    def test_deep_nesting_through_aliases_has_a_position(self):
        """Aliases can nest deeper than the text does; that is reported where the limit is passed."""
        half = MAX_DEPTH // 2 + 5
        text = "a: &deep " + "[" * half + "]" * half + "\nb: " + "[" * half + "*deep" + "]" * half + "\n"
        doc, problems = _load(text)
        assert doc is None
        (problem,) = problems
        assert "nested too deeply" in problem.message
        assert problem.line == 1  # inside the anchored value, reached through the alias on line 2

    def test_recursion_error_while_composing_is_a_problem(self, monkeypatch: pytest.MonkeyPatch):
        """Whatever Python's stack depth, a RecursionError in PyYAML becomes a problem, not a traceback."""
        def overflow(*_args: object) -> None:
            raise RecursionError("maximum recursion depth exceeded")

        monkeypatch.setattr(yaml.composer.Composer, "compose_node", overflow)
        doc, problems = _load("a: [1]\n")
        assert doc is None
        (problem,) = problems
        assert "nested too deeply" in problem.message
        assert (problem.line, problem.column) == (1, 1)

    def test_recursion_error_while_building_is_a_problem(self, monkeypatch: pytest.MonkeyPatch):
        """A RecursionError while building the data is a problem too."""
        def overflow(*_args: object) -> None:
            raise RecursionError("maximum recursion depth exceeded")

        monkeypatch.setattr(yamlload._Builder, "_mapping", overflow)
        doc, problems = _load("a: [1]\n")
        assert doc is None
        (problem,) = problems
        assert "nested too deeply" in problem.message
        assert (problem.line, problem.column) == (1, 1)

    def test_deep_nesting_with_little_stack_left(self):
        """Even when called from deep inside other code, deep nesting is a problem, not a crash."""
        def nest(levels: int) -> list:
            if levels:
                return nest(levels - 1)
            return _load("a: " + "[" * 90 + "]" * 90 + "\n")[1]

        problems = nest(sys.getrecursionlimit() - 150)
        (problem,) = problems
        assert "nested too deeply" in problem.message
