"""`obs-pipeline test CONFIG TESTS`: cases as data run through the config's real processors."""

from __future__ import annotations

import io
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from obs_pipeline.commands import main
from obs_pipeline.components import Kind, known_types
from obs_pipeline.exitcodes import ExitCode
from obs_pipeline.testrun import load_cases, run_tests

REPO = Path(__file__).parents[2]
EXAMPLE = REPO / "docs" / "examples" / "redaction-tests.yaml"

CONFIG = """
receivers: {otlp: {protocols: {grpc: {endpoint: "127.0.0.1:0"}}}}
processors:
  batch: {timeout: 5s}
  batch/small: {send_batch_size: 1}
exporters: {debug: {}}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [debug]}
    logs/audit: {receivers: [otlp], processors: [batch/small], exporters: [debug]}
"""

PASSING = """
tests:
  - name: batch keeps a span as it was
    input:
      span:
        name: chat gpt-4o
        attributes: {gen_ai.operation.name: chat, gen_ai.usage.input_tokens: 12, gen_ai.usage.cost.amount: 0.5}
        resource: {service.name: agent}
        events: [{name: exception, attributes: {exception.message: boom}}]
        status: {code: error, message: boom}
    expect:
      attributes: {gen_ai.usage.input_tokens: 12, gen_ai.usage.cost.amount: 0.5}
      resource_attributes: {service.name: agent}
      absent: [redaction.masked.count]
      untouched: [gen_ai.operation.name, service.name, "gpt-4o"]
      redacted: []
      name: chat gpt-4o
      status_message: boom
  - name: a log body of every shape goes through the logs pipeline
    input:
      log:
        body: {text: hello, list: [1, 2.5, true, null], raw: {$bytes: aGVsbG8=}}
        severity: ERROR
    expect:
      body: {text: hello, list: [1, 2.5, true, null], raw: {$bytes: aGVsbG8=}}
  - name: processors can be named directly
    processors: [batch/small, batch]
    input: {span: {name: tool, attributes: {gen_ai.tool.name: shell}}}
    expect: {attributes: {gen_ai.tool.name: shell}}
"""

FAILING = """
tests:
  - name: wrong expectations
    input:
      span:
        name: chat
        attributes: {gen_ai.request.model: gpt-4o, flag: true, password: hunter2hunter2}
    expect:
      attributes: {gen_ai.request.model: gpt-4.1, flag: 1, missing: x}
      absent: [password]
      redacted: [password-assignment]
      not_contains: [hunter2hunter2]
      name: other
  - name: ok
    input: {span: {name: fine}}
    expect: {name: fine}
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, Path]:
    config = tmp_path / "pipeline.yaml"
    config.write_text(CONFIG)
    return config, tmp_path / "tests.yaml", tmp_path / "out" / "junit.xml"


def _run(config: Path, tests: Path, text: str, **kwargs: object) -> tuple[ExitCode, str]:
    tests.write_text(text)
    out = io.StringIO()
    code = run_tests(config, tests, out=out, **kwargs)  # type: ignore[arg-type]
    return code, out.getvalue()


class TestRunningCases:
    """Cases run through the processors and are judged."""

    def test_passing_cases_exit_zero_with_a_pass_line_each(self, files: tuple[Path, Path, Path]) -> None:
        """Every case passes: one PASS line per case, a summary, exit 0."""
        config, tests, _ = files
        code, out = _run(config, tests, PASSING)
        assert code is ExitCode.OK, out
        assert out.count("PASS ") == 3
        assert "3 passed" in out

    def test_failing_case_shows_a_readable_diff_and_exits_one(self, files: tuple[Path, Path, Path]) -> None:
        """Each missed expectation is one line naming where, what was expected and what came out."""
        config, tests, _ = files
        code, out = _run(config, tests, FAILING)
        assert code is ExitCode.FAILED
        assert f"FAIL   wrong expectations ({tests}:3)" in out
        assert 'attributes.gen_ai.request.model: expected "gpt-4.1", got "gpt-4o"' in out
        assert "attributes.flag: expected 1, got true" in out  # a boolean is not a number
        assert 'attributes.missing: expected "x", but it is absent' in out
        assert 'attributes.password: expected absent, got "hunter2hunter2"' in out
        assert "redacted: expected rules ['password-assignment'], got [] (missing password-assignment)" in out
        assert 'not_contains: "hunter2hunter2" is still in attributes.password' in out
        assert 'name: expected "other", got "chat"' in out
        assert "PASS   ok" in out
        assert "1 passed, 1 failed" in out

    def test_select_runs_only_matching_cases(self, files: tuple[Path, Path, Path]) -> None:
        """``select`` keeps the cases whose name contains the text."""
        config, tests, _ = files
        code, out = _run(config, tests, FAILING, select="ok")
        assert code is ExitCode.OK
        assert "wrong expectations" not in out

    def test_an_unknown_pipeline_is_an_error_not_a_pass(self, files: tuple[Path, Path, Path]) -> None:
        """A case naming a pipeline that is not configured (or of another signal) cannot run: ERROR, exit 1."""
        config, tests, _ = files
        text = """
