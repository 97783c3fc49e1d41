"""Reported token counts -> :class:`Tokens` in the OTel convention, whatever convention the span used.

OTel's ``input_tokens`` includes the cached tokens and ``output_tokens`` the reasoning tokens.
Some instrumentations copy Anthropic's (or Bedrock Converse's) ``input_tokens``, which excludes
both cache counts, or Gemini's ``candidatesTokenCount``, which excludes the thinking tokens. Taken
as OTel counts, the first gives a negative uncached input (genai-prices raises on it) or silently
under-prices, the second under-prices reasoning. Which convention a span used is decided, in order:

1. a ``token_conventions`` rule of the config matching the span's instrumentation scope and provider;
2. the reported total, when there is one: ``input + output`` (OTel), ``input + cache + output``
   (input excludes the cache), ``input + output + reasoning`` (output excludes reasoning); a
   total computed from impossible OTel counts (less input than cache) does not decide;
3. counts that cannot be OTel ones (less input than cache, less output than reasoning) from a
   provider whose API reports them apart (:mod:`.providers`);
4. otherwise the OTel convention. Counts that still contradict each other are not priced.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from obs_pipeline.processors.cost.pricing import INVALID_TOKENS, NEGATIVE_UNCACHED
from obs_pipeline.processors.cost.providers import NATIVE_EXCLUSIVE_INPUT, NATIVE_EXCLUSIVE_REASONING
from obs_pipeline.processors.cost.reading import INVALID, Count
from obs_pipeline.processors.cost.usage import Tokens

__all__ = ["EXCLUSIVE_INPUT", "EXCLUSIVE_REASONING", "NO_USAGE", "Convention", "normalize"]

NO_USAGE = "no_usage"  # an inference span without input or output counts
# Normalizations applied (metric reasons).
EXCLUSIVE_INPUT = "input_excludes_cache"
EXCLUSIVE_REASONING = "output_excludes_reasoning"


@dataclass(frozen=True, kw_only=True)
class Convention:
    """A ``token_conventions`` rule: which convention spans of a scope and provider (globs) use.

    ``input_excludes_cache`` / ``output_excludes_reasoning``: True or False to decide, None to
    leave it to detection.
    """

    scope: str = "*"
    provider: str = "*"
    input_excludes_cache: bool | None = None
    output_excludes_reasoning: bool | None = None

    def matches(self, scope: str, provider: str) -> bool:
        """Whether the rule applies to a span of instrumentation ``scope`` and ``provider``."""
        return fnmatch.fnmatchcase(scope, self.scope) and fnmatch.fnmatchcase(provider, self.provider)


def _rule(rules: tuple[Convention, ...], scope: str, provider: str) -> tuple[bool | None, bool | None]:
    exclusive_input: bool | None = None
    exclusive_output: bool | None = None
    for rule in rules:
        if rule.matches(scope, provider):
            if exclusive_input is None:
                exclusive_input = rule.input_excludes_cache
            if exclusive_output is None:
                exclusive_output = rule.output_excludes_reasoning
    return exclusive_input, exclusive_output


def _by_total(total: int, inp: int, out: int, cache: int, reasoning: int) -> tuple[bool, bool] | None:
    """The conventions the reported total implies, or None when it does not tell."""
    if total == inp + out:
        return False, False
    if cache and total == inp + cache + out:
        return True, False
    if reasoning and total == inp + out + reasoning:
        return False, True
    if cache and reasoning and total == inp + cache + out + reasoning:
        return True, True
    return None


def normalize(
    counts: dict[str, Count], provider: str | None, model: str | None, scope: str,
    rules: tuple[Convention, ...] = (),
) -> tuple[Tokens, tuple[str, ...]] | str:
    """The counts as :class:`Tokens` and the normalizations applied, or why they cannot be priced."""
    if len(counts) == 2 and not rules:  # the common case: input and output, nothing to decide
        inp, out = counts.get("input"), counts.get("output")
        if type(inp) is int and type(out) is int:
            return Tokens(inp, out), ()
    if any(value is INVALID for value in counts.values()):
        return INVALID_TOKENS
    inp, out = counts.get("input"), counts.get("output")
    if not isinstance(inp, int) and not isinstance(out, int):
        return NO_USAGE
    inp = inp if isinstance(inp, int) else 0
    out = out if isinstance(out, int) else 0
    read, write, reasoning, total = (counts.get(k) for k in ("cache_read", "cache_write", "reasoning", "total"))
    read = read if isinstance(read, int) else 0
    write = write if isinstance(write, int) else 0
    reasoning = reasoning if isinstance(reasoning, int) else 0
    cache = read + write
    name = provider or ""
    exclusive_input, exclusive_output = _rule(rules, scope, name)
    if isinstance(total, int) and (exclusive_input is None or exclusive_output is None):
        implied = _by_total(total, inp, out, cache, reasoning)
        # A total that calls impossible counts OTel ones (less input than cache) does not decide.
        if implied is not None and exclusive_input is None and (implied[0] or inp >= cache):
            exclusive_input = implied[0]
        if implied is not None and exclusive_output is None and (implied[1] or out >= reasoning):
            exclusive_output = implied[1]
    claude = bool(model) and "claude" in (model or "").lower()
    if exclusive_input is None:
        exclusive_input = inp < cache and (name in NATIVE_EXCLUSIVE_INPUT or claude)
    if exclusive_output is None:
        exclusive_output = out < reasoning and name in NATIVE_EXCLUSIVE_REASONING
    applied: list[str] = []
    if exclusive_input and cache:
        inp += cache
        applied.append(EXCLUSIVE_INPUT)
    if exclusive_output and reasoning:
        out += reasoning
        applied.append(EXCLUSIVE_REASONING)
    tokens = Tokens(input=inp, output=out, cache_read=read, cache_write=write, reasoning=reasoning)
    if tokens.uncached_input < 0:
        return NEGATIVE_UNCACHED
    if not tokens.consistent:
        return INVALID_TOKENS
    return tokens, tuple(applied)
