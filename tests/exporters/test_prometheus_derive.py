"""The prometheus exporter's derived metrics: each default rule, aliases, user rules, the cardinality cap, expiration."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from obs_pipeline.batch import Batch
from obs_pipeline.components import Kind
from obs_pipeline.exporters.prometheus import FACTORY, PrometheusExporter
from obs_pipeline.exporters.prometheus.derive import LABEL_CHARS
from obs_pipeline.otlp_view import TracesView
from obs_pipeline.signals import Signal
from obs_pipeline.telemetry.metrics import SelfMetrics
from obs_pipeline.testing import make_settings, parse_config
from tests.exporters.builders import T0, logs, traces

ERROR = (2, "boom")
MS = 1_000_000


class Derived:
    """A prometheus exporter (not started) fed directly, and what its registry would serve."""

    def __init__(self, body: dict[str, Any] | None = None) -> None:
        self.metrics = SelfMetrics()
        cfg = parse_config(FACTORY, {"endpoint": "127.0.0.1:0", **(body or {})})
        assert FACTORY.check(cfg) == []
        self.exporter: PrometheusExporter = FACTORY.create(make_settings("prometheus", Kind.EXPORTER, self.metrics), cfg)
        self.now = time.monotonic()  # what a scrape expires against

    def spans(self, *spans: dict[str, Any], resource: dict[str, Any] | None = None, wire: bool = True) -> Derived:
        data = traces(*spans, resource=resource)
        batch = Batch(Signal.TRACES, data, wire=data.SerializeToString()) if wire else Batch(Signal.TRACES, data)
        list(self.exporter.deriver.traces(batch, self.now))
        return self

    def records(self, *records: dict[str, Any], resource: dict[str, Any] | None = None) -> Derived:
        self.exporter.deriver.logs(logs(*records, resource=resource), self.now)
        return self

    def value(self, name: str, **labels: str) -> float | None:
        return self.exporter.registry.get_sample_value(name, labels)

    def series(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        """Every sample of ``name``: labels -> value."""
        return {frozenset(s.labels.items()): s.value
                for m in self.exporter.registry.collect() for s in m.samples if s.name == name}


def chat(provider="anthropic", model="claude-sonnet-4-5", duration_ms=1500, status=None, **attrs) -> dict[str, Any]:
    span = {"name": f"chat {model}", "start_time_unix_nano": T0, "end_time_unix_nano": T0 + duration_ms * MS,
            "attrs": {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
                      "gen_ai.request.model": model, **attrs}}
    if status:
        span["status"] = status
    return span


def tool(name="shell_exec", duration_ms=40, status=None, **attrs) -> dict[str, Any]:
    span = {"name": f"execute_tool {name}", "start_time_unix_nano": T0, "end_time_unix_nano": T0 + duration_ms * MS,
            "attrs": {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name, **attrs}}
    if status:
        span["status"] = status
    return span


class TestLlmMetrics:
    def test_requests_by_provider_model_and_status(self):
        """agent_llm_requests_total counts inference spans; status is error for an ERROR status or an error.type."""
        d = Derived().spans(chat(), chat(), chat(status=ERROR), chat(**{"error.type": "timeout"}), chat(provider="openai", model="gpt-4o"))
        assert d.value("agent_llm_requests_total", provider="anthropic", model="claude-sonnet-4-5", status="ok") == 2
        assert d.value("agent_llm_requests_total", provider="anthropic", model="claude-sonnet-4-5", status="error") == 2
        assert d.value("agent_llm_requests_total", provider="openai", model="gpt-4o", status="ok") == 1

    def test_the_response_model_wins_over_the_request_model(self):
        """model is gen_ai.response.model when the span has it (the model that ran), else the requested one."""
        d = Derived().spans(chat(model="gpt-4o", **{"gen_ai.response.model": "gpt-4o-2024-08-06"}))
        assert d.value("agent_llm_requests_total", provider="anthropic", model="gpt-4o-2024-08-06", status="ok") == 1

    def test_tokens_of_every_type(self):
        """input, output, cache_read, cache_write and reasoning, each from its attribute, added up."""
        usage = {"gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 200,
                 "gen_ai.usage.cache_read.input_tokens": 700, "gen_ai.usage.cache_write.input_tokens": 100,
                 "gen_ai.usage.reasoning.output_tokens": 50}
        d = Derived().spans(chat(**usage), chat(**usage))
        labels = {"provider": "anthropic", "model": "claude-sonnet-4-5"}
        got = {t: d.value("agent_llm_tokens_total", **labels, type=t)
               for t in ("input", "output", "cache_read", "cache_write", "reasoning")}
        assert got == {"input": 2000, "output": 400, "cache_read": 1400, "cache_write": 200, "reasoning": 100}

    def test_a_token_type_never_reported_has_no_series(self):
        """No zero series for counts nobody sent."""
        d = Derived().spans(chat(**{"gen_ai.usage.input_tokens": 10}))
        assert {dict(k)["type"] for k in d.series("agent_llm_tokens_total")} == {"input"}

    def test_agent_spans_repeating_run_totals_are_not_counted_as_tokens(self):
        """An invoke_agent span may carry its run's totals: only inference spans count tokens and cost."""
        agent = {"name": "invoke_agent", "attrs": {"gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "openai",
                                                   "gen_ai.usage.input_tokens": 9999, "gen_ai.usage.cost.amount": 9.0}}
        d = Derived().spans(agent, chat(**{"gen_ai.usage.input_tokens": 10}))
        assert sum(d.series("agent_llm_tokens_total").values()) == 10
        assert d.series("agent_llm_cost_usd_total") == {}

    def test_aliases_and_legacy_values_are_understood(self):
        """gen_ai.system (legacy values normalized), prompt/completion token aliases, OpenLLMetry's llm.request.type."""
        span = {"name": "x", "attrs": {"llm.request.type": "completion", "gen_ai.system": "gemini",
                                       "llm.request.model_name": "gemini-2.5-pro", "gen_ai.usage.prompt_tokens": 12,
                                       "gen_ai.usage.completion_tokens": "3"}}
        d = Derived().spans(span)
        labels = {"provider": "gcp.gemini", "model": "gemini-2.5-pro"}
        assert d.value("agent_llm_requests_total", **labels, status="ok") == 1
        assert d.value("agent_llm_tokens_total", **labels, type="input") == 12
        assert d.value("agent_llm_tokens_total", **labels, type="output") == 3

    def test_canonical_names_win_over_aliases_in_any_order(self):
        """gen_ai.provider.name beats gen_ai.system wherever each appears."""
        span = chat(provider="anthropic")
        span["attrs"] = {"gen_ai.system": "openai", **span["attrs"]}
        assert Derived().spans(span).value("agent_llm_requests_total", provider="anthropic",
                                           model="claude-sonnet-4-5", status="ok") == 1

    def test_openinference_llm_spans_without_an_operation_count(self):
        """The category falls back to OpenInference's span kind, as the audit line's does."""
        span = {"name": "llm", "attrs": {"openinference.span.kind": "LLM", "llm.provider": "openai",
                                         "llm.model_name": "gpt-4o", "llm.token_count.prompt": 5}}
        d = Derived().spans(span)
        assert d.value("agent_llm_tokens_total", provider="openai", model="gpt-4o", type="input") == 5

    def test_cost_in_usd_or_without_currency_only(self):
        """gen_ai.usage.cost.amount is added when the currency is USD or absent, never another currency."""
        d = Derived().spans(chat(**{"gen_ai.usage.cost.amount": 0.25}),
                            chat(**{"gen_ai.usage.cost.amount": 0.5, "gen_ai.usage.cost.currency": "USD"}),
                            chat(**{"gen_ai.usage.cost.amount": 7.0, "gen_ai.usage.cost.currency": "EUR"}),
                            chat())
        assert d.value("agent_llm_cost_usd_total", provider="anthropic", model="claude-sonnet-4-5") == 0.75

    def test_duration_histogram(self):
        """agent_llm_duration_seconds: the GenAI conventions' buckets, the span's duration in seconds."""
        d = Derived().spans(chat(duration_ms=150), chat(duration_ms=3000))
        labels = {"provider": "anthropic", "model": "claude-sonnet-4-5"}
        assert d.value("agent_llm_duration_seconds_bucket", **labels, le="0.16") == 1
        assert d.value("agent_llm_duration_seconds_bucket", **labels, le="5.12") == 2
        assert d.value("agent_llm_duration_seconds_bucket", **labels, le="+Inf") == 2
        assert d.value("agent_llm_duration_seconds_count", **labels) == 2
        assert d.value("agent_llm_duration_seconds_sum", **labels) == pytest.approx(3.15)

    def test_a_span_without_valid_times_has_no_duration(self):
        """End before start (or no start) is no duration: the request still counts."""
        d = Derived().spans(chat(duration_ms=-5))
        assert d.value("agent_llm_requests_total", provider="anthropic", model="claude-sonnet-4-5", status="ok") == 1
        assert d.series("agent_llm_duration_seconds_count") == {}

    def test_errors_by_error_type(self):
        """error.type, else the exception event's type, else _OTHER."""
        exception = ("exception", {"exception.type": "RateLimitError", "exception.message": "429"})
        d = Derived().spans(chat(status=ERROR, **{"error.type": "timeout"}),
                            {**chat(status=ERROR), "events": [exception]},
                            chat(status=ERROR), chat(status=ERROR), chat())
        labels = {"provider": "anthropic", "model": "claude-sonnet-4-5"}
        assert d.value("agent_llm_errors_total", **labels, error_type="timeout") == 1
        assert d.value("agent_llm_errors_total", **labels, error_type="RateLimitError") == 1
        assert d.value("agent_llm_errors_total", **labels, error_type="_OTHER") == 2


