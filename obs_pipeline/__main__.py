"""Allow ``python -m obs_pipeline``."""

from obs_pipeline.commands import main

main()
