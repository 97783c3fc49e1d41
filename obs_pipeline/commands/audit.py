"""``obs-pipeline audit``: read and check the audit trail that ``jsonl_audit`` writes.

``verify`` is here; the reading subcommands (``recent``, ``security``, ``query``, ``export``)
join the group below it. Each is a thin shim over plain functions
(:mod:`obs_pipeline.audit.verify` for ``verify``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import click

from obs_pipeline.commands._auditread import READ_COMMANDS
from obs_pipeline.exitcodes import ExitCode

if TYPE_CHECKING:
    from obs_pipeline.audit.verify import Report


@click.group()
def audit() -> None:
    """Read and check the audit trail (the jsonl_audit exporter's files)."""


for _reader in READ_COMMANDS:  # recent, security, query, export: commands/_auditread.py
    audit.add_command(_reader)


# --- verify ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    path: str  # the exporter's path (a template may name many trails)
    key: bytes | None  # the checkpoint key, from --key-env or the config


@audit.command()
@click.argument("path", required=False)
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
              help="A pipeline.yaml: verify every jsonl_audit exporter's trail (and use its checkpoint key).")
@click.option("--key-env", metavar="VAR",
              help="The environment variable holding the checkpoint HMAC key: also find a recomputed chain and a cut tail.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per trail, for scripts.")
def verify(path: str | None, config: Path | None, key_env: str | None, as_json: bool) -> None:
    """Check the hash chain of the trail at PATH (the live file; its rotated files too). Exit 0 intact, 1 broken, 2 usage.

    Names the file and line of the first break: an edited, inserted, deleted or reordered
    line, a truncated or missing file, and with the key a rewritten chain or a cut tail.
    """
    if (path is None) == (config is None):
        raise click.UsageError("give the live audit file as PATH, or --config pipeline.yaml (not both)")
    key: bytes | None = None
    if key_env is not None:
        value = os.environ.get(key_env)
        if not value:
            raise click.UsageError(f"--key-env {key_env}: the variable is not set (or empty)")
        key = value.encode()
    try:
        targets = [_Target(path, key)] if path is not None else _targets(config, key)  # type: ignore[arg-type]
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(ExitCode.USAGE)
    sys.exit(verify_targets(targets, as_json=as_json))


def _targets(config: Path, key: bytes | None, environ: Mapping[str, str] | None = None) -> list[_Target]:
    """The trails of every ``jsonl_audit`` exporter in ``config``, each with ``key`` or its own checkpoint key.

    A config that is invalid only because its audit files cannot be written (a read-only copy)
    is read as the reading commands read it; its checkpoint key then comes from ``--key-env`` only.

    Raises:
        ValueError: the config is invalid or has no ``jsonl_audit`` exporter (the message says which).
    """
    from obs_pipeline.auditquery.source import SourceError, audit_exporters  # noqa: PLC0415 - only --config needs it

    try:
        exporters = audit_exporters(config, environ if environ is not None else os.environ)
    except SourceError as exc:
        message = str(exc).replace("invalid config\n", "invalid config: ").replace("\n", "; ")
        raise ValueError(message.replace("(use --path)", "(give PATH)")) from None
    targets: list[_Target] = []
    for path, cfg in exporters:
        checkpoint = getattr(cfg, "checkpoint", None)
        own = checkpoint.key.reveal().encode() if checkpoint is not None else None
        targets.append(_Target(path, key if key is not None else own))
    return targets


def verify_targets(targets: list[_Target], *, as_json: bool = False, out: TextIO | None = None) -> ExitCode:
    """Verify every trail of ``targets``, print a report per trail; 0 when all are intact, else 1."""
    from obs_pipeline.audit.verify import verify_trail  # noqa: PLC0415 - loaded when the command runs
    from obs_pipeline.auditquery.trail import trails_of  # noqa: PLC0415 - the reading commands' own trail finder

    out = sys.stdout if out is None else out
    intact = True
    for target in targets:
        lives = [trail.live for trail in trails_of(target.path)]
        if not lives:
            intact = False
            _print(out, as_json, {"trail": target.path, "intact": False, "break": {
                "file": target.path, "line": 0, "reason": "no audit file matches"}}, f"{target.path}: no audit file matches")
            continue
        for live in lives:
            progress = _progress()
            report = verify_trail(live, target.key, progress)
            if progress is not None:
                sys.stderr.write("\r\033[K")  # clear the progress line before the report
            intact = intact and report.intact
            broken = report.broken
            doc = {
                "trail": str(live), "intact": report.intact, "files": len(report.files), "lines": report.lines,
                "first_seq": report.first_seq, "last_seq": report.last_seq, "checkpoints": report.checkpoints,
                "keyed": target.key is not None, "notes": report.notes, "torn_lines": report.torn_count,
                "torn": [{"file": str(file), "line": line} for file, line in report.torn],
                "break": None if broken is None else {"file": str(broken.file), "line": broken.line,
                                                      "reason": broken.reason},
            }
            _print(out, as_json, doc, _text(live, report, keyed=target.key is not None))
    return ExitCode.OK if intact else ExitCode.FAILED


def _progress() -> Callable[[Path, int], None] | None:
    """A progress line on stderr, once a read takes longer than a second, when stderr is a terminal."""
    if not sys.stderr.isatty():
        return None
    started = time.monotonic()

    def show(path: Path, lines: int) -> None:
        if time.monotonic() - started > 1.0:
            sys.stderr.write(f"\rverifying {path.name}: {lines:,} lines")
            sys.stderr.flush()

    return show


def _print(out: TextIO, as_json: bool, doc: dict[str, object], text: str) -> None:
    out.write((json.dumps(doc, ensure_ascii=False) if as_json else text) + "\n")


def _text(live: Path, report: Report, *, keyed: bool) -> str:
    """The text report of one trail: intact or the break, then the notes."""
    if report.broken is not None:
        head = f"{live}: BROKEN at {report.broken}"
    else:
        span = f"seq {report.first_seq}..{report.last_seq}"
        signed = f", {report.checkpoints} checkpoint(s) matched" if keyed else " (no key: a recomputed chain or a cut tail would not show)"
        head = f"{live}: intact: {len(report.files)} file(s), {report.lines} line(s), {span}{signed}"
    return "\n".join([head, *(f"  note: {note}" for note in report.notes)])
