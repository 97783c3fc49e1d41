"""The ``cost`` processor's config, and its check: how old the price data is.

See ``schemas/processors/cost.schema.json`` for each option's meaning and default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from obs_pipeline import genai
from obs_pipeline.errors import Problem
from obs_pipeline.processors.cost.data_age import price_data
from obs_pipeline.processors.cost.normalize import Convention
from obs_pipeline.processors.cost.pricing import Override
from obs_pipeline.units import parse_duration

__all__ = ["ALIAS_KEYS", "Config", "check", "parse_age"]

DAY = 86400.0
#: ``aliases`` option (the attribute's name with ``_`` for ``.``) -> the attribute it writes beside
#: ``gen_ai.usage.cost.amount``.
ALIAS_KEYS = {name.replace(".", "_"): name for name in genai.COST_ALIASES}
_DAYS = re.compile(r"([0-9]+)d(.*)")


def parse_age(text: str) -> float:
    """Seconds of an age such as ``90d``, ``12h`` or ``1d12h``.

    Raises:
        ValueError: not an age.
    """
    match = _DAYS.fullmatch(text)
    if match is None:
        return parse_duration(text)
    rest = match.group(2)
    return int(match.group(1)) * DAY + (parse_duration(rest) if rest else 0.0)


def _override(raw: dict[str, Any]) -> Override:
    return Override(model=raw["model"], provider=raw["provider"], input_mtok=raw["input"],
                    output_mtok=raw["output"], cache_read_mtok=raw["cache_read"], cache_write_mtok=raw["cache_write"])


def _convention(raw: dict[str, Any]) -> Convention:
    return Convention(scope=raw["scope"], provider=raw["provider"],
                      input_excludes_cache=raw["input_excludes_cache"],
                      output_excludes_reasoning=raw["output_excludes_reasoning"])


@dataclass(frozen=True, kw_only=True)
class Config:
    """The parsed ``cost`` config (defaults from the schema)."""

    overrides: tuple[Override, ...] = ()
    provider_ids: dict[str, str | None] = field(default_factory=dict)
    token_conventions: tuple[Convention, ...] = ()
    aliases: tuple[str, ...] = tuple(ALIAS_KEYS.values())  # attribute names written beside the amount
    drift_threshold: float = 0.05
    max_price_age: float = 90 * DAY  # seconds
    max_tokens: int = 100_000_000
    max_clock_skew: float = 3600.0  # seconds

    @classmethod
    def parse(cls, raw: dict[str, Any] | None) -> Config:
        """From the validated dict (schema defaults filled in)."""
        assert raw is not None  # the config layer makes a null body {} and fills the defaults
        aliases = raw["aliases"]
        return cls(
            overrides=tuple(_override(o) for o in raw["overrides"]),
            provider_ids=dict(raw["provider_ids"]),
            token_conventions=tuple(_convention(c) for c in raw["token_conventions"]),
            aliases=tuple(name for key, name in ALIAS_KEYS.items() if aliases[key]),
            drift_threshold=raw["drift_threshold"],
            max_price_age=parse_age(raw["max_price_age"]),
            max_tokens=raw["max_tokens"],
            max_clock_skew=parse_duration(raw["max_clock_skew"]),
        )


def check(cfg: Config, today: date | None = None) -> list[Problem]:
    """A note naming the price data in use, or a warning when it is older than ``max_price_age`` (prices go stale)."""
    today = today or datetime.now(UTC).date()
    data = price_data()
    age = (today - data.date).days
    if age * DAY <= cfg.max_price_age:
        return [Problem(path="", severity="note",
                        message=f"prices from {data.source}, data of {data.date.isoformat()} "
                                f"({age} day{'' if age == 1 else 's'} old)")]
    return [Problem(
        path="max_price_age",
        message=(f"the price data ({data.source}, dated {data.date.isoformat()}) is {age} days old, more than "
                 f"max_price_age ({cfg.max_price_age / DAY:g}d): upgrade genai-prices or price the models "
                 "you use in overrides"),
        severity="warning",
    )]
