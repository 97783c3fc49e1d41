"""The ``file_tail`` receiver's settings (``schemas/receivers/file_tail.schema.json``).

How the records are made is resolved here once: a ``preset`` (a shipped mapping file), an
inline ``mapping``, a ``mapping_file``, or nothing (``json`` bodies as they are, as ``stdin``
reads them). :func:`check` compiles the mapping and the RE2 pattern so ``validate`` reports
what is wrong with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from obs_pipeline.errors import Problem
from obs_pipeline.receivers.file_tail import presets
from obs_pipeline.receivers.file_tail.mapping import Mapper, MappingError
from obs_pipeline.receivers.linebatch import SEVERITY_NUMBERS
from obs_pipeline.units import parse_duration, parse_size

DEFAULT_START_AT = "end"
DEFAULT_POLL_INTERVAL = 0.2
DEFAULT_FINGERPRINT_SIZE = 1000
DEFAULT_MAX_LINE_SIZE = 2**20
DEFAULT_FORCE_FLUSH_PERIOD = 0.5
DEFAULT_MAX_BATCH_LINES = 1000
DEFAULT_MAX_CONCURRENT_FILES = 1024
DEFAULT_FORMAT = "json"
FORMATS = ("json", "otlp_json", "text")


@dataclass(frozen=True, kw_only=True)
class Config:
    """One ``file_tail`` receiver; see the schema for each key."""

    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    start_at: str = DEFAULT_START_AT  # end | beginning: for files present at the first start only
    poll_interval: float = DEFAULT_POLL_INTERVAL  # seconds between scans without notifications
    watch: str = "auto"  # auto: OS notifications when available, with polling as the fallback; poll: polling only
    fingerprint_size: int = DEFAULT_FINGERPRINT_SIZE  # bytes at a file's start that identify it
    max_line_size: int = DEFAULT_MAX_LINE_SIZE  # longer lines are truncated (counted)
    force_flush_period: float = DEFAULT_FORCE_FLUSH_PERIOD  # a partial last line is handed on after this
    max_batch_lines: int = DEFAULT_MAX_BATCH_LINES
    max_concurrent_files: int = DEFAULT_MAX_CONCURRENT_FILES  # open descriptors at most
    preset: str | None = None
    format: str | None = None  # None: the preset's, else json
    mapping: dict[str, Any] | None = None
    mapping_file: str | None = None
    pattern: str | None = None
    resolved: dict[str, Any] = field(default_factory=dict, compare=False)  # format, mapping, pattern, problems


def parse(raw: dict[str, Any]) -> Config:
    """Typed config from the validated dict (schema defaults filled in)."""
    cfg = Config(
        include=tuple(raw["include"]), exclude=tuple(raw["exclude"]), start_at=raw["start_at"],
        poll_interval=parse_duration(raw["poll_interval"]), watch=raw["watch"],
        fingerprint_size=parse_size(raw["fingerprint_size"]), max_line_size=parse_size(raw["max_line_size"]),
        force_flush_period=parse_duration(raw["force_flush_period"]), max_batch_lines=raw["max_batch_lines"],
        max_concurrent_files=raw["max_concurrent_files"], preset=raw["preset"], format=raw["format"],
        mapping=raw["mapping"], mapping_file=raw["mapping_file"], pattern=raw["pattern"],
    )
    cfg.resolved.update(resolve(cfg))
    return cfg


def resolve(cfg: Config) -> dict[str, Any]:
    """``format``, ``mapping``, ``pattern`` and ``problems`` (a list of Problem) after the preset and mapping file."""
    problems: list[Problem] = []
    fmt, mapping, pattern = cfg.format, cfg.mapping, cfg.pattern
    sources = [k for k, v in (("preset", cfg.preset), ("mapping", cfg.mapping), ("mapping_file", cfg.mapping_file))
               if v is not None]
    if len(sources) > 1:
        problems.append(Problem(sources[1], f"give one of preset, mapping, mapping_file, not {' and '.join(sources)} "
                                "(copy a preset with `obs-pipeline presets NAME` and edit it)"))
    if cfg.preset is not None:
        try:
            doc = presets.load(cfg.preset)
        except KeyError:
            problems.append(Problem("preset", f"unknown preset {cfg.preset!r}; known: {', '.join(presets.names())}"))
            doc = {}
        fmt = fmt or doc.get("format")
        mapping = doc.get("mapping")
        pattern = pattern or doc.get("pattern")
    elif cfg.mapping_file is not None:
        try:
            mapping = yaml.safe_load(Path(cfg.mapping_file).expanduser().read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
            problems.append(Problem("mapping_file", f"cannot read it: {type(exc).__name__}"))
        if isinstance(mapping, dict) and "mapping" in mapping:  # a whole preset file works too
            fmt = fmt or mapping.get("format")
            pattern = pattern or mapping.get("pattern")
            mapping = mapping["mapping"]
    fmt = fmt or DEFAULT_FORMAT
    return {"format": fmt, "mapping": mapping, "pattern": pattern, "problems": problems}


def compile_mapping(spec: Any) -> Mapper:
    """The compiled mapping.

    Raises:
        MappingError: it is not a valid mapping.
    """
    return Mapper(spec, SEVERITY_NUMBERS)


def compile_pattern(pattern: str) -> Any:
    """The RE2 pattern, compiled.

    Raises:
        ValueError: it does not compile, or has no named group.
    """
    import re2  # noqa: PLC0415 - only text receivers with a pattern need it

    try:
        compiled = re2.compile(pattern)
    except re2.error as exc:
        raise ValueError(f"not a valid RE2 pattern ({exc})") from None
    if not compiled.groupindex:
        raise ValueError("has no named group such as (?P<message>.*)")
    return compiled


def check(cfg: Config) -> list[Problem]:
    """Cross-field rules: one mapping source; the mapping and the pattern compile; format fits them."""
    resolved = cfg.resolved or resolve(cfg)
    problems = list(resolved["problems"])
    fmt, mapping, pattern = resolved["format"], resolved["mapping"], resolved["pattern"]
    if fmt not in FORMATS:
        problems.append(Problem("format", f"must be one of {', '.join(FORMATS)}"))
    where = "mapping_file" if cfg.mapping_file is not None else "preset" if cfg.preset is not None else "mapping"
    if mapping is not None:
        if fmt == "otlp_json":
            problems.append(Problem(where, "a mapping needs format json or text (otlp_json lines keep their own fields)"))
        try:
            compile_mapping(mapping)
        except MappingError as exc:
            problems.append(Problem(f"{where}.{exc.path}" if where == "mapping" else where, str(exc)))
    if pattern is not None:
        if fmt != "text":
            problems.append(Problem("pattern", "only format text uses a pattern"))
        try:
            compile_pattern(pattern)
        except ValueError as exc:
            problems.append(Problem("pattern", str(exc)))
    if cfg.max_line_size < 1:
        problems.append(Problem("max_line_size", "must be at least 1 byte"))
    if cfg.fingerprint_size < 16:
        problems.append(Problem("fingerprint_size", "must be at least 16 bytes, or unrelated files look the same"))
    return problems
