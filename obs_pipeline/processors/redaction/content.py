"""The content policy: keep, drop or truncate prompt and completion content, and mark what was done.

Content is the prompt and completion text of GenAI telemetry: ``gen_ai.input.messages``,
``gen_ai.output.messages``, ``gen_ai.system_instructions``, tool-call arguments and results, their
older names (``gen_ai.prompt``, ``gen_ai.completion.0.content``, OpenInference's ``input.value``
and ``llm.input_messages.*``), the content attributes of GenAI events, and the body of GenAI
event log records. Token counts and cost are other attributes and are never touched.

``drop`` removes the attribute (or the body) and sets ``gen_ai.content.dropped=true`` next to it;
``truncate`` cuts a string to ``max_content_chars`` characters (after redaction, so no secret is
cut in half and left readable) and records ``gen_ai.content.original_length.<key>``: the length
before the cut, of the redacted text (a marker need not be as long as what it masked).
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from obs_pipeline import genai
from obs_pipeline.processors.redaction.config import Content

__all__ = ["CONTENT_KEYS", "DROPPED", "ORIGINAL_LENGTH", "ContentPolicy", "literals"]

DROPPED = "gen_ai.content.dropped"
ORIGINAL_LENGTH = "gen_ai.content.original_length."
CONTENT_KEYS = frozenset({
    genai.INPUT_MESSAGES, genai.OUTPUT_MESSAGES, genai.SYSTEM_INSTRUCTIONS,
    genai.TOOL_CALL_ARGUMENTS, genai.TOOL_CALL_RESULT, *genai.CONTENT_ALIASES,
})
_EVENT_CONTENT_KEYS = frozenset({"content", "message", "tool_calls", "body"})
# Parts of an indexed message that are not its content.
_NOT_CONTENT_SUFFIXES = (".role", ".finish_reason", ".name", ".id", ".type", ".tool_call_id")
CONTENT_EVENTS = frozenset(genai.CONTENT_EVENTS)


def literals(policy: Content) -> tuple[str, ...]:
    """Text whose presence in a batch's bytes means the policy may have work to do."""
    if policy is Content.KEEP:
        return ()
    return (*sorted(CONTENT_KEYS), *genai.CONTENT_PREFIXES, *sorted(CONTENT_EVENTS))


def is_content_key(key: str, *, in_content_event: bool = False) -> bool:
    """Whether attribute ``key`` holds prompt or completion content."""
    if key in CONTENT_KEYS or (in_content_event and key in _EVENT_CONTENT_KEYS):
        return True
    return key.startswith(genai.CONTENT_PREFIXES) and not key.endswith(_NOT_CONTENT_SUFFIXES)


class ContentPolicy:
    """Applies ``content`` to attribute lists and log bodies; every method returns whether it changed data."""

    def __init__(self, policy: Content, max_chars: int) -> None:
        self.policy = policy
        self.max_chars = max_chars
        self.active = policy is not Content.KEEP

    def drop(self, attrs: Any, *, in_content_event: bool = False) -> bool:
        """With ``drop``: remove the content attributes of ``attrs`` and mark the list."""
        if self.policy is not Content.DROP:
            return False
        doomed = [i for i, kv in enumerate(attrs) if is_content_key(kv.key, in_content_event=in_content_event)]
        for i in reversed(doomed):
            del attrs[i]
        if doomed:
            _mark_dropped(attrs)
        return bool(doomed)

    def truncate(self, attrs: Any, *, in_content_event: bool = False) -> bool:
        """With ``truncate``: cut long content strings of ``attrs``, recording their length."""
        if self.policy is not Content.TRUNCATE:
            return False
        lengths: list[tuple[str, int]] = []
        for kv in attrs:
            if is_content_key(kv.key, in_content_event=in_content_event) and (length := self._cut(kv.value)):
                lengths.append((kv.key, length))
        for key, length in lengths:
            attrs.append(KeyValue(key=ORIGINAL_LENGTH + key, value=AnyValue(int_value=length)))
        return bool(lengths)

    def body(self, record: Any, attrs: Any, *, after_redaction: bool) -> bool:
        """The body of a GenAI event log record: dropped before redaction, or truncated after it."""
        if not record.HasField("body"):
            return False
        if self.policy is Content.DROP and not after_redaction:
            record.ClearField("body")
            _mark_dropped(attrs)
            return True
        if self.policy is Content.TRUNCATE and after_redaction and (length := self._cut(record.body)):
            attrs.append(KeyValue(key=ORIGINAL_LENGTH + "body", value=AnyValue(int_value=length)))
            return True
        return False

    def _cut(self, value: AnyValue) -> int:
        """Cut a long string value; its original length, or 0 when it was left alone."""
        if value.WhichOneof("value") != "string_value":
            return 0
        text = value.string_value
        if len(text) <= self.max_chars:
            return 0
        value.string_value = text[: self.max_chars]
        return len(text)


def _mark_dropped(attrs: Any) -> None:
    for kv in attrs:
        if kv.key == DROPPED:
            kv.value.bool_value = True
            return
    attrs.append(KeyValue(key=DROPPED, value=AnyValue(bool_value=True)))
