"""The GenAI name tables: aliases resolve to canonical names, values normalize, operations categorize."""

from __future__ import annotations

import io

import orjson
import pytest

from obs_pipeline import genai
from obs_pipeline.batch import Batch
from obs_pipeline.components import Kind
from obs_pipeline.exporters import debug
from obs_pipeline.exporters.jsonl_audit.spans import encode_traces
from obs_pipeline.genai import attributes
from obs_pipeline.signals import Signal
from obs_pipeline.testing import RecordingHost, make_settings
from tests.exporters.builders import logs, traces


class TestAliases:
    def test_every_alias_points_to_a_canonical_name(self):
        """An alias never points to another alias, and no canonical name is listed as an alias."""
        canonical_names = set(genai.ALIASES.values())
        assert not canonical_names & set(genai.ALIASES)
        assert all(name.count(".") >= 1 for name in canonical_names)

    @pytest.mark.parametrize(("alias", "canonical"), [
        ("gen_ai.system", genai.PROVIDER_NAME),
        ("llm.provider", genai.PROVIDER_NAME),
        ("gen_ai.usage.prompt_tokens", genai.USAGE_INPUT_TOKENS),
        ("llm.token_count.prompt", genai.USAGE_INPUT_TOKENS),
        ("gen_ai.usage.completion_tokens", genai.USAGE_OUTPUT_TOKENS),
        ("gen_ai.usage.cache_read_input_tokens", genai.USAGE_CACHE_READ_INPUT_TOKENS),
        ("gen_ai.usage.cache_creation.input_tokens", genai.USAGE_CACHE_WRITE_INPUT_TOKENS),
        ("llm.token_count.completion_details.reasoning", genai.USAGE_REASONING_OUTPUT_TOKENS),
        ("llm.model_name", genai.RESPONSE_MODEL),
        ("session.id", genai.CONVERSATION_ID),
        ("langfuse.session.id", genai.CONVERSATION_ID),
        ("task.id", genai.TASK_ID),
        ("tool.name", genai.TOOL_NAME),
        ("agent.name", genai.AGENT_NAME),
        ("enduser.id", genai.USER_ID),
        ("llm.request.type", genai.OPERATION_NAME),
    ])
    def test_alias_resolves_to_canonical(self, alias, canonical):
        """Old and foreign names (genai.md §1.6) resolve to the current name."""
        assert genai.canonical(alias) == canonical

    def test_unknown_and_canonical_names_resolve_to_themselves(self):
        """A name that is not an alias is returned unchanged."""
        assert genai.canonical("http.route") == "http.route"
        assert genai.canonical(genai.USAGE_INPUT_TOKENS) == genai.USAGE_INPUT_TOKENS

    def test_names_for_lists_canonical_first(self):
        """Readers try the canonical name before any alias."""
        names = genai.names_for(genai.CONVERSATION_ID)
        assert names[0] == "gen_ai.conversation.id"
        assert {"session.id", "langfuse.session.id"} <= set(names[1:])

    def test_token_counts_are_integer_attributes(self):
        """Token counts are read as integers, names and ids as strings."""
        assert genai.USAGE_INPUT_TOKENS in genai.INT_ATTRIBUTES
        assert genai.REQUEST_MODEL not in genai.INT_ATTRIBUTES


class TestValues:
    @pytest.mark.parametrize(("old", "new"), [
        ("xai", "x_ai"), ("az.ai.openai", "azure.ai.openai"), ("az.ai.inference", "azure.ai.inference"),
        ("vertex_ai", "gcp.vertex_ai"), ("gemini", "gcp.gemini"),
    ])
    def test_gen_ai_system_values_map_to_provider_names(self, old, new):
        """The ``gen_ai.system`` values renamed in the provider registry map to the new ones."""
        assert genai.normalize_provider(old) == new

    def test_current_provider_values_pass_unchanged(self):
        """Well-known current values are never rewritten."""
        for value in ("openai", "anthropic", "aws.bedrock", "gcp.gemini", "x_ai", "some-new-provider"):
            assert genai.normalize_provider(value) == value

    def test_openllmetry_request_types_map_to_operations(self):
        """``llm.request.type`` values become operation names."""
        assert genai.normalize_operation("completion") == "text_completion"
        assert genai.normalize_operation("embedding") == "embeddings"
        assert genai.normalize_operation("chat") == "chat"


