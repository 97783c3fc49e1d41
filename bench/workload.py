"""The benchmark workload: pre-serialized 100-span OTLP trace requests of GenAI spans.

It matches ``/work/shared/reference/python-limits.md`` ("Workload"): one ResourceSpans with 7
resource attributes, one ScopeSpans, 100 spans with trace/span/parent ids, name, kind,
timestamps, status (some errors) and 12 ``gen_ai.*`` attributes, about 1,266 bytes per span on
the wire, 2% of prompts carrying a fake secret. Everything is drawn from a seeded RNG, so the
load generator and the bench's reference parse loop build byte-identical requests.

Unique ids without re-encoding: every trace id, span id and parent span id in a template
starts with the same 7-byte :data:`MARKER`. The serialized template is split at the marker,
and :meth:`Template.render` joins the pieces with a 7-byte *prefix* (a run tag and a sequence
number), a single ``bytes.join``. So each request sent has its own ids (span id = prefix +
1-byte index), the audit file can be checked for exactly-once delivery, and the wire bytes and
parse cost stay those of the template. Protobuf length prefixes do not change: ids are fixed
size.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

MARKER = b"\xf1\x3a\xc7\x5e\x92\x0b\xd4"  # 7 distinct bytes; never valid UTF-8, so no string holds it
PREFIX_LEN = len(MARKER)
SPANS_PER_REQUEST = 100
SPANS_PER_TRACE = 10  # one invoke_agent root, then chat / execute_tool children
SECRET_RATE = 0.02
BASE_TIME_NS = 1_793_534_400_000_000_000  # 2026-11-01T10:00:00Z

_PROVIDERS = {
    "openai": ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3-mini"],
    "anthropic": ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"],
    "aws.bedrock": ["anthropic.claude-3-5-sonnet-20240620-v1:0", "meta.llama3-70b-instruct-v1:0"],
    "gcp.vertex_ai": ["gemini-2.5-pro", "gemini-2.5-flash"],
}
_AGENTS = ["support-triage", "code-reviewer", "research-assistant", "billing-helper", "sre-oncall"]
_TOOLS = ["web_search", "shell_exec", "read_file", "write_file", "sql_query", "http_get", "calendar_lookup"]
_WORDS = [
    "the", "user", "asked", "to", "summarize", "the", "quarterly", "report", "and", "list", "every",
    "open", "incident", "with", "its", "owner", "please", "check", "the", "deployment", "logs", "for",
    "errors", "since", "yesterday", "then", "propose", "a", "fix", "and", "a", "rollback", "plan",
    "context", "retrieved", "documents", "mention", "latency", "budget", "retries", "timeout", "cache",
    "invalidation", "schema", "migration", "answer", "in", "a", "concise", "way", "cite", "the", "sources",
    "include", "a", "table", "of", "the", "costs", "per", "model", "and", "per", "session",
]


@dataclass(frozen=True)
class Template:
    """One serialized request, split where each id's 7-byte prefix goes."""

    segments: tuple[bytes, ...]
    spans: int
    size: int

    def render(self, prefix: bytes) -> bytes:
        """The request with every id prefix set to ``prefix`` (same length as the template)."""
        return prefix.join(self.segments)


def id_prefix(tag: int, seq: int) -> bytes:
    """The 7 id-prefix bytes of request ``seq`` of run ``tag``: 1 byte tag, 6 bytes sequence."""
    return bytes((tag & 0xFF,)) + seq.to_bytes(6, "big")


def decode_span_id(span_id: bytes) -> tuple[int, int, int]:
    """(tag, seq, index within the request) of a span id made by :func:`id_prefix`."""
    return span_id[0], int.from_bytes(span_id[1:PREFIX_LEN], "big"), span_id[PREFIX_LEN]


def _text(rng: random.Random, low: int, high: int, secret: bool) -> str:
    target = rng.randint(low, high)
    words: list[str] = []
    size = 0
    while size < target:
        word = rng.choice(_WORDS)
        words.append(word)
        size += len(word) + 1
    text = " ".join(words)
    if secret:  # a fake credential of a shape the redaction rules look for (not a real key)
        fake = "".join(rng.choices(string.ascii_letters + string.digits, k=48))
        text = f"{text[: target - 70]} api_key=sk-proj-{fake}"
    return text[:target]


def _kv(key: str, value: str | int | float) -> KeyValue:
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(double_value=value))


