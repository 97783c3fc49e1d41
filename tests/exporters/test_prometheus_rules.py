"""The prometheus exporter's rules: the shipped file, the format's defaults, and what validate says about a bad rule."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from obs_pipeline import genai
from obs_pipeline.config import compose_schema
from obs_pipeline.config.loader import check_config
from obs_pipeline.config.schemas import read_schema
from obs_pipeline.exporters.prometheus import DEFAULT_EXPIRATION, FACTORY, Config
from obs_pipeline.exporters.prometheus import rules as r
from obs_pipeline.testing import parse_config

SCHEMA = read_schema(FACTORY.schema_path)
DEFAULTS_FILE = Path(r.__file__).with_name(r.DEFAULT_RULES_FILE)
DESIGN_METRICS = {  # DESIGN §6, plus the two event metrics this exporter defines
    "agent_llm_requests_total": {"provider", "model", "status"},
    "agent_llm_tokens_total": {"provider", "model", "type"},
    "agent_llm_cost_usd_total": {"provider", "model"},
    "agent_llm_duration_seconds": {"provider", "model"},
    "agent_llm_errors_total": {"provider", "model", "error_type"},
    "agent_tool_calls_total": {"tool", "status"},
    "agent_tool_duration_seconds": {"tool"},
    "agent_turns_total": set(),
    "agent_turn_duration_seconds": set(),
    "agent_budget_exceeded_total": {"budget"},
    "agent_secrets_redacted_total": {"rule"},
    "agent_confirmations_total": {"outcome"},
    "agent_max_iterations_total": set(),
}


def _exposed(rule: r.Rule) -> str:
    name = r.family_name("agent", rule)
    return f"{name}_total" if rule.kind == r.COUNTER else name


def _rule_schema(name: str = "rule") -> dict:
    walker_root = compose_schema()
    return {"$ref": f"#/$defs/exporter.prometheus/$defs/{name}", "$defs": walker_root["$defs"]}


class TestShippedRules:
    def test_the_file_is_valid_against_the_rule_schema(self):
        """default_rules.yaml is written in exactly the format users write (the schema's rule definition)."""
        validator = Draft202012Validator(_rule_schema())
        raw = yaml.safe_load(DEFAULTS_FILE.read_text())
        assert raw
        for i, rule in enumerate(raw):
            errors = [e.message for e in validator.iter_errors(rule)]
            assert errors == [], f"rule {i}: {errors}"

    def test_they_pass_every_check(self):
        """No problem in the shipped rules, with the default namespace or another."""
        assert r.check_rules(r.default_rules(), "agent") == []
        assert r.check_rules(r.default_rules(), "") == []

    def test_they_are_the_metrics_of_the_design_with_their_labels(self):
        """DESIGN §6's names and labels, and the two event metrics."""
        found: dict[str, set[str]] = {}
        for rule in r.default_rules():
            found.setdefault(_exposed(rule), {label.name for label in rule.labels})
        assert found == DESIGN_METRICS

    def test_none_has_an_identity_label(self):
        """The cardinality guard holds for the shipped rules."""
        for rule in r.default_rules():
            for label in rule.labels:
                assert not set(label.attributes) & r.IDENTITY_ATTRIBUTES, (rule.name, label.name)
                assert label.field not in r.IDENTITY_FIELDS

    def test_the_docs_describe_every_shipped_metric(self):
        """docs/prometheus.md has a row for each (a new default rule must be documented)."""
        doc = (Path(__file__).parents[2] / "docs" / "prometheus.md").read_text()
        for name in DESIGN_METRICS:
            assert f"| `{name}" in doc, name


class TestFormatDefaults:
    def test_the_constants_are_the_schemas_defaults(self):
        """The shipped file is read without the config layer, so rules.py applies the schema's defaults itself."""
        rule = SCHEMA["$defs"]["rule"]["properties"]
        match = rule["match"]["properties"]
        assert rule["kind"]["default"] == r.DEFAULT_KIND
        assert rule["description"]["default"] == r.DEFAULT_DESCRIPTION
        assert rule["value"]["default"] == r.DEFAULT_VALUE
        assert rule["value"]["oneOf"][1]["properties"]["scale"]["default"] == r.DEFAULT_SCALE
        assert match["status"]["default"] == r.DEFAULT_STATUS
        assert rule["buckets"]["default"] is None
        label = SCHEMA["$defs"]["label"]["oneOf"][1]["properties"]
        assert (label["field"]["default"], label["default"]["default"], label["identity"]["default"]) == ("", "", False)
        assert r.Rule("x").kind == r.DEFAULT_KIND

    def test_a_filled_rule_and_a_bare_one_parse_alike(self):
        """A rule with the config layer's defaults filled in equals the same rule parsed bare."""
        bare = {"name": "x", "match": {"event": ["e"]}, "value": {"attribute": "n"}, "labels": {"a": {"attribute": "b"}}}
        filled = parse_config(FACTORY, {"metrics": [bare]}).metrics[0]
        assert filled == r.parse_rule(bare, "metrics[0]")

    def test_the_category_choices_are_the_audit_categories(self):
        """match.category offers exactly genai's categories."""
        assert SCHEMA["$defs"]["rule"]["properties"]["match"]["properties"]["category"]["items"]["enum"] == list(genai.CATEGORIES)

    def test_config_defaults(self):
        """An empty body: the defaults, every shipped rule."""
        cfg = parse_config(FACTORY, None)
        assert cfg == Config()
        assert (cfg.endpoint, cfg.namespace, cfg.metric_expiration, cfg.max_series_per_metric) == (
            "127.0.0.1:9464", "agent", DEFAULT_EXPIRATION, 2000)
        assert cfg.rules == r.default_rules()

    def test_attribute_names_are_resolved_to_canonical_ones(self):
        """An alias in a rule (gen_ai.system, session.id) is read as its canonical name, with every alias."""
        rule = r.parse_rule({"name": "x", "labels": {"p": "gen_ai.system"},
                             "match": {"attributes": {"session.id": {"exists": True}}, "operation": ["completion"]}}, "m")
        assert rule.labels[0].attributes == (genai.PROVIDER_NAME,)
        assert rule.conditions[0].attribute == genai.CONVERSATION_ID
        assert rule.operations == frozenset({"text_completion"})

    def test_sources_default_from_the_event(self):
        """No source: spans, or span events and log records when the rule names events."""
        assert r.parse_rule({"name": "x"}, "m").sources == {r.SPANS}
        assert r.parse_rule({"name": "x", "match": {"event": ["e"]}}, "m").sources == {r.SPAN_EVENTS, r.LOG_RECORDS}
        assert r.parse_rule({"name": "x", "match": {"source": ["log_records"]}}, "m").sources == {r.LOG_RECORDS}


def _validate(tmp_path: Path, exporter_yaml: str) -> list[str]:
    """``validate`` on a pipeline whose prometheus exporter body is ``exporter_yaml``: its messages."""
    body = textwrap.indent(textwrap.dedent(exporter_yaml).strip(), "    ")
    text = (
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:4317\n"
        f"exporters:\n  prometheus:\n{body}\n"
        "service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [prometheus]\n"
        "  telemetry:\n    metrics:\n      enabled: false\n    health:\n      enabled: false\n"
    )
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    _config, problems = check_config(path, {})
    return [str(p).replace(str(path), "pipeline.yaml") for p in problems]


class TestValidate:
    def test_a_session_label_is_refused_with_line_and_key(self, tmp_path):
        """The cardinality guard: a session id as a label is a validate error, at the label's line."""
        problems = _validate(tmp_path, """
            metrics:
              - name: by_session
                labels:
                  session: gen_ai.conversation.id
        """)
        assert len(problems) == 1
        assert problems[0].startswith("pipeline.yaml:11:")
        assert "exporters.prometheus.metrics[0].labels.session: gen_ai.conversation.id is a session id" in problems[0]
        assert "identity: true" in problems[0]

    def test_aliases_and_fields_of_ids_are_refused_too(self, tmp_path):
        """session.id (an alias), user.id, a trace id field."""
        problems = _validate(tmp_path, """
            metrics:
              - name: a
                labels: {s: session.id, u: [gen_ai.system, gen_ai.provider.name, enduser.id], t: {field: trace_id}}
        """)
        assert [p.split(": ", 2)[1] for p in problems] == [
            "exporters.prometheus.metrics[0].labels.s", "exporters.prometheus.metrics[0].labels.u",
            "exporters.prometheus.metrics[0].labels.t"]
        assert "session.id is a session id" in problems[0]
        assert "enduser.id is a user id" in problems[1]
        assert "field trace_id is a trace id" in problems[2]

    def test_identity_true_allows_it(self, tmp_path):
        """The rule asks for it explicitly: valid."""
        assert _validate(tmp_path, """
            metrics:
              - name: by_session
                labels: {session: {attribute: gen_ai.conversation.id, identity: true}}
        """) == []

    def test_a_typo_in_a_rule_names_the_key(self, tmp_path):
        """Strict keys: an unknown key in a rule, with a suggestion, at its line."""
        problems = _validate(tmp_path, """
            metrics:
              - name: x
                lables: {a: b}
        """)
        assert problems == ['pipeline.yaml:10:9: exporters.prometheus.metrics[0].lables: unknown key "lables"; did you mean "labels"?']

    def test_bad_values_in_a_rule(self, tmp_path):
        """A bad kind, name and source: schema messages at each key."""
        problems = _validate(tmp_path, """
            metrics:
              - name: 9lives
                kind: gauge
                match: {source: [traces]}
        """)
        joined = "\n".join(problems)
        assert "metrics[0].name: \"9lives\" is not a metric name" in joined
        assert "metrics[0].kind: must be one of counter, histogram" in joined
        assert "metrics[0].match.source[0]: must be one of spans, log_records, span_events" in joined

    @pytest.mark.parametrize(("rule", "where", "message"), [
        ("{name: llm_requests, labels: {provider: gen_ai.provider.name}}", "metrics[0].labels",
         "agent_llm_requests has labels model, provider, status in a default rule"),
        ("{name: llm_requests, kind: histogram}", "metrics[0].kind", "agent_llm_requests is a counter in a default rule"),
        ("{name: x, buckets: [1, 2]}", "metrics[0].buckets", "only a histogram has buckets"),
        ("{name: x, kind: histogram, buckets: [2, 1]}", "metrics[0].buckets", "bucket bounds must increase"),
        ("{name: x, match: {event: [e], source: [spans]}}", "metrics[0].match.source", "spans have no event name"),
        ("{name: x, match: {source: [span_events]}}", "metrics[0].match.event", "span_events needs the event names"),
        ("{name: x, kind: histogram, value: duration, match: {source: [log_records]}}", "metrics[0].value",
         "duration is a span's"),
        ("{name: x, labels: {a: {attribute: b, value: c}}}", "metrics[0].labels.a", "set exactly one of attribute, field and value"),
        ("{name: x, labels: {le: b}}", "metrics[0].labels.le", '"le" is reserved'),
        ("{name: llm_duration_seconds_count}", "metrics[0].name",
         "agent_llm_duration_seconds_count is already served by the metric agent_llm_duration_seconds"),
    ])
    def test_rule_checks(self, tmp_path, rule, where, message):
        """What the schema cannot see, reported at the rule's key."""
        problems = _validate(tmp_path, f"metrics:\n  - {rule}\n")
        assert len(problems) == 1, problems
        assert f"exporters.prometheus.{where}: {message}" in problems[0]

    def test_two_user_rules_of_one_metric_must_agree(self, tmp_path):
        """The second rule of a metric with other labels is the one reported."""
        problems = _validate(tmp_path, """
            metrics:
              - {name: hits, labels: {a: x}}
              - {name: hits, labels: {b: y}}
        """)
        assert len(problems) == 1
        assert "metrics[1].labels: agent_hits has labels a in the rule at metrics[0]" in problems[0]

    def test_a_sample_name_served_twice_is_refused(self, tmp_path):
        """A metric whose name is another's sample (agent_x_sum, agent_x_bucket of histogram agent_x) is refused."""
        problems = _validate(tmp_path, """
            metrics:
              - {name: x, kind: histogram}
              - {name: x_sum, kind: histogram}
              - {name: x_bucket, kind: histogram}
        """)
        assert len(problems) == 2
        assert "metrics[2].name: agent_x_bucket is already served by the metric agent_x" in problems[1]

    def test_const_labels_may_not_repeat_a_rule_label(self, tmp_path):
        """const_labels next to a rule label of the same name is ambiguous; reserved names are refused."""
        problems = _validate(tmp_path, """
            const_labels: {model: x, quantile: y, env: prod}
        """)
        assert [p.split(": ", 2)[1:] for p in problems] == [
            ["exporters.prometheus.const_labels.model", 'a rule already has a label "model"'],
            ["exporters.prometheus.const_labels.quantile", '"quantile" is reserved']]

    def test_the_endpoint_takes_part_in_the_port_clash_check(self, tmp_path):
        """The factory declares its endpoint: the same port as the otlp receiver is an error."""
        problems = _validate(tmp_path, "endpoint: 127.0.0.1:4317")
        assert len(problems) == 1
        assert "exporters.prometheus.endpoint: port 4317 is already used by receivers.otlp" in problems[0]

    def test_the_repository_pipeline_yaml_uses_it(self):
        """The default pipeline serves the derived metrics for traces and logs, and OTLP metrics."""
        config, problems = check_config(Path(__file__).parents[2] / "pipeline.yaml", {})
        assert config is not None, problems
        by_signal = {p.signal.value: {str(e) for e in p.exporters} for p in config.pipelines}
        assert "prometheus" in by_signal["traces"]
        assert "prometheus" in by_signal["logs"]
        assert "prometheus" in by_signal["metrics"]
