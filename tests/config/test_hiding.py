"""What messages may show: secrets never, environment values only away from where they were used.

Secrets (``x-secret`` in the schema) reach a component's ``parse`` as :class:`Secret`, and no
report contains their text. An environment value is hidden by its place in the document: in a
message about that place (or a component's message about its own body) it reads
``<value of ${env:NAME}>``; anywhere else the same text is just text (``jsonl_audit`` stays
``jsonl_audit`` when ``${env:AP}`` happens to be ``audit``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from obs_pipeline.commands.validate import validate_files
from obs_pipeline.components import Kind
from obs_pipeline.config import check_config, component_body
from obs_pipeline.errors import Problem
from obs_pipeline.secret import Secret
from tests.config import fakes

WEBHOOK = """\
receivers: {{stdin: }}
exporters:
  webhook:
    url: {url}
    token: {token}
    headers: {{X-Api-Key: header-secret-value, X-Plain: also-a-secret}}
service:
  pipelines:
    logs: {{receivers: [stdin], exporters: [webhook]}}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _reports(path: Path, environ: dict[str, str]) -> str:
    """validate's text report followed by its json report."""
    out = []
    for output_format in ("text", "json"):
        buffer = io.StringIO()
        validate_files([path], output_format, out=buffer, environ=environ)
        out.append(buffer.getvalue())
    json.loads(out[1])
    return "\n".join(out)


@pytest.mark.usefixtures("fake_registry")
class TestSecrets:
    @pytest.fixture(autouse=True)
    def _fresh(self) -> None:
        fakes.PARSED.clear()

    def test_parse_gets_secrets(self, tmp_path: Path):
        """Every x-secret value (the token, each header value) reaches parse as a Secret; other values stay str."""
        path = _write(tmp_path, WEBHOOK.format(url="https://hooks.example.com/x", token="tok-plain-secret"))
        config, problems = check_config(path, {})
        assert config is not None, problems
        (body,) = fakes.PARSED
        assert body["token"] == Secret("tok-plain-secret")
        assert body["headers"] == {"X-Api-Key": Secret("header-secret-value"), "X-Plain": Secret("also-a-secret")}
        assert type(body["url"]) is str
        assert type(body["retries"]) is int

    def test_secret_from_the_environment(self, tmp_path: Path):
        """A secret given as ${env:...} is wrapped after substitution."""
        path = _write(tmp_path, WEBHOOK.format(url="https://hooks.example.com/x", token="${env:HOOK_TOKEN}"))
        config, _ = check_config(path, {"HOOK_TOKEN": "tok-from-env"})
        assert config is not None
        assert fakes.PARSED[0]["token"] == Secret("tok-from-env")

    def test_the_document_keeps_plain_text(self, tmp_path: Path):
        """Wrapping is done on parse's copy; the config layer's own view is unchanged (it prints none of it)."""
        path = _write(tmp_path, WEBHOOK.format(url="https://hooks.example.com/x", token="tok-plain-secret"))
        config, _ = check_config(path, {})
        assert config is not None
        parsed = config.exporters[next(iter(config.exporters))].config
        assert parsed["token"] == Secret("tok-plain-secret")
        assert "tok-plain-secret" not in repr(parsed)

    def test_no_secret_in_any_report(self, tmp_path: Path):
        """Neither validate's text nor its json report, nor any Problem, contains a secret, even one a component revealed."""
        path = _write(tmp_path, WEBHOOK.format(url="ftp://not-http.example", token="bad-revealed-token"))
        _, problems = check_config(path, {})
        assert problems
        reports = _reports(path, {})
        for text in ("bad-revealed-token", "header-secret-value", "also-a-secret"):
            assert text not in reports
            assert not any(text in p.message for p in problems)
        assert "[REDACTED]" in reports

    def test_a_revealed_secret_in_a_check_message_is_hidden(self, tmp_path: Path):
        """The fake's check reveals the token on purpose; the loader's last line of defence replaces it."""
        path = _write(tmp_path, WEBHOOK.format(url="https://hooks.example.com/x", token="bad-revealed-token"))
        config, problems = check_config(path, {})
        assert config is None
        assert [(p.path, p.message) for p in problems] == [
            ("exporters.webhook.token", "token <secret> is revoked; token [REDACTED] rejected"),
        ]
        assert "bad-revealed-token" not in _reports(path, {})

    def test_component_body_wraps_secrets(self):
        """The helper for tests and embedding hands parse the same Secrets."""
        body = component_body(Kind.EXPORTER, "webhook", {"url": "https://x.example", "token": "t0ken", "headers": {"A": "b"}})
        assert body["token"] == Secret("t0ken")
        assert body["headers"] == {"A": Secret("b")}
        assert body["retries"] == 3


