"""Flights and pacing: a flight's ``flight_budget`` over ``flight_start_week .. flight_end_week``
becomes, before the solve, a budget of the planning week (docs/contract.md, "Flights and
pacing").

A flight is an offer's own (the offer's flight columns) or a *group flight* (a row of the
optional ``flights`` table, over the offers whose ``flight_id`` names it). Each flight has a key
``k``: an offer's own flight ``k = o``, group flight ``g`` (in table order) ``k = n_offers + g``;
``members`` maps keys to offers.

**Spent so far.** For each week ``w`` of the flight before the planning week, each member offer
spent the ``spend`` table's ``amount`` of (offer, w) when the table has that row, else the sum of
``history.expected_cost`` over the offer's sends of week ``w`` (a week without sends spent 0);
the flight spent the sum over its offers. A send of a flight week without ``expected_cost`` and
without a ``spend`` row for its week is bad input: its cost is unknown.

**Pacing rule** (``rules.pacing``). Each week ``w`` of the flight has a weight: ``even`` 1,
``front_loaded`` ``flight_end_week - w + 1`` (the first week weighs most, the last 1),
``forecast`` the ``forecast`` table's ``demand`` of (offer, w) summed over the flight's offers
(0 without a row). The planning week's share of what remains is its weight over the weights of
the weeks left, itself included:

    week budget = max(0, flight_budget - spent so far) x weight(week) / sum of weight(week .. end)

so an under-spend is spread over the weeks left and an over-spend taken from them, the last week
gets all that remains, and the flight never plans beyond what remains. An offer's own flight
caps its budget this week: the smaller of ``budget x budget_scale`` (empty = no cap) and the
week budget; outside its flight's weeks an offer keeps its own budget. A group flight's week
budget is a *shared* budget over its offers (their summed expected cost), priced and enforced as
a funder's (:func:`optimizer.model.funders.with_group_flights`). ``flight_budget`` is not scaled
by ``budget_scale``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from optimizer.core.errors import InputError
from optimizer.core.numerics import group_sums

PACING_RULES = ("even", "front_loaded", "forecast")
# the pacing table of the run folder (optimizer/report/campaign.py writes it); with group
# flights (the ``flights`` table) it also has ``flight_id`` after ``offer_id``
PACING_COLUMNS = ["offer_id", "week", "flight_budget", "planned", "spent", "cumulative_spent",
                  "kind"]
_HEAD = ["k", "offer_id", "flight_id", "flight_budget", "flight_start_week", "flight_end_week"]


@dataclass(frozen=True)
class FlightPlan:
    """The flights covering the planning week.

    week_budget: per offer, this week's budget of its own flight (``inf`` for an offer without
        one this week).
    weeks: one row per week of every active flight: ``k`` (flight key, module docstring),
        ``week``, ``flight_budget``, ``weight``, ``spent`` (recorded, earlier weeks only),
        ``spent_before`` (the flight's spend before that week, earlier weeks and the planning
        week) and ``planned`` (what the rule gave that week, from the spend before it; later
        weeks filled by :func:`curve`).
    members: ``k``, ``o`` of every active flight's offers.
    group_share: per active group flight (in table order), this week's shared budget.
    group_of: per offer, the index of its active group flight in ``group_share`` (-1: none).
    group_names: each active group flight's ``flight_id``; group_keys: its key ``k``.
    n_offers: the number of offers (group flight keys start there).
    has_groups: whether the inputs carry a ``flights`` table (the pacing table then has
        ``flight_id``).
    """

    week_budget: np.ndarray
    weeks: pl.DataFrame
    members: pl.DataFrame
    group_share: np.ndarray
    group_of: np.ndarray
    group_names: list[str]
    group_keys: np.ndarray
    n_offers: int
    has_groups: bool = False

    @property
    def active(self) -> np.ndarray:
        return np.isfinite(self.week_budget)


def has_flights(offers: pl.DataFrame, flights: pl.DataFrame | None = None) -> bool:
    """Whether any offer carries a flight of its own (the flight columns are validated
    together) or a group flight's ``flight_id``."""
    own = ("flight_budget" in offers.columns
           and offers.get_column("flight_budget").is_not_null().any())
    grouped = (flights is not None and "flight_id" in offers.columns
               and offers.get_column("flight_id").is_not_null().any())
    return bool(own or grouped)


