"""The cost attribute names and the one AnyValue-to-number reader every cost consumer shares."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue

from obs_pipeline import genai
from obs_pipeline.genai.attributes import cost_amount, number
from obs_pipeline.processors.cost.config import ALIAS_KEYS

PACKAGE = Path(genai.__file__).parent.parent
COST_NAMES = (genai.COST_AMOUNT, genai.COST_CURRENCY, genai.COST_SOURCE, genai.COST_UNPRICED,
              genai.COST_UNPRICED_REASON, *genai.COST_ALIASES)


def test_cost_names_are_written_once_in_the_package() -> None:
    """Only obs_pipeline/genai/__init__.py spells a cost attribute as a string literal: a rename reaches everyone."""
    literal = re.compile("|".join(rf"""["']{re.escape(name)}["']""" for name in COST_NAMES))
    offenders = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                 if path != Path(genai.__file__) and literal.search(path.read_text(encoding="utf-8"))]
    assert offenders == []


def test_the_alias_options_are_the_aliases() -> None:
    assert sorted(ALIAS_KEYS.values()) == sorted(genai.COST_ALIASES)
    assert set(ALIAS_KEYS) == {"operation_cost", "gen_ai_usage_cost", "llm_cost_total"}  # the schema's option names


@pytest.mark.parametrize(("value", "expected"), [
    (AnyValue(double_value=0.25), 0.25), (AnyValue(int_value=2), 2.0), (AnyValue(string_value="0.5"), 0.5),
    (AnyValue(string_value=" 1e-3 "), 0.001), (AnyValue(double_value=0.0), 0.0),
    (AnyValue(string_value="abc"), None), (AnyValue(bool_value=True), None), (AnyValue(bytes_value=b"1"), None),
    (AnyValue(array_value=ArrayValue()), None), (AnyValue(), None),
    (AnyValue(double_value=math.nan), None), (AnyValue(double_value=math.inf), None),
    (AnyValue(string_value="-inf"), None), (AnyValue(double_value=-0.01), None), (AnyValue(int_value=-1), None),
])
def test_cost_amount_is_a_finite_non_negative_number(value: AnyValue, expected: float | None) -> None:
    assert cost_amount(value) == expected


def test_number_leaves_judging_the_range_to_the_caller() -> None:
    """Budgets count a negative or non-finite cost as a bad amount, so ``number`` must hand it back."""
    assert number(AnyValue(int_value=-3)) == -3.0
    assert number(AnyValue(string_value="inf")) == math.inf
    assert math.isnan(number(AnyValue(double_value=math.nan)) or 0.0)
    assert number(AnyValue(string_value="twelve")) is None
    assert number(AnyValue(bool_value=True)) is None
