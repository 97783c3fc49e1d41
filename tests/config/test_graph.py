"""The graph pass helpers: port clashes and component-relative paths."""

from __future__ import annotations

import pytest

from obs_pipeline.config.document import Document, Findings
from obs_pipeline.config.graph import Listener, _clash, relative_problem, resolve_relative
from obs_pipeline.errors import Problem


def _listener(host: str, port: int) -> Listener:
    return Listener(("x",), host, port, f"{host}:{port}", written=True)


class TestClash:
    @pytest.mark.parametrize(
        ("a", "b", "clash"),
        [
            (("127.0.0.1", 4317), ("127.0.0.1", 4317), True),
            (("127.0.0.1", 4317), ("127.0.0.1", 4318), False),
            (("0.0.0.0", 4317), ("10.0.0.5", 4317), True),
            (("::", 4317), ("127.0.0.1", 4317), True),
            (("localhost", 4317), ("127.0.0.1", 4317), True),
            (("localhost", 4317), ("::1", 4317), True),
            (("10.0.0.5", 4317), ("127.0.0.1", 4317), False),
            (("0.0.0.0", 0), ("0.0.0.0", 0), False),
        ],
    )
    def test_clash_rules(self, a, b, clash):
        """Same port on the same host, or with a wildcard host, clashes; port 0 never does."""
        assert _clash(_listener(*a), _listener(*b)) is clash
        assert _clash(_listener(*b), _listener(*a)) is clash


class TestRelativePaths:
    def _findings(self) -> Findings:
        data = {"exporters": {"otlp/x": {"headers": {"x.api.key": "v"}, "rules": [{"pattern": "("}]}}}
        doc = Document("p.yaml", data, value_pos={("exporters", "otlp/x", "rules", 0, "pattern"): (9, 20)},
                       key_pos={("exporters", "otlp/x"): (3, 3)})
        return Findings(doc)

    def test_dotted_keys_and_indexes(self):
        """Keys containing dots and list indexes resolve against the actual data."""
        findings = self._findings()
        base = ("exporters", "otlp/x")
        assert resolve_relative(findings, base, "headers.x.api.key") == (*base, "headers", "x.api.key")
        assert resolve_relative(findings, base, "rules[0].pattern") == (*base, "rules", 0, "pattern")

    def test_component_problem_is_placed_in_the_file(self):
        """A component's own problem gets the full path and the position of its value."""
        findings = self._findings()
        relative_problem(findings, ("exporters", "otlp/x"), Problem("rules[0].pattern", "does not compile"))
        (problem,) = findings.problems
        assert (problem.path, problem.line, problem.column) == ("exporters.otlp/x.rules[0].pattern", 9, 20)