class TestToolAndTurnMetrics:
    def test_tool_calls_and_durations(self):
        """agent_tool_calls_total{tool,status} and agent_tool_duration_seconds{tool}; a denied call is status denied."""
        d = Derived().spans(tool(), tool(status=ERROR), tool(**{"gen_ai.tool.call.decision.outcome": "deny"}),
                            tool("web_search", duration_ms=800))
        assert d.value("agent_tool_calls_total", tool="shell_exec", status="ok") == 1
        assert d.value("agent_tool_calls_total", tool="shell_exec", status="error") == 1
        assert d.value("agent_tool_calls_total", tool="shell_exec", status="denied") == 1
        assert d.value("agent_tool_duration_seconds_count", tool="shell_exec") == 3
        assert d.value("agent_tool_duration_seconds_bucket", tool="web_search", le="1.0") == 1
        assert d.value("agent_tool_duration_seconds_bucket", tool="web_search", le="0.5") == 0

    def test_turns_are_invoke_agent_spans(self):
        """agent_turns_total and agent_turn_duration_seconds, without labels."""
        turn = {"name": "invoke_agent a", "end_time_unix_nano": T0 + 12_000 * MS,
                "attrs": {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "a"}}
        d = Derived().spans(turn, turn, chat())
        assert d.value("agent_turns_total") == 2
        assert d.value("agent_turn_duration_seconds_bucket", le="30.0") == 2
        assert d.value("agent_turn_duration_seconds_sum") == pytest.approx(24.0)


