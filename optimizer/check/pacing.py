"""``offeropt check``'s verification of the pacing table (``pacing.parquet|csv``) and the
manifest's ``flights.curve`` (docs/contract.md, "Flights and pacing", Outputs), re-derived from
the input tables and the run's assignments independently of the planning code
(:mod:`optimizer.model.flights`). Rule id:

=========================== ===================================================================
``pacing``                  a row of the pacing table (or of the manifest's ``flights.curve``)
                            differs from the flights covering the week: one row per week of each
                            flight, own flights first in offer order then group flights in the
                            ``flights`` table's order; ``flight_budget`` the input's;
                            ``spent`` the recorded spend of an earlier week (the ``spend`` row,
                            else the sends' ``history.expected_cost``), this week the
                            assignments' expected cost, later weeks empty; ``planned`` the
                            rule's ``max(0, flight_budget - spent before) x weight / weights of
                            the weeks left`` (later weeks: what is left after this week shared by
                            their weights); ``cumulative_spent``; ``kind``
=========================== ===================================================================

Numbers allow ``1e-9`` relative plus ``1e-9`` absolute, what the file's printing may have
rounded (a CSV copy) and what reading the assignments may have rounded this week's spend.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from optimizer.check.base import Violation, _numbers, read_precision
from optimizer.check.copies import _read
from optimizer.check.flights import weekly_spend
from optimizer.core.config import Scenario
from optimizer.core.numerics import group_sums
from optimizer.io.validate import Inputs

RTOL, ATOL = 1e-9, 1e-9
_NUMBERS = ("flight_budget", "planned", "spent", "cumulative_spent")
_FLIGHT = ("flight_budget", "flight_start_week", "flight_end_week")


def _active(inputs: Inputs, week: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(heads, members) of the flights covering ``week``: heads ``key`` (their order),
    ``offer_id``, ``flight_id`` and the flight columns; members ``key``, ``o``."""
    offers, n = inputs.offers, inputs.offers.height
    covers = (pl.col("flight_start_week") <= week) & (pl.col("flight_end_week") >= week)
    id_type = offers.schema["offer_id"]
    heads = pl.DataFrame(schema={"key": pl.Int64, "offer_id": id_type, "flight_id": pl.Utf8,
                                 "flight_budget": pl.Float64, "flight_start_week": pl.Int64,
                                 "flight_end_week": pl.Int64})
    members = pl.DataFrame(schema={"key": pl.Int64, "o": pl.Int32})
    if "flight_budget" in offers.columns:
        own = offers.filter(pl.col("flight_budget").is_not_null() & covers)
        heads = pl.concat([heads, own.select(
            key=pl.col("o").cast(pl.Int64), offer_id="offer_id",
            flight_id=pl.lit(None, dtype=pl.Utf8), *[pl.col(c).cast(heads.schema[c])
                                                     for c in _FLIGHT]).select(heads.columns)])
        members = pl.concat([members, own.select(key=pl.col("o").cast(pl.Int64),
                                                 o=pl.col("o").cast(pl.Int32))])
    if inputs.flights is not None and "flight_id" in offers.columns:
        groups = (inputs.flights.with_row_index("g").filter(covers)
                  .with_columns(key=pl.col("g").cast(pl.Int64) + n,
                                flight_id=pl.col("flight_id").cast(pl.Utf8).str.strip_chars()))
        mine = (offers.filter(pl.col("flight_id").is_not_null())
                .select("o", flight_id=pl.col("flight_id").cast(pl.Utf8).str.strip_chars())
                .join(groups.select("flight_id", "key"), on="flight_id", how="inner",
                      maintain_order="left")
                .select("key", o=pl.col("o").cast(pl.Int32)))
        groups = groups.join(mine.select("key").unique(), on="key", how="semi")
        heads = pl.concat([heads, groups.select(
            "key", offer_id=pl.lit(None, dtype=id_type), flight_id="flight_id",
            *[pl.col(c).cast(heads.schema[c]) for c in _FLIGHT]).select(heads.columns)])
        members = pl.concat([members, mine])
    return heads.sort("key"), members


