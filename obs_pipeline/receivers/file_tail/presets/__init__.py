"""The format presets: one YAML file per agent framework in ``presets/``, data and not code.

The package holds only the files and this loader. A preset file holds ``name``, ``description``, ``written_by``, ``include_example`` (where that
framework writes, for the docs and ``obs-pipeline presets``), ``format`` and, for ``json`` and
``text``, a ``mapping`` (and for ``text`` a ``pattern``): exactly what a user may write under a
``file_tail`` receiver for a framework we have never seen.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

PACKAGE = __name__
SUFFIX = ".yaml"


@cache
def names() -> tuple[str, ...]:
    """The shipped presets' names, sorted."""
    return tuple(sorted(
        entry.name.removesuffix(SUFFIX) for entry in resources.files(PACKAGE).iterdir() if entry.name.endswith(SUFFIX)
    ))


def text(name: str) -> str:
    """A preset file as shipped (comments included).

    Raises:
        KeyError: there is no such preset.
    """
    if name not in names():
        raise KeyError(name)
    return resources.files(PACKAGE).joinpath(name + SUFFIX).read_text(encoding="utf-8")


@cache
def load(name: str) -> dict[str, Any]:
    """A preset, parsed.

    Raises:
        KeyError: there is no such preset.
    """
    doc = yaml.safe_load(text(name))
    if not isinstance(doc, dict):
        raise TypeError(f"preset {name} is not a mapping")
    return doc
