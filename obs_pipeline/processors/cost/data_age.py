"""Which price data is in use, and how old it is.

``genai-prices`` records no release date. What it does record is when each price took effect
(``StartDateConstraint``), including changes announced for later dates. The data's date is
taken as the newest change that had taken effect by the day the package was installed (the
mtime of its ``RECORD`` file): a release cannot hold a change made after it was built, and the
install day stops changes scheduled for the future from making old data look new as they come
into effect. It is a lower bound on the data's age, which is what a staleness warning needs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path

from genai_prices import data_snapshot, types

from obs_pipeline.processors.cost.pricing import PRICES_VERSION, SOURCE_GENAI_PRICES

__all__ = ["PriceData", "price_data"]


@dataclass(frozen=True)
class PriceData:
    """The price data in use: ``genai-prices@<version>``, its date, how many providers and models."""

    source: str
    version: str
    date: date
    providers: int
    models: int


def _installed_on() -> date:
    """The day genai-prices was installed (today when that cannot be told)."""
    try:
        files = metadata.distribution("genai-prices").files or []
        record = next((f for f in files if f.name == "RECORD"), None)
        if record is not None:
            stamp = Path(record.locate()).stat().st_mtime
            return datetime.fromtimestamp(stamp, UTC).date()
    except (OSError, metadata.PackageNotFoundError):
        pass
    return datetime.now(UTC).date()


def data_date(providers: list[types.Provider], installed: date) -> date:
    """The newest price change in ``providers`` that took effect on or before ``installed``."""
    newest = date(2000, 1, 1)
    for provider in providers:
        for model in provider.models:
            if isinstance(model.prices, types.ModelPrice):
                continue
            for conditional in model.prices:
                constraint = conditional.constraint
                if isinstance(constraint, types.StartDateConstraint) and newest < constraint.start_date <= installed:
                    newest = constraint.start_date
    return newest


@functools.cache
def price_data() -> PriceData:
    """The bundled price data's description (computed once: it walks every model)."""
    providers = data_snapshot.get_snapshot().providers
    return PriceData(
        source=SOURCE_GENAI_PRICES, version=PRICES_VERSION, date=data_date(providers, _installed_on()),
        providers=len(providers), models=sum(len(p.models) for p in providers),
    )