def expected_pacing(known_offer: pl.DataFrame, inputs: Inputs, scenario: Scenario
                    ) -> pl.DataFrame:
    """The pacing rows the run should publish, with ``slack`` (how far reading the
    assignments may have moved the flight's spend this week)."""
    week, rule = scenario.week, scenario.rules.pacing
    heads, members = _active(inputs, week)
    grid = (heads.with_columns(week=pl.int_ranges("flight_start_week",
                                                  pl.col("flight_end_week") + 1))
            .explode("week").with_columns(pl.col("week").cast(pl.Int64)))
    if rule == "even":
        grid = grid.with_columns(weight=pl.lit(1.0))
    elif rule == "front_loaded":
        grid = grid.with_columns(weight=(pl.col("flight_end_week") - pl.col("week") + 1)
                                 .cast(pl.Float64))
    else:
        demand = (inputs.forecast.select("o", "week", "demand") if inputs.forecast is not None
                  else pl.DataFrame(schema={"o": pl.Int32, "week": pl.Int64,
                                            "demand": pl.Float64}))
        per = group_sums(members.join(demand, on="o", how="inner", maintain_order="left_right"),
                         ["key", "week"], {"weight": pl.col("demand")})
        grid = (grid.join(per, on=["key", "week"], how="left")
                .with_columns(pl.col("weight").fill_null(0.0)))
    # an offer may be in its own flight and a group flight: its weeks' spend is read once (from
    # its earliest flight start; each flight's grid keeps its own weeks)
    starts = (members.join(heads.select("key", "flight_start_week"), on="key")
              .group_by("o").agg(pl.col("flight_start_week").min()))
    earlier = group_sums(members.join(weekly_spend(starts, inputs, week), on="o", how="inner",
                                      maintain_order="left_right"),
                         ["key", "week"], {"recorded": pl.col("cost")})
    now = group_sums(known_offer.join(members, on="o", how="inner", maintain_order="left_right"),
                     ["key"], {"now": pl.col("expected_cost").cast(pl.Float64),
                               "slack": pl.col("cost_slack")})
    grid = (grid.join(earlier, on=["key", "week"], how="left")
            .join(now, on="key", how="left")
            .with_columns(pl.col("now", "slack").fill_null(0.0))
            .sort("key", "week"))
    later, this = pl.col("week") > week, pl.col("week") == week
    grid = grid.with_columns(
        spent=pl.when(this).then("now").when(later).then(None)
        .otherwise(pl.col("recorded").fill_null(0.0)))
    # per flight: the later weeks' weight and the budget left after this week (sums in a fixed
    # order, joined back; the grid is sorted by key and week)
    totals = group_sums(grid, ["key"], {"later_tail": pl.when(later).then(pl.col("weight")),
                                        "spent_total": pl.col("spent")})
    grid = grid.join(totals, on="key", how="left", maintain_order="left").with_columns(
        before=(pl.col("spent").fill_null(0.0).cum_sum() - pl.col("spent").fill_null(0.0))
        .over("key"),
        tail=pl.col("weight").reverse().cum_sum().reverse().over("key"),
        after=(pl.col("flight_budget").first().over("key")
               - pl.col("spent_total")).clip(lower_bound=0.0))
    left = (pl.col("flight_budget") - pl.col("before")).clip(lower_bound=0.0)
    return grid.select(
        "offer_id", "flight_id", "week", "flight_budget",
        planned=pl.when(later).then(
            pl.when(pl.col("later_tail") > 0)
            .then(pl.col("after") * pl.col("weight") / pl.col("later_tail")).otherwise(0.0))
        .when(pl.col("tail") > 0).then(left * pl.col("weight") / pl.col("tail")).otherwise(0.0),
        spent="spent",
        cumulative_spent=pl.when(later).then(None)
        .otherwise(pl.col("spent").fill_null(0.0).cum_sum().over("key")),
        kind=pl.when(this).then(pl.lit("this_week")).when(later).then(pl.lit("projected"))
        .otherwise(pl.lit("spent")),
        slack="slack")


