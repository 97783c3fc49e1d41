"""The otlp exporter's config: the four type names, URLs per signal, and every bad config at its file, line and key."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pytest

from obs_pipeline.commands.validate import validate_files
from obs_pipeline.components import Kind, get_factory
from obs_pipeline.config import ConfigError, check_config, load_config
from obs_pipeline.exporters.otlp import config as otlp_config
from obs_pipeline.exporters.otlp.config import GRPC, HTTP, signal_urls
from obs_pipeline.secret import Secret
from obs_pipeline.signals import Signal
from obs_pipeline.testing import parse_config
from tests.tlskit import make_pki

SECRET = "s3cr3t-api-key-value"


def write(tmp_path: Path, exporters: str, pipeline: str = "") -> Path:
    """A pipeline.yaml with ``exporters`` (YAML, indented under ``exporters:``), all used by a traces pipeline."""
    names = pipeline or ", ".join(
        line.strip().rstrip(":") for line in textwrap.dedent(exporters).splitlines()
        if line.strip() and not line.startswith((" ", "\t")) and line.rstrip().endswith(":"))
    text = "receivers:\n  otlp:\nexporters:\n" + textwrap.indent(textwrap.dedent(exporters), "  ") + (
        f"service:\n  pipelines:\n    traces: {{receivers: [otlp], exporters: [{names}]}}\n")
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def errors(path: Path, env: dict[str, str] | None = None) -> list[tuple[int, str, str]]:
    """(line, path, message) of each error of the file, in file order."""
    config, problems = check_config(path, env or {})
    assert config is None, "the config should be invalid"
    return [(p.line, p.path, p.message) for p in problems if p.severity == "error"]


class TestTypeNames:
    @pytest.mark.parametrize(("type_", "endpoint", "protocol"), [
        ("otlp", "collector:4317", GRPC),
        ("otlp_grpc", "collector:4317", GRPC),
        ("otlp_http", "https://collector:4318", HTTP),
        ("otlphttp", "https://collector:4318", HTTP),
    ])
    def test_each_name_fixes_or_defaults_the_protocol(self, type_, endpoint, protocol):
        """otlp defaults to grpc (as the collector); the aliases carry the protocol their name says."""
        factory = get_factory(Kind.EXPORTER, type_)
        cfg = parse_config(factory, {"endpoint": endpoint})
        assert cfg.protocol == protocol
        assert cfg.compression == "gzip"
        assert cfg.tls.insecure is False
        assert factory.signals == frozenset(Signal)

    def test_otlp_takes_protocol_http(self):
        cfg = parse_config(get_factory(Kind.EXPORTER, "otlp"), {"endpoint": "http://c:4318", "protocol": "http/protobuf"})
        assert cfg.protocol == HTTP

    def test_otlp_grpc_has_no_protocol_or_signal_urls(self, tmp_path):
        """The alias schemas offer only their protocol's keys: an unknown key is an error at its line."""
        path = write(tmp_path, """\
            otlp_grpc:
              endpoint: collector:4317
              protocol: http/protobuf
              traces_endpoint: http://collector:4318/v1/traces
            """)
        found = errors(path)
        assert [(line, where) for line, where, _ in found] == [(6, "exporters.otlp_grpc.protocol"),
                                                                (7, "exporters.otlp_grpc.traces_endpoint")]

    def test_header_values_are_secrets(self):
        cfg = parse_config(get_factory(Kind.EXPORTER, "otlp"), {"endpoint": "c:4317", "headers": {"X-Key": SECRET}})
        assert cfg.headers == {"X-Key": Secret(SECRET)}
        assert SECRET not in repr(cfg)


class TestSignalUrls:
    @pytest.mark.parametrize(("endpoint", "traces"), [
        ("https://c:4318", "https://c:4318/v1/traces"),
        ("https://c:4318/", "https://c:4318/v1/traces"),
        ("https://c/otlp", "https://c/otlp/v1/traces"),
    ])
    def test_the_signal_path_is_appended_as_the_collector_does(self, endpoint, traces):
        cfg = parse_config(get_factory(Kind.EXPORTER, "otlphttp"), {"endpoint": endpoint})
        urls = signal_urls(cfg)
        assert urls[Signal.TRACES] == traces
        assert urls[Signal.LOGS] == traces.replace("traces", "logs")
        assert urls[Signal.METRICS] == traces.replace("traces", "metrics")

    def test_a_signal_endpoint_is_used_as_written(self):
        cfg = parse_config(get_factory(Kind.EXPORTER, "otlp_http"), {
            "endpoint": "https://c:4318", "logs_endpoint": "https://logs.example.com/ingest"})
        urls = signal_urls(cfg)
        assert urls[Signal.LOGS] == "https://logs.example.com/ingest"
        assert urls[Signal.TRACES] == "https://c:4318/v1/traces"


