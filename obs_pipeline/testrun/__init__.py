"""``obs-pipeline test``: test cases as data, run through a config's real processors (as ``vector test``).

Modules, one job each: :mod:`.records` (the readable YAML form of a span or log record, to and
from OTLP), :mod:`.cases` (the tests file, checked with positions), :mod:`.run` (one record
through the processors, in-process), :mod:`.compare` (expectations against the output: the
differences), :mod:`.junit` (JUnit XML) and :mod:`.suite` (a whole run, its report and exit code).
This is how users keep their redaction rules honest in CI: ``docs/cli.md`` and
``docs/examples/redaction-tests.yaml``.
"""

from __future__ import annotations

from obs_pipeline.testrun.cases import Expectation, TestCase, load_cases
from obs_pipeline.testrun.junit import CaseResult, junit_xml
from obs_pipeline.testrun.suite import run_tests

__all__ = ["CaseResult", "Expectation", "TestCase", "junit_xml", "load_cases", "run_tests"]
