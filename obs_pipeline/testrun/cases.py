"""The tests file of ``obs-pipeline test``: loading it and checking every case, with positions.

A tests file is a mapping with one key, ``tests``, a list of cases::

    tests:
      - name: an OpenAI key in a prompt is masked
        pipeline: traces               # or processors: [redaction], ids from the config
        input:
          span: {name: chat, attributes: {gen_ai.input.messages: "my key is sk-proj-..."}}
        expect:
          redacted: [openai]           # exactly these rule ids fired
          untouched: [gen_ai.usage.input_tokens, "my key is"]
          attributes: {redaction.masked.count: 1}
          absent: [gen_ai.content.dropped]

Every problem (a missing key, an unknown one, a value of the wrong shape, a record that cannot be
built) is a :class:`~obs_pipeline.errors.Problem` at ``file:line:col``, all of them reported at
once, like ``validate``. A bad case never runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogsData
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from obs_pipeline.config.document import Document, JsonPath, format_path
from obs_pipeline.config.yamlload import load_document
from obs_pipeline.errors import Problem
from obs_pipeline.signals import Signal
from obs_pipeline.testrun.records import RecordError, build_message

__all__ = ["CASE_KEYS", "EXPECT_KEYS", "Expectation", "TestCase", "load_cases"]

CASE_KEYS = frozenset({"name", "input", "pipeline", "processors", "expect"})
EXPECT_KEYS = frozenset({"attributes", "resource_attributes", "absent", "redacted", "untouched", "not_contains",
                         "name", "status_message", "body", "dropped"})
_INPUT_KEYS = {"span": Signal.TRACES, "log": Signal.LOGS}
_MISSING = object()


@dataclass(frozen=True)
class Expectation:
    """What the output record must look like; each field left at its default is not checked."""

    attributes: Mapping[str, Any] = field(default_factory=dict)  # attribute -> exact value
    resource_attributes: Mapping[str, Any] = field(default_factory=dict)
    absent: tuple[str, ...] = ()  # attributes the record must not carry
    redacted: tuple[str, ...] | None = None  # exactly these rule ids masked (``[]``: nothing)
    untouched: tuple[str, ...] = ()  # attribute keys whose value is unchanged, or literal strings still present
    not_contains: tuple[str, ...] = ()  # strings that must appear nowhere in the output record
    name: str | None = None  # the span name
    status_message: str | None = None
    body: Any = _MISSING  # a log record's body (readable form)
    dropped: bool = False  # the record must not come out at all

    @property
    def checks_body(self) -> bool:
        """Whether a body was given (None is a body: OTLP's empty value)."""
        return self.body is not _MISSING


@dataclass(frozen=True)
class TestCase:
    """One case: a record, the processors it runs through, and what must come out."""

    __test__ = False  # pytest: not a test class

    name: str
    file: str
    line: int
    signal: Signal
    record: Mapping[str, Any]  # the readable input, as written
    message: TracesData | LogsData
    expect: Expectation
    pipeline: str | None = None  # run through this pipeline's processors
    processors: tuple[str, ...] | None = None  # or through these, in order


class _Checker:
    """Collects problems with their positions while cases are read."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []

    def problem(self, path: JsonPath, message: str, *, key: bool = False) -> None:
        line, column = self.doc.position(path, key=key)
        self.problems.append(Problem(format_path(path), message, self.doc.file, line, column))

    def strings(self, raw: Any, path: JsonPath) -> tuple[str, ...] | None:
        if not isinstance(raw, list) or not all(isinstance(item, str) and item for item in raw):
            self.problem(path, "must be a list of non-empty strings")
            return None
        return tuple(raw)

    def mapping(self, raw: Any, path: JsonPath) -> Mapping[str, Any] | None:
        if not isinstance(raw, Mapping):
            self.problem(path, "must be a mapping")
            return None
        return raw

    def unknown(self, raw: Mapping[str, Any], allowed: frozenset[str], path: JsonPath) -> None:
        for key in raw:
            if key not in allowed:
                self.problem((*path, key), f"unknown key; expected one of {', '.join(sorted(allowed))}", key=True)


def load_cases(path: str | Path) -> tuple[list[TestCase], list[Problem]]:
    """Read and check a tests file: ``(cases, problems)``; any problem means no case should run."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return [], [Problem("", f"cannot read the tests file: {reason}", file)]
    doc, found = load_document(text, file)
    problems = [problem for _, problem in found]
    if doc is None:
        return [], [_shape(p) for p in problems]
    checker = _Checker(doc)
    checker.problems += problems
    cases = _cases(checker)
    return cases, checker.problems


def _shape(problem: Problem) -> Problem:
    """The YAML loader speaks of pipeline files; a tests file has another top level."""
    if "top level" in problem.message or "file is empty" in problem.message:
        return Problem(problem.path, "expected a mapping with a `tests` list", problem.file, problem.line,
                       problem.column)
    return problem


def _cases(checker: _Checker) -> list[TestCase]:
    data = checker.doc.data
    checker.unknown(data, frozenset({"tests"}), ())
    raw_cases = data.get("tests")
    if not isinstance(raw_cases, list) or not raw_cases:
        checker.problem(("tests",), "must be a non-empty list of test cases")
        return []
    cases: list[TestCase] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_cases):
        case = _case(checker, raw, ("tests", i))
        if case is None:
            continue
        if case.name in seen:
            checker.problem(("tests", i, "name"), f"a second case named {case.name!r} (the first is at line {seen[case.name]})")
            continue
        seen[case.name] = case.line
        cases.append(case)
    return cases


