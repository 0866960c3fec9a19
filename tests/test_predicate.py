"""The predicate language of ``rules.eligibility.require`` (optimizer/core/predicate.py)."""
from __future__ import annotations

import polars as pl
import pytest

from optimizer.core.errors import InputError
from optimizer.core.predicate import PredicateError, parse, prepared, read_columns, to_polars

FRAME = pl.DataFrame({"age_band": ["18", "35", None, " 70 "],
                      "segment": ["A", "B", "A", None]})


def _meets(text: str) -> list[bool]:
    node = parse(text)
    return prepared(FRAME, node).select(to_polars(node)).to_series().to_list()


@pytest.mark.parametrize("text, expected", [
    ("age_band >= 21", [False, True, False, True]),
    ("age_band < 21", [True, False, False, False]),
    ("not age_band >= 21", [True, False, False, False]),  # empty never meets, negated or not
    ("segment == 'A'", [True, False, True, False]),
    ("segment != \"A\"", [False, True, False, False]),
    ("segment in ['A', 'B'] and age_band > 20", [False, True, False, False]),
    ("segment NOT IN ['B'] or age_band >= 70", [True, False, True, True]),
    ("(segment == 'B' or age_band <= 18) and not segment == 'x'", [True, True, False, False]),
])
def test_predicates_read_as_documented(text, expected):
    assert _meets(text) == expected


@pytest.mark.parametrize("text", [
    "", "age_band >=", "age_band = 21", "age_band >= 21 21", "__import__('os')",
    "age_band >= 21 and", "(age_band >= 21", "segment in []", "age_band >= 21; drop",
    "age_band >= 1 or age_band == 'x'", "lambda: 1",
])
def test_anything_else_is_refused(text):
    with pytest.raises(PredicateError):
        parse(text)


def test_columns_and_types():
    assert read_columns(["age_band >= 21", "segment == 'A' and age_band < 90"]) == (
        "age_band", "segment")
    with pytest.raises(InputError, match="age_band"):
        prepared(pl.DataFrame({"age_band": ["x"]}), parse("age_band > 1"))
    with pytest.raises(InputError, match="missing"):
        prepared(FRAME, parse("income > 1"))


def test_a_dictionary_encoded_text_column_is_text():
    """A Categorical column (pandas' ``category`` dtype in Parquet) holds text: numbers written
    as text compare as numbers, as in a plain text column (docs/contract.md: "as text or a
    numeric column"); it was refused as "not Categorical"."""
    ages = pl.Series("age", ["30", " 18", None, "21"], dtype=pl.Categorical)
    for column in (ages, ages.cast(pl.Enum(["30", " 18", "21"]))):
        node = parse("age >= 21")
        frame = pl.DataFrame({"age": column})
        assert prepared(frame, node).select(to_polars(node)).to_series().to_list() == [
            True, False, False, True]
    node = parse("age == 'x'")
    assert prepared(pl.DataFrame({"age": pl.Series(["x ", "y"], dtype=pl.Categorical)}),
                    node).select(to_polars(node)).to_series().to_list() == [True, False]
