"""``obs-pipeline run``: load and validate a config, then hand it to the engine's control loop."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

import click

from obs_pipeline.errors import ConfigError
from obs_pipeline.exitcodes import ExitCode

log = logging.getLogger("obs_pipeline.run")


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
def run(config: Path) -> None:
    """Validate CONFIG, then run the pipeline until SIGTERM/SIGINT (or end of stdin)."""
    sys.exit(run_pipeline(config))


def run_pipeline(config_path: Path) -> ExitCode:
    """Load, validate and run ``config_path``; the ``run`` command's body. Returns the exit code."""
    from obs_pipeline.config import load_config  # noqa: PLC0415
    from obs_pipeline.engine.run import serve  # noqa: PLC0415  (grpc and aiohttp load only to run)
    from obs_pipeline.telemetry.logs import configure_logging  # noqa: PLC0415

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{config_path}: invalid config, not started", file=sys.stderr)
        return ExitCode.FAILED
    configure_logging(config.telemetry.log_level, config.telemetry.log_format)
    if config.telemetry.log_level != "debug":
        # grpc's C core logs its own lines (e.g. "add_port.cc ... Address already in use") next to
        # ours, which already say the same in words; keep them for debugging only.
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    for warning in config.warnings:  # notes are validate's: each component says its own at start
        if warning.severity == "warning":
            log.warning("%s", replace(warning, severity="error"))  # the log level already says "warning"
    try:
        return asyncio.run(serve(config))
    except asyncio.CancelledError:  # a second signal cut the drain short
        return ExitCode.FAILED
    except KeyboardInterrupt:
        return ExitCode.FAILED