UNRELATED = """\
receivers: {{stdin: }}
exporters:
  debug:
  jsonl_audit: {{path: ./a.jsonl}}
service:
  data_dir: {data_dir}
  pipelines:
    logs: {{receivers: [stdin], processors: [jsonl_audit], exporters: [debug]}}
"""


def _messages(problems: list[Problem]) -> list[tuple[str, str, str]]:
    return [(p.severity, p.path, p.message) for p in problems]


@pytest.mark.usefixtures("any_registry")
class TestEnvironmentValues:
    def test_same_text_elsewhere_is_not_replaced(self, tmp_path: Path):
        """With AP=audit used for data_dir, messages about jsonl_audit still say jsonl_audit."""
        text = UNRELATED.format(data_dir="${env:AP}")
        _, problems = check_config(_write(tmp_path, text), {"AP": "audit"})
        assert _messages(problems) == [
            ("error", "service.pipelines.logs.processors[0]",
             'references processor "jsonl_audit" which is not configured (there is an exporter "jsonl_audit")'),
        ]
        _, problems = check_config(_write(tmp_path, text.replace("processors: [jsonl_audit], ", "")), {"AP": "audit"})
        assert _messages(problems) == [
            ("warning", "exporters.jsonl_audit", 'exporter "jsonl_audit" is not used by any pipeline, so it will not run'),
        ]

    def test_a_message_at_the_value_shows_the_reference(self, tmp_path: Path):
        """A problem at the place the value came from names the reference, not the value."""
        (tmp_path / "taken").write_text("a file, not a directory")
        path = _write(tmp_path, UNRELATED.format(data_dir="${env:STATE}").replace("processors: [jsonl_audit], ", ""))
        state = str(tmp_path / "taken")
        _, problems = check_config(path, {"STATE": state})
        errors = [p for p in problems if p.severity == "error"]
        assert _messages(errors) == [("error", "service.data_dir", '"<value of ${env:STATE}>" exists and is not a directory')]
        assert state not in _reports(path, {"STATE": state})

    def test_a_component_message_hides_values_of_its_own_body(self, tmp_path: Path):
        """parse quoting an env value of its body shows the reference (the value is at a child path)."""
        path = _write(tmp_path, WEBHOOK.format(url="${env:HOOK}", token="tok"))
        _, problems = check_config(path, {"HOOK": "ftp://internal.example"})
        (problem,) = [p for p in problems if p.path == "exporters.webhook"]
        assert problem.message == "'<value of ${env:HOOK}>' is not an http(s) URL (token [REDACTED])"
        assert "internal.example" not in _reports(path, {"HOOK": "ftp://internal.example"})


@pytest.mark.usefixtures("real_registry")
def test_a_component_message_keeps_values_of_other_places(tmp_path: Path):
    """The real batch check quotes send_batch_size (2048): not replaced because ${env:N}=2048 is used elsewhere."""
    path = _write(tmp_path, """\
receivers: {stdin: }
processors: {batch: {send_batch_max_size: 100}}
exporters: {debug: }
service:
  data_dir: ${env:N}
  pipelines:
    logs: {receivers: [stdin], processors: [batch], exporters: [debug]}
""")
    _, problems = check_config(path, {"N": "2048"})
    assert _messages(problems) == [
        ("error", "processors.batch.send_batch_max_size", "must be 0 or at least send_batch_size (2048), got 100"),
    ]
