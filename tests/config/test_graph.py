"""The graph pass: port clashes, component-relative paths, exclusive types, receivers' output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from obs_pipeline import components
from obs_pipeline.components import Kind, Produces, ReceiverFactory, ReceiverTraits, get_factory
from obs_pipeline.config import check_config
from obs_pipeline.config.document import Document, Findings
from obs_pipeline.config.graph import Listener, _clash, relative_problem, resolve_relative
from obs_pipeline.errors import Problem
from obs_pipeline.signals import Signal
from tests.config import fakes


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


def _check(tmp_path: Path, text: str) -> tuple[bool, list[Problem]]:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text, encoding="utf-8")
    config, problems = check_config(path, {})
    return config is not None, problems


def _where(problems: list[Problem]) -> list[tuple[str, int, int, str]]:
    return [(p.severity, p.line, p.column, p.path) for p in problems]


@pytest.mark.usefixtures("any_registry")
class TestExclusiveTypes:
    def test_stdin_is_exclusive(self):
        """The stdin receiver owns standard input; an ordinary type does not own anything."""
        stdin = get_factory(Kind.RECEIVER, "stdin")
        assert isinstance(stdin, ReceiverFactory)
        assert stdin.traits.exclusive
        assert stdin.traits.exclusive_use == "reads standard input"
        otlp = get_factory(Kind.RECEIVER, "otlp")
        assert isinstance(otlp, ReceiverFactory)
        assert not otlp.traits.exclusive
        assert not hasattr(get_factory(Kind.PROCESSOR, "batch"), "traits")

    def test_second_stdin_receiver_is_an_error(self, tmp_path: Path):
        """Two stdin receivers would split standard input between them: the second one is rejected where it is used."""
        ok, problems = _check(tmp_path, """\
receivers: {stdin: , stdin/2: }
exporters: {debug: }
service:
  pipelines:
    logs/a: {receivers: [stdin], exporters: [debug]}
    logs/b: {receivers: [stdin/2], exporters: [debug]}
""")
        assert not ok
        (problem,) = problems
        assert _where(problems) == [("error", 6, 26, "service.pipelines.logs/b.receivers[0]")]
        assert problem.message == (
            'receiver "stdin/2" reads standard input, and so does receiver "stdin" (in pipeline logs/a); '
            "use one stdin receiver in several pipelines instead"
        )

    def test_every_reference_to_a_second_instance_is_reported(self, tmp_path: Path):
        """Each place that lists the second instance must change, so each is reported; the first is not."""
        ok, problems = _check(tmp_path, """\
receivers: {stdin/x: , stdin: }
exporters: {debug: }
service:
  pipelines:
    logs: {receivers: [stdin/x], exporters: [debug]}
    traces: {receivers: [stdin], exporters: [debug]}
    metrics: {receivers: [stdin], exporters: [debug]}
""")
        assert not ok
        assert [p.path for p in problems] == ["service.pipelines.traces.receivers[0]", "service.pipelines.metrics.receivers[0]"]
        assert all('and so does receiver "stdin/x" (in pipeline logs)' in p.message for p in problems)

    def test_one_stdin_receiver_in_several_pipelines_is_valid(self, tmp_path: Path):
        """Sharing one stdin receiver between pipelines is the supported way."""
        ok, problems = _check(tmp_path, """\
receivers: {stdin: {format: otlp_json}}
exporters: {debug: }
service:
  pipelines:
    logs: {receivers: [stdin], exporters: [debug]}
    traces: {receivers: [stdin], exporters: [debug]}
""")
        assert ok, problems
        assert problems == []

    def test_an_unused_second_instance_is_only_unused(self, tmp_path: Path):
        """A second stdin receiver no pipeline lists never runs: it gets the unused warning only."""
        ok, problems = _check(tmp_path, """\
receivers: {stdin: , stdin/spare: }
exporters: {debug: }
service:
  pipelines:
    logs: {receivers: [stdin], exporters: [debug]}
""")
        assert ok
        (warning,) = problems
        assert (warning.severity, warning.path) == ("warning", "receivers.stdin/spare")

    def test_factory_default(self):
        """Types are not exclusive (nor finite, nor narrowed by their config) unless they say so."""
        assert ReceiverFactory.__dataclass_fields__["traits"].default == ReceiverTraits()
        assert ReceiverTraits().exclusive is False
        assert isinstance(fakes.OTLP, ReceiverFactory)
        assert fakes.OTLP.traits.exclusive is False
        assert fakes.OTLP.traits.finite is False
        assert fakes.OTLP.traits.produces is None


TEXT_IN_TRACES = """\
receivers: {stdin: {format: text}}
exporters: {debug: }
service:
  pipelines:
    traces: {receivers: [stdin], exporters: [debug]}
"""


@pytest.mark.usefixtures("any_registry")
class TestReceiverOutput:
    def test_text_lines_in_a_traces_pipeline_are_an_error(self, tmp_path: Path):
        """Text lines become logs; a traces-only receiver would skip every line and "succeed"."""
        ok, problems = _check(tmp_path, TEXT_IN_TRACES)
        assert not ok
        (problem,) = problems
        assert _where(problems) == [("error", 5, 26, "service.pipelines.traces.receivers[0]")]
        assert problem.message == 'receiver "stdin" with format text produces only logs; add it to a logs pipeline'

    def test_reported_once_at_the_first_reference(self, tmp_path: Path):
        """In a traces and a metrics pipeline it is one mistake, reported once."""
        ok, problems = _check(tmp_path, """\
receivers: {stdin/t: {format: text}}
exporters: {debug: }
service:
  pipelines:
    traces: {receivers: [stdin/t], exporters: [debug]}
    metrics: {receivers: [stdin/t], exporters: [debug]}