class TestAnnotationMetrics:
    def test_budget_exceeded_from_spans_and_log_records(self):
        """budget.event=exceeded on a span or a record counts, by budget.id; a span only in that state does not."""
        d = Derived().spans(chat(**{"budget.event": "exceeded", "budget.state": "exceeded", "budget.id": "daily"}),
                            chat(**{"budget.state": "exceeded", "budget.id": "daily"}),
                            chat(**{"budget.event": "warning", "budget.state": "warning", "budget.id": "daily"}))
        d.records({"attrs": {"budget.event": "exceeded", "budget.id": "daily"}})
        assert d.value("agent_budget_exceeded_total", budget="daily") == 2

    def test_secrets_redacted_by_rule(self):
        """redaction.masked.rules counts one per entry; without it, redaction.masked.count goes to rule unknown."""
        d = Derived().spans(tool(**{"redaction.masked.rules": ["aws_key", "aws_key", "github_pat"],
                                    "redaction.masked.count": 3}),
                            tool(**{"redaction.masked.count": 2}))
        d.records({"attrs": {"redaction.masked.rules": ["github_pat"]}})
        assert d.value("agent_secrets_redacted_total", rule="aws_key") == 2
        assert d.value("agent_secrets_redacted_total", rule="github_pat") == 2
        assert d.value("agent_secrets_redacted_total", rule="unknown") == 2