def check_pacing(run_dir: Path, known_offer: pl.DataFrame, inputs: Inputs, scenario: Scenario,
                 manifest: dict[str, Any] | None) -> list[Violation]:
    """The run folder's pacing table (the Parquet copy, else the CSV one; the copies are
    compared elsewhere) and the manifest's ``flights.curve`` against :func:`expected_pacing`.
    A run without either (no flight covering the week) has nothing to compare."""
    expected: pl.DataFrame | None = None
    out: list[Violation] = []
    for path in (run_dir / "pacing.parquet", run_dir / "pacing.csv"):
        if path.is_file():
            expected = expected_pacing(known_offer, inputs, scenario)
            try:
                frame = _read(path)
            except (pl.exceptions.PolarsError, OSError) as exc:
                return [Violation("pacing", f"cannot read {path.name}: {exc}", 1)]
            out += _differences(frame, expected, read_precision(path), path.name,
                                inputs.flights is not None)
            break
    curve = (manifest or {}).get("flights")
    if isinstance(curve, dict) and "curve" in curve:
        if expected is None:
            expected = expected_pacing(known_offer, inputs, scenario)
        try:
            frame = pl.DataFrame(curve["curve"], infer_schema_length=None)
        except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
            return out + [Violation("pacing", f"manifest.json flights.curve cannot be read "
                                    f"({exc})", 1)]
        out += _differences(frame, expected, 0.0, "manifest.json flights.curve", None)
    return out


def _differences(frame: pl.DataFrame, expected: pl.DataFrame, precision: float, where: str,
                 grouped: bool | None) -> list[Violation]:
    """The rows of ``frame`` (a pacing table as published) that differ from ``expected``;
    ``grouped``: whether the table must have ``flight_id`` (None: either, as the manifest's
    curve keeps the table's columns)."""
    columns = ["offer_id", *(["flight_id"] if grouped else []), "week", *_NUMBERS, "kind"]
    has_flight_id = "flight_id" in frame.columns
    if grouped is None:
        columns = [c for c in ["offer_id", "flight_id", "week", *_NUMBERS, "kind"]
                   if c != "flight_id" or has_flight_id]
        if frame.height == 0 and not frame.columns:
            frame = pl.DataFrame(schema=dict.fromkeys(columns, pl.Utf8))
        frame = frame.select([c for c in columns if c in frame.columns])
    if sorted(frame.columns) != sorted(columns):
        return [Violation("pacing", f"{where} has the columns {', '.join(frame.columns)}, not "
                          f"{', '.join(columns)}", 1)]
    if frame.height != expected.height:
        return [Violation("pacing", f"{where} has {frame.height} row(s), the flights covering "
                          f"the week give {expected.height}", abs(frame.height - expected.height),
                          expected.head(5).drop("slack").to_dicts())]
    text = {c: frame.get_column(c).cast(pl.Utf8).str.strip_chars().replace("", None)
            for c in ("offer_id", "flight_id", "week", "kind") if c in frame.columns}
    want = expected.with_columns(pl.col(c).cast(pl.Utf8) for c in ("offer_id", "flight_id",
                                                                     "week"))
    wrong: dict[str, pl.Series] = {}
    for name, have in text.items():
        wrong[name] = ~have.eq_missing(want.get_column(name))
    slack = expected.get_column("slack")
    for c in _NUMBERS:
        have, need = _numbers(frame.get_column(c)), expected.get_column(c)
        tol = RTOL * need.abs().fill_null(0.0) + ATOL + precision + slack
        both = have.is_not_null() & need.is_not_null()
        wrong[c] = ((have.is_null() != need.is_null())
                    | (both & ((have - need).abs() > tol)).fill_null(False))
    bad = pl.DataFrame(wrong).select(pl.any_horizontal(pl.all())).to_series()
    if not bad.any():
        return []
    rows: list[dict[str, Any]] = [
        {"row": int(i), "published": frame.row(int(i), named=True),
         "expected": expected.drop("slack").row(int(i), named=True)}
        for i in bad.arg_true().head(5).to_list()]
    k: int = rows[0]["row"]
    published, wanted = frame.row(k, named=True), expected.row(k, named=True)
    shown = ", ".join(f"{c} {published.get(c)!r} (expected {wanted[c]!r})"
                      for c, mask in wrong.items() if mask[k])
    return [Violation("pacing", f"{where}: {int(bad.sum())} row(s) differ from the flights "
                      f"covering the week (first: row {k}, week {wanted['week']}: {shown})",
                      int(bad.sum()), rows)]
