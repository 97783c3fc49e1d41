"""``obs-pipeline test CONFIG TESTS``: run test cases (records in, expectations out) through CONFIG's processors.

Thin: the work is :func:`obs_pipeline.testrun.run_tests`. The report goes to stdout, like
``validate``'s; the exit code says whether every case passed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from obs_pipeline.exitcodes import ExitCode

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command(name="test")
@click.argument("config", type=_FILE)
@click.argument("tests", type=_FILE)
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the results as JUnit XML to this file, for CI systems.")
@click.option("-k", "--select", default=None, metavar="TEXT", help="Run only the cases whose name contains TEXT.")
def test(config: Path, tests: Path, junit: Path | None, select: str | None) -> None:
    """Run the cases of TESTS (YAML) through the processors of CONFIG, in-process. Exit 0 all passed, 1 otherwise.

    Each case gives a span or log record, the pipeline (or processors) to run it through and what
    must come out: attribute values, absent keys, the redaction rules that fire and what they
    must leave untouched. See docs/cli.md.
    """
    from obs_pipeline.testrun import run_tests  # noqa: PLC0415 - the processors load only when the command runs

    try:
        code = run_tests(config, tests, out=sys.stdout, junit=junit, select=select)
    except OSError as exc:
        click.echo(f"obs-pipeline test: cannot write {junit}: {exc.strerror or type(exc).__name__}", err=True)
        code = ExitCode.FAILED
    sys.exit(code)