tests:
  - {name: nowhere, pipeline: traces/nope, input: {span: {}}, expect: {name: span}}
  - {name: wrong signal, pipeline: logs/audit, input: {span: {}}, expect: {name: span}}
  - {name: no such processor, processors: [redaction/x], input: {span: {}}, expect: {name: span}}
"""
        code, out = _run(config, tests, text)
        assert code is ExitCode.FAILED
        assert "pipeline: 'traces/nope' is not in" in out
        assert "pipeline: 'logs/audit' carries logs, not a span" in out
        assert "processors: 'redaction/x' is not configured" in out
        assert "3 errors" in out


class TestJunit:
    """``--junit FILE`` writes JUnit XML that CI systems read."""

    def test_junit_xml_counts_and_failure_text(self, files: tuple[Path, Path, Path]) -> None:
        """One testcase per case; the failed one carries its differences."""
        config, tests, junit = files
        _run(config, tests, FAILING, junit=junit)
        root = ET.parse(junit).getroot()
        suite = root.find("testsuite")
        assert suite is not None
        assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0")
        cases = {case.get("name"): case for case in suite.iter("testcase")}
        failure = cases["wrong expectations"].find("failure")
        assert failure is not None
        assert failure.text is not None
        assert "attributes.missing" in failure.text
        assert cases["ok"].find("failure") is None

    def test_cli_writes_junit_and_exits_non_zero(self, files: tuple[Path, Path, Path]) -> None:
        """The command itself: report on stdout, exit 1, XML written."""
        config, tests, junit = files
        tests.write_text(FAILING)
        result = CliRunner().invoke(main, ["test", str(config), str(tests), "--junit", str(junit)])
        assert result.exit_code == 1
        assert "FAIL   wrong expectations" in result.output
        assert junit.exists()


class TestTestsFileValidation:
    """A bad tests file is reported with file:line:col, and nothing runs."""

    def test_every_problem_has_a_position(self, files: tuple[Path, Path, Path]) -> None:
        """Unknown keys, wrong shapes and unbuildable records are all reported at once."""
        config, tests, _ = files
        text = """tests:
  - name: a
    input:
      span:
        status: {code: maybe}
    expect: {attributes: {}}
  - name: b
    pipelin: traces
    input: {log: {body: 1, colour: red}}
    expect: {redacted: openai, dropped: 3}
  - input: {span: {}, log: {}}
  - name: a
    input: {span: {trace_id: xyz}}
    expect: {surprise: 1}