class TestBadConfigs:
    """Each problem is reported at its file, line and key, through the real config layer."""

    def test_grpc_endpoint_with_a_scheme(self, tmp_path):
        path = write(tmp_path, """\
            otlp:
              endpoint: https://collector:4317
            """)
        ((line, where, message),) = errors(path)
        assert (line, where) == (5, "exporters.otlp.endpoint")
        assert "has a scheme" in message
        assert "host:port" in message

    def test_grpc_endpoint_with_a_path(self, tmp_path):
        path = write(tmp_path, """\
            otlp/backend:
              endpoint: collector:4317/v1/traces
            """)
        ((line, where, message),) = errors(path)
        assert (line, where) == (5, "exporters.otlp/backend.endpoint")
        assert "has a path" in message

    def test_grpc_endpoint_without_a_port(self, tmp_path):
        path = write(tmp_path, """\
            otlp_grpc:
              endpoint: collector
            """)
        ((line, where, message),) = errors(path)
        assert (line, where) == (5, "exporters.otlp_grpc.endpoint")
        assert "host:port" in message

    def test_http_endpoint_without_a_scheme(self, tmp_path):
        path = write(tmp_path, """\
            otlphttp:
              endpoint: collector:4318
            """)
        ((line, where, message),) = errors(path)
        assert (line, where) == (5, "exporters.otlphttp.endpoint")
        assert "has no scheme" in message
        assert "https://collector:4318" in message

    def test_http_signal_endpoint_without_a_scheme_and_otlp_with_grpc_and_a_signal_endpoint(self, tmp_path):
        path = write(tmp_path, """\
            otlp_http:
              endpoint: https://collector:4318
              metrics_endpoint: collector:4318/v1/metrics
            otlp:
              endpoint: collector:4317
              tls: {insecure: true}
              logs_endpoint: https://collector:4318/v1/logs
            """)
        assert [(line, where) for line, where, _ in errors(path)] == [
            (6, "exporters.otlp_http.metrics_endpoint"), (10, "exporters.otlp.logs_endpoint")]

    def test_tls_file_that_does_not_exist(self, tmp_path):
        path = write(tmp_path, f"""\
            otlp:
              endpoint: collector:4317
              tls:
                ca_file: {tmp_path}/missing-ca.pem
            """)
        ((line, where, message),) = errors(path)
        assert (line, where) == (7, "exporters.otlp.tls.ca_file")
        assert message == f'cannot read "{tmp_path}/missing-ca.pem": no such file'

    def test_key_file_without_cert_file(self, tmp_path):
        key = tmp_path / "client.key"
        key.write_text("not checked here")
        path = write(tmp_path, f"""\
            otlp:
              endpoint: collector:4317
              tls:
                key_file: {key}
            """)
        ((line, where, message),) = errors(path)
        assert (line, where) == (7, "exporters.otlp.tls.key_file")
        assert "needs tls.cert_file" in message

    def test_insecure_skip_verify_with_grpc(self, tmp_path):
        path = write(tmp_path, """\
            otlp:
              endpoint: collector:4317
              tls: {insecure_skip_verify: true}
            """)
        ((line, where, message),) = errors(path)
        assert (line, where) == (6, "exporters.otlp.tls.insecure_skip_verify")
        assert "not supported with protocol grpc" in message

    @pytest.mark.parametrize("text", ["abc\ndef", "abc\rdef"], ids=["newline", "carriage-return"])
    def test_header_value_with_a_line_break_from_the_environment(self, tmp_path, text):
        """The value comes from ${env:...}; the error names the header, never the value."""
        path = write(tmp_path, """\
            otlphttp:
              endpoint: https://collector:4318
              headers:
                X-Api-Key: ${env:OTLP_TEST_KEY}
            """)
        env = {"OTLP_TEST_KEY": SECRET + text}
        ((line, where, message),) = errors(path, env)
        assert (line, where) == (7, "exporters.otlphttp.headers.X-Api-Key")
        assert "line break" in message
        for output_format in ("text", "json"):
            out = io.StringIO()
            assert validate_files([path], output_format, out=out, environ=env) == 1
            assert SECRET not in out.getvalue()
            assert "exporters.otlphttp.headers.X-Api-Key" in out.getvalue()

    def test_header_name_that_is_not_a_token(self, tmp_path):
        path = write(tmp_path, """\
            otlphttp:
              endpoint: https://collector:4318
              headers:
                "X Api Key": value
            """)
        ((line, where, _),) = errors(path)
        assert (line, where) == (7, "exporters.otlphttp.headers.X Api Key")

    def test_compression_other_than_gzip_or_none(self, tmp_path):
        path = write(tmp_path, """\
            otlp:
              endpoint: collector:4317
              compression: zstd
            """)
        ((line, where, message),) = errors(path)
        assert (line, where) == (6, "exporters.otlp.compression")
        assert "gzip, none" in message

    def test_every_problem_at_once_with_load_config(self, tmp_path):
        """load_config raises one ConfigError with all of them, each formatted file:line:col: key: message."""
        path = write(tmp_path, f"""\
            otlp:
              endpoint: http://collector:4317
              tls:
                cert_file: {tmp_path}/nope.pem
            """)
        with pytest.raises(ConfigError) as info:
            load_config(path, {})
        lines = str(info.value).splitlines()
        assert lines[0].startswith(f"{path}:5:")
        assert "exporters.otlp.endpoint: " in lines[0]
        assert any(line.startswith(f"{path}:7:") and "exporters.otlp.tls.cert_file: cannot read" in line for line in lines)
        assert any("exporters.otlp.tls.cert_file: needs tls.key_file" in line for line in lines)