class TestCategory:
    @pytest.mark.parametrize("operation", [
        "chat", "text_completion", "generate_content", "embeddings", "realtime_inference",
    ])
    def test_inference_operations_are_llm(self, operation):
        """Model calls are ``llm``."""
        assert genai.category(operation) == "llm"

    def test_execute_tool_is_tool(self):
        """A tool call is ``tool``."""
        assert genai.category("execute_tool") == "tool"

    @pytest.mark.parametrize("operation", [
        "invoke_agent", "create_agent", "invoke_workflow", "plan", "retrieval", "search_memory", "update_memory",
    ])
    def test_agent_operations_are_agent(self, operation):
        """Agent, workflow, planning, retrieval and memory operations are ``agent``."""
        assert genai.category(operation) == "agent"

    def test_unknown_operation_is_other(self):
        """An operation nobody defined is ``other``."""
        assert genai.category("summon_dragon") == "other"
        assert genai.category(None) == "other"

    @pytest.mark.parametrize(("kind", "expected"), [
        ("LLM", "llm"), ("EMBEDDING", "llm"), ("TOOL", "tool"), ("AGENT", "agent"), ("CHAIN", "agent"),
        ("RETRIEVER", "agent"), ("GUARDRAIL", "security"), ("SOMETHING", "other"),
    ])
    def test_openinference_span_kind_gives_category(self, kind, expected):
        """Without an operation name, the OpenInference span kind decides."""
        assert genai.category(None, kind) == expected

    def test_operation_wins_over_span_kind(self):
        """A known operation name is more precise than a span kind."""
        assert genai.category("execute_tool", "LLM") == "tool"

    def test_traceloop_span_kind_gives_category(self):
        """OpenLLMetry's ``traceloop.span.kind`` values are understood too."""
        assert genai.category(None, "tool") == "tool"
        assert genai.category(None, "workflow") == "agent"


def attrs_of(values: dict[str, object]):
    """The KeyValue attributes of a log record carrying ``values``."""
    return logs({"attrs": values}).resource_logs[0].scope_logs[0].log_records[0].attributes


class TestAttributes:
    def test_canonical_name_wins_over_alias_in_either_order(self):
        """``gen_ai.conversation.id`` beats ``session.id`` whichever comes first."""
        for pairs in ({"session.id": "alias", "gen_ai.conversation.id": "canonical"},
                      {"gen_ai.conversation.id": "canonical", "session.id": "alias"}):
            assert attributes.read_wanted(attrs_of(pairs))[attributes.SESSION] == "canonical"

    def test_values_are_read_as_their_type(self):
        """Token counts become ints whatever the SDK sent; provider values are renamed; ids become text."""
        vals = attributes.read_wanted(attrs_of({
            "gen_ai.usage.prompt_tokens": "34", "gen_ai.usage.output_tokens": 12.0, "gen_ai.system": "gemini",
            "session.id": 42, "gen_ai.usage.cache_read.input_tokens": float("inf"),
        }))
        assert (vals[attributes.IN], vals[attributes.OUT], vals[attributes.PROVIDER], vals[attributes.SESSION]) == (
            34, 12, "gcp.gemini", "42")
        assert attributes.tokens(vals) == {"input": 34, "output": 12}

    def test_resource_context(self):
        """service.name, and the session, task, user and agent a resource carries for all its records."""
        assert attributes.resource_context_of(attrs_of({
            "service.name": "svc", "session.id": "s", "task.id": "t", "enduser.id": "u", "gen_ai.agent.name": "a",
        })) == ("svc", "s", "t", "u", "a")
        assert attributes.resource_context_of(attrs_of({})) == (None, None, None, None, None)

    async def test_debug_and_the_audit_line_read_the_same_values(self):
        """An old provider value and token counts sent as text look the same in debug and in the audit line."""
        data = traces({"attrs": {"gen_ai.system": "gemini", "gen_ai.usage.prompt_tokens": "34",
                                 "llm.model_name": "m", "session.id": "s-1"}})
        line = orjson.loads(encode_traces(data)[0])
        stream = io.StringIO()
        exp = debug.DebugExporter(make_settings("debug", Kind.EXPORTER), debug.Config(verbosity="normal"), stream)
        await exp.start(RecordingHost())
        await exp.export(Batch(Signal.TRACES, data))
        await exp.shutdown()
        shown = stream.getvalue().split()
        assert line["detail"]["provider"] == "gcp.gemini"
        assert "provider=gcp.gemini" in shown
        assert line["detail"]["tokens"] == {"input": 34}
        assert "tokens=34/-" in shown
        assert f"model={line['detail']['model']}" in shown
        assert f"session={line['session_id']}" in shown
