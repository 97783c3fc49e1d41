"""load_config / check_config: the broken-config corpus and the typed result of valid configs.

Each ``testdata/invalid/*.yaml`` declares what it must produce in its header:

    # expect: LINE:COLUMN PATH | MESSAGE-SUBSTRING     (COLUMN may be "-"; PATH "-" means the file itself)
    # env: NAME=value                                  (the environment the file is loaded with)
    # absent: TEXT                                     (must not appear anywhere in validate's output)

The reported errors must be exactly the declared ones: same count, and each at the exact line,
column and path.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from obs_pipeline.commands.validate import validate_files
from obs_pipeline.components import ComponentID
from obs_pipeline.config import ConfigError, check_config, load_config
from obs_pipeline.delivery import DeliverySettings, QueueSettings, RetrySettings
from obs_pipeline.signals import Signal

TESTDATA = Path(__file__).parent / "testdata"
INVALID = sorted((TESTDATA / "invalid").glob("*.yaml"))
REPO_PIPELINE = Path(__file__).parents[2] / "pipeline.yaml"
_EXPECT = re.compile(r"# expect: (\d+):(\d+|-) (\S+) \| (.+)")


@dataclass(frozen=True)
class Expected:
    line: int
    column: int | None
    path: str
    message: str


def _header(path: Path) -> tuple[list[Expected], dict[str, str], list[str]]:
    expected: list[Expected] = []
    env: dict[str, str] = {}
    absent: list[str] = []
    for raw in path.read_bytes().decode("latin-1").splitlines():
        if match := _EXPECT.fullmatch(raw):
            line, column, where, message = match.groups()
            expected.append(Expected(int(line), None if column == "-" else int(column), "" if where == "-" else where, message))
        elif raw.startswith("# env: "):
            name, _, value = raw.removeprefix("# env: ").partition("=")
            env[name] = value
        elif raw.startswith("# absent: "):
            absent.append(raw.removeprefix("# absent: "))
    return expected, env, absent


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class TestInvalidCorpus:
    def test_corpus_covers_enough_failure_modes(self):
        """At least 24 broken configs, each declaring what it must produce."""
        assert len(INVALID) >= 24
        assert all(_header(path)[0] for path in INVALID)

    @pytest.mark.usefixtures("any_registry")
    @pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
    def test_reports_exactly_the_declared_problems(self, path: Path):
        """Every declared problem is reported at its exact line, column and path, and nothing else."""
        expected, env, _ = _header(path)
        config, problems = check_config(path, env)
        assert config is None
        errors = [p for p in problems if p.severity == "error"]
        assert len(errors) == len(expected), "\n".join(map(str, errors))
        for want, got in zip(expected, errors, strict=True):
            assert (got.line, got.path) == (want.line, want.path), str(got)
            if want.column is not None:
                assert got.column == want.column, str(got)
            assert want.message in got.message
            assert got.file == str(path)

    @pytest.mark.usefixtures("fake_registry")
    @pytest.mark.parametrize("path", [p for p in INVALID if _header(p)[2]], ids=lambda p: p.stem)
    def test_secrets_never_reach_the_output(self, path: Path):
        """Secret values and environment values appear in neither the text nor the json report."""
        _, env, absent = _header(path)
        for output_format in ("text", "json"):
            out = io.StringIO()
            assert validate_files([path], output_format, out=out, environ=env) == 1
            for text in absent:
                assert text not in out.getvalue()

    @pytest.mark.usefixtures("fake_registry")
    def test_load_config_raises_with_every_problem(self):
        """load_config raises one ConfigError that carries all the problems, formatted file:line:col."""
        path = TESTDATA / "invalid" / "several_problems.yaml"
        with pytest.raises(ConfigError) as info:
            load_config(path, {})
        assert len(info.value.problems) == 4
        assert str(info.value).splitlines()[0].startswith(f"{path}:8:13: receivers.stdin.format: ")


class TestUnreadableFiles:
    def test_missing_file(self, tmp_path: Path):
        """A file that does not exist is one clear problem, not a traceback."""
        _, problems = check_config(tmp_path / "nope.yaml", {})
        assert [p.message for p in problems] == ["no such file"]

    def test_directory(self, tmp_path: Path):
        """A directory is one clear problem."""
        _, problems = check_config(tmp_path, {})
        assert [p.message for p in problems] == ["is a directory, not a config file"]


@pytest.mark.usefixtures("any_registry")
class TestValidConfigs:
    def test_null_bodies_mean_defaults(self, tmp_path: Path):
        """`batch:` and `stdin:` with no body load with every default (collector bug #15728)."""
        config = load_config(_write(tmp_path, """
receivers: {stdin: }
processors:
  batch:
exporters:
  jsonl_audit: {path: ./audit.jsonl}
service:
  pipelines:
    logs: {receivers: [stdin], processors: [batch], exporters: [jsonl_audit]}
"""), {})
        batch = config.processors[ComponentID("batch")].config
        assert _field(batch, "send_batch_size") == 2048
        assert _field(batch, "send_batch_max_size") == 0

    def test_defaults_are_filled(self, tmp_path: Path):
        """A listed protocol gets its default endpoint; an absent one stays off."""
        config = load_config(_write(tmp_path, """
receivers:
  otlp:
    protocols: {grpc: }
exporters:
  jsonl_audit: {path: ./audit.jsonl}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [jsonl_audit]}
"""), {})
        otlp = config.receivers[ComponentID("otlp")]
        assert otlp.factory.endpoints(otlp.config) == [("protocols.grpc.endpoint", "127.0.0.1:4317")]

    def test_service_defaults(self, tmp_path: Path):
        """Telemetry, data_dir and shutdown_timeout have their documented defaults."""
        config = load_config(_write(tmp_path, """
receivers: {stdin: }
exporters: {jsonl_audit: {path: ./a.jsonl}}
service:
  pipelines:
    logs/audit: {receivers: [stdin], exporters: [jsonl_audit]}
"""), {})
        assert config.telemetry.log_level == "info"
        assert config.telemetry.log_format == "text"
        assert config.telemetry.metrics_endpoint == "127.0.0.1:8888"
        assert config.telemetry.health_endpoint == "127.0.0.1:13133"
        assert config.data_dir == Path(".obs-pipeline")
        assert config.shutdown_timeout == 30.0
        assert config.source == tmp_path / "pipeline.yaml"

    def test_pipelines_are_typed(self, tmp_path: Path):
        """Pipeline IDs, signals and component references come back typed, in order."""
        config = load_config(_write(tmp_path, """
receivers: {stdin: , otlp/two: {protocols: {grpc: {endpoint: "127.0.0.1:0"}}}}
processors: {batch: , batch/2: }
exporters: {jsonl_audit: {path: ./a.jsonl}}
service:
  pipelines:
    logs/audit: {receivers: [stdin, otlp/two], processors: [batch/2, batch], exporters: [jsonl_audit]}
  shutdown_timeout: 1m30s
"""), {})
        (spec,) = config.pipelines
        assert spec.id == "logs/audit"
        assert spec.signal is Signal.LOGS
        assert spec.receivers == (ComponentID("stdin"), ComponentID("otlp", "two"))
        assert spec.processors == (ComponentID("batch", "2"), ComponentID("batch"))
        assert config.shutdown_timeout == 90.0

    def test_disabled_telemetry_endpoints_are_none(self, tmp_path: Path):
        """enabled: false turns an endpoint off, and it no longer takes part in port clashes."""
        config = load_config(_write(tmp_path, """
receivers:
  otlp: {protocols: {http: {endpoint: 127.0.0.1:8888}}}
exporters: {jsonl_audit: {path: ./a.jsonl}}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [jsonl_audit]}
  telemetry:
    metrics: {enabled: false}
    health: {enabled: false}
"""), {})
        assert config.telemetry.metrics_endpoint is None
        assert config.telemetry.health_endpoint is None

    def test_unused_component_is_a_warning(self, tmp_path: Path):
        """A component no pipeline lists is loaded, and reported as a warning, not an error."""
        config = load_config(_write(tmp_path, """
receivers: {stdin: }
processors: {batch: }
exporters: {jsonl_audit: {path: ./a.jsonl}}
service:
  pipelines:
    logs: {receivers: [stdin], exporters: [jsonl_audit]}
"""), {})
        (warning,) = config.warnings
        assert (warning.severity, warning.path, warning.line, warning.column) == ("warning", "processors.batch", 3, 14)
        assert "not used by any pipeline" in warning.message
        assert ComponentID("batch") in config.processors

    def test_port_zero_never_clashes(self, tmp_path: Path):
        """Port 0 (pick any free port) may appear several times."""
        load_config(_write(tmp_path, """
receivers:
  otlp: {protocols: {grpc: {endpoint: 127.0.0.1:0}, http: {endpoint: 127.0.0.1:0}}}
exporters: {jsonl_audit: {path: ./a.jsonl}}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [jsonl_audit]}
  telemetry: {metrics: {endpoint: 127.0.0.1:0}, health: {endpoint: "[::1]:0"}}
"""), {})

    def test_unused_receivers_do_not_clash(self, tmp_path: Path):
        """Only components a pipeline uses are started, so only they can clash."""
        config = load_config(_write(tmp_path, """
receivers:
  otlp: {protocols: {grpc: }}
  otlp/spare: {protocols: {grpc: }}
exporters: {jsonl_audit: {path: ./a.jsonl}}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [jsonl_audit]}
"""), {})
        assert [w.path for w in config.warnings] == ["receivers.otlp/spare"]

    def test_repo_pipeline_yaml_is_valid(self):
        """The pipeline.yaml shipped at the repository root loads without errors."""
        if not REPO_PIPELINE.exists():
            pytest.skip("no pipeline.yaml at the repository root")
        config = load_config(REPO_PIPELINE, {})
        assert config.pipelines


def _field(config: object, name: str) -> object:
    """A field of a typed config (real components) or of the dict the fakes return."""
    return config[name] if isinstance(config, dict) else getattr(config, name)


@pytest.mark.usefixtures("any_registry")
class TestValidFiles:
    @pytest.mark.parametrize("path", sorted((TESTDATA / "valid").glob("*.yaml")), ids=lambda p: p.stem)
    def test_loads_without_errors(self, path: Path):
        """Each testdata/valid config loads, with no warnings."""
        config = load_config(path, {})
        assert config.warnings == ()

    def test_everything(self):
        """The feature-rich valid config comes back with its settings."""
        config = load_config(TESTDATA / "valid" / "everything.yaml", {"HTTP_PORT": "5318"})
        otlp = config.receivers[ComponentID("otlp")]
        assert sorted(otlp.factory.endpoints(otlp.config)) == [
            ("protocols.grpc.endpoint", "127.0.0.1:4317"), ("protocols.http.endpoint", "127.0.0.1:5318"),
        ]
        assert [p.id for p in config.pipelines] == ["traces", "logs/agent"]
        assert config.telemetry.log_format == "json"
        assert config.telemetry.health_endpoint is None
        assert config.data_dir == Path("state")
        assert config.shutdown_timeout == 10.0


@pytest.mark.usefixtures("any_registry")
class TestDelivery:
    def test_exporters_get_typed_delivery_settings(self):
        """Each exporter's delivery comes from its filled body: written values, schema defaults for the rest."""
        config = load_config(TESTDATA / "valid" / "everything.yaml", {})
        audit = config.exporters[ComponentID("jsonl_audit")].delivery
        assert audit == DeliverySettings(
            timeout=None,  # the schema's 0s: no bound on an attempt
            retry=RetrySettings(max_elapsed_time=5400.0),
            queue=QueueSettings(queue_size=1000),
        )
        assert config.exporters[ComponentID("debug")].delivery == DeliverySettings()

    def test_timeout_is_settable(self, tmp_path: Path):
        """`timeout` is in the local exporters' schemas; a set one bounds an attempt, in seconds."""
        config = load_config(_write(tmp_path, """
receivers: {stdin: }
exporters:
  debug: {timeout: 1500ms}
  jsonl_audit: {path: ./a.jsonl, timeout: 1m}
service:
  pipelines:
    logs: {receivers: [stdin], exporters: [debug, jsonl_audit]}
"""), {})
        assert config.exporters[ComponentID("debug")].delivery == DeliverySettings(timeout=1.5)
        delivery = config.exporters[ComponentID("jsonl_audit")].delivery
        assert delivery is not None
        assert delivery.timeout == 60.0

    def test_bad_timeout_is_a_schema_error(self, tmp_path: Path):
        """A timeout that is not a duration is reported at its place, like any other value."""
        _, problems = check_config(_write(tmp_path, """
receivers: {stdin: }
exporters: {debug: {timeout: 5}}
service:
  pipelines:
    logs: {receivers: [stdin], exporters: [debug]}
"""), {})
        assert [(p.path, p.message) for p in problems] == [("exporters.debug.timeout", "5 is not a duration (use e.g. 200ms, 5s, 1h30m)")]

    def test_receivers_and_processors_have_none(self):
        """Only exporters are delivered to."""
        config = load_config(TESTDATA / "valid" / "everything.yaml", {})
        assert all(c.delivery is None for c in [*config.receivers.values(), *config.processors.values()])


LOG_LEVEL_CONFIG = """
receivers: {stdin: }
exporters: {debug: }
service:
  pipelines:
    logs: {receivers: [stdin], exporters: [debug]}
  telemetry:
    logs:
      level: %s
"""


@pytest.mark.usefixtures("fake_registry")
class TestLogLevel:
    @pytest.mark.parametrize(("written", "level"), [
        ("info", "info"), ("INFO", "info"), ("Info", "info"), ("DEBUG", "debug"), ("Error", "error"),
        ("warning", "warning"), ("WARNING", "warning"), ("warn", "warning"), ("WARN", "warning"),
    ])
    def test_any_case_and_warn_as_collector_configs_write_them(self, tmp_path: Path, written: str, level: str):
        """telemetry.logs.level is case-insensitive, warn means warning, and the typed config holds lowercase."""
        config = load_config(_write(tmp_path, LOG_LEVEL_CONFIG % written), {})
        assert config.telemetry.log_level == level

    def test_from_the_environment(self, tmp_path: Path):
        """A level that comes from ${env:...} is normalized the same way."""
        config = load_config(_write(tmp_path, LOG_LEVEL_CONFIG % "${env:LEVEL}"), {"LEVEL": "WARN"})
        assert config.telemetry.log_level == "warning"

    @pytest.mark.parametrize("written", ["loud", "inf", "'info '", "1"])
    def test_other_values_are_one_clear_error(self, tmp_path: Path, written: str):
        """Anything else is still an error at the value, naming the accepted levels."""
        _, problems = check_config(_write(tmp_path, LOG_LEVEL_CONFIG % written), {})
        (problem,) = problems
        assert (problem.severity, problem.path, problem.line) == ("error", "service.telemetry.logs.level", 9)
        assert "debug, info, warning" in problem.message