"""
        code, out = _run(config, tests, text)
        assert code is ExitCode.FAILED
        lines = out.splitlines()
        expected = [
            f"{tests}:5:24: tests[0].input.span.status.code: must be unset, ok or error",
            f"{tests}:8:5: tests[1].pipelin: unknown key",
            f"{tests}:9:28: tests[1].input.log.colour: unknown key",
            f"{tests}:10:24: tests[1].expect.redacted: must be a list of non-empty strings",
            f"{tests}:10:41: tests[1].expect.dropped: must be true or false",
            f"{tests}:11:5: tests[2]: every case needs a `name`",
            f"{tests}:11:12: tests[2].input: must be a mapping with exactly one of `span` or `log`",
            f"{tests}:13:30: tests[3].input.span.trace_id: must be 32 hex digits",
            f"{tests}:14:14: tests[3].expect.surprise: unknown key",
        ]
        for want in expected:
            assert any(line.startswith(want) for line in lines), (want, out)
        assert "no test was run" in out
        assert "PASS" not in out

    def test_not_a_tests_file(self, tmp_path: Path) -> None:
        """A list at the top, or an empty file, says what a tests file looks like."""
        path = tmp_path / "t.yaml"
        path.write_text("- a\n- b\n")
        _, problems = load_cases(path)
        assert "expected a mapping with a `tests` list" in str(problems[0])

    def test_duplicate_case_names_are_refused(self, tmp_path: Path) -> None:
        """Two cases with one name would make a JUnit report ambiguous."""
        path = tmp_path / "t.yaml"
        path.write_text("tests:\n  - {name: a, input: {span: {}}, expect: {name: x}}\n"
                        "  - {name: a, input: {span: {}}, expect: {name: y}}\n")
        cases, problems = load_cases(path)
        assert len(cases) == 1
        assert "a second case named 'a' (the first is at line 2)" in str(problems[0])

    def test_an_invalid_config_runs_nothing(self, files: tuple[Path, Path, Path]) -> None:
        """The config's own problems are reported like validate's; the JUnit report says why nothing ran."""
        config, tests, junit = files
        config.write_text(CONFIG.replace("timeout: 5s", "timeout: soon"))
        code, out = _run(config, tests, PASSING, junit=junit)
        assert code is ExitCode.FAILED
        assert "processors.batch.timeout" in out
        assert "no test was run" in out
        error = ET.parse(junit).getroot().find("testsuite/testcase/error")
        assert error is not None
        assert "processors.batch.timeout" in (error.text or "")


needs_redaction = pytest.mark.skipif("redaction" not in known_types(Kind.PROCESSOR),
                                     reason="the redaction processor is not registered yet")


@needs_redaction
class TestRedactionCases:
    """The shipped example runs green against the default pipeline, and catches a weakened rule set."""

    def test_the_shipped_example_passes_against_the_default_pipeline(self, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
        """``docs/examples/redaction-tests.yaml`` is what users copy: it must pass as shipped."""
        monkeypatch.setenv("OBS_PIPELINE_AUDIT_PATH", str(tmp_path / "audit.jsonl"))
        out = io.StringIO()
        code = run_tests(REPO / "pipeline.yaml", EXAMPLE, out=out)
        assert code is ExitCode.OK, out.getvalue()
        assert "FAIL" not in out.getvalue()

    def test_the_shipped_example_passes_through_redaction_alone(self, tmp_path: Path) -> None:
        """The example depends on the redaction processor only (the default pipeline adds cost and budget)."""
        config = tmp_path / "pipeline.yaml"
        config.write_text(CONFIG.replace("processors:\n", "processors:\n  redaction: {}\n")
                          .replace("processors: [batch]", "processors: [redaction, batch]")
                          .replace("logs/audit:", "logs:").replace("processors: [batch/small]", "processors: [redaction]"))
        out = io.StringIO()
        code = run_tests(config, EXAMPLE, out=out)
        assert code is ExitCode.OK, out.getvalue()

    def test_a_disabled_rule_fails_its_case(self, tmp_path: Path) -> None:
        """With ``disable: [openai-api-key]`` the case that expects it fails and names the rule."""
        config = tmp_path / "pipeline.yaml"
        config.write_text(CONFIG.replace("processors:\n", "processors:\n  redaction: {disable: [openai-api-key]}\n")
                          .replace("processors: [batch]", "processors: [redaction, batch]"))
        out = io.StringIO()
        tests = tmp_path / "tests.yaml"
        tests.write_text("""
tests:
  - name: openai key in a prompt
    input: {span: {name: chat, attributes: {gen_ai.input.messages: "use sk-proj-abcdefghijklmnopqrstuvwxyz0123456789 now"}}}
    expect: {redacted: [openai-api-key], not_contains: [sk-proj-abcdefghijklmnopqrstuvwxyz0123456789]}
