"""``budget``: meter costs against named budgets, mark spans, fire events, answer agents before they spend.

The package, by role: :mod:`.config` (the typed config and validate's checks), :mod:`.scope`
(who spends), :mod:`.windows` (session, rolling, calendar), :mod:`.store` and
:mod:`.redis_store` (where spend lives), :mod:`.charging` (one batch's bookkeeping),
:mod:`.decisions` and :mod:`.endpoint` (the decision endpoint and reservations),
:mod:`.webhook` (the webhook action), :mod:`.processor` (the component). Guide: docs/budget.md.
"""

from __future__ import annotations

from obs_pipeline.components import Consumer, ProcessorFactory, ProcessorSettings
from obs_pipeline.processors.budget.config import Config, check, endpoints
from obs_pipeline.processors.budget.processor import BudgetProcessor
from obs_pipeline.signals import Signal

__all__ = ["FACTORY", "TYPE", "BudgetProcessor", "Config"]

TYPE = "budget"


def _create(settings: ProcessorSettings, cfg: Config, next_consumer: Consumer) -> BudgetProcessor:
    return BudgetProcessor(settings, cfg, next_consumer)


FACTORY = ProcessorFactory[Config](
    type=TYPE,
    signals=frozenset({Signal.TRACES}),
    schema="processors/budget.schema.json",
    description="Meters span costs against named budgets, marks spans, fires warning and exceeded events, "
                "and answers agents on a decision endpoint.",
    parse=Config.parse,
    create=_create,
    check=check,
    endpoints=endpoints,
    mutates_data=True,
    sealed=Config.sealed,
)
