"""Prompt and completion content for the audit line (``content: none | summary | full``).

What a replay needs to answer "why did the agent do that?": the LLM input and output messages,
and a tool call's arguments and result, in ``detail.input`` / ``detail.output`` (and, with
``full``, the system instructions in ``detail.system``). Each is an object, so its type is fixed::

    {"text": "...", "truncated": true, "original_length": 5123}   # cut to the limit
    {"text": "..."}                                                # whole

``full`` keeps the text as the span carries it (JSON messages stay JSON text), cut to
``max_detail_chars``; ``summary`` keeps a short excerpt, cut to ``min(200, max_detail_chars)``: the
last user message of the input, the first text (or tool call) of the output, the start of a tool
call's arguments or result. It reads what the redaction processor left, so it holds no secret
that redaction is configured to catch.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from obs_pipeline import genai
from obs_pipeline.wire import plain_string

__all__ = [
    "CONTENT_NAMES", "DEFAULT_MAX_DETAIL_CHARS", "SUMMARY_CHARS", "Content", "ContentPolicy", "SpanContent",
    "content_detail", "string_of",
    "summarize_input", "summarize_output",
]

DEFAULT_MAX_DETAIL_CHARS: Final = 2000
#: The longest summary, in characters (or ``max_detail_chars`` when that is smaller).
SUMMARY_CHARS: Final = 200


class Content(enum.StrEnum):
    """How much prompt and completion content the audit line keeps."""

    NONE = "none"
    SUMMARY = "summary"
    FULL = "full"


@dataclass(frozen=True)
class ContentPolicy:
    """The ``content`` and ``max_detail_chars`` options of the exporter."""

    mode: Content = Content.SUMMARY
    max_chars: int = DEFAULT_MAX_DETAIL_CHARS

    @property
    def limit(self) -> int:
        """The cut applied to each text of this mode."""
        return min(SUMMARY_CHARS, self.max_chars) if self.mode is Content.SUMMARY else self.max_chars


#: Content attribute -> ``(target, rank)``: which ``detail`` key it fills, and its precedence
#: there (lower wins: canonical names before aliases, messages before tool call text).
CONTENT_NAMES: Final[Mapping[str, tuple[str, int]]] = {
    genai.INPUT_MESSAGES: ("input", 0),
    **dict.fromkeys(genai.INPUT_MESSAGES_ALIASES, ("input", 1)),
    genai.TOOL_CALL_ARGUMENTS: ("input", 2),
    genai.OUTPUT_MESSAGES: ("output", 0),
    **dict.fromkeys(genai.OUTPUT_MESSAGES_ALIASES, ("output", 1)),
    genai.TOOL_CALL_RESULT: ("output", 2),
    genai.SYSTEM_INSTRUCTIONS: ("system", 0),
}
_IS_INPUT_MESSAGES = frozenset({genai.INPUT_MESSAGES, *genai.INPUT_MESSAGES_ALIASES})
_IS_OUTPUT_MESSAGES = frozenset({genai.OUTPUT_MESSAGES, *genai.OUTPUT_MESSAGES_ALIASES})


def _cut(text: str, limit: int) -> dict[str, Any]:
    if len(text) <= limit:
        return {"text": text}
    return {"text": text[:limit], "truncated": True, "original_length": len(text)}


def _parts_text(message: Any) -> str | None:
    """The text of one message: its text parts joined, a tool call named; None when it has none."""
    if not isinstance(message, dict):
        return message if isinstance(message, str) else None
    parts = message.get("parts")
    if isinstance(parts, list):
        texts = []
        for part in parts:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "tool_call":
                name = part.get("name")
                texts.append(f"[tool_call {name}]" if isinstance(name, str) and name else "[tool_call]")
            elif kind == "tool_call_response":
                texts.append("[tool_call_response]")
            elif isinstance(part.get("content"), str):
                texts.append(part["content"])
        return "\n".join(texts) if texts else None
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI style: [{"type": "text", "text": "..."}]
        texts = [str(item["text"]) for item in content if isinstance(item, dict) and isinstance(item.get("text"), str)]
        return "\n".join(texts) if texts else None
    return None


def _messages(text: str) -> list[Any] | None:
    """The messages of a JSON text (a list of messages, or an object holding one), else None."""
    if not text.startswith(("[", "{")):
        return None
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if isinstance(parsed, dict):
        parsed = parsed.get("messages", [parsed])
    return parsed if isinstance(parsed, list) else None


def summarize_input(text: str) -> str:
    """The last user message of an input (JSON messages), else the last message, else ``text`` itself."""
    messages = _messages(text)
    if not messages:
        return text
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    for message in reversed(users or messages):
        found = _parts_text(message)
        if found:
            return found
    return text


def summarize_output(text: str) -> str:
    """The first text (or tool call) of an output (JSON messages), else ``text`` itself."""
    messages = _messages(text)
    if not messages:
        return text
    for message in messages:
        found = _parts_text(message)
        if found:
            return found
    return text


def content_detail(found: Mapping[str, str], policy: ContentPolicy) -> dict[str, dict[str, Any]]:
    """``{"input": ..., "output": ..., "system": ...}`` from the content attributes ``found`` (name -> text).

    For each target the best-ranked attribute wins (:data:`CONTENT_NAMES`); empty texts are
    skipped; ``system`` only with ``full``.
    """
    if policy.mode is Content.NONE:
        return {}
    best: dict[str, tuple[int, str, str]] = {}
    for name, text in found.items():
        target, rank = CONTENT_NAMES[name]
        if text and (target not in best or rank < best[target][0]):
            best[target] = (rank, name, text)
    summary = policy.mode is Content.SUMMARY
    out: dict[str, dict[str, Any]] = {}
    for target in ("input", "output", "system"):
        if target not in best or (summary and target == "system"):
            continue
        _, name, text = best[target]
        if summary and name in _IS_INPUT_MESSAGES:
            text = summarize_input(text)
        elif summary and name in _IS_OUTPUT_MESSAGES:
            text = summarize_output(text)
        out[target] = _cut(text, policy.limit)
    return out


#: Slot offsets of the span path's content attributes: input names rank 0-2, output names 4-6.
_OUTPUT_OFFSET: Final = 4


class SpanContent:
    """The span hot path's content reader: a slot per input/output attribute, one call per span.

    The encoder maps each content attribute's key bytes to ``base + offset`` (:attr:`slots`),
    keeps the serialized ``KeyValue``s a span has by slot, and calls this once for that span.
    ``system`` (``full`` only) is not here: it takes the general path of :mod:`.derived`.
    """

    def __init__(self, policy: ContentPolicy, base: int) -> None:
        self.policy = policy
        self.base = base
        self.summary = policy.mode is Content.SUMMARY
        self.limit = policy.limit
        self.slots: dict[bytes, int] = {}
        if policy.mode is not Content.NONE:
            for name, (target, rank) in CONTENT_NAMES.items():
                if target != "system":
                    self.slots[name.encode()] = base + rank + (_OUTPUT_OFFSET if target == "output" else 0)

    def __call__(self, found: Mapping[int, bytes], detail: dict[str, Any]) -> None:
        """Write ``detail.input`` / ``detail.output`` from the best-ranked attribute of each present.

        Written out (no helper per attribute): this runs for every LLM span under ``summary``.
        """
        split = self.base + _OUTPUT_OFFSET
        best_in = best_out = None
        for slot in found:
            if slot < split:
                if best_in is None or slot < best_in:
                    best_in = slot
            elif best_out is None or slot < best_out:
                best_out = slot
        limit, summary = self.limit, self.summary
        for target, chosen, rank in (("input", best_in, 0 if best_in is None else best_in - self.base),
                                     ("output", best_out, 0 if best_out is None else best_out - split)):
            if chosen is None:
                continue
            text = string_of(found[chosen])
            if not text:
                continue
            if summary and rank < 2 and text[0] in "[{":  # JSON messages (not tool call text): an excerpt
                text = summarize_input(text) if target == "input" else summarize_output(text)
            detail[target] = ({"text": text} if len(text) <= limit
                              else {"text": text[:limit], "truncated": True, "original_length": len(text)})


def string_of(raw: bytes) -> str:
    """The string value of a serialized ``KeyValue`` ("" if it has none or does not parse).

    The canonical encoding of a key and a string (:func:`obs_pipeline.wire.plain_string`) is sliced
    and decoded by hand: about half the parse (``bench/audit_derived.py``); invalid UTF-8 comes back
    with replacement characters. Anything else goes through the parser.
    """
    if (found := plain_string(raw)) is not None:
        return raw[found[1]:].decode(errors="replace")
    try:
        return KeyValue.FromString(raw).value.string_value
    except DecodeError:
        return ""
