"""Allow ``python -m obs_pipeline``."""

from obs_pipeline.cli import main

main()
