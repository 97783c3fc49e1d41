"""The GenAI name tables: aliases resolve to canonical names, values normalize, operations categorize."""

from __future__ import annotations

import pytest

from obs_pipeline import genai


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
