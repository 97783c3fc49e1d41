"""Who spends: resolving a budget's ``scope`` to a value on each span, span first, then resource.

Shorthands name the attributes agent frameworks already write, through :mod:`obs_pipeline.genai`:

* ``session``: ``gen_ai.conversation.id`` and its aliases (``session.id``, ``langfuse.session.id``,
  ...), the same names and the same precedence as the audit line's ``session_id``;
* ``user``: ``user.id`` and its aliases (``enduser.id``, ...);
* ``agent``: ``gen_ai.agent.name`` and its aliases (``agent.name``);
* ``tenant``: :data:`TENANT_NAMES` (no convention exists; ``tenant.id`` first).

Any other scope is one attribute name. Precedence, as :func:`obs_pipeline.genai.attributes.read_wanted`:
the first name of a shorthand (the canonical one) wins over its aliases; among aliases the first
in the record wins; the span wins over its resource. A value is a string (a number is taken as
its decimal text); an empty one counts as absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from obs_pipeline import genai
from obs_pipeline.genai import COST_AMOUNT, COST_UNPRICED
from obs_pipeline.genai.attributes import str_fallback

__all__ = [
    "COST_AMOUNT", "COST_UNPRICED", "KNOWN_NAMES", "RESERVATION_ID", "SHORTHANDS", "TENANT_NAMES", "ScopeReader",
    "names_of",
]

# The attributes the cost processor writes and this one reads (COST_AMOUNT, COST_UNPRICED) are
# named in obs_pipeline.genai, imported above.
#: Set by the agent on the span of a call it reserved budget for (``POST .../reserve``).
RESERVATION_ID = "budget.reservation.id"

#: The tenant's attribute names, in precedence order.
TENANT_NAMES = ("tenant.id", "tenant_id", "organization.id", "traceloop.association.properties.tenant_id")

_SHORTHAND_NAMES: dict[str, tuple[str, ...]] = {
    "session": genai.names_for(genai.CONVERSATION_ID),
    "user": genai.names_for(genai.USER_ID),
    "tenant": TENANT_NAMES,
    "agent": genai.names_for(genai.AGENT_NAME),
}
SHORTHANDS = tuple(_SHORTHAND_NAMES)

#: Attribute names a scope may be one typo away from (the ``validate`` check).
KNOWN_NAMES = frozenset(
    {*genai.ALIASES, *genai.ALIASES_OF, *TENANT_NAMES, genai.AGENT_ID, genai.SERVICE_NAME, genai.TASK_ID,
     genai.WORKFLOW_NAME, genai.TOOL_NAME},
)


def names_of(scope: str) -> tuple[str, ...]:
    """The attribute names a scope reads, in precedence order."""
    return _SHORTHAND_NAMES.get(scope, (scope,))


class ScopeReader:
    """Reads the values of several scopes, and the cost attributes, in one pass over attributes.

    Args:
        scopes: the distinct scopes of the budgets; values come back in this order.
    """

    def __init__(self, scopes: Sequence[str]) -> None:
        self.scopes = tuple(scopes)
        #: attribute name -> [(scope index, rank)]; rank 0 for a shorthand's first name, 1 for its aliases.
        self.lookup: dict[str, list[tuple[int, int]]] = {}
        for index, scope in enumerate(self.scopes):
            for rank, name in enumerate(names_of(scope)):
                self.lookup.setdefault(name, []).append((index, min(rank, 1)))

    def values(self, attributes: Iterable[KeyValue]) -> list[str | None]:
        """Each scope's value in ``attributes`` (None where absent)."""
        found: list[str | None] = [None] * len(self.scopes)
        ranks = [2] * len(self.scopes)
        lookup = self.lookup
        for kv in attributes:
            entries = lookup.get(kv.key)
            if entries is None:
                continue
            text = kv.value.string_value or str_fallback(kv.value)
            if not text:
                continue
            for index, rank in entries:
                if rank < ranks[index]:
                    ranks[index] = rank
                    found[index] = text
        return found
