"""The redaction processor's typed config and its config-time checks (RE2 compiles, known rule ids)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from obs_pipeline.errors import Problem
from obs_pipeline.processors.redaction.rules import BLOCKED_KEY, BUILTIN, UNSCANNED, Rule, compile_problem
from obs_pipeline.secret import Secret
from obs_pipeline.units import parse_size

DEFAULT_MAX_CONTENT_CHARS = 4096  # the schema's defaults, for a Config built without the config layer
DEFAULT_MAX_VALUE_SIZE = 1 << 20  # 1MiB
DEFAULT_MAX_DEPTH = 32
NO_KEY = Secret("")


class Mode(enum.Enum):
    """What a hit does: mask it, or only report it (shadow mode)."""

    REDACT = "redact"
    DETECT = "detect"


class Replacement(enum.Enum):
    """What a masked secret becomes."""

    MARKER = "marker"  # [REDACTED:<rule>]
    HASH = "hash"  # [REDACTED:<rule>:<hmac hex16>]


class Content(enum.Enum):
    """What happens to prompt and completion content."""

    KEEP = "keep"
    DROP = "drop"
    TRUNCATE = "truncate"


@dataclass(frozen=True, kw_only=True)
class Config:
    """See ``schemas/processors/redaction.schema.json`` for each option's meaning and default."""

    mode: Mode = Mode.REDACT  # redact, or detect (count and report, data unchanged)
    replacement: Replacement = Replacement.MARKER  # marker or keyed hash
    hash_key: Secret = NO_KEY  # the HMAC key of replacement: hash
    rules: tuple[Rule, ...] = ()  # user value rules, after the built-in ones
    disable: tuple[str, ...] = ()  # built-in rule ids switched off
    blocked_keys: tuple[str, ...] = ()  # RE2 patterns of keys whose whole value is masked
    allowed_keys: tuple[str, ...] = ()  # keys never masked by their name
    allowed_values: tuple[str, ...] = ()  # RE2 patterns of matches that are not secrets
    content: Content = Content.KEEP  # prompt/completion content: keep, drop, truncate
    max_content_chars: int = DEFAULT_MAX_CONTENT_CHARS  # the cut of content: truncate
    max_value_size: int = DEFAULT_MAX_VALUE_SIZE  # larger values are masked unscanned
    max_depth: int = DEFAULT_MAX_DEPTH  # deeper nested values are masked unscanned
    trust_upstream_summary: bool = False  # keep redaction.* summaries that arrive with the data

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Config:
        """From the validated dict (schema defaults filled in)."""
        return cls(
            mode=Mode(raw["mode"]),
            replacement=Replacement(raw["replacement"]),
            hash_key=raw["hash_key"],
            rules=tuple(Rule(id=r["id"], pattern=r["pattern"], secret_group=r.get("secret_group", 0),
                             description=r.get("description", "")) for r in raw["rules"]),
            disable=tuple(raw["disable"]),
            blocked_keys=tuple(raw["blocked_keys"]),
            allowed_keys=tuple(raw["allowed_keys"]),
            allowed_values=tuple(raw["allowed_values"]),
            content=Content(raw["content"]),
            max_content_chars=raw["max_content_chars"],
            max_value_size=parse_size(raw["max_value_size"]),
            max_depth=raw["max_depth"],
            trust_upstream_summary=raw["trust_upstream_summary"],
        )


def check(cfg: Config) -> list[Problem]:
    """Every user pattern compiles in RE2; ids are known and unique; hash mode has a key."""
    problems: list[Problem] = []
    known = {rule.id for rule in BUILTIN.rules} | {BUILTIN.key_rule.id, BLOCKED_KEY, UNSCANNED}  # ids reports use
    seen: set[str] = set()
    for i, rule in enumerate(cfg.rules):
        if rule.id in known or rule.id in seen:
            problems.append(Problem(path=f"rules[{i}].id", message=f"rule id {rule.id!r} is already used"))
        seen.add(rule.id)
        problem = compile_problem(rule.pattern, rule.id, f"rules[{i}].pattern", groups_at_least=rule.secret_group)
        if problem is not None:
            problems.append(problem)
    for name, patterns in (("blocked_keys", cfg.blocked_keys), ("allowed_values", cfg.allowed_values)):
        for i, pattern in enumerate(patterns):
            problem = compile_problem(pattern, f"{name}[{i}]", f"{name}[{i}]")
            if problem is not None:
                problems.append(problem)
    builtin_ids = {rule.id for rule in BUILTIN.rules} | {BUILTIN.key_rule.id}
    problems.extend(
        Problem(path=f"disable[{i}]", message=f"no built-in rule {rule_id!r} (known: {', '.join(sorted(builtin_ids))})")
        for i, rule_id in enumerate(cfg.disable) if rule_id not in builtin_ids
    )
    if cfg.replacement is Replacement.HASH and not cfg.hash_key:
        problems.append(Problem(path="hash_key", message="replacement hash needs a hash_key (e.g. ${env:REDACTION_HMAC_KEY})"))
    return problems
