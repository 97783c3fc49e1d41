"""`obs-pipeline validate` and `obs-pipeline schema`: output formats and exit codes."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from obs_pipeline.commands import main
from obs_pipeline.commands.validate import validate_files
from tests.config import fakes

TESTDATA = Path(__file__).parents[1] / "config" / "testdata"
VALID = TESTDATA / "valid" / "minimal.yaml"
INVALID = TESTDATA / "invalid" / "several_problems.yaml"
REPO = Path(__file__).parents[2]


ENV_TYPED = """
receivers:
  otlp:
    protocols: {grpc: {endpoint: "${env:GRPC}", max_recv_msg_size: "${env:MAX}"}, http: {endpoint: "${env:HOST}:4318"}}
processors:
  batch: {send_batch_size: "${env:BATCH}", timeout: "${env:FLUSH}"}
exporters:
  jsonl_audit: {path: "${env:AUDIT}", fsync: "${env:FSYNC}", retry_on_failure: {multiplier: "${env:MULT}"}}
  debug: {verbosity: "${env:VERBOSITY}"}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: ["${env:EXPORTER}", debug]}
  shutdown_timeout: "${env:GRACE}"
  telemetry:
    logs: {level: "${env:LEVEL}"}
    metrics: {enabled: "${env:METRICS_ON}", endpoint: "127.0.0.1:${env:METRICS_PORT:-0}"}
"""
ENV_TYPED_VALUES = {
    "GRPC": "127.0.0.1:0", "MAX": "8MiB", "HOST": "127.0.0.1", "BATCH": "512", "FLUSH": "1s", "AUDIT": "a.jsonl",
    "FSYNC": "true", "MULT": "2", "VERBOSITY": "normal", "EXPORTER": "jsonl_audit", "GRACE": "5s", "LEVEL": "debug",
    "METRICS_ON": "false",
}


def _run_env(paths: list[Path], environ: dict[str, str]) -> tuple[int, str]:
    out = io.StringIO()
    code = validate_files(paths, out=out, environ=environ)
    return code, out.getvalue()


def _run(paths: list[Path], output_format: str = "text") -> tuple[int, str]:
    out = io.StringIO()
    code = validate_files(paths, output_format, out=out, environ={})
    return code, out.getvalue()


@pytest.mark.usefixtures("fake_registry")
class TestValidateFiles:
    def test_valid_file(self):
        """A valid file: exit 0 and one summary line."""
        assert _run([VALID]) == (0, f"{VALID}: valid\n")

    def test_invalid_file_lists_every_problem_then_a_summary(self):
        """Each problem on its own file:line:col line, then "N problems"."""
        code, text = _run([INVALID])
        lines = text.splitlines()
        assert code == 1
        assert lines[0] == f'{INVALID}:8:13: receivers.stdin.format: must be one of json, otlp_json, text (got "yaml")'
        assert lines[-1] == f"{INVALID}: 4 problems"
        assert len(lines) == 5

    def test_warnings_are_prefixed_and_do_not_fail(self, tmp_path: Path):
        """A warning-only file is valid; the warning line says "warning:"."""
        path = tmp_path / "p.yaml"
        path.write_text(VALID.read_text() + "processors:\n  batch:\n")
        code, text = _run([path])
        assert code == 0
        assert text.splitlines() == [
            f'{path}:9:3: warning: processors.batch: processor "batch" is not used by any pipeline, so it will not run',
            f"{path}: valid (1 warning)",
        ]

    def test_warnings_are_printed_next_to_errors(self, tmp_path: Path):
        """An error in a pipeline does not hide an unused component: both lines, and the summary counts both."""
        path = tmp_path / "p.yaml"
        path.write_text(VALID.read_text().replace("exporters: [debug]", "exporters: [debug, jsonl_audit]") + "processors:\n  batch:\n")
        code, text = _run([path])
        assert code == 1
        assert text.splitlines() == [
            f'{path}:7:51: service.pipelines.logs.exporters[1]: references exporter "jsonl_audit" which is not configured',
            f'{path}:9:3: warning: processors.batch: processor "batch" is not used by any pipeline, so it will not run',
            f"{path}: 1 problem, 1 warning",
        ]
        _, report = _run([path], "json")
        assert [p["severity"] for p in json.loads(report)["files"][0]["problems"]] == ["error", "warning"]

    def test_a_broken_pipeline_still_uses_what_it_names(self, tmp_path: Path):
        """Components named by a pipeline the schema rejected are not also reported unused (one mistake, one message)."""
        path = tmp_path / "p.yaml"
        path.write_text(VALID.read_text().replace("logs: {", "log: {") + "processors:\n  batch:\n")
        code, text = _run([path])
        assert code == 1
        assert [line.split(": ", 2)[1] for line in text.splitlines()[:-1]] == ["service.pipelines.log", "warning"]
        assert 'processor "batch" is not used' in text
        assert text.splitlines()[-1] == f"{path}: 1 problem, 1 warning"

    def test_one_invalid_file_fails_the_run(self, tmp_path: Path):
        """Several files: exit 1 if any is invalid, including one that does not exist."""
        code, text = _run([VALID, tmp_path / "missing.yaml"])
        assert code == 1
        assert f"{tmp_path / 'missing.yaml'}: no such file" in text

    def test_json_report_shape(self):
        """--format json prints one document with every problem's fields."""
        code, text = _run([VALID, INVALID], "json")
        report = json.loads(text)
        assert code == 1
        assert report["valid"] is False
        assert [(f["file"], f["valid"]) for f in report["files"]] == [(str(VALID), True), (str(INVALID), False)]
        first = report["files"][1]["problems"][0]
        assert first == {
            "file": str(INVALID), "line": 8, "column": 13, "path": "receivers.stdin.format",
            "message": 'must be one of json, otlp_json, text (got "yaml")', "severity": "error",
        }

    def test_json_unknown_position_is_null(self, tmp_path: Path):
        """A problem with no position has null line and column."""
        _, text = _run([tmp_path / "missing.yaml"], "json")
        problem = json.loads(text)["files"][0]["problems"][0]
        assert (problem["line"], problem["column"], problem["path"]) == (None, None, "")

    def test_unknown_format(self):
        """A programming error, not a user one."""
        with pytest.raises(ValueError, match="output_format"):
            validate_files([VALID], "xml")