def _case(checker: _Checker, raw: Any, path: JsonPath) -> TestCase | None:
    before = len(checker.problems)
    if checker.mapping(raw, path) is None:
        return None
    checker.unknown(raw, CASE_KEYS, path)
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        checker.problem((*path, "name") if "name" in raw else path, "every case needs a `name` (a non-empty string)")
    pipeline, processors = raw.get("pipeline"), raw.get("processors")
    if pipeline is not None and processors is not None:
        checker.problem((*path, "processors"), "give `pipeline` or `processors`, not both")
    if pipeline is not None and not isinstance(pipeline, str):
        checker.problem((*path, "pipeline"), "must be a pipeline id such as traces or logs/audit")
    chain = None if processors is None else checker.strings(processors, (*path, "processors"))
    built = _input(checker, raw.get("input", _MISSING), (*path, "input"), path)
    expect = _expectation(checker, raw.get("expect", _MISSING), (*path, "expect"), path)
    if len(checker.problems) > before or built is None or expect is None:
        return None
    signal, record, message = built
    return TestCase(name=str(name), file=checker.doc.file, line=checker.doc.position(path)[0], signal=signal,
                    record=record, message=message, expect=expect, pipeline=pipeline, processors=chain)


def _input(checker: _Checker, raw: Any, path: JsonPath,
           case_path: JsonPath) -> tuple[Signal, Mapping[str, Any], TracesData | LogsData] | None:
    if raw is _MISSING:
        checker.problem(case_path, "every case needs an `input` with a `span` or a `log`")
        return None
    if not isinstance(raw, Mapping) or len(raw) != 1 or next(iter(raw)) not in _INPUT_KEYS:
        checker.problem(path, "must be a mapping with exactly one of `span` or `log`")
        return None
    word, record = next(iter(raw.items()))
    if checker.mapping(record, (*path, word)) is None:
        return None
    signal = _INPUT_KEYS[word]
    try:
        message = build_message(signal, record)
    except RecordError as exc:
        checker.problem((*path, *exc.path), exc.message, key=exc.message.startswith("unknown key"))
        return None
    return signal, record, message


def _expectation(checker: _Checker, raw: Any, path: JsonPath, case_path: JsonPath) -> Expectation | None:
    if raw is _MISSING:
        checker.problem(case_path, "every case needs an `expect` (what must come out)")
        return None
    if checker.mapping(raw, path) is None:
        return None
    if not raw:
        checker.problem(path, f"expects nothing; give one of {', '.join(sorted(EXPECT_KEYS))}")
        return None
    checker.unknown(raw, EXPECT_KEYS, path)
    values: dict[str, Any] = {}
    for key in ("attributes", "resource_attributes"):
        if key in raw and checker.mapping(raw[key], (*path, key)) is not None:
            values[key] = dict(raw[key])
    for key in ("absent", "untouched", "not_contains"):
        if key in raw:
            values[key] = checker.strings(raw[key], (*path, key)) or ()
    if "redacted" in raw:
        redacted = raw["redacted"]
        values["redacted"] = () if redacted == [] else checker.strings(redacted, (*path, "redacted"))
    for key in ("name", "status_message"):
        if key in raw:
            if isinstance(raw[key], str):
                values[key] = raw[key]
            else:
                checker.problem((*path, key), "must be a string")
    if "body" in raw:
        values["body"] = raw["body"]
    if "dropped" in raw:
        if isinstance(raw["dropped"], bool):
            values["dropped"] = raw["dropped"]
        else:
            checker.problem((*path, "dropped"), "must be true or false")
    return Expectation(**values)