""")
        code = run_tests(config, tests, out=out)
        assert code is ExitCode.FAILED
        assert "missing openai-api-key" in out.getvalue()

    def test_a_second_redaction_stage_adds_to_the_first_and_a_senders_summary_is_renamed(self, tmp_path: Path) -> None:
        """The engine tells a processor what runs ahead of it: the second stage trusts the first, not the sender."""
        config = tmp_path / "pipeline.yaml"
        config.write_text(CONFIG.replace("processors:\n", "processors:\n  redaction: {disable: [github-pat]}\n"
                                                          "  redaction/2: {}\n")
                          .replace("processors: [batch]", "processors: [redaction, redaction/2, batch]"))
        tests = tmp_path / "tests.yaml"
        tests.write_text("""
tests:
  - name: two stages, one forged summary
    input:
      span:
        name: chat
        attributes:
          a: sk-proj-abcdefghijklmnopqrstuvwxyz0123456789
          b: ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8
          redaction.masked.count: 1000000
          redaction.masked.rules: [spoofed-rule]
    expect:
      redacted: [openai-api-key, github-pat]
      attributes:
        redaction.masked.count: 2
        redaction.masked.rules: [openai-api-key, github-pat]
        redaction.claimed.masked.count: 1000000
        redaction.claimed.masked.rules: [spoofed-rule]
""")
        out = io.StringIO()
        code = run_tests(config, tests, out=out)
        assert code is ExitCode.OK, out.getvalue()


@pytest.mark.skipif("budget" not in known_types(Kind.PROCESSOR), reason="the budget processor is not registered yet")
def test_a_case_never_binds_the_pipelines_ports_nor_charges_shared_state(tmp_path: Path) -> None:
    """A budget's endpoint held by a running pipeline, its Redis down, its webhook live: the case runs, nothing is called.

    The endpoint's port is taken, the Redis URL points at nothing, and the webhook points at a
    listening socket that must never see a connection.
    """
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    config = tmp_path / "pipeline.yaml"
    config.write_text(CONFIG.replace("processors:\n", (
        "processors:\n  budget:\n    budgets: [{id: cap, scope: session, limit_usd: 0.1, window: session}]\n"
        f"    endpoint: 127.0.0.1:{port}\n    state: redis://127.0.0.1:1/0\n"
        f"    actions: [annotate, audit, webhook]\n    webhook: {{url: 'http://127.0.0.1:{port}/hook'}}\n"), 1)
        .replace("processors: [batch]", "processors: [budget, batch]"))
    tests = tmp_path / "tests.yaml"
    tests.write_text("""
tests:
  - name: an annotated span
    input: {span: {name: chat, attributes: {gen_ai.operation.name: chat, gen_ai.conversation.id: s1,
                                             gen_ai.usage.cost.amount: 0.5}}}
    expect: {attributes: {budget.id: cap, budget.state: exceeded}}
""")
    out = io.StringIO()
    try:
        code = run_tests(config, tests, out=out)
        held.settimeout(0.5)
        with pytest.raises(TimeoutError):
            held.accept()  # the exceeded event's webhook would have connected here
    finally:
        held.close()
    assert code is ExitCode.OK, out.getvalue()


def test_a_processor_whose_background_task_dies_fails_the_case_with_the_cause(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A flusher that dies is reported as the case's error, not hidden behind a missing record."""
    from obs_pipeline.processors._helper import BufferingProcessor  # noqa: PLC0415

    async def dies(self: BufferingProcessor) -> None:
        raise RuntimeError("flusher bug")

    monkeypatch.setattr(BufferingProcessor, "_flush_loop", dies)
    config = tmp_path / "pipeline.yaml"
    config.write_text(CONFIG)
    tests = tmp_path / "tests.yaml"
    tests.write_text("""
tests:
  - name: a span
    input: {span: {name: chat}}
    expect: {name: chat}
""")
    out = io.StringIO()
    assert run_tests(config, tests, out=out) is ExitCode.FAILED
    assert "FAIL   a span" in out.getvalue()
    assert "a background task failed: RuntimeError" in out.getvalue()
