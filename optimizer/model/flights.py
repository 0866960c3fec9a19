"""Flights and pacing: an offer's ``flight_budget`` over ``flight_start_week .. flight_end_week``
becomes, before the solve, the budget of the planning week (docs/contract.md, "Flights and
pacing").

**Spent so far.** For each week ``w`` of the flight before the planning week, the flight spent
the ``spend`` table's ``amount`` of (offer, w) when the table has that row, else the sum of
``history.expected_cost`` over the offer's sends of week ``w`` (a week without sends spent 0).
A send of a flight week without ``expected_cost`` and without a ``spend`` row for its week is bad
input: its cost is unknown.

**Pacing rule** (``rules.pacing``). Each week ``w`` of the flight has a weight: ``even`` 1,
``front_loaded`` ``flight_end_week - w + 1`` (the first week weighs most, the last 1),
``forecast`` the ``forecast`` table's ``demand`` of (offer, w) (0 without a row). The planning
week's share of what remains is its weight over the weights of the weeks left, itself included:

    week budget = max(0, flight_budget - spent so far) x weight(week) / sum of weight(week .. end)

so an under-spend is spread over the weeks left and an over-spend taken from them, the last week
gets all that remains, and the flight never plans beyond what remains. The offer's budget this
week is the smaller of ``budget x budget_scale`` (empty = no cap) and the week budget; outside
its flight's weeks an offer keeps its own budget (``start_week``/``end_week`` limit when it is
sent). A flight belongs to one offer; ``flight_budget`` is not scaled by ``budget_scale``.

Since the week budget is an offer budget, the solvers (the Lagrangian's budget prices, the exact
model's budget rows) and ``offeropt check`` treat it as they treat any budget.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from optimizer.core.errors import InputError

PACING_RULES = ("even", "front_loaded", "forecast")
# the pacing table of the run folder (optimizer/report/pacing.py writes it)
PACING_COLUMNS = ["offer_id", "week", "flight_budget", "planned", "spent", "cumulative_spent",
                  "kind"]


@dataclass(frozen=True)
class FlightPlan:
    """The flights covering the planning week.

    week_budget: per offer, this week's flight budget (``inf`` for an offer without a flight
        this week).
    weeks: one row per week of every active flight: ``o``, ``week``, ``flight_budget``,
        ``weight``, ``spent`` (recorded, earlier weeks only), ``spent_before`` (the flight's
        spend before that week, earlier weeks and the planning week) and ``planned`` (what the
        rule gave that week, from the spend before it; later weeks filled by :func:`curve`).
    """

    week_budget: np.ndarray
    weeks: pl.DataFrame

    @property
    def active(self) -> np.ndarray:
        return np.isfinite(self.week_budget)


def has_flights(offers: pl.DataFrame) -> bool:
    """Whether any offer carries a flight (the flight columns are validated together)."""
    return "flight_budget" in offers.columns and offers.get_column("flight_budget").is_not_null().any()


def _weights(grid: pl.DataFrame, forecast: pl.DataFrame | None, pacing: str) -> pl.DataFrame:
    if pacing == "even":
        return grid.with_columns(weight=pl.lit(1.0))
    if pacing == "front_loaded":
        return grid.with_columns(
            weight=(pl.col("flight_end_week") - pl.col("week") + 1).cast(pl.Float64))
    if forecast is None:
        raise InputError("forecast", "demand", "rules.pacing = 'forecast' needs a forecast "
                         "table (offer_id, week, demand) for the offers with a flight")
    return grid.join(forecast.select("o", "week", weight="demand"), on=["o", "week"],
                     how="left", maintain_order="left").with_columns(pl.col("weight").fill_null(0.0))


def _recorded_spend(grid: pl.DataFrame, history: pl.DataFrame | None,
                    spend: pl.DataFrame | None, week: int) -> pl.DataFrame:
    """``grid`` with ``spent``: each earlier flight week's spend (module docstring), null from
    the planning week on."""
    earlier = grid.filter(pl.col("week") < week).select("o", "offer_id", "week")
    sent = pl.DataFrame(schema={"o": pl.Int32, "week": pl.Int64, "sent": pl.Float64,
                                "unknown": pl.UInt32})
    if history is not None and history.height:
        cost = (pl.col("expected_cost") if "expected_cost" in history.columns
                else pl.lit(None, dtype=pl.Float64))
        sent = (history.lazy().select("o", "week", cost.alias("cost"))
                .join(earlier.lazy(), on=["o", "week"], how="semi")
                .group_by("o", "week").agg(sent=pl.col("cost").sum(),
                                           unknown=pl.col("cost").null_count())
                .collect())
    given = (spend.rename({"amount": "given"}) if spend is not None
             else pl.DataFrame(schema={"o": pl.Int32, "week": pl.Int64, "given": pl.Float64}))
    rows = (earlier.join(sent, on=["o", "week"], how="left", maintain_order="left")
            .join(given, on=["o", "week"], how="left", maintain_order="left"))
    unknown = rows.filter(pl.col("given").is_null() & (pl.col("unknown").fill_null(0) > 0))
    if unknown.height:
        raise InputError("history", "expected_cost",
                         "sends of a flight's earlier weeks need their expected_cost (appended "
                         "by --append-history) or a row of the spend table (offer_id, week, "
                         "amount) for that offer and week",
                         sample=unknown.select("offer_id", "week", sends_without_cost="unknown")
                         .head(5).rows(named=True), count=unknown.height)
    rows = rows.select("o", "week", spent=pl.coalesce("given", "sent", pl.lit(0.0)))
    return grid.join(rows, on=["o", "week"], how="left", maintain_order="left")


def plan_flights(offers: pl.DataFrame, history: pl.DataFrame | None,
                 spend: pl.DataFrame | None, forecast: pl.DataFrame | None, week: int,
                 pacing: str) -> FlightPlan:
    """This week's budget of every flight covering ``week`` (module docstring), from the
    validated ``offers`` (``o`` and the flight columns), ``history`` (``o``, ``week``,
    optional ``expected_cost``), ``spend`` and ``forecast`` (``o``, ``week``, value)."""
    n = offers.height
    flights = offers.filter(pl.col("flight_budget").is_not_null()
                            & (pl.col("flight_start_week") <= week)
                            & (pl.col("flight_end_week") >= week))
    grid = (flights.select("o", "offer_id", "flight_budget", "flight_start_week", "flight_end_week",
                           week=pl.int_ranges("flight_start_week", pl.col("flight_end_week") + 1))
            .explode("week").with_columns(pl.col("week").cast(pl.Int64)))
    grid = _recorded_spend(_weights(grid, forecast, pacing), history, spend, week)
    grid = grid.sort("o", "week").with_columns(
        spent_before=(pl.col("spent").fill_null(0.0).cum_sum() - pl.col("spent").fill_null(0.0))
        .over("o"),
        tail=pl.col("weight").reverse().cum_sum().reverse().over("o"))
    left = (pl.col("flight_budget") - pl.col("spent_before")).clip(lower_bound=0.0)
    grid = grid.with_columns(
        planned=pl.when(pl.col("week") > week).then(None)
        .when(pl.col("tail") > 0).then(left * pl.col("weight") / pl.col("tail"))
        .otherwise(0.0))
    now = grid.filter(pl.col("week") == week)
    dry = now.filter(pl.col("tail") <= 0)
    if dry.height:
        raise InputError("forecast", "demand", f"with rules.pacing = 'forecast', a flight needs "
                         f"some demand in its weeks from {week} to its end",
                         sample=dry.select("offer_id", "week").head(5).rows(named=True),
                         count=dry.height)
    week_budget = np.full(n, np.inf)
    week_budget[now.get_column("o").to_numpy()] = now.get_column("planned").to_numpy()
    return FlightPlan(week_budget, grid.drop("tail", "offer_id", "flight_start_week",
                                             "flight_end_week"))


def paced_budget(budget: np.ndarray, plan: FlightPlan) -> np.ndarray:
    """The offers' budgets this week: the smaller of their own (scaled) budget and the flight's
    week budget."""
    return np.minimum(budget, plan.week_budget)


def curve(plan: FlightPlan, week: int, planned_cost: np.ndarray) -> pl.DataFrame:
    """The pacing curve of every active flight, one row per flight week: ``planned`` (earlier
    weeks and this one: what the rule gave; later weeks: what it would give if every week spent
    its plan from here on), ``spent`` (earlier weeks: recorded; this week: the plan's expected
    cost ``planned_cost[o]``; later weeks empty), ``cumulative_spent`` and ``kind``
    (``spent``, ``this_week``, ``projected``)."""
    g = plan.weeks
    now = pl.col("week") == week
    this_week = pl.DataFrame({"o": np.arange(planned_cost.shape[0], dtype=np.int32),
                              "cost": planned_cost.astype(np.float64)})
    g = (g.join(this_week, on="o", how="left", maintain_order="left")
         .with_columns(spent=pl.when(now).then(pl.col("cost")).otherwise(pl.col("spent")))
         .drop("cost"))
    after = (g.filter(pl.col("week") <= week).group_by("o")
             .agg(after=(pl.col("flight_budget").first() - pl.col("spent").sum())
                  .clip(lower_bound=0.0)))
    later = pl.col("week") > week
    g = g.join(after, on="o", how="left", maintain_order="left").with_columns(
        later_tail=pl.when(later).then(pl.col("weight")).otherwise(0.0).sum().over("o"))
    g = g.with_columns(
        planned=pl.when(later).then(pl.when(pl.col("later_tail") > 0)
                                    .then(pl.col("after") * pl.col("weight")
                                          / pl.col("later_tail")).otherwise(0.0))
        .otherwise(pl.col("planned")),
        cumulative_spent=pl.col("spent").cum_sum().over("o"),
        kind=pl.when(now).then(pl.lit("this_week")).when(later).then(pl.lit("projected"))
        .otherwise(pl.lit("spent")))
    return g.select("o", "week", "flight_budget", "planned", "spent", "cumulative_spent", "kind")
