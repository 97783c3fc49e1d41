"""``file_tail``: tails agent log files (JSON lines, OTLP/JSON lines, text) without losing or repeating a line.

Layout, one job per module: :mod:`.config` (settings, the preset or mapping in use),
:mod:`.presets` (the shipped mapping files), :mod:`.mapping` (a mapping compiled), :mod:`.decode`
(lines into OTLP records), :mod:`.splitter` (bytes into lines with offsets), :mod:`.files`
(discovery and file identity by fingerprint), :mod:`.checkpoint` (offsets on disk),
:mod:`.receiver` (the loop). The guide is ``docs/file_tail.md``.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping

from obs_pipeline.components import Consumer, Produces, ReceiverFactory, ReceiverTraits, Settings
from obs_pipeline.receivers.file_tail.config import Config, check, compile_mapping, compile_pattern, parse
from obs_pipeline.receivers.file_tail.decode import Decoder
from obs_pipeline.receivers.file_tail.mapping import TEXT_FIELDS
from obs_pipeline.receivers.file_tail.receiver import FileTailReceiver
from obs_pipeline.signals import Signal

TYPE = "file_tail"
#: The mapping of a text pattern that comes without one: groups named after the audit fields.
DEFAULT_TEXT_MAPPING = {
    "timestamp": "timestamp", "severity": ["level", "severity", "levelname"],
    **{name: name for name in TEXT_FIELDS},
}


def create(settings: Settings, cfg: Config, consumers: Mapping[Signal, Consumer]) -> FileTailReceiver:
    """Build the receiver (the mapping and pattern are compiled here, once)."""
    resolved = cfg.resolved
    pattern = compile_pattern(resolved["pattern"]) if resolved["pattern"] else None
    spec = resolved["mapping"]
    if spec is None and pattern is not None:
        spec = DEFAULT_TEXT_MAPPING
    mapper = compile_mapping(spec) if spec is not None else None
    decoder = Decoder(resolved["format"], mapper, pattern, consumers.keys())
    return FileTailReceiver(settings, cfg, consumers, decoder)


def _produces(cfg: Config) -> Produces:
    fmt = cfg.resolved.get("format", "json")
    if fmt == "text" or cfg.resolved.get("mapping") is not None:
        return Produces(frozenset({Signal.LOGS}), because=f"with format {fmt} and a mapping" if fmt != "text"
                        else "with format text")
    if fmt == "json":
        return Produces(frozenset(Signal), because="with format json", usual=frozenset({Signal.LOGS}),
                        usual_input="plain JSON lines")
    return Produces(frozenset(Signal))


def reads(cfg: Config, path: str) -> str | None:
    """The ``include`` entry that makes this receiver read ``path`` (absolute), unless ``exclude`` drops it."""
    if any(fnmatch.fnmatchcase(path, os.path.expanduser(x)) for x in cfg.exclude):  # noqa: PTH111 - globs
        return None
    for index, pattern in enumerate(cfg.include):
        if fnmatch.fnmatchcase(path, os.path.abspath(os.path.expanduser(pattern))):  # noqa: PTH100, PTH111 - globs
            return f"include.{index}"
    return None


FACTORY = ReceiverFactory[Config](
    type=TYPE,
    signals=frozenset(Signal),
    schema="receivers/file_tail.schema.json",
    description="Tails files (JSON lines, OTLP/JSON, text) through rotation, with checkpoints, and presets per framework.",
    parse=parse,
    create=create,
    check=check,
    traits=ReceiverTraits(produces=_produces),
    reads=reads,
)

__all__ = ["FACTORY", "TYPE", "Config", "FileTailReceiver", "check", "create", "parse", "reads"]
