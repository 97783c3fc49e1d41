"""``obs-pipeline validate``: check files and report, for people (text) or CI (json).

It runs the config layer's two passes and then the engine's dry run (every component built
through its factory, never started), the same path as ``run`` minus ``start``.

Output, text or json, goes to stdout: it is the command's result, like a linter's, so
``obs-pipeline validate pipeline.yaml > report.txt`` keeps it. The exit code says valid or not.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import click

from obs_pipeline.config import check_config
from obs_pipeline.errors import Problem
from obs_pipeline.exitcodes import ExitCode

FORMATS = ("text", "json")


@click.command()
@click.argument("configs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format", "output_format", type=click.Choice(FORMATS), default="text", show_default=True,
    envvar="OBS_PIPELINE_VALIDATE_FORMAT",
    help="json prints one machine-readable report for CI.",
)
def validate(configs: tuple[Path, ...], output_format: str) -> None:
    """Check CONFIGS (schema and graph) without starting anything. Exit 0 valid, 1 invalid, 2 usage.

    The report goes to stdout: one file:line:col line per problem, then a summary line per file.
    """
    sys.exit(validate_files(list(configs), output_format=output_format))


def validate_files(
    paths: list[Path], output_format: str = "text", *, out: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> ExitCode:
    """Validate each config, print a report, and return the exit code (0 all valid, 1 otherwise).

    Args:
        paths: config files; a missing or unreadable one counts as invalid.
        output_format: ``text`` (one line per problem, then a summary line per file) or ``json``
            (one document: ``{"valid", "files": [{"file", "valid", "problems": [...]}]}``).
        out: where to write (default: stdout).
        environ: variables for ``${env:...}`` (default: ``os.environ``).

    Raises:
        ValueError: unknown ``output_format``.
    """
    if output_format not in FORMATS:
        raise ValueError(f"output_format must be one of {', '.join(FORMATS)}, not {output_format!r}")
    out = sys.stdout if out is None else out
    results: list[tuple[str, list[Problem]]] = []
    for path in paths:
        config, problems = check_config(path, environ)
        if config is not None:
            from obs_pipeline.engine.graph import dry_run  # noqa: PLC0415 - the engine loads only for valid configs

            problems = [*problems, *dry_run(config)]
        results.append((str(path), problems))
    all_valid = all(_valid(problems) for _, problems in results)
    if output_format == "json":
        out.write(json.dumps(_json_report(results, all_valid), indent=2, ensure_ascii=False) + "\n")
    else:
        for file, problems in results:
            for problem in problems:
                out.write(f"{problem}\n")
            out.write(f"{file}: {_summary(problems)}\n")
    return ExitCode.OK if all_valid else ExitCode.FAILED


def _valid(problems: list[Problem]) -> bool:
    return not any(p.severity == "error" for p in problems)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _summary(problems: list[Problem]) -> str:
    """``valid``, ``valid (1 warning)`` or ``3 problems, 1 warning``."""
    errors = sum(p.severity == "error" for p in problems)
    warnings = sum(p.severity == "warning" for p in problems)
    if not errors:
        return f"valid ({_plural(warnings, 'warning')})" if warnings else "valid"
    return _plural(errors, "problem") + (f", {_plural(warnings, 'warning')}" if warnings else "")


def _json_report(results: list[tuple[str, list[Problem]]], all_valid: bool) -> dict[str, Any]:
    """The ``--format json`` document; unknown line/column are null."""
    return {
        "valid": all_valid,
        "files": [
            {
                "file": file,
                "valid": _valid(problems),
                "problems": [
                    {
                        "file": p.file or file,
                        "line": p.line or None,
                        "column": p.column or None,
                        "path": p.path,
                        "message": p.message,
                        "severity": p.severity,
                    }
                    for p in problems
                ],
            }
            for file, problems in results
        ],
    }