@pytest.mark.usefixtures("fake_registry")
class TestCli:
    @pytest.mark.parametrize(("args", "code"), [([str(VALID)], 0), ([str(INVALID)], 1), ([], 2), (["--format", "xml", str(VALID)], 2)])
    def test_validate_exit_codes(self, args: list[str], code: int):
        """0 valid, 1 invalid, 2 usage."""
        result = CliRunner().invoke(main, ["validate", *args])
        assert result.exit_code == code, result.output

    def test_validate_json(self):
        """--format json goes to stdout as one JSON document."""
        result = CliRunner().invoke(main, ["validate", "--format", "json", str(VALID)])
        assert json.loads(result.stdout)["valid"] is True

    def test_schema_prints_the_composed_schema(self):
        """`schema` prints valid JSON that is a valid Draft 2020-12 schema."""
        result = CliRunner().invoke(main, ["schema"])
        assert result.exit_code == 0
        schema = json.loads(result.stdout)
        Draft202012Validator.check_schema(schema)
        assert "exporter.prom" in schema["$defs"]

    def test_schema_accepts_env_references_where_validate_does(self, tmp_path: Path):
        """Editors see the file before substitution: ${env:...} passes in typed fields, typos still fail."""
        result = CliRunner().invoke(main, ["schema"])
        validator = Draft202012Validator(json.loads(result.stdout))
        path = tmp_path / "p.yaml"
        path.write_text(ENV_TYPED)
        config = yaml.safe_load(ENV_TYPED)
        assert [e.message for e in validator.iter_errors(config)] == []
        assert _run_env([path], ENV_TYPED_VALUES) == (0, f"{path}: valid\n")  # and validate agrees
        assert not validator.is_valid(yaml.safe_load(ENV_TYPED.replace("send_batch_size", "send_batch_sise")))
        assert not validator.is_valid(yaml.safe_load(ENV_TYPED.replace("${env:BATCH}", "many")))
        assert not validator.is_valid(yaml.safe_load(ENV_TYPED.replace("${env:BATCH}", "2${env:BATCH}")))
        # a reference cannot become a mapping (substitution never injects structure): still an error
        protocols = ENV_TYPED.splitlines()[3]
        assert not validator.is_valid(yaml.safe_load(ENV_TYPED.replace(protocols, '    protocols: "${env:PROTOCOLS}"')))

    def test_schema_docs(self, tmp_path: Path):
        """`schema --docs DIR` writes the pages and lists them."""
        result = CliRunner().invoke(main, ["schema", "--docs", str(tmp_path)])
        assert result.exit_code == 0
        assert str(tmp_path / "README.md") in result.stdout.splitlines()


class TestSubprocess:
    def _validate(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "obs_pipeline", "validate", *args],
            cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
        )

    def test_invalid_and_usage(self):
        """A real process: a broken file exits 1 with file:line:col and no traceback; no file exits 2."""
        broken = self._validate(str(TESTDATA / "invalid" / "yaml_syntax.yaml"))
        assert broken.returncode == 1
        assert ":6:4: invalid YAML: " in broken.stdout
        assert "Traceback" not in broken.stdout + broken.stderr
        assert self._validate().returncode == 2

    def test_valid_repo_pipeline(self):
        """A real process validates the repository's pipeline.yaml with the real components."""
        missing = fakes.real_components_missing()
        if missing or not (REPO / "pipeline.yaml").exists():
            pytest.skip(f"needs pipeline.yaml and every real component (missing: {', '.join(missing)})")
        result = self._validate("pipeline.yaml")
        assert result.returncode == 0
        # The one note: which price data the cost processor uses (issue 9: validate says so).
        note, summary = result.stdout.splitlines()
        assert re.fullmatch(r"pipeline\.yaml:\d+:\d+: note: processors\.cost: prices from genai-prices@[\d.]+, "
                            r"data of \d{4}-\d\d-\d\d \(\d+ days? old\)", note), note
        assert summary == "pipeline.yaml: valid"