""")
        assert not ok
        assert [p.path for p in problems] == ["service.pipelines.traces.receivers[0]"]
        assert problems[0].message.startswith('receiver "stdin/t" with format text produces only logs')

    def test_text_lines_reach_a_logs_pipeline(self, tmp_path: Path):
        """One pipeline that takes logs is enough, even if others get nothing from it."""
        ok, problems = _check(tmp_path, """\
receivers: {stdin: {format: text}}
exporters: {debug: }
service:
  pipelines:
    logs: {receivers: [stdin], exporters: [debug]}
    traces: {receivers: [stdin], exporters: [debug]}
""")
        assert ok, problems
        assert problems == []

    def test_json_lines_in_a_traces_pipeline_are_a_warning(self, tmp_path: Path):
        """format json (the default) takes OTLP/JSON lines of any signal, but plain JSON lines are logs."""
        ok, problems = _check(tmp_path, """\
receivers: {stdin: }
exporters: {debug: }
service:
  pipelines:
    traces: {receivers: [stdin], exporters: [debug]}
""")
        assert ok
        (warning,) = problems
        assert _where(problems) == [("warning", 5, 26, "service.pipelines.traces.receivers[0]")]
        assert warning.message == (
            'receiver "stdin" with format json produces logs from plain JSON lines, but none of its pipelines '
            "takes logs, so plain JSON lines will be skipped; add it to a logs pipeline to keep them"
        )

    @pytest.mark.parametrize(("fmt", "pipeline"), [("json", "logs"), ("otlp_json", "traces"), ("otlp_json", "metrics")])
    def test_output_that_reaches_a_pipeline_is_fine(self, tmp_path: Path, fmt: str, pipeline: str):
        """json in a logs pipeline, otlp_json anywhere: nothing to say."""
        ok, problems = _check(tmp_path, f"""\
receivers: {{stdin: {{format: {fmt}}}}}
exporters: {{debug: }}
service:
  pipelines:
    {pipeline}: {{receivers: [stdin], exporters: [debug]}}
""")
        assert ok, problems
        assert problems == []

    def test_not_checked_when_the_format_is_invalid(self, tmp_path: Path):
        """A format the schema rejects gets that one message, not a second one about signals."""
        ok, problems = _check(tmp_path, TEXT_IN_TRACES.replace("format: text", "format: yaml"))
        assert not ok
        assert [p.path for p in problems] == ["receivers.stdin.format"]

    def test_real_stdin_produces(self):
        """The real stdin factory: text -> logs only; json -> anything, usually logs; otlp_json -> anything."""
        from obs_pipeline.receivers import stdin  # noqa: PLC0415 - the real module, whatever the registry

        def produces(fmt: str) -> Produces:
            produces_hook = stdin.FACTORY.traits.produces
            assert produces_hook is not None
            result = produces_hook(stdin.parse({"format": fmt, "max_line_size": "1MiB", "max_batch_lines": 1000}))
            assert isinstance(result, Produces)
            return result

        assert produces("text") == Produces(frozenset({Signal.LOGS}), because="with format text")
        assert produces("json") == Produces(
            frozenset(Signal), because="with format json", usual=frozenset({Signal.LOGS}), usual_input="plain JSON lines",
        )
        assert produces("otlp_json").signals == frozenset(Signal)
        assert not produces("otlp_json").usual


class TestProducesHook:
    """The hook's contract, with a made-up receiver."""

    @pytest.fixture
    def metrics_only(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(components, "_BUILTIN", {**fakes.registry(real=False), (Kind.RECEIVER, "stdin"): f"{__name__}:METRICS_STDIN"})

    def test_a_bare_frozenset_is_accepted(self, tmp_path: Path, metrics_only: None):
        """A hook may return just the signals; the message then names no setting."""
        ok, problems = _check(tmp_path, TEXT_IN_TRACES)
        assert not ok
        (problem,) = problems
        assert problem.message == 'receiver "stdin" produces only metrics; add it to a metrics pipeline'

    def test_several_signals_and_a_failing_hook(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        """Several signals are listed; a hook that raises is an internal error, not a traceback."""
        monkeypatch.setattr(components, "_BUILTIN", {**fakes.registry(real=False), (Kind.RECEIVER, "stdin"): f"{__name__}:TWO_SIGNALS"})
        _, problems = _check(tmp_path, TEXT_IN_TRACES)
        assert [p.message for p in problems] == [
            'receiver "stdin" produces only metrics and logs; add it to a metrics or logs pipeline',
        ]
        monkeypatch.setattr(components, "_BUILTIN", {**fakes.registry(real=False), (Kind.RECEIVER, "stdin"): f"{__name__}:BROKEN"})
        _, problems = _check(tmp_path, TEXT_IN_TRACES)
        assert [(p.path, p.message) for p in problems] == [
            ("receivers.stdin", "internal error in the receiver type stdin telling what it produces (ZeroDivisionError)"),
        ]


def _fail(_cfg: Any) -> frozenset[Signal]:
    raise ZeroDivisionError


METRICS_STDIN = fakes._factory(
    Kind.RECEIVER, "stdin", "receivers/stdin.schema.json",
    traits=ReceiverTraits(produces=lambda _cfg: frozenset({Signal.METRICS})),
)
TWO_SIGNALS = fakes._factory(
    Kind.RECEIVER, "stdin", "receivers/stdin.schema.json",
    traits=ReceiverTraits(produces=lambda _cfg: Produces(frozenset({Signal.METRICS, Signal.LOGS}))),
)
BROKEN = fakes._factory(Kind.RECEIVER, "stdin", "receivers/stdin.schema.json", traits=ReceiverTraits(produces=_fail))