class TestSecretsNeverEchoed:
    def test_validate_prints_no_header_value(self, tmp_path):
        """A valid config with secret headers from the file and the environment: neither value is in validate's output."""
        path = write(tmp_path, """\
            otlp:
              endpoint: collector:4317
              tls: {insecure: true}
              headers:
                authorization: Bearer in-the-file-value
                x-api-key: ${env:OTLP_TEST_KEY}
            """)
        env = {"OTLP_TEST_KEY": SECRET}
        for output_format in ("text", "json"):
            out = io.StringIO()
            assert validate_files([path], output_format, out=out, environ=env) == 0
            assert SECRET not in out.getvalue()
            assert "in-the-file-value" not in out.getvalue()

    def test_a_schema_error_on_a_header_shows_no_value(self, tmp_path):
        path = write(tmp_path, """\
            otlp:
              endpoint: collector:4317
              headers:
                x-api-key: [987654321]
            """)
        out = io.StringIO()
        assert validate_files([path], "json", out=out, environ={}) == 1
        report = json.loads(out.getvalue())
        (problem,) = report["files"][0]["problems"]
        assert (problem["line"], problem["path"]) == (7, "exporters.otlp.headers.x-api-key")
        assert "987654321" not in out.getvalue()


class TestLoopbackWarning:
    def test_tls_to_a_loopback_grpc_endpoint_is_a_warning(self, tmp_path):
        """TLS stays on for loopback (the collector's rule), and validate says why a plaintext receiver would fail."""
        path = write(tmp_path, """\
            otlp:
              endpoint: 127.0.0.1:4317
            """)
        config, problems = check_config(path, {})
        assert config is not None
        (warning,) = problems
        assert (warning.severity, warning.line, warning.path) == ("warning", 5, "exporters.otlp.endpoint")
        assert "tls.insecure: true" in warning.message
        assert config.exporters[next(iter(config.exporters))].config.tls.insecure is False

    @pytest.mark.parametrize("tls", ["{insecure: true}", "{ca_file: CA}"])
    def test_no_warning_once_tls_is_configured(self, tmp_path, tls):
        ca = make_pki(tmp_path / "pki").ca_cert
        path = write(tmp_path, f"""\
            otlp:
              endpoint: localhost:4317
              tls: {tls.replace("CA", str(ca))}
            """)
        config, problems = check_config(path, {})
        assert config is not None
        assert problems == []

    def test_tls_settings_with_a_plaintext_url_are_a_warning(self, tmp_path):
        ca = make_pki(tmp_path / "pki").ca_cert
        path = write(tmp_path, f"""\
            otlphttp:
              endpoint: http://collector:4318
              tls: {{ca_file: {ca}}}
            """)
        config, problems = check_config(path, {})
        assert config is not None
        (warning,) = problems
        assert (warning.severity, warning.line, warning.path) == ("warning", 6, "exporters.otlphttp.tls")


def test_defaults_are_the_collectors():
    """gzip, TLS on, and the config module's named defaults."""
    assert otlp_config.DEFAULT_PROTOCOL == "grpc"
    assert otlp_config.DEFAULT_COMPRESSION == "gzip"
    assert otlp_config.TlsConfig().insecure is False


class TestUnusableTlsFiles:
    def test_a_ca_file_that_is_not_pem_fails_validate_not_every_send(self, tmp_path):
        """/etc/hosts as tls.ca_file: validate names the key, instead of a run that retries UNAVAILABLE."""
        from obs_pipeline.config import check_config  # noqa: PLC0415

        path = tmp_path / "p.yaml"
        path.write_text(
            "receivers: {otlp: {protocols: {http: {endpoint: 127.0.0.1:0}}}}\n"
            "exporters:\n  otlp:\n    endpoint: 127.0.0.1:14317\n    tls:\n      ca_file: /etc/hosts\n"
            "service: {pipelines: {traces: {receivers: [otlp], exporters: [otlp]}}}\n")
        _config, problems = check_config(path, {})
        errors = [p for p in problems if p.severity == "error"]
        assert [p.path for p in errors] == ["exporters.otlp.tls.ca_file"]
        assert "no usable PEM certificate" in errors[0].message
