"""The token counts of one call, in one convention: what the price lookup takes.

Instrumentations disagree on what ``input_tokens`` means (OTel: all input, cached tokens
included; Anthropic's API and some instrumentations: only the uncached part) and on whether
``output_tokens`` holds the reasoning tokens (OTel: yes; Gemini's API reports thoughts apart).
:class:`Tokens` is always the OTel convention, so the cost formula is written once:
uncached input = ``input - cache_read - cache_write``; reasoning is inside ``output``.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Tokens"]


class Tokens(NamedTuple):
    """Counts in the OTel convention: ``input`` includes both cache counts, ``output`` the reasoning.

    Attributes:
        input: all input tokens, cached ones included.
        output: all output tokens, reasoning included.
        cache_read: input tokens read from a prompt cache (a subset of ``input``).
        cache_write: input tokens written to a prompt cache (a subset of ``input``).
        reasoning: output tokens spent reasoning (a subset of ``output``).
    """

    input: int
    output: int
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0

    @property
    def uncached_input(self) -> int:
        """Input tokens billed at the plain input rate; negative means the counts contradict each other."""
        return self.input - self.cache_read - self.cache_write

    @property
    def consistent(self) -> bool:
        """Whether the subsets fit in their totals (a price can be computed from them)."""
        return (min(self.input, self.output, self.cache_read, self.cache_write, self.reasoning) >= 0
                and self.uncached_input >= 0 and self.reasoning <= self.output)
