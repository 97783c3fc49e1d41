"""The ``sampling`` processor's config: one type, two modes, the collector's key names.

Head mode takes the collector's ``probabilistic_sampler`` keys (``sampling_percentage``,
``hash_seed``, ``sampling_precision``, ``fail_closed``); tail mode the ``tail_sampling`` keys
(``decision_wait``, ``num_traces``, ``decision_cache``, ``policies`` with ``name``, ``type`` and a
block named after the type) plus ``max_memory``. The schema holds the defaults and shapes;
:func:`check` holds what it cannot say (a policy that does not compile, names used twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from obs_pipeline.errors import Problem
from obs_pipeline.units import parse_duration, parse_size

HEAD, TAIL = "head", "tail"
NO_POLICY = "none"  # the policy label of traces no policy kept
COMPOSITES = frozenset({"and", "drop"})
# The schema's defaults, for a Config built without the config layer.
DEFAULT_SAMPLING_PERCENTAGE = 100.0
DEFAULT_PRECISION = 4
DEFAULT_DECISION_WAIT = 30.0  # seconds
DEFAULT_NUM_TRACES = 50_000
DEFAULT_MAX_MEMORY = 64 * 1024 * 1024
DEFAULT_CACHE_SIZE = 50_000


@dataclass(frozen=True, kw_only=True)
class PolicySpec:
    """One policy as configured: its name, type, the block named after the type, sub-policies."""

    name: str
    type: str
    settings: dict[str, Any] = field(default_factory=dict)  # the type's block; {} for always_sample
    sub_policies: tuple[PolicySpec, ...] = ()  # and / drop only

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> PolicySpec:
        """From one validated policy mapping."""
        type_ = raw["type"]
        block = raw.get(type_) or {}
        if type_ in COMPOSITES:
            subs = tuple(cls.parse(sub) for sub in block[f"{type_}_sub_policy"])
            return cls(name=raw["name"], type=type_, sub_policies=subs)
        return cls(name=raw["name"], type=type_, settings=dict(block))


@dataclass(frozen=True, kw_only=True)
class Config:
    """See ``schemas/processors/sampling.schema.json`` for each option's meaning and default."""

    mode: str = HEAD
    # head mode
    sampling_percentage: float = DEFAULT_SAMPLING_PERCENTAGE
    hash_seed: int = 0  # 0: the trace id's W3C randomness
    sampling_precision: int = DEFAULT_PRECISION  # hex digits of the th value written
    fail_closed: bool = False  # drop spans without randomness (all-zero trace id)
    # tail mode
    decision_wait: float = DEFAULT_DECISION_WAIT  # seconds after a trace's first span
    num_traces: int = DEFAULT_NUM_TRACES
    max_memory: int = DEFAULT_MAX_MEMORY  # bytes
    sampled_cache_size: int = DEFAULT_CACHE_SIZE
    non_sampled_cache_size: int = DEFAULT_CACHE_SIZE
    policies: tuple[PolicySpec, ...] = ()

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Config:
        """From the validated dict (schema defaults filled in)."""
        cache = raw["decision_cache"]
        return cls(
            mode=raw["mode"],
            sampling_percentage=float(raw["sampling_percentage"]),
            hash_seed=raw["hash_seed"],
            sampling_precision=raw["sampling_precision"],
            fail_closed=raw["fail_closed"],
            decision_wait=parse_duration(raw["decision_wait"]),
            num_traces=raw["num_traces"],
            max_memory=parse_size(raw["max_memory"]),
            sampled_cache_size=cache["sampled_cache_size"],
            non_sampled_cache_size=cache["non_sampled_cache_size"],
            policies=tuple(PolicySpec.parse(p) for p in raw["policies"]),
        )


def check(cfg: Config) -> list[Problem]:
    """Cross-field rules: policies belong to tail mode, compile, and have distinct names."""
    from obs_pipeline.processors.sampling.policies import PolicyError, compile_policy  # noqa: PLC0415 - a cycle

    problems: list[Problem] = []
    if cfg.mode == HEAD:
        if cfg.policies:
            problems.append(Problem(path="policies", message="policies apply to mode tail only; set mode: tail"))
        return problems
    if not cfg.policies:
        problems.append(Problem(path="policies", message="mode tail needs at least one policy"))
    seen: dict[str, int] = {}
    for index, spec in enumerate(cfg.policies):
        if spec.name in seen:
            problems.append(Problem(path=f"policies[{index}].name",
                                    message=f'policy name "{spec.name}" is used twice (first at policies[{seen[spec.name]}])'))
        seen.setdefault(spec.name, index)
        if spec.name == NO_POLICY:
            problems.append(Problem(path=f"policies[{index}].name",
                                    message=f'"{NO_POLICY}" is reserved: it labels traces that no policy kept'))
        try:
            compile_policy(spec)
        except PolicyError as exc:
            problems.append(Problem(path=f"policies[{index}]{exc.where}", message=exc.message))
    return problems


__all__ = ["HEAD", "NO_POLICY", "TAIL", "Config", "PolicySpec", "check"]
