"""OTel ``gen_ai.provider.name`` values -> ``genai-prices`` provider ids.

``genai-prices`` matches provider ids by its own rules (an exact id, then a ``contains`` clause),
which get several OTel names wrong or not at all (``reference/genai.md`` §2.1): ``x_ai`` and
``ibm.watsonx.ai`` raise ``LookupError``, ``azure.ai.openai`` lands on OpenAI instead of Azure.
The map below is applied first; a name it does not list goes to ``genai-prices`` as it is.
A value of None means "known, and no bundled prices": such calls are unpriced unless an
override prices them.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["NATIVE_EXCLUSIVE_INPUT", "NATIVE_EXCLUSIVE_REASONING", "PROVIDER_IDS"]

#: OTel well-known provider names (genai.md §1.3) and common gateway names -> genai-prices ids.
PROVIDER_IDS: Mapping[str, str | None] = MappingProxyType({
    "openai": "openai",
    "anthropic": "anthropic",
    "aws.bedrock": "aws",
    "azure.ai.openai": "azure",  # Azure's own table, which falls back to OpenAI's prices
    "azure.ai.inference": "azure",
    "cohere": "cohere",
    "deepseek": "deepseek",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "groq": "groq",
    "ibm.watsonx.ai": None,  # genai-prices has no watsonx table
    "mistral_ai": "mistral",
    "perplexity": "perplexity",
    "x_ai": "x-ai",
    "moonshot_ai": "moonshotai",
    "openrouter": "openrouter",
    "together_ai": "together",
    "fireworks_ai": "fireworks",
    "cerebras": "cerebras",
})

#: Providers whose API reports ``input_tokens`` without the cached tokens (Anthropic's Messages
#: API, Bedrock's Converse ``inputTokens``): an instrumentation that copies the number through
#: reports less input than cache, which is how the exclusive convention is recognised.
NATIVE_EXCLUSIVE_INPUT = frozenset({"anthropic", "aws.bedrock"})

#: Providers whose API reports thinking tokens beside, not inside, the output tokens (Gemini's
#: ``thoughtsTokenCount`` next to ``candidatesTokenCount``).
NATIVE_EXCLUSIVE_REASONING = frozenset({"gcp.gemini", "gcp.vertex_ai", "gcp.gen_ai"})
