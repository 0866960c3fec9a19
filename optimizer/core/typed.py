"""Read a column's values as numbers, whole numbers or dates: the one reader of typed values.

Input tables (:mod:`optimizer.io.load`, against :mod:`optimizer.core.schemas`) and the columns a
``rules.eligibility`` predicate compares with numbers (:func:`optimizer.core.predicate.prepared`)
are read by it, so a value is accepted or refused, and reported, the same way in both.
"""
from __future__ import annotations

import polars as pl

from optimizer.core.errors import InputError

# what a typed column's values must be, by its type (the words of its error)
KINDS: dict[object, str] = {pl.Float64: "numbers", pl.Int64: "whole numbers",
                            pl.Date: "dates (YYYY-MM-DD)"}


def typed_values(frame: pl.DataFrame, series: pl.Series, table: str, column: str, dtype: object,
                 why: str = "") -> pl.Series:
    """``series`` (a column of ``frame``) read as ``dtype``: text is trimmed and an empty text is
    empty (null); numbers stay numbers, datetimes become dates. Raises :class:`InputError` naming
    ``table``, ``column`` and sample rows of ``frame`` (``why`` ends its message) when the column
    is of another kind (booleans, dates where numbers are read) or a value cannot be read (text
    that is no number, a fraction where whole numbers are read, an impossible date)."""
    if series.dtype == dtype:
        return series
    if dtype == pl.Date and series.dtype == pl.Datetime:
        return series.dt.date()
    if dtype in KINDS and not (series.dtype in (pl.Utf8, pl.Null)
                               or (dtype != pl.Date and series.dtype.is_numeric())):
        # a cast would read True as 1, a date as its day number and a number as a date (days
        # since 1970): a column of another kind
        raise InputError(table, column, f"values must be {KINDS[dtype]}, not {series.dtype}{why}",
                         sample=frame.head(3).rows(named=True), count=frame.height)
    source = series.str.strip_chars() if series.dtype == pl.Utf8 else series
    if series.dtype == pl.Utf8:
        source = source.replace("", None)
    if dtype == pl.Date and source.dtype == pl.Utf8:
        # polars 2 no longer casts text to dates; an impossible date (2024-13-45) becomes null here
        converted = source.str.to_date("%Y-%m-%d", strict=False)
    else:
        converted = source.cast(dtype, strict=False)  # type: ignore[arg-type]
    bad = converted.is_null() & source.is_not_null()
    if dtype == pl.Int64 and (source.dtype.is_float() or source.dtype == pl.Decimal):
        # a float or decimal column would be truncated by the cast: 40.5 is not week 40
        bad = bad | (source.is_not_null() & (source != source.round(0)).fill_null(True))
    if bad.any():
        raise InputError(table, column, f"values must be {KINDS.get(dtype, dtype)}{why}",
                         sample=frame.filter(bad).head(5).rows(named=True), count=int(bad.sum()))
    return converted
