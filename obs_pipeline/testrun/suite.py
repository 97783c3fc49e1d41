"""A whole ``obs-pipeline test`` run: load the config and the cases, run each, report, exit code.

The report is written to a text stream (the command passes stdout): one ``PASS``/``FAIL``/``ERROR``
line per case, the differences of a failed case indented below it, then a summary line. Problems
in the config or the tests file are reported like ``validate`` does (``file:line:col: path:
message``) and no case runs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from obs_pipeline.config import PipelineConfig, check_config
from obs_pipeline.exitcodes import ExitCode
from obs_pipeline.testrun.cases import TestCase, load_cases
from obs_pipeline.testrun.compare import differences
from obs_pipeline.testrun.junit import CaseResult, write_junit
from obs_pipeline.testrun.run import resolve_chain, run_case

__all__ = ["run_case_result", "run_tests"]


def run_case_result(config: PipelineConfig, case: TestCase) -> CaseResult:
    """Run one case and judge it."""
    began = time.perf_counter()
    chain = resolve_chain(config, case)
    if isinstance(chain, str):
        return CaseResult(case.name, case.line, time.perf_counter() - began, error=chain)
    outcome = run_case(config, case, *chain)
    return CaseResult(case.name, case.line, time.perf_counter() - began, tuple(differences(case, outcome)))


def run_tests(config_path: Path, tests_path: Path, *, out: TextIO, junit: Path | None = None,
              select: str | None = None, environ: Mapping[str, str] | None = None) -> ExitCode:
    """Run every case of ``tests_path`` against ``config_path``'s processors; report to ``out``.

    Args:
        config_path: the pipeline config whose processors the cases run through.
        tests_path: the tests file (:mod:`obs_pipeline.testrun.cases`).
        out: where the report goes.
        junit: also write JUnit XML there.
        select: run only the cases whose name contains this text.
        environ: variables for the config's ``${env:...}`` (default: ``os.environ``).

    Returns:
        ``OK`` when every case passed, ``FAILED`` when one failed or could not run, or when the
        config or the tests file is invalid.
    """
    config, problems = check_config(config_path, environ)
    cases, case_problems = load_cases(tests_path)
    problems = [p for p in problems if p.severity == "error"] + case_problems
    if config is None or problems:
        out.writelines(f"{problem}\n" for problem in problems)
        out.write(f"{len(problems)} problem{'' if len(problems) == 1 else 's'}; no test was run\n")
        if junit is not None:  # so a CI job that expects the report sees why nothing ran
            error = "\n".join(str(p) for p in problems)
            write_junit(junit, str(tests_path), [CaseResult("load the config and the tests file", 0, 0.0, error=error)])
        return ExitCode.FAILED
    if select is not None:
        cases = [case for case in cases if select in case.name]
    results: list[CaseResult] = []
    began = time.perf_counter()
    for case in cases:
        result = run_case_result(config, case)
        results.append(result)
        _report(out, tests_path, result)
    _summary(out, results, time.perf_counter() - began)
    if junit is not None:
        write_junit(junit, str(tests_path), results)
    return ExitCode.OK if results and all(r.passed for r in results) else ExitCode.FAILED


def _report(out: TextIO, tests_path: Path, result: CaseResult) -> None:
    where = f"{tests_path}:{result.line}"
    if result.passed:
        out.write(f"PASS   {result.name}\n")
    elif result.error is not None:
        out.write(f"ERROR  {result.name} ({where})\n       {result.error}\n")
    else:
        out.write(f"FAIL   {result.name} ({where})\n")
        out.writelines(f"       {line}\n" for line in result.differences)
    out.flush()


def _summary(out: TextIO, results: list[CaseResult], seconds: float) -> None:
    passed = sum(r.passed for r in results)
    failed = sum(1 for r in results if r.differences and r.error is None)
    errors = sum(1 for r in results if r.error is not None)
    parts = [f"{passed} passed"] + ([f"{failed} failed"] if failed else []) + ([f"{errors} errors"] if errors else [])
    if not results:
        parts = ["no case selected"]
    out.write(f"{', '.join(parts)} in {seconds:.2f}s\n")
