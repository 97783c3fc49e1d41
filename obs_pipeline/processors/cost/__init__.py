"""``cost``: what each LLM call cost, in USD, on its span.

Inference spans (``chat``, ``text_completion``, ``generate_content``, ``embeddings``) are priced
from their token counts with the user's ``overrides`` first and ``genai-prices``' bundled tables
(offline) next, at the price of the day the call started. The cost goes into
``gen_ai.usage.cost.amount`` / ``.currency`` / ``.source`` and the aliases backends read
(``operation.cost``, ``gen_ai.usage.cost``, ``llm.cost.total``). A call that cannot be priced is
marked ``gen_ai.usage.cost.unpriced=true`` with a reason and counted: never priced at $0. A cost
the span already carries is kept (``source=provider``), with our estimate beside it and a drift
mark when they differ. Agent and workflow spans are never priced: they repeat their children's
usage. ``docs/cost.md`` is the guide.
"""

from __future__ import annotations

from obs_pipeline.components import Consumer, Host, ProcessorFactory, ProcessorSettings
from obs_pipeline.processors._helper import FunctionProcessor
from obs_pipeline.processors.cost.config import Config, check
from obs_pipeline.processors.cost.data_age import price_data
from obs_pipeline.processors.cost.pricing import PriceBook
from obs_pipeline.processors.cost.processor import CostFunction
from obs_pipeline.signals import Signal

__all__ = ["FACTORY", "TYPE", "Config", "CostProcessor"]

TYPE = "cost"


class CostProcessor(FunctionProcessor):
    """The ``cost`` processor: :class:`CostFunction` over each batch, and a start-up line about the prices."""

    def __init__(self, settings: ProcessorSettings, cfg: Config, next_consumer: Consumer) -> None:
        self.cfg = cfg
        self.book = PriceBook(cfg.overrides, provider_ids=cfg.provider_ids)
        # It never drops anything: the one reason it counts under is the helper's own processing_error.
        super().__init__(settings, next_consumer, CostFunction(settings, cfg, self.book), drop_reason="processing_error")

    async def on_start(self, host: Host) -> None:
        """Say which prices are in use, and warn when they are older than ``max_price_age``."""
        data = price_data()
        self.log.info("prices from %s (data of %s: %d providers, %d models), %d overrides",
                      data.source, data.date.isoformat(), data.providers, data.models, len(self.cfg.overrides))
        for problem in check(self.cfg):
            if problem.severity == "warning":  # a note repeats the line above
                self.log.warning("%s", problem.message)


def _create(settings: ProcessorSettings, cfg: Config, next_consumer: Consumer) -> CostProcessor:
    return CostProcessor(settings, cfg, next_consumer)


FACTORY = ProcessorFactory[Config](
    type=TYPE,
    signals=frozenset({Signal.TRACES}),
    schema="processors/cost.schema.json",
    description="Prices LLM calls: writes gen_ai.usage.cost.* on inference spans, from genai-prices and overrides.",
    parse=Config.parse,
    create=_create,
    check=check,
    mutates_data=True,
)