def _span(rng: random.Random, index: int, *, trace_id: bytes, root: bool, session: str, agent: str,
          start_ns: int) -> Span:
    provider = rng.choice(list(_PROVIDERS))
    model = rng.choice(_PROVIDERS[provider])
    tool = rng.choice(_TOOLS)
    if root:
        operation, name, kind = "invoke_agent", f"invoke_agent {agent}", Span.SPAN_KIND_INTERNAL
    elif index % 2:
        operation, name, kind = "chat", f"chat {model}", Span.SPAN_KIND_CLIENT
    else:
        operation, name, kind = "execute_tool", f"execute_tool {tool}", Span.SPAN_KIND_INTERNAL
    error = rng.random() < 0.05
    status = (Status(code=Status.STATUS_CODE_ERROR, message="upstream returned 529 overloaded") if error
              else Status(code=Status.STATUS_CODE_OK))
    span = Span(
        trace_id=trace_id,
        span_id=MARKER + bytes((index + 1,)),
        name=name,
        kind=kind,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + rng.randint(2_000_000, 9_000_000_000),
        status=status,
    )
    if not root:
        root_index = index - index % SPANS_PER_TRACE
        span.parent_span_id = MARKER + bytes((root_index + 1,))
    span.attributes.extend([
        _kv("gen_ai.operation.name", operation),
        _kv("gen_ai.provider.name", provider),
        _kv("gen_ai.request.model", model),
        _kv("gen_ai.response.model", model if ":" in model else f"{model}-2026-08-06"),
        _kv("gen_ai.usage.input_tokens", rng.randint(50, 8000)),
        _kv("gen_ai.usage.output_tokens", rng.randint(10, 2000)),
        _kv("gen_ai.request.temperature", rng.choice([0.0, 0.2, 0.7, 1.0])),
        _kv("session.id", session),
        _kv("gen_ai.agent.name", agent),
        _kv("gen_ai.tool.name", tool),
        _kv("gen_ai.prompt", _text(rng, 200, 500, rng.random() < SECRET_RATE)),
        _kv("gen_ai.completion", _text(rng, 200, 500, False)),
    ])
    return span


def build_message(rng: random.Random, spans: int = SPANS_PER_REQUEST) -> ExportTraceServiceRequest:
    """One request of ``spans`` spans whose ids all start with :data:`MARKER`."""
    if not 0 < spans < 256:
        raise ValueError("spans per request must be 1..255 (the id index is one byte)")
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend([
        _kv("service.name", "support-agent"),
        _kv("service.version", "1.4.2"),
        _kv("service.instance.id", f"{rng.getrandbits(128):032x}"),
        _kv("deployment.environment.name", "bench"),
        _kv("telemetry.sdk.name", "opentelemetry"),
        _kv("telemetry.sdk.language", "python"),
        _kv("telemetry.sdk.version", "1.45.2"),
    ])
    ss = rs.scope_spans.add()
    ss.scope.name = "opentelemetry.instrumentation.openai_v2"
    ss.scope.version = "2.1b0"
    start = BASE_TIME_NS + rng.randint(0, 86_400) * 1_000_000_000
    trace_id = session = agent = ""
    for i in range(spans):
        if i % SPANS_PER_TRACE == 0:
            trace_id = MARKER + rng.randbytes(9)
            session = f"sess-{rng.getrandbits(128):032x}"
            agent = rng.choice(_AGENTS)
        ss.spans.append(_span(rng, i, trace_id=trace_id, root=i % SPANS_PER_TRACE == 0, session=session, agent=agent,
                              start_ns=start + i * 1_000_000))
    return request


def build_templates(count: int, spans: int = SPANS_PER_REQUEST, seed: int = 1) -> list[Template]:
    """``count`` distinct request templates, deterministic for ``seed``.

    Raises:
        AssertionError: the marker was not found exactly once per id (never expected).
    """
    rng = random.Random(seed)  # reproducible data, not crypto
    templates = []
    for _ in range(count):
        data = build_message(rng, spans).SerializeToString()
        segments = tuple(data.split(MARKER))
        traces = -(-spans // SPANS_PER_TRACE)
        expected_ids = 2 * spans + (spans - traces)  # span and trace id of every span, parent ids
        assert len(segments) == expected_ids + 1, f"marker found {len(segments) - 1} times, want {expected_ids}"
        templates.append(Template(segments, spans, len(data)))
    return templates


def build_requests(count: int, spans: int = SPANS_PER_REQUEST, seed: int = 1, tag: int = 0) -> list[bytes]:
    """``count`` rendered requests (sequence numbers 0..count-1), e.g. for a parse loop."""
    return [t.render(id_prefix(tag, i)) for i, t in enumerate(build_templates(count, spans, seed))]
