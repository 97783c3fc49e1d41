"""JUnit XML for ``obs-pipeline test --junit FILE``: one ``testcase`` per case, CI systems read it.

The shape is the one Jenkins, GitLab and GitHub Actions' test reporters share: a ``testsuites``
root holding one ``testsuite`` (named after the tests file) with ``tests``/``failures``/``errors``
counts, a ``failure`` element (its text the differences) for a case that failed and an ``error``
element for one that could not run.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CaseResult", "junit_xml", "write_junit"]


@dataclass(frozen=True)
class CaseResult:
    """The verdict of one case: passed when ``differences`` and ``error`` are both empty."""

    name: str
    line: int
    seconds: float
    differences: tuple[str, ...] = ()
    error: str | None = None  # the case could not run (no such pipeline, a processor that cannot start)

    @property
    def passed(self) -> bool:
        """No difference and no error."""
        return not self.differences and self.error is None


def junit_xml(suite: str, results: Sequence[CaseResult]) -> bytes:
    """The JUnit XML document of ``results``, UTF-8 with an XML declaration."""
    failures = sum(1 for r in results if r.differences and r.error is None)
    errors = sum(1 for r in results if r.error is not None)
    total = sum(r.seconds for r in results)
    root = ET.Element("testsuites", tests=str(len(results)), failures=str(failures), errors=str(errors),
                      time=f"{total:.3f}")
    node = ET.SubElement(root, "testsuite", name=suite, tests=str(len(results)), failures=str(failures),
                         errors=str(errors), time=f"{total:.3f}")
    for result in results:
        case = ET.SubElement(node, "testcase", name=result.name, classname=suite, time=f"{result.seconds:.3f}",
                             file=suite, line=str(result.line))
        if result.error is not None:
            ET.SubElement(case, "error", message=result.error).text = result.error
        elif result.differences:
            element = ET.SubElement(case, "failure", message=result.differences[0])
            element.text = "\n".join(result.differences)
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def write_junit(path: Path, suite: str, results: Sequence[CaseResult]) -> None:
    """Write :func:`junit_xml` to ``path`` (parent directories created).

    Raises:
        OSError: the file cannot be written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(junit_xml(suite, results))
