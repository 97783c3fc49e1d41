"""A case's expectations against what came out: the readable differences, one line each.

No difference means the case passed. Each line names where (``attributes.gen_ai.input.messages``,
``redacted``, ``status.message``) and shows expected and actual values, long strings cut around
their first difference so the line stays readable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from obs_pipeline.testrun.cases import TestCase
from obs_pipeline.testrun.run import Outcome

__all__ = ["DETECTED_RULES", "MASKED_KEYS", "MASKED_RULES", "SHOW_CHARS", "differences", "fired_rules", "same", "strings_of"]

#: The redaction processor's summary attributes that list the rule id of each masked (or, in
#: ``mode: detect``, detected) value.
MASKED_RULES = "redaction.masked.rules"
DETECTED_RULES = "redaction.detected.rules"
MASKED_KEYS = "redaction.masked.keys"
#: The longest value shown in a difference.
SHOW_CHARS = 160
_CONTEXT = 30


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= SHOW_CHARS else f"{text[:SHOW_CHARS]}... ({len(text)} chars)"


def _show_pair(expected: Any, got: Any) -> str:
    """``expected X, got Y``; two long strings are shown from a little before where they part."""
    if isinstance(expected, str) and isinstance(got, str) and max(len(expected), len(got)) > SHOW_CHARS:
        at = next((i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b),
                  min(len(expected), len(got)))
        start = max(0, at - _CONTEXT)
        return (f"expected ...{_show(expected[start:start + SHOW_CHARS])}, got ...{_show(got[start:start + SHOW_CHARS])}"
                f" (they differ from character {at})")
    return f"expected {_show(expected)}, got {_show(got)}"


def same(expected: Any, got: Any) -> bool:
    """Equal as telemetry values: ``1 == 1.0``, but ``true`` is not ``1`` and ``"1"`` is not ``1``."""
    if isinstance(expected, bool) or isinstance(got, bool):
        return isinstance(expected, bool) and isinstance(got, bool) and expected == got
    if isinstance(expected, (int, float)) and isinstance(got, (int, float)):
        return expected == got
    if isinstance(expected, list) and isinstance(got, list):
        return len(expected) == len(got) and all(same(a, b) for a, b in zip(expected, got, strict=True))
    if isinstance(expected, Mapping) and isinstance(got, Mapping):
        return expected.keys() == got.keys() and all(same(expected[k], got[k]) for k in expected)
    return type(expected) is type(got) and expected == got


def strings_of(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a readable record (keys of kvlists too), with where it is: ``(path, text)``."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            yield where, str(key)
            yield from strings_of(item, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from strings_of(item, f"{path}[{i}]")


def fired_rules(record: Mapping[str, Any]) -> list[str]:
    """The rule ids the redaction processor says it masked (or detected) in ``record``, in order."""
    attributes = record.get("attributes", {})
    rules = attributes.get(MASKED_RULES, attributes.get(DETECTED_RULES, []))
    return [str(rule) for rule in rules] if isinstance(rules, list) else [str(rules)]


def _attribute_maps(record: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    yield "attributes", record.get("attributes") or {}
    yield "resource", record.get("resource") or {}
    scope = record.get("scope") or {}
    yield "scope.attributes", scope.get("attributes") or {}


def _expected_attributes(where: str, expected: Mapping[str, Any], got: Mapping[str, Any]) -> Iterator[str]:
    for key, value in expected.items():
        if key not in got:
            yield f"{where}.{key}: expected {_show(value)}, but it is absent"
        elif not same(value, got[key]):
            yield f"{where}.{key}: {_show_pair(value, got[key])}"


def _redacted(expected: tuple[str, ...], record: Mapping[str, Any]) -> Iterator[str]:
    fired = fired_rules(record)
    if set(expected) == set(fired):
        return
    missing = sorted(set(expected) - set(fired))
    unexpected = sorted(set(fired) - set(expected))
    parts = [f"missing {', '.join(missing)}"] if missing else []
    parts += [f"unexpected {', '.join(unexpected)}"] if unexpected else []
    locations = record.get("attributes", {}).get(MASKED_KEYS)
    where = f"; masked at {_show(locations)}" if locations else ""
    yield f"redacted: expected rules {sorted(set(expected))}, got {sorted(set(fired))} ({'; '.join(parts)}){where}"


def _untouched(case: TestCase, record: Mapping[str, Any]) -> Iterator[str]:
    out_text = [text for _, text in strings_of(record)]
    for item in case.expect.untouched:
        for where, attributes in _attribute_maps(case.record):
            if item in attributes:
                got = dict(_attribute_maps(record))[where]
                if item not in got:
                    yield f"untouched: {where}.{item} is gone from the output"
                elif not same(attributes[item], got[item]):
                    yield f"untouched: {where}.{item}: {_show_pair(attributes[item], got[item])}"
                break
        else:
            if not any(item in text for _, text in strings_of(case.record)):
                yield f"untouched: {_show(item)} is neither an attribute nor text of the input"
            elif not any(item in text for text in out_text):
                yield f"untouched: {_show(item)} is no longer in the output"


def differences(case: TestCase, outcome: Outcome) -> list[str]:
    """Every way ``outcome`` misses ``case``'s expectations; empty when the case passed."""
    if outcome.error is not None:
        return [f"a processor failed: {outcome.error}"]
    expect = case.expect
    if expect.dropped:
        return [] if not outcome.records else [f"dropped: expected no record, got {len(outcome.records)}"]
    if not outcome.records:
        return ["the record was dropped by the processors"]
    record = outcome.records[0]
    found: list[str] = []
    if len(outcome.records) > 1:
        found.append(f"expected one record out, got {len(outcome.records)} (the first is compared)")
    found += _expected_attributes("attributes", expect.attributes, record.get("attributes", {}))
    found += _expected_attributes("resource", expect.resource_attributes, record.get("resource", {}))
    attributes = record.get("attributes", {})
    found += [f"attributes.{key}: expected absent, got {_show(attributes[key])}"
              for key in expect.absent if key in attributes]
    if expect.redacted is not None:
        found += _redacted(expect.redacted, record)
    found += _untouched(case, record)
    for text in expect.not_contains:
        found += [f"not_contains: {_show(text)} is still in {where}"
                  for where, value in strings_of(record) if text in value]
    if expect.name is not None and record.get("name") != expect.name:
        found.append(f"name: {_show_pair(expect.name, record.get('name'))}")
    if expect.status_message is not None:
        message = (record.get("status") or {}).get("message", "")
        if message != expect.status_message:
            found.append(f"status.message: {_show_pair(expect.status_message, message)}")
    if expect.checks_body and not same(expect.body, record.get("body")):
        found.append(f"body: {_show_pair(expect.body, record.get('body'))}")
    return found
