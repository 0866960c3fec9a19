"""The always-on campaign's outputs: the pacing table (``pacing.parquet`` / ``.csv``) of the
flights covering the week, and the report's section on pacing and stable lists, read from the
manifest's ``flights`` and ``stability`` records (so a run read back from its folder shows them).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from optimizer.io.validate import Inputs
from optimizer.model.flights import PACING_COLUMNS, FlightPlan, curve
from optimizer.report import charts

# the report charts this many flights' curves, the first offers in table order
CHARTED_FLIGHTS = 6


def pacing_frame(inputs: Inputs, plan: FlightPlan, summary: pl.DataFrame, week: int
                 ) -> pl.DataFrame:
    """One row per week of each flight covering ``week`` (columns ``PACING_COLUMNS``, see
    :func:`optimizer.model.flights.curve`); this week's spend is the plan's expected cost. With
    group flights (a ``flights`` table) the table also has ``flight_id``: a group flight's rows
    name it and leave ``offer_id`` empty, an offer's own flight's rows the other way round."""
    cost = summary.get_column("expected_cost").to_numpy().astype(np.float64)
    rows = curve(plan, week, cost)
    ids = inputs.offers.get_column("offer_id")
    own = pl.col("k") < plan.n_offers
    rows = rows.with_columns(
        offer_id=pl.when(own).then(ids.gather(rows.get_column("k").clip(0, plan.n_offers - 1))))
    if not plan.has_groups:
        return rows.select(PACING_COLUMNS)
    names = pl.DataFrame({"k": plan.group_keys, "flight_id": pl.Series(plan.group_names,
                                                                       dtype=pl.Utf8)})
    rows = rows.join(names, on="k", how="left", maintain_order="left")
    return rows.select([PACING_COLUMNS[0], "flight_id", *PACING_COLUMNS[1:]])


def flights_record(plan: FlightPlan, pacing: pl.DataFrame, rule: str) -> dict[str, Any]:
    """The manifest's ``flights``: the pacing rule and each active flight's figures."""
    this_week = pacing.filter(pl.col("kind") == "this_week")
    return {"pacing": rule, "active": this_week.height,
            "curve": pacing.to_dicts()}


def section(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the report shows of flights and stable lists (empty when the run had neither)."""
    out: dict[str, Any] = {}
    flights = manifest.get("flights")
    if flights:
        rows = flights.get("curve", [])
        out["pacing"] = rows
        chart: list[str] = []
        shown = list(dict.fromkeys(_flight_of(r) for r in rows))[:CHARTED_FLIGHTS]
        for flight in shown:
            mine = [r for r in rows if _flight_of(r) == flight]
            what = (f"Flight of offer {flight[1]}" if flight[0] == "offer"
                    else f"Group flight {flight[1]}")
            chart.append(charts.bar_chart(
                [str(r["week"]) for r in mine],
                {"planned": [r["planned"] or 0.0 for r in mine],
                 "spent": [r["spent"] or 0.0 for r in mine]},
                f"{what}: planned vs spent by week "
                f"(budget {mine[0]['flight_budget']:.2f}, {flights.get('pacing')})",
                xlabel="week", ylabel="expected cost"))
        out["pacing_charts"] = chart
    if manifest.get("stability"):
        out["stability"] = manifest["stability"]
    return out


def _flight_of(row: dict[str, Any]) -> tuple[str, Any]:
    """A pacing row's flight: ("offer", offer_id) or ("group", flight_id)."""
    if row.get("flight_id") is not None:
        return ("group", row["flight_id"])
    return ("offer", row["offer_id"])