class TestEventMetrics:
    def test_confirmations_from_records_and_span_events(self):
        """agent.confirmation as LogRecord.event_name, as an event.name attribute, or as a span event, by outcome."""
        d = Derived()
        d.records({"event_name": "agent.confirmation", "attrs": {"agent.confirmation.outcome": "approved"}},
                  {"attrs": {"event.name": "agent.confirmation", "agent.confirmation.outcome": "denied"}},
                  {"event_name": "agent.confirmation"},
                  {"event_name": "something.else", "attrs": {"agent.confirmation.outcome": "approved"}})
        d.spans({**tool(), "events": [("agent.confirmation", {"agent.confirmation.outcome": "approved"})]})
        assert d.value("agent_confirmations_total", outcome="approved") == 2
        assert d.value("agent_confirmations_total", outcome="denied") == 1
        assert d.value("agent_confirmations_total", outcome="unknown") == 1

    def test_max_iteration_bailouts(self):
        """agent.max_iterations events count, from records and span events alike."""
        turn = {"name": "invoke_agent", "attrs": {"gen_ai.operation.name": "invoke_agent"},
                "events": [("agent.max_iterations", {"agent.iterations": 25})]}
        d = Derived().spans(turn).records({"event_name": "agent.max_iterations"})
        assert d.value("agent_max_iterations_total") == 2


