"""Benchmarks of obs-pipeline: ``python -m bench.run`` (see bench/README.md). Not part of the package."""
