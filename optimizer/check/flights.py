"""``offeropt check``'s verification of flights (docs/contract.md, "Flights and pacing").

Independent of the planning code (:mod:`optimizer.model.flights`): this week's flight budget is
re-derived from the input tables with the pacing rules' closed forms. With ``n`` weeks left in the
flight (the planning week included), the week's share of what remains is ``1 / n`` (``even``),
``2 / (n + 1)`` (``front_loaded``: weights ``n, n - 1, ..., 1``) or this week's ``demand`` over
the demand of the weeks left (``forecast``). Rule id:

=========================== ===================================================================
``flight_budget``           an offer's expected spend this week exceeds its flight's share,
                            ``max(0, flight_budget - spent before this week) x share``, or a
                            group flight's offers' summed spend its share (spent and forecast
                            demand summed over its offers too); or the
                            spend of an earlier flight week is unknown (a send without
                            ``history.expected_cost`` and no ``spend`` row for that week)
=========================== ===================================================================

Caps allow the check's budget slack (1e-9 relative plus 1e-6 absolute).
"""
from __future__ import annotations

from typing import Any

import polars as pl

from optimizer.check.base import _over
from optimizer.core.config import Scenario
from optimizer.core.numerics import group_sums
from optimizer.io.validate import Inputs


def _violation(message: str, count: int, rows: pl.DataFrame) -> Any:
    from optimizer.check.verify import Violation  # check imports this module; the class lives there

    return Violation("flight_budget", message, count, rows.head(5).to_dicts())


def weekly_spend(flights: pl.DataFrame, inputs: Inputs, week: int) -> pl.DataFrame:
    """Per offer of ``flights`` (``o``, ``flight_start_week``) and flight week before ``week``
    with a record: ``cost`` (the ``spend`` row's amount where given, else the sends'
    ``history.expected_cost`` summed) and ``missing`` (sends without a cost, 0 where the
    ``spend`` row wins)."""
    hist = inputs.history
    rows = pl.DataFrame(schema={"o": pl.Int32, "week": pl.Int64, "cost": pl.Float64,
                                "missing": pl.UInt32})
    if hist is not None and hist.height:
        cost = (pl.col("expected_cost") if "expected_cost" in hist.columns
                else pl.lit(None, dtype=pl.Float64))
        rows = group_sums(
            hist.join(flights.select("o", "flight_start_week"), on="o", how="inner",
                      maintain_order="left")
            .filter((pl.col("week") >= pl.col("flight_start_week")) & (pl.col("week") < week)),
            ["o", "week"], {"cost": cost, "missing": cost.is_null().cast(pl.UInt32)})
    if inputs.spend is not None:
        given = (inputs.spend.join(flights.select("o", "flight_start_week"), on="o", how="inner",
                                   maintain_order="left")
                 .filter((pl.col("week") >= pl.col("flight_start_week")) & (pl.col("week") < week))
                 .select("o", "week", "amount"))
        rows = (rows.join(given, on=["o", "week"], how="full", coalesce=True,
                          maintain_order="left_right")
                .with_columns(cost=pl.when(pl.col("amount").is_not_null()).then("amount")
                              .otherwise("cost"),
                              missing=pl.when(pl.col("amount").is_not_null()).then(0)
                              .otherwise(pl.col("missing")))
                .drop("amount"))
    return rows


def _earlier_spend(flights: pl.DataFrame, inputs: Inputs, week: int) -> pl.DataFrame:
    """Per flight: ``spent`` before ``week`` and ``unknown`` weeks (sends without a cost)."""
    return group_sums(weekly_spend(flights, inputs, week), ["o"], {
        "spent": pl.col("cost"), "unknown": (pl.col("missing").fill_null(0) > 0).cast(pl.UInt32)})


def _caps(heads: pl.DataFrame, members: pl.DataFrame, inputs: Inputs, scenario: Scenario
          ) -> pl.DataFrame:
    """``key``, ``flight_cap`` (this week's flight budget) and ``unknown`` of the flights
    ``heads`` (``key`` and the flight columns) covering the planning week; ``members``: ``key``,
    ``o`` of their offers (a flight spends and forecasts what its offers do, summed)."""
    week = scenario.week
    flights = heads.filter((pl.col("flight_start_week") <= week)
                           & (pl.col("flight_end_week") >= week)).select(
        "key", "flight_budget", "flight_start_week", "flight_end_week",
        left=(pl.col("flight_end_week") - week + 1).cast(pl.Float64))
    members = members.join(flights.select("key", "flight_start_week", "flight_end_week"),
                           on="key", how="inner", maintain_order="left")
    rule = scenario.rules.pacing
    if rule == "even":
        flights = flights.with_columns(share=1.0 / pl.col("left"))
    elif rule == "front_loaded":
        flights = flights.with_columns(share=2.0 / (pl.col("left") + 1.0))
    else:
        demand = (inputs.forecast if inputs.forecast is not None
                  else pl.DataFrame(schema={"o": pl.Int32, "week": pl.Int64, "demand": pl.Float64}))
        ahead = group_sums(
            demand.join(members, on="o", how="inner", maintain_order="left_right")
            .filter((pl.col("week") >= week) & (pl.col("week") <= pl.col("flight_end_week"))),
            ["key"], {"now": pl.when(pl.col("week") == week).then(pl.col("demand")),
                      "ahead": pl.col("demand")})
        flights = (flights.join(ahead, on="key", how="left", maintain_order="left")
                   .with_columns(share=pl.when(pl.col("ahead") > 0)
                                 .then(pl.col("now") / pl.col("ahead")).otherwise(0.0)))
    spent = group_sums(members.join(_earlier_spend(members, inputs, week), on="o", how="inner",
                                    maintain_order="left_right"),
                       ["key"], {"spent": pl.col("spent"), "unknown": pl.col("unknown")})
    return (flights.join(spent, on="key", how="left", maintain_order="left")
            .with_columns(pl.col("spent").fill_null(0.0), pl.col("unknown").fill_null(0))
            .select("key", "unknown", flight_cap=(pl.col("flight_budget") - pl.col("spent"))
                    .clip(lower_bound=0.0) * pl.col("share")))