class TestReading:
    def test_wire_bytes_and_parsed_messages_give_the_same_metrics(self):
        """Random GenAI spans derived from their bytes and from the message alone: equal series."""
        rng = random.Random(7)
        spans = []
        for _ in range(300):
            kind = rng.choice([chat, tool])
            extra = {"gen_ai.usage.input_tokens": rng.randint(0, 5000)} if kind is chat else {}
            if rng.random() < 0.2:
                extra["gen_ai.system"] = "openai"
            spans.append(kind(duration_ms=rng.randint(1, 9000), status=ERROR if rng.random() < 0.1 else None, **extra))
        a, b = Derived().spans(*spans, wire=True), Derived().spans(*spans, wire=False)
        names = {s.name for m in a.exporter.registry.collect() for s in m.samples}
        assert len(names) >= 10
        for name in names:
            assert a.series(name) == b.series(name), name

    def test_raw_attribute_reading_agrees_with_the_parsed_reader(self):
        """read_raw (serialized KeyValues, caches) and the parsed reader give the same values, on random attributes."""
        rng = random.Random(3)
        keys = ["gen_ai.provider.name", "gen_ai.system", "llm.provider", "gen_ai.usage.input_tokens",
                "gen_ai.usage.prompt_tokens", "gen_ai.operation.name", "llm.request.type", "gen_ai.tool.name",
                "tool.name", "error.type", "gen_ai.usage.cost.amount", "budget.state", "unrelated.key", "x" * 200]
        values = ["openai", "gemini", "completion", 12, "34", 2.5, True, ["a", "b"], "y" * 300, -1]
        derived = Derived()
        deriver = derived.exporter.deriver
        for _ in range(500):
            attrs = {rng.choice(keys): rng.choice(values) for _ in range(rng.randint(0, 8))}
            span = traces({"attrs": attrs}).resource_spans[0].scope_spans[0].spans[0]
            for _ in range(2):  # cold, then from the caches
                vals, _shape = deriver.read_raw([kv.SerializeToString() for kv in span.attributes])
                assert vals == deriver.slots.read(span.attributes), attrs

    def test_spans_of_one_shape_with_other_numbers_add_their_own_numbers(self):
        """The selection is remembered by shape; the values are each span's own."""
        d = Derived()
        for tokens in (1, 10, 100):
            d.spans(chat(**{"gen_ai.usage.input_tokens": tokens}), chat(duration_ms=tokens))
        assert d.value("agent_llm_tokens_total", provider="anthropic", model="claude-sonnet-4-5", type="input") == 111
        assert d.value("agent_llm_requests_total", provider="anthropic", model="claude-sonnet-4-5", status="ok") == 6

    def test_resource_attributes_are_the_fallback(self):
        """A span without a provider takes its resource's (the item's own attributes win)."""
        span = {"name": "chat", "attrs": {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"}}
        d = Derived().spans(span, chat(provider="openai", model="m"), resource={"gen_ai.provider.name": "azure.ai.openai"})
        assert d.value("agent_llm_requests_total", provider="azure.ai.openai", model="m", status="ok") == 1
        assert d.value("agent_llm_requests_total", provider="openai", model="m", status="ok") == 1

    def test_a_span_that_cannot_be_read_costs_only_itself(self):
        """A KeyValue that does not decode: that span is skipped and counted, the others are derived."""
        good = traces(chat(), chat())
        view = TracesView.FromString(good.SerializeToString())
        bad = view.resource_spans[0].scope_spans[0].spans[0]
        bad.attributes.append(b"\n\x15gen_ai.operation.name\x12\x09\n\x07")  # a string value cut short
        d = Derived()
        list(d.exporter.deriver.traces(Batch.from_wire(Signal.TRACES, view.SerializeToString()), d.now))
        assert d.value("agent_llm_requests_total", provider="anthropic", model="claude-sonnet-4-5", status="ok") == 1
        failures, seen, first = d.exporter.deriver.take_failures()
        assert (failures, seen) == (1, 2)
        assert first.startswith("DecodeError")

    def test_long_label_values_are_cut(self):
        """A label value is at most LABEL_CHARS characters, however long the attribute."""
        d = Derived().spans(chat(model="m" * 500), chat(model="n" * 5000))
        assert sorted(len(dict(labels)["model"]) for labels in d.series("agent_llm_requests_total")) == [LABEL_CHARS] * 2

    def test_spans_of_one_shape_under_other_resources_take_their_resources_labels(self):
        """What a span selects is remembered with its resource: the same span under another resource is relabelled."""
        span = {"name": "chat", "attrs": {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"}}
        d = Derived().spans(span, resource={"gen_ai.provider.name": "openai"})
        d.spans(span, resource={"gen_ai.provider.name": "anthropic"})
        assert d.value("agent_llm_requests_total", provider="openai", model="m", status="ok") == 1
        assert d.value("agent_llm_requests_total", provider="anthropic", model="m", status="ok") == 1

    def test_a_counter_never_takes_a_negative_number(self):
        """A negative cost (a refund, or a bug) is not subtracted from a counter."""
        d = Derived().spans(chat(**{"gen_ai.usage.cost.amount": 1.0}), chat(**{"gen_ai.usage.cost.amount": -0.5}))
        assert d.value("agent_llm_cost_usd_total", provider="anthropic", model="claude-sonnet-4-5") == 1.0

    def test_a_batch_that_is_not_otlp_raises(self):
        """Garbage bytes: DecodeError, which the exporter turns into a permanent error."""
        d = Derived()
        with pytest.raises(Exception, match="Error"):
            list(d.exporter.deriver.traces(Batch.from_wire(Signal.TRACES, b"\xff\xff\xff"), d.now))


class TestOptions:
    def test_namespace(self):
        """namespace prefixes derived names; empty means none."""
        assert Derived({"namespace": "bot"}).spans(chat()).value(
            "bot_llm_requests_total", provider="anthropic", model="claude-sonnet-4-5", status="ok") == 1
        assert Derived({"namespace": ""}).spans(chat()).value(
            "llm_requests_total", provider="anthropic", model="claude-sonnet-4-5", status="ok") == 1

    def test_const_labels_are_on_every_series(self):
        """const_labels are added to every sample."""
        d = Derived({"const_labels": {"env": "prod"}}).spans(chat())
        assert d.value("agent_llm_requests_total", provider="anthropic", model="claude-sonnet-4-5", status="ok", env="prod") == 1
        assert d.value("agent_llm_duration_seconds_count", provider="anthropic", model="claude-sonnet-4-5", env="prod") == 1

    def test_default_rules_false_leaves_only_the_users(self):
        """default_rules: false: no agent_* metric but the user's rules."""
        d = Derived({"default_rules": False, "metrics": [{"name": "spans"}]}).spans(chat(), tool())
        assert d.value("agent_spans_total") == 2
        assert d.series("agent_llm_requests_total") == {}


class TestUserRules:
    def test_a_counter_with_an_attribute_condition_and_a_scaled_value(self):
        """match.attributes, value {attribute, scale}, an attribute label (with its alias read)."""
        rule = {"name": "billed_seconds", "match": {"operation": ["chat"], "attributes": {"deployment.tier": ["paid", "trial"]}},
                "value": {"attribute": "billing.ms", "scale": 0.001}, "labels": {"agent": "gen_ai.agent.name"}}
        d = Derived({"metrics": [rule]}).spans(
            chat(**{"deployment.tier": "paid", "billing.ms": 1500, "agent.name": "helper"}),
            chat(**{"deployment.tier": "free", "billing.ms": 99999, "gen_ai.agent.name": "helper"}),
            chat(**{"deployment.tier": "trial", "billing.ms": 500.0, "gen_ai.agent.name": "helper"}))
        assert d.value("agent_billed_seconds_total", agent="helper") == pytest.approx(2.0)

    def test_a_histogram_with_its_own_buckets_and_status_condition(self):
        """kind histogram, buckets, match.status."""
        rule = {"name": "failed_tool_seconds", "kind": "histogram", "value": "duration", "buckets": [0.1, 1],
                "match": {"category": ["tool"], "status": "error"}, "labels": {"tool": "gen_ai.tool.name"}}
        d = Derived({"metrics": [rule]}).spans(tool(duration_ms=50, status=ERROR), tool(duration_ms=500, status=ERROR), tool())
        assert d.value("agent_failed_tool_seconds_bucket", tool="shell_exec", le="0.1") == 1
        assert d.value("agent_failed_tool_seconds_bucket", tool="shell_exec", le="1.0") == 2
        assert d.value("agent_failed_tool_seconds_count", tool="shell_exec") == 2

    def test_an_identity_label_when_the_rule_asks_for_it(self):
        """identity: true allows a session id as a label (one series per session)."""
        rule = {"name": "session_tokens", "match": {"category": ["llm"]},
                "value": {"attribute": "gen_ai.usage.input_tokens"},
                "labels": {"session": {"attribute": "gen_ai.conversation.id", "identity": True}}}
        d = Derived({"metrics": [rule]}).spans(chat(**{"session.id": "s-1", "gen_ai.usage.input_tokens": 5}),
                                               chat(**{"gen_ai.conversation.id": "s-2", "gen_ai.usage.input_tokens": 7}))
        assert d.value("agent_session_tokens_total", session="s-1") == 5
        assert d.value("agent_session_tokens_total", session="s-2") == 7

    def test_fields_and_defaults(self):
        """field name, field status, a default for an absent attribute."""
        rule = {"name": "spans_by_name", "labels": {"span": {"field": "name"}, "status": {"field": "status"},
                                                    "team": {"attribute": "team.name", "default": "none"}}}
        d = Derived({"metrics": [rule]}).spans(tool(), tool(status=ERROR, **{"team.name": "core"}))
        assert d.value("agent_spans_by_name_total", span="execute_tool shell_exec", status="ok", team="none") == 1
        assert d.value("agent_spans_by_name_total", span="execute_tool shell_exec", status="error", team="core") == 1

    def test_a_user_rule_may_add_to_a_default_metric(self):
        """Same name, kind and labels as a default rule: both feed one metric."""
        rule = {"name": "llm_requests", "match": {"operation": ["my_llm_call"]},
                "labels": {"provider": {"value": "inhouse"}, "model": "my.model", "status": {"field": "status"}}}
        d = Derived({"metrics": [rule]}).spans(chat(), {"name": "x", "attrs": {"gen_ai.operation.name": "my_llm_call",
                                                                                "my.model": "m1"}})
        assert d.value("agent_llm_requests_total", provider="inhouse", model="m1", status="ok") == 1
        assert d.value("agent_llm_requests_total", provider="anthropic", model="claude-sonnet-4-5", status="ok") == 1

    def test_conditions_compare_numbers_and_booleans_as_yaml_writes_them(self):
        """A YAML 3 matches an attribute sent as 3 or 3.0; true matches a boolean."""
        rule = {"name": "retried", "match": {"attributes": {"retry.count": 3, "cached": True}}}
        d = Derived({"metrics": [rule]}).spans(tool(**{"retry.count": 3.0, "cached": True}),
                                               tool(**{"retry.count": 3, "cached": True}),
                                               tool(**{"retry.count": 3.5, "cached": True}),
                                               tool(**{"retry.count": 3, "cached": False}))
        assert d.value("agent_retried_total") == 2

    def test_error_type_of_spans_that_did_not_fail(self):
        """error_type is empty for a span that did not fail, even with an exception event; an exception.type attribute counts."""
        rule = {"name": "by_error", "match": {"category": ["tool"]}, "labels": {"e": {"field": "error_type"}}}
        exception = ("exception", {"exception.type": "Handled"})
        d = Derived({"metrics": [rule]}).spans({**tool(), "events": [exception]}, tool(**{"exception.type": "Raised"}),
                                               {**tool(status=ERROR), "events": [exception]})
        assert d.value("agent_by_error_total", e="") == 1
        assert d.value("agent_by_error_total", e="Raised") == 1
        assert d.value("agent_by_error_total", e="Handled") == 1

    def test_log_record_rules(self):
        """source log_records: a rule on records without an event name."""
        rule = {"name": "errors_logged", "match": {"source": ["log_records"], "status": "error"},
                "labels": {"service": "service.name"}}
        d = Derived({"metrics": [rule]}).records({"severity_number": 17}, {"severity_number": 9}, {"severity_number": 21})
        assert d.value("agent_errors_logged_total", service="my-agent") == 2

    def test_a_list_attribute_gives_one_sample_per_element(self):
        """finish_reasons as a label: one sample per reason."""
        rule = {"name": "finishes", "match": {"category": ["llm"]}, "labels": {"reason": "gen_ai.response.finish_reasons"}}
        d = Derived({"metrics": [rule]}).spans(chat(**{"gen_ai.response.finish_reasons": ["stop", "length"]}),
                                               chat(**{"gen_ai.response.finish_reasons": ["stop"]}))
        assert d.value("agent_finishes_total", reason="stop") == 2
        assert d.value("agent_finishes_total", reason="length") == 1


class TestCardinality:
    def test_the_cap_folds_new_series_into_the_overflow_series(self):
        """max_series_per_metric: later label sets go to one otel_metric_overflow series; totals stay right; counted."""
        d = Derived({"max_series_per_metric": 2})
        d.spans(*(chat(model=f"m{i}", **{"gen_ai.usage.input_tokens": 10}) for i in range(5)))
        requests = d.series("agent_llm_requests_total")
        assert len(requests) == 3
        assert d.value("agent_llm_requests_total", otel_metric_overflow="true") == 3
        assert sum(requests.values()) == 5
        assert sum(d.series("agent_llm_tokens_total").values()) == 50
        overflowed = d.metrics.registry.get_sample_value("obs_pipeline_exporter_series_overflow_total", {"exporter": "prometheus"})
        assert overflowed == 3 + 3 + 3  # requests, input tokens and duration, for m2, m3 and m4

    def test_default_rules_carry_no_identity_labels(self):
        """Sessions, users and traces never become labels of the shipped metrics."""
        d = Derived().spans(chat(**{"gen_ai.conversation.id": "s-1", "user.id": "u-1", "session.id": "s-2"}))
        for metric in d.exporter.registry.collect():
            for sample in metric.samples:
                assert not {"s-1", "s-2", "u-1"} & set(sample.labels.values()), sample

    def test_series_expire(self):
        """A series not updated for metric_expiration is gone from the next scrape; an updated one stays."""
        d = Derived({"metric_expiration": "1m"}).spans(chat(model="old"))
        d.now += 45
        d.spans(chat(model="new"))
        d.exporter.store.expire(d.now + 30)
        models = {dict(k)["model"] for k in d.series("agent_llm_requests_total")}
        assert models == {"new"}

    def test_a_full_family_makes_room_by_expiring_before_it_overflows(self):
        """When a family is full, its expired series are swept before a new one overflows."""
        d = Derived({"metric_expiration": "10s", "max_series_per_metric": 1}).spans(chat(model="a"))
        d.now += 60
        d.spans(chat(model="b"))
        assert {dict(k).get("model") for k in d.series("agent_llm_requests_total")} == {"b"}


def test_traces_data_round_trip_is_what_the_view_reads():
    """The view keeps every span field it reads (a guard on its field numbers)."""
    data = traces(chat(status=ERROR), resource={"service.name": "x"})
    view = TracesView.FromString(data.SerializeToString())
    span, original = view.resource_spans[0].scope_spans[0].spans[0], data.resource_spans[0].scope_spans[0].spans[0]
    assert (span.name, span.start_time_unix_nano, span.end_time_unix_nano, span.trace_id, span.span_id) == (
        original.name, original.start_time_unix_nano, original.end_time_unix_nano, original.trace_id, original.span_id)
    assert [bytes(a) for a in span.attributes] == [kv.SerializeToString() for kv in original.attributes]
    assert TracesData.FromString(view.SerializeToString()) == data


class TestDocumentedExamples:
    """The rules shown in docs/prometheus.md validate and do what the page says."""

    @staticmethod
    def _blocks() -> list[str]:
        import re  # noqa: PLC0415
        from pathlib import Path  # noqa: PLC0415

        doc = (Path(__file__).parents[2] / "docs" / "prometheus.md").read_text()
        return re.findall(r"```yaml\n(.*?)```", doc, re.DOTALL)

    def test_the_first_example(self):
        """tokens_by_agent: input tokens of prod and staging inference calls, by agent, model and status."""
        import yaml  # noqa: PLC0415

        (block,) = [b for b in self._blocks() if b.startswith("exporters:")]
        body = yaml.safe_load(block)["exporters"]["prometheus"]
        d = Derived(body).spans(
            chat(**{"gen_ai.usage.input_tokens": 30, "gen_ai.agent.name": "helper", "deployment.environment.name": "prod"}),
            chat(**{"gen_ai.usage.input_tokens": 99, "gen_ai.agent.name": "helper", "deployment.environment.name": "dev"}))
        assert d.value("agent_tokens_by_agent_total", agent="helper", model="claude-sonnet-4-5", status="ok") == 30

    def test_the_max_turns_example(self):
        """An exception event of type MaxTurnsExceeded on an invoke_agent span counts as a max-iterations bailout."""
        import textwrap  # noqa: PLC0415

        import yaml  # noqa: PLC0415

        (block,) = [b for b in self._blocks() if "MaxTurnsExceeded" in b]
        rules = yaml.safe_load(textwrap.dedent(block))
        exception = ("exception", {"exception.type": "agents.exceptions.MaxTurnsExceeded"})
        turn = {"name": "invoke_agent", "attrs": {"gen_ai.operation.name": "invoke_agent"}, "events": [exception]}
        inner = {**chat(), "events": [exception]}  # the same exception on the chat span it passed through
        d = Derived({"metrics": rules}).spans(turn, inner).records({"event_name": "agent.max_iterations"})
        assert d.value("agent_max_iterations_total") == 2
