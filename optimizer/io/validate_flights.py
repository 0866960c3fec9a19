"""Checks of the flight inputs (docs/contract.md, "Flights and pacing"): the offers' flight
columns, ``history.expected_cost`` and the optional ``spend`` and ``forecast`` tables.

Called by :func:`optimizer.io.validate.load_inputs` (imported there when it runs: this module
builds on its row checks); bad input raises
:class:`~optimizer.core.errors.InputError` naming the table, the column and sample rows.
"""
from __future__ import annotations

import polars as pl

from optimizer.io.load import RawTable
from optimizer.io.validate import (
    _attach,
    _fail_rows,
    _range,
    _references,
    _require_not_null,
    _require_unique,
)

FLIGHT_COLUMNS = ("flight_budget", "flight_start_week", "flight_end_week")


def validate_offer_flights(offers: pl.DataFrame) -> pl.DataFrame:
    """The offers' flight columns: all three given together, budget finite and >= 0,
    ``flight_start_week <= flight_end_week``. Absent columns are added empty (no flight)."""
    present = [c for c in FLIGHT_COLUMNS if c in offers.columns]
    if not present:
        return offers
    _range("offers", offers, "flight_budget", pl.col("flight_budget") < 0, ">= 0")
    offers = offers.with_columns(
        pl.lit(None, dtype=pl.Float64 if c == "flight_budget" else pl.Int64).alias(c)
        for c in FLIGHT_COLUMNS if c not in offers.columns)
    given = [pl.col(c).is_not_null() for c in FLIGHT_COLUMNS]
    partial = pl.any_horizontal(given) & ~pl.all_horizontal(given)
    for column in FLIGHT_COLUMNS:
        _fail_rows("offers", column, offers, partial & pl.col(column).is_null(),
                       "a flight needs flight_budget, flight_start_week and flight_end_week "
                       "together (all empty = no flight)")
    _range("offers", offers, "flight_end_week",
                    pl.col("flight_start_week") > pl.col("flight_end_week"),
                    ">= flight_start_week")
    return offers


def validate_history_cost(history: pl.DataFrame) -> None:
    """``history.expected_cost`` (optional): finite and >= 0 where given; empty = unknown."""
    if "expected_cost" not in history.columns:
        return
    _range("history", history, "expected_cost", pl.col("expected_cost") < 0, ">= 0")


def validate_weekly(name: str, value: str, frame: pl.DataFrame, offers: pl.DataFrame) -> pl.DataFrame:
    """``spend`` (offer_id, week, amount) or ``forecast`` (offer_id, week, demand): every offer
    known, week and amount given, amount finite and >= 0, one row per (offer, week). Returns
    ``o``, ``week`` and the amount column."""
    _require_not_null(name, frame, ["week", value])
    _range(name, frame, value, pl.col(value) < 0, ">= 0")
    frame = _attach(frame, "offer_id", offers)
    _references(name, frame, "offer_id")
    _require_unique(name, frame, ["offer_id", "week"])
    return frame.select("o", "week", value)


def validate_flight_table(raw: RawTable | None, offers: pl.DataFrame,
                          funders: pl.DataFrame | None) -> tuple[pl.DataFrame | None,
                                                                 pl.DataFrame]:
    """The optional ``flights`` table of group flights (``flight_id`` trimmed, unique and
    non-empty; ``flight_budget`` finite and >= 0; both weeks given, start <= end) and the
    offers' ``flight_id`` (trimmed; empty = none; each names a row of ``flights``, which must
    then be present). An offer in a group flight whose ``funded_by`` names a ``funders`` row is
    bad input: an offer is under at most one shared budget (docs/contract.md). Returns
    (flights or ``None``, offers with ``flight_id`` as text when either is given)."""
    has_column = "flight_id" in offers.columns
    if has_column:
        offers = offers.with_columns(pl.col("flight_id").cast(pl.Utf8).str.strip_chars())
        offers = offers.with_columns(pl.when(pl.col("flight_id") != "").then("flight_id")
                                     .alias("flight_id"))
    if raw is None:
        if has_column:
            _fail_rows("offers", "flight_id", offers, pl.col("flight_id").is_not_null(),
                       "offers name a group flight (flight_id) but the input folder has no "
                       "flights table (flight_id, flight_budget, flight_start_week, "
                       "flight_end_week)")
        return None, offers
    frame = raw.frame.with_columns(pl.col("flight_id").cast(pl.Utf8).str.strip_chars())
    frame = frame.with_columns(pl.when(pl.col("flight_id") != "").then("flight_id")
                               .alias("flight_id"))
    _require_not_null("flights", frame, ["flight_id", *FLIGHT_COLUMNS])
    _require_unique("flights", frame, ["flight_id"])
    _range("flights", frame, "flight_budget", pl.col("flight_budget") < 0, ">= 0")
    _range("flights", frame, "flight_end_week",
           pl.col("flight_start_week") > pl.col("flight_end_week"), ">= flight_start_week")
    if not has_column:
        offers = offers.with_columns(flight_id=pl.lit(None, dtype=pl.Utf8))
    known = frame.get_column("flight_id")
    _fail_rows("offers", "flight_id", offers,
               pl.col("flight_id").is_not_null() & ~pl.col("flight_id").is_in(known.implode()),
               "flight_id not found in table 'flights'")
    if funders is not None and "funded_by" in offers.columns:
        funded = pl.col("funded_by").cast(pl.Utf8).str.strip_chars().is_in(
            funders.get_column("funded_by").implode())
        _fail_rows("offers", "flight_id", offers, pl.col("flight_id").is_not_null() & funded,
                   "an offer in a group flight (flight_id) cannot also be funded by a funder "
                   "of the funders table (funded_by): its spend would fall under two shared "
                   "budgets; give the group flight's offers no listed funder, or drop the "
                   "flight_id")
    return frame.select("flight_id", *FLIGHT_COLUMNS), offers