def _flights(offers: pl.DataFrame, flights: pl.DataFrame | None, week: int
             ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(heads, members) of the flights covering ``week``: heads ``_HEAD`` (one row per flight,
    own flights first in offer order, then group flights in table order), members ``k``, ``o``,
    ``offer_id``."""
    n = offers.height
    covers = (pl.col("flight_start_week") <= week) & (pl.col("flight_end_week") >= week)
    own = (offers.filter(pl.col("flight_budget").is_not_null() & covers)
           if "flight_budget" in offers.columns else offers.clear().with_columns(
               flight_budget=pl.lit(None, pl.Float64), flight_start_week=pl.lit(None, pl.Int64),
               flight_end_week=pl.lit(None, pl.Int64)))
    heads = own.select(k=pl.col("o").cast(pl.Int64), offer_id="offer_id",
                       flight_id=pl.lit(None, dtype=pl.Utf8), flight_budget="flight_budget",
                       flight_start_week="flight_start_week", flight_end_week="flight_end_week")
    members = heads.select("k", o=pl.col("k").cast(pl.Int32), offer_id="offer_id")
    if flights is not None and "flight_id" in offers.columns:
        grouped = (flights.with_row_index("g")
                   .with_columns(k=pl.col("g").cast(pl.Int64) + n).filter(covers))
        mine = (offers.select("o", "offer_id", "flight_id").filter(pl.col("flight_id").is_not_null())
                .join(grouped.select("flight_id", "k"), on="flight_id", how="inner")
                .sort("o").select("k", "o", "offer_id"))
        grouped = grouped.join(mine.select("k").unique(), on="k", how="semi")  # with offers
        heads = pl.concat([heads, grouped.select(
            "k", offer_id=pl.lit(None, dtype=heads.schema["offer_id"]), flight_id="flight_id",
            flight_budget="flight_budget", flight_start_week="flight_start_week",
            flight_end_week="flight_end_week")])
        members = pl.concat([members, mine])
    return heads, members


def _weights(grid: pl.DataFrame, members: pl.DataFrame, forecast: pl.DataFrame | None,
             pacing: str) -> pl.DataFrame:
    if pacing == "even":
        return grid.with_columns(weight=pl.lit(1.0))
    if pacing == "front_loaded":
        return grid.with_columns(
            weight=(pl.col("flight_end_week") - pl.col("week") + 1).cast(pl.Float64))
    if forecast is None:
        raise InputError("forecast", "demand", "rules.pacing = 'forecast' needs a forecast "
                         "table (offer_id, week, demand) for the offers with a flight")
    demand = group_sums(members.select("k", "o").join(forecast.select("o", "week", "demand"),
                                                      on="o", how="inner",
                                                      maintain_order="left_right"),
                        ["k", "week"], {"weight": pl.col("demand")})
    return grid.join(demand, on=["k", "week"], how="left", maintain_order="left").with_columns(
        pl.col("weight").fill_null(0.0))


def _recorded_spend(grid: pl.DataFrame, members: pl.DataFrame, history: pl.DataFrame | None,
                    spend: pl.DataFrame | None, week: int) -> pl.DataFrame:
    """``grid`` with ``spent``: each earlier flight week's spend (module docstring), null from
    the planning week on."""
    earlier = (grid.filter(pl.col("week") < week).select("k", "week")
               .join(members, on="k", how="inner", maintain_order="left"))
    offer_weeks = earlier.select("o", "offer_id", "week").unique(["o", "week"],
                                                                 maintain_order=True)
    sent = pl.DataFrame(schema={"o": pl.Int32, "week": pl.Int64, "sent": pl.Float64,
                                "unknown": pl.UInt32})
    if history is not None and history.height:
        cost = (pl.col("expected_cost") if "expected_cost" in history.columns
                else pl.lit(None, dtype=pl.Float64))
        sent = group_sums(history.lazy().select("o", "week", cost.alias("cost"))
                          .join(offer_weeks.lazy(), on=["o", "week"], how="semi",
                                maintain_order="left").collect(),
                          ["o", "week"], {"sent": pl.col("cost"),
                                          "unknown": pl.col("cost").is_null().cast(pl.UInt32)})
    given = (spend.rename({"amount": "given"}) if spend is not None
             else pl.DataFrame(schema={"o": pl.Int32, "week": pl.Int64, "given": pl.Float64}))
    rows = (offer_weeks.join(sent, on=["o", "week"], how="left", maintain_order="left")
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
    per_flight = group_sums(earlier.select("k", "o", "week")
                            .join(rows, on=["o", "week"], how="left", maintain_order="left"),
                            ["k", "week"], {"spent": pl.col("spent")})
    return grid.join(per_flight, on=["k", "week"], how="left", maintain_order="left")


def plan_flights(offers: pl.DataFrame, history: pl.DataFrame | None,
                 spend: pl.DataFrame | None, forecast: pl.DataFrame | None, week: int,
                 pacing: str, flights: pl.DataFrame | None = None) -> FlightPlan:
    """This week's budget of every flight covering ``week`` (module docstring), from the
    validated ``offers`` (``o`` and the flight columns, ``flight_id`` with group flights),
    ``history`` (``o``, ``week``, optional ``expected_cost``), ``spend`` and ``forecast``
    (``o``, ``week``, value) and the group ``flights`` table (``flight_id`` and the flight
    columns; ``None`` without one)."""
    n = offers.height
    heads, members = _flights(offers, flights, week)
    grid = (heads.with_columns(week=pl.int_ranges("flight_start_week",
                                                  pl.col("flight_end_week") + 1))
            .explode("week").with_columns(pl.col("week").cast(pl.Int64)))
    grid = _recorded_spend(_weights(grid, members, forecast, pacing), members, history, spend,
                           week)
    grid = grid.sort("k", "week").with_columns(
        spent_before=(pl.col("spent").fill_null(0.0).cum_sum() - pl.col("spent").fill_null(0.0))
        .over("k"),
        tail=pl.col("weight").reverse().cum_sum().reverse().over("k"))
    left = (pl.col("flight_budget") - pl.col("spent_before")).clip(lower_bound=0.0)
    grid = grid.with_columns(
        planned=pl.when(pl.col("week") > week).then(None)
        .when(pl.col("tail") > 0).then(left * pl.col("weight") / pl.col("tail"))
        .otherwise(0.0))
    now = grid.filter(pl.col("week") == week)
    dry = now.filter(pl.col("tail") <= 0)
    if dry.height:
        shown = ["offer_id", "flight_id", "week"] if flights is not None else ["offer_id", "week"]
        raise InputError("forecast", "demand", f"with rules.pacing = 'forecast', a flight needs "
                         f"some demand in its weeks from {week} to its end",
                         sample=dry.select(shown).head(5).rows(named=True), count=dry.height)
    own, grouped = now.filter(pl.col("k") < n), now.filter(pl.col("k") >= n)
    week_budget = np.full(n, np.inf)
    week_budget[own.get_column("k").to_numpy()] = own.get_column("planned").to_numpy()
    group_of = np.full(n, -1, dtype=np.int64)
    keys = grouped.get_column("k").to_numpy()
    member_rows = members.filter(pl.col("k") >= n)
    group_of[member_rows.get_column("o").to_numpy()] = np.searchsorted(
        keys, member_rows.get_column("k").to_numpy())
    return FlightPlan(week_budget, grid.drop("tail", "offer_id", "flight_id",
                                             "flight_start_week", "flight_end_week"),
                      members.select("k", "o"), grouped.get_column("planned").to_numpy(),
                      group_of, [str(f) for f in grouped.get_column("flight_id").to_list()],
                      keys, n, flights is not None)


def paced_budget(budget: np.ndarray, plan: FlightPlan) -> np.ndarray:
    """The offers' budgets this week: the smaller of their own (scaled) budget and their own
    flight's week budget (group flights are shared budgets, not offer budgets)."""
    return np.minimum(budget, plan.week_budget)


def curve(plan: FlightPlan, week: int, planned_cost: np.ndarray) -> pl.DataFrame:
    """The pacing curve of every active flight, one row per flight week (``k``): ``planned``
    (earlier weeks and this one: what the rule gave; later weeks: what it would give if every
    week spent its plan from here on), ``spent`` (earlier weeks: recorded; this week: the plan's
    expected cost, ``planned_cost[o]`` summed over the flight's offers; later weeks empty),
    ``cumulative_spent`` and ``kind`` (``spent``, ``this_week``, ``projected``)."""
    g = plan.weeks
    now = pl.col("week") == week
    this_week = group_sums(plan.members.with_columns(
        cost=pl.Series(planned_cost.astype(np.float64)).gather(plan.members.get_column("o"))),
        ["k"], {"cost": pl.col("cost")})
    g = (g.join(this_week, on="k", how="left", maintain_order="left")
         .with_columns(spent=pl.when(now).then(pl.col("cost")).otherwise(pl.col("spent")))
         .drop("cost"))
    so_far = g.filter(pl.col("week") <= week)
    after = (group_sums(so_far, ["k"], {"spent_so_far": pl.col("spent")})
             .join(so_far.group_by("k", maintain_order=True).agg(pl.col("flight_budget").first()),
                   on="k", how="left", maintain_order="left")
             .select("k", after=(pl.col("flight_budget") - pl.col("spent_so_far"))
                     .clip(lower_bound=0.0)))
    later = pl.col("week") > week
    tail = group_sums(g, ["k"], {"later_tail": pl.when(later).then(pl.col("weight"))
                                 .otherwise(0.0)})
    g = (g.join(after, on="k", how="left", maintain_order="left")
         .join(tail, on="k", how="left", maintain_order="left"))
    g = g.with_columns(
        planned=pl.when(later).then(pl.when(pl.col("later_tail") > 0)
                                    .then(pl.col("after") * pl.col("weight")
                                          / pl.col("later_tail")).otherwise(0.0))
        .otherwise(pl.col("planned")),
        cumulative_spent=pl.col("spent").cum_sum().over("k"),
        kind=pl.when(now).then(pl.lit("this_week")).when(later).then(pl.lit("projected"))
        .otherwise(pl.lit("spent")))
    return g.select("k", "week", "flight_budget", "planned", "spent", "cumulative_spent", "kind")
