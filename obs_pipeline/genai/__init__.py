"""The GenAI attribute names, their aliases and the value maps: the one place that knows them.

Instrumentations disagree on names. OpenTelemetry's GenAI conventions renamed attributes several
times (``gen_ai.usage.prompt_tokens`` -> ``gen_ai.usage.input_tokens``, ``gen_ai.system`` ->
``gen_ai.provider.name``, ``cache_creation`` -> ``cache_write``), and OpenInference, OpenLLMetry,
OpenLIT, Langfuse and Sentry each add their own (``reference/genai.md`` §1.3 and the table in §1.6).
Every component that reads GenAI data (the audit exporter, cost, redaction, budgets) resolves
names through this module so that an alias learnt once is understood everywhere.

Everything here is plain data plus a few tiny functions, so hot paths can precompute their own
lookup tables from it instead of calling a function per attribute. :mod:`.attributes` is that
table, shared: the attribute *slots* and the readers of ``KeyValue`` attributes (audit, debug,
and next cost, budgets, redaction and a Prometheus exporter) all use, so they agree on what a
span's model or token count is.

Precedence rule used by all readers: the canonical name wins over any alias; among aliases of one
canonical name the order is unspecified (they are alternative spellings of the same value).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# The audit categories are the audit line's vocabulary; the tables below map GenAI values onto them.
from obs_pipeline.audit.line import AGENT, LLM, OTHER, SECURITY, TOOL
from obs_pipeline.audit.line import CATEGORIES as CATEGORIES

# --- Canonical attribute names (the latest GenAI conventions, genai.md §1.3) ----------------------

OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"

USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"  # total input, cached tokens included
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"  # reasoning tokens included
USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"  # subset of input
USAGE_CACHE_WRITE_INPUT_TOKENS = "gen_ai.usage.cache_write.input_tokens"  # subset of input
USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"  # subset of output
# Not in the spec; OpenLLMetry/OpenLIT/OpenInference report it. Never add it to input+output.
USAGE_TOTAL_TOKENS = "gen_ai.usage.total_tokens"

CONVERSATION_ID = "gen_ai.conversation.id"  # "session, thread": our session id
# No convention exists for a task id. We read ``gen_ai.task.id`` (GenAI namespace, so it sits next
# to the conversation id) and accept the spellings agent runtimes use; see TASK_ID_ALIASES.
TASK_ID = "gen_ai.task.id"
AGENT_NAME = "gen_ai.agent.name"
AGENT_ID = "gen_ai.agent.id"
WORKFLOW_NAME = "gen_ai.workflow.name"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
DATA_SOURCE_ID = "gen_ai.data_source.id"
ERROR_TYPE = "error.type"
USER_ID = "user.id"
# The exception conventions: attributes of a log record, or of a span's ``exception`` event.
EXCEPTION_TYPE = "exception.type"
EXCEPTION_MESSAGE = "exception.message"
EXCEPTION_EVENT = "exception"  # the span event's name
FINISH_REASONS = "gen_ai.response.finish_reasons"  # string[]: why the model stopped, per choice
LOG_RECORD_UID = "log.record.uid"  # a unique id of the log record (a ULID), set by its source
# The tier that served an OpenAI call (default, flex, priority): prices differ by tier. The
# response's value is what ran; the request's may be "auto".
OPENAI_RESPONSE_SERVICE_TIER = "openai.response.service_tier"
OPENAI_REQUEST_SERVICE_TIER = "openai.request.service_tier"

# Decisions. Neither is in a released convention yet: the tool-call decision is proposed in
# semantic-conventions-genai PR 535 (the ``gen_ai.tool.call.decision`` event, whose
# ``gen_ai.tool.call.decision.outcome`` is allow / deny / require_approval); the action enforced
# after a guardrail in PR 427 (``gen_ai.security.action.type``: allow, block, modify, ...), which
# followed semantic-conventions PR 3233's ``gen_ai.security.decision.type`` (allow / deny / modify).
TOOL_CALL_DECISION = "gen_ai.tool.call.decision.outcome"
GUARDRAIL_ACTION = "gen_ai.security.action.type"

INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
# Prompt and completion content under older names (genai.md §1.6): whole-value aliases, the
# prefixes of indexed forms (gen_ai.prompt.0.content, llm.input_messages.0.message.content), and
# the events whose attributes or log body are the content.
CONTENT_ALIASES = ("gen_ai.prompt", "gen_ai.completion", "input.value", "output.value")
CONTENT_PREFIXES = ("gen_ai.prompt.", "gen_ai.completion.", "llm.input_messages.", "llm.output_messages.")
CONTENT_EVENTS = (
    "gen_ai.system.message", "gen_ai.user.message", "gen_ai.assistant.message", "gen_ai.tool.message",
    "gen_ai.choice", "gen_ai.client.inference.operation.details", "gen_ai.content.prompt", "gen_ai.content.completion",
)
TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"  # JSON text of the call's arguments
TOOL_CALL_RESULT = "gen_ai.tool.call.result"  # the tool's result as the model sees it
# Content under older names: gen_ai.prompt / gen_ai.completion (semconv <= 1.27, JSON or plain
# text), OpenInference's input.value / output.value (also a tool span's arguments and result).
INPUT_MESSAGES_ALIASES = ("gen_ai.prompt", "input.value")
OUTPUT_MESSAGES_ALIASES = ("gen_ai.completion", "output.value")

SERVICE_NAME = "service.name"  # resource attribute
EVENT_NAME = "event.name"  # log attribute used before LogRecord.event_name existed

# Span-kind attributes of other conventions (values mapped by the *_CATEGORY tables below).
OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
TRACELOOP_SPAN_KIND = "traceloop.span.kind"

# Cost (semantic-conventions-genai PR 443): written by the cost processor; read by budget,
# sampling's cost sums, the audit exporter. Defined here only, so a rename reaches all of them.
COST_PREFIX = "gen_ai.usage.cost."
COST_AMOUNT = "gen_ai.usage.cost.amount"  # a double
COST_CURRENCY = "gen_ai.usage.cost.currency"  # ISO 4217, USD for ours
COST_SOURCE = "gen_ai.usage.cost.source"  # genai-prices@<version>, override, provider
COST_UNPRICED = "gen_ai.usage.cost.unpriced"  # true: no price could be found (never priced at $0)
COST_UNPRICED_REASON = "gen_ai.usage.cost.unpriced_reason"
#: Costs backends read (Langfuse/OpenLIT, OpenInference/Phoenix, Logfire): a span carrying one
#: already has a cost from its instrumentation; the cost processor can also write them.
COST_ALIASES = ("gen_ai.usage.cost", "llm.cost.total", "operation.cost")

# --- Aliases: alias attribute name -> canonical name (genai.md §1.6) ------------------------------

PROVIDER_ALIASES = ("gen_ai.system", "llm.provider", "llm.system")
OPERATION_ALIASES = ("llm.request.type",)  # OpenLLMetry; values via OPERATION_VALUE_ALIASES
REQUEST_MODEL_ALIASES = ("llm.request.model_name",)
# OpenInference's llm.model_name is set from the response when there is one: the model that ran.
RESPONSE_MODEL_ALIASES = ("llm.model_name", "llm.response.model_name")
# Token usage: semconv <= 1.26 and OpenLLMetry (prompt/completion), OpenLLMetry's older llm.usage.*,
# OpenInference (llm.token_count.*), pydantic-ai/Logfire (gen_ai.usage.details.*), Sentry. The
# compatibility matrix in docs/cost.md lists them per instrumentation, each with a fixture.
INPUT_TOKENS_ALIASES = ("gen_ai.usage.prompt_tokens", "llm.token_count.prompt", "llm.usage.prompt_tokens")
OUTPUT_TOKENS_ALIASES = ("gen_ai.usage.completion_tokens", "llm.token_count.completion", "llm.usage.completion_tokens")
CACHE_READ_ALIASES = (
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
    "gen_ai.usage.input_tokens.cached",  # Sentry
    "gen_ai.usage.details.cache_read_tokens",  # pydantic-ai / Logfire
    "gen_ai.usage.cache_read_tokens",
)
CACHE_WRITE_ALIASES = (
    "gen_ai.usage.cache_creation.input_tokens",  # semconv 1.40-1.41, still emitted by released libraries
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
    "gen_ai.usage.input_tokens.cache_write",  # Sentry
    "gen_ai.usage.details.cache_write_tokens",  # pydantic-ai / Logfire
    "gen_ai.usage.cache_write_tokens",
)
REASONING_ALIASES = (
    "gen_ai.usage.reasoning_tokens", "llm.usage.reasoning_tokens", "llm.token_count.completion_details.reasoning",
    "gen_ai.usage.output_tokens.reasoning",  # Sentry
    "gen_ai.usage.details.reasoning_tokens",  # pydantic-ai / Logfire
)
TOTAL_TOKENS_ALIASES = ("llm.usage.total_tokens", "llm.token_count.total")
CONVERSATION_ID_ALIASES = (
    "session.id",  # core registry, OpenInference
    "langfuse.session.id",
    "traceloop.association.properties.session_id",
    "traceloop.association.properties.conversation_id",
)
TASK_ID_ALIASES = ("task.id", "agent.task.id", "traceloop.association.properties.task_id")
AGENT_NAME_ALIASES = ("agent.name",)  # OpenInference
# The event's name used as an attribute, as some runtimes write it.
TOOL_CALL_DECISION_ALIASES = ("gen_ai.tool.call.decision",)
GUARDRAIL_ACTION_ALIASES = ("gen_ai.security.decision.type",)
TOOL_NAME_ALIASES = ("tool.name",)  # OpenInference
USER_ID_ALIASES = ("enduser.id", "langfuse.user.id", "traceloop.association.properties.user_id")
OPENAI_RESPONSE_SERVICE_TIER_ALIASES = ("gen_ai.openai.response.service_tier",)  # semconv <= 1.36
OPENAI_REQUEST_SERVICE_TIER_ALIASES = ("gen_ai.openai.request.service_tier",)

_ALIAS_GROUPS: dict[str, tuple[str, ...]] = {
    PROVIDER_NAME: PROVIDER_ALIASES,
    OPERATION_NAME: OPERATION_ALIASES,
    REQUEST_MODEL: REQUEST_MODEL_ALIASES,
    RESPONSE_MODEL: RESPONSE_MODEL_ALIASES,
    USAGE_INPUT_TOKENS: INPUT_TOKENS_ALIASES,
    USAGE_OUTPUT_TOKENS: OUTPUT_TOKENS_ALIASES,
    USAGE_CACHE_READ_INPUT_TOKENS: CACHE_READ_ALIASES,
    USAGE_CACHE_WRITE_INPUT_TOKENS: CACHE_WRITE_ALIASES,
    USAGE_REASONING_OUTPUT_TOKENS: REASONING_ALIASES,
    USAGE_TOTAL_TOKENS: TOTAL_TOKENS_ALIASES,
    CONVERSATION_ID: CONVERSATION_ID_ALIASES,
    TASK_ID: TASK_ID_ALIASES,
    AGENT_NAME: AGENT_NAME_ALIASES,
    TOOL_NAME: TOOL_NAME_ALIASES,
    USER_ID: USER_ID_ALIASES,
    OPENAI_RESPONSE_SERVICE_TIER: OPENAI_RESPONSE_SERVICE_TIER_ALIASES,
    OPENAI_REQUEST_SERVICE_TIER: OPENAI_REQUEST_SERVICE_TIER_ALIASES,
    INPUT_MESSAGES: INPUT_MESSAGES_ALIASES,
    OUTPUT_MESSAGES: OUTPUT_MESSAGES_ALIASES,
    TOOL_CALL_DECISION: TOOL_CALL_DECISION_ALIASES,
    GUARDRAIL_ACTION: GUARDRAIL_ACTION_ALIASES,
}

#: Every accepted alias -> its canonical attribute name.
ALIASES: Mapping[str, str] = MappingProxyType(
    {alias: canonical for canonical, aliases in _ALIAS_GROUPS.items() for alias in aliases}
)

#: Canonical name -> its aliases (in the order above).
ALIASES_OF: Mapping[str, tuple[str, ...]] = MappingProxyType(dict(_ALIAS_GROUPS))

#: Canonical attributes whose value is an integer (token counts); the rest here are strings.
INT_ATTRIBUTES = frozenset({
    USAGE_INPUT_TOKENS, USAGE_OUTPUT_TOKENS, USAGE_CACHE_READ_INPUT_TOKENS,
    USAGE_CACHE_WRITE_INPUT_TOKENS, USAGE_REASONING_OUTPUT_TOKENS, USAGE_TOTAL_TOKENS,
})

# --- Value maps ---------------------------------------------------------------------------------

#: Legacy or foreign provider values -> the ``gen_ai.provider.name`` well-known value. Covers
#: ``gen_ai.system`` (semconv <= 1.36) and OpenInference's ``llm.provider`` / ``llm.system``.
#: Canonical values never appear as keys, so applying it to any provider value is safe.
PROVIDER_VALUE_ALIASES: Mapping[str, str] = MappingProxyType({
    "xai": "x_ai",
    "az.ai.openai": "azure.ai.openai",
    "az.ai.inference": "azure.ai.inference",
    "vertex_ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    # OpenInference values
    "vertexai": "gcp.vertex_ai",
    "mistralai": "mistral_ai",
    "google": "gcp.gen_ai",
    "aws": "aws.bedrock",
    "azure": "azure.ai.openai",
})

#: OpenLLMetry ``llm.request.type`` values -> ``gen_ai.operation.name`` values.
OPERATION_VALUE_ALIASES: Mapping[str, str] = MappingProxyType({
    "completion": "text_completion",
    "embedding": "embeddings",
})

#: Decision values (tool-call outcome or guardrail action, lower-cased) that make the audit result
#: ``deny``. ``require_approval`` is one: the call may not proceed on the agent's own authority;
#: ``detail.decision`` keeps the value, and a later decision (``allow``) has its own line. Any
#: other value (``allow``, ``modify``, ``warn``) leaves the result as the status makes it.
DENY_DECISIONS = frozenset({"deny", "require_approval", "block"})

# --- Audit categories ---------------------------------------------------------------------------


#: ``gen_ai.operation.name`` -> audit category (DESIGN §5). Retrieval and memory operations read
#: or write the agent's knowledge as part of its own reasoning loop: they are ``agent`` events,
#: not model calls (no tokens) and not tool calls (no ``gen_ai.tool.name``).
OPERATION_CATEGORY: Mapping[str, str] = MappingProxyType({
    "chat": LLM,
    "text_completion": LLM,
    "generate_content": LLM,
    "embeddings": LLM,
    "realtime_inference": LLM,
    "fetch_response": LLM,
    "rerank": LLM,
    "execute_tool": TOOL,
    "invoke_agent": AGENT,
    "create_agent": AGENT,
    "invoke_workflow": AGENT,
    "plan": AGENT,
    "retrieval": AGENT,
    "create_memory": AGENT,
    "update_memory": AGENT,
    "upsert_memory": AGENT,
    "delete_memory": AGENT,
    "search_memory": AGENT,
    "create_memory_store": AGENT,
    "delete_memory_store": AGENT,
})

#: ``openinference.span.kind`` -> audit category. GUARDRAIL is a policy decision: ``security``.
OPENINFERENCE_KIND_CATEGORY: Mapping[str, str] = MappingProxyType({
    "LLM": LLM,
    "EMBEDDING": LLM,
    "RERANKER": LLM,
    "TOOL": TOOL,
    "AGENT": AGENT,
    "CHAIN": AGENT,
    "RETRIEVER": AGENT,
    "GUARDRAIL": SECURITY,
    "EVALUATOR": OTHER,
    "UNKNOWN": OTHER,
})

#: ``traceloop.span.kind`` (OpenLLMetry) -> audit category.
TRACELOOP_KIND_CATEGORY: Mapping[str, str] = MappingProxyType({
    "workflow": AGENT,
    "agent": AGENT,
    "task": AGENT,
    "tool": TOOL,
    "unknown": OTHER,
})


def canonical(key: str) -> str:
    """The canonical name of attribute ``key`` (``key`` itself when it is not a known alias)."""
    return ALIASES.get(key, key)


def names_for(canonical_name: str) -> tuple[str, ...]:
    """``canonical_name`` followed by its aliases: the lookup order every reader uses."""
    return (canonical_name, *ALIASES_OF.get(canonical_name, ()))


def normalize_provider(value: str) -> str:
    """Map a legacy provider value (``gemini``, ``az.ai.openai``) to the current well-known one."""
    return PROVIDER_VALUE_ALIASES.get(value, value)


def normalize_operation(value: str) -> str:
    """Map an OpenLLMetry ``llm.request.type`` value to a ``gen_ai.operation.name`` value."""
    return OPERATION_VALUE_ALIASES.get(value, value)


def category(operation: str | None, span_kind: str | None = None) -> str:
    """The audit category of an operation, falling back to an OpenInference/OpenLLMetry span kind.

    Unknown operations and kinds give ``other``.
    """
    if operation:
        found = OPERATION_CATEGORY.get(operation)
        if found:
            return found
    if span_kind:
        return OPENINFERENCE_KIND_CATEGORY.get(span_kind) or TRACELOOP_KIND_CATEGORY.get(span_kind) or OTHER
    return OTHER
