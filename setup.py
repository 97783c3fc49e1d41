"""The one thing pyproject.toml cannot yet say stably: the optional C extension.

framing.py's byte walks in C (a redacted request's hot path, _framing.c). Optional: where nothing
compiles, the install goes on and the same walks run in Python.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "obs_pipeline.processors.redaction._framing",
    sources=["obs_pipeline/processors/redaction/_framing.c"],
    optional=True,
)])
