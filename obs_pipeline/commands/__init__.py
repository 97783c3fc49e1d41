"""The ``obs-pipeline`` command line: one thin click module per command group.

Each command parses its arguments and calls a plain function that tests call directly. Only
this package calls ``sys.exit``; the codes are :class:`~obs_pipeline.exitcodes.ExitCode`.
Command modules import their heavy dependencies (the engine, grpc) only when they run, so
``validate`` stays light.
"""

from __future__ import annotations

import click

from obs_pipeline import __version__
from obs_pipeline.commands.audit import audit
from obs_pipeline.commands.budget import budget
from obs_pipeline.commands.cost import cost
from obs_pipeline.commands.presets import presets
from obs_pipeline.commands.replay import replay
from obs_pipeline.commands.run import run
from obs_pipeline.commands.schema import schema
from obs_pipeline.commands.test import test
from obs_pipeline.commands.validate import validate


@click.group(context_settings={"auto_envvar_prefix": "OBS_PIPELINE", "help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="obs-pipeline")
def main() -> None:
    """obs-pipeline: a telemetry pipeline for AI agents.

    One YAML file wires receivers (OTLP, stdin) through processors (batch, ...) to exporters
    (JSONL audit log, debug, ...). See docs/ for every component and option.
    """


main.add_command(run)
main.add_command(audit)
main.add_command(validate)
main.add_command(schema)
main.add_command(test)
main.add_command(cost)
main.add_command(replay)
main.add_command(budget)
main.add_command(presets)

__all__ = ["main"]