def flight_caps(inputs: Inputs, scenario: Scenario) -> pl.DataFrame:
    """``o``, ``flight_cap`` (this week's flight budget) and ``unknown`` of every offer whose
    own flight covers the planning week (empty without flights)."""
    offers = inputs.offers
    if "flight_budget" not in offers.columns:
        return pl.DataFrame(schema={"o": pl.Int32, "flight_cap": pl.Float64, "unknown": pl.UInt32})
    heads = offers.filter(pl.col("flight_budget").is_not_null()).select(
        "flight_budget", "flight_start_week", "flight_end_week", key=pl.col("o"))
    caps = _caps(heads, heads.select("key", o=pl.col("key")), inputs, scenario)
    return caps.select(o="key", flight_cap="flight_cap", unknown="unknown")


def group_caps(inputs: Inputs, scenario: Scenario) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(``flight_id``, ``flight_cap``, ``unknown`` of every group flight covering the planning
    week; ``flight_id``, ``o`` of their offers), both empty without a ``flights`` table."""
    flights = inputs.flights
    if flights is None or "flight_id" not in inputs.offers.columns:
        return (pl.DataFrame(schema={"flight_id": pl.Utf8, "flight_cap": pl.Float64,
                                     "unknown": pl.UInt32}),
                pl.DataFrame(schema={"flight_id": pl.Utf8, "o": pl.Int32}))
    members = (inputs.offers.filter(pl.col("flight_id").is_not_null())
               .select(key=pl.col("flight_id").cast(pl.Utf8).str.strip_chars(), o=pl.col("o")))
    caps = _caps(flights.rename({"flight_id": "key"}), members, inputs, scenario)
    return caps.rename({"key": "flight_id"}), members.rename({"key": "flight_id"})


def check_flights(known_offer: pl.DataFrame, inputs: Inputs, scenario: Scenario) -> list[Any]:
    """The ``flight_budget`` rule over the assignments with a known offer (``o``, ``cost``)."""
    out = _over_caps(flight_caps(inputs, scenario), known_offer, inputs.offers.select(
        "o", "offer_id"), "offer_id", (
        "flight(s) have earlier weeks of unknown spend (sends without",
        "offer(s) spend more this week than their flight's share (offer {id!r} spends"))
    caps, members = group_caps(inputs, scenario)
    return out + _over_caps(caps, known_offer.join(members, on="o", how="inner",
                                                   maintain_order="left_right"), None,
                            "flight_id", (
        "group flight(s) have earlier weeks of unknown spend (sends without",
        "group flight(s) spend more this week than their share (flight {id!r}: its offers spend"))


def _over_caps(caps: pl.DataFrame, assigned: pl.DataFrame, ids: pl.DataFrame | None, key: str,
               says: tuple[str, str]) -> list[Any]:
    """The ``flight_budget`` violations of ``caps`` (per ``key``: ``flight_cap`` and the
    ``unknown`` earlier weeks) against the ``assigned`` rows' summed ``cost`` per ``key``;
    ``ids`` names the offers when ``key`` is theirs."""
    if caps.height == 0:
        return []
    by = "o" if ids is not None else key
    out = []
    unknown = caps.filter(pl.col("unknown") > 0)
    if ids is not None:
        unknown = unknown.join(ids, on="o", how="left", maintain_order="left")
    if unknown.height:
        out.append(_violation(
            f"{unknown.height} {says[0]} history.expected_cost and no spend row for their week)",
            unknown.height, unknown.select(key, weeks_unknown="unknown")))
    spent = group_sums(assigned, [by], {"spent": pl.col("cost"), "slack": pl.col("cost_slack")})
    bad = caps.join(spent, on=by, how="inner")
    if ids is not None:
        bad = bad.join(ids, on="o", how="left")
    bad = bad.filter(_over(pl.col("spent"), pl.col("flight_cap"), pl.col("slack"))).sort(by)
    if bad.height:
        f = bad.row(0, named=True)
        out.append(_violation(
            f"{bad.height} {says[1].format(id=f[key])} {f['spent']:.6g} of "
            f"{f['flight_cap']:.6g})", bad.height, bad.select(key, "spent", "flight_cap")))
    return out
