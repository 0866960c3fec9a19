"""The run folder's tables, built from the inputs, the problem and its solution.

``assignments``, ``offers_summary`` and ``customers`` (columns in :mod:`optimizer.core.schemas`
and docs/contract.md); :mod:`optimizer.io.runfolder` writes them.
"""
from __future__ import annotations

import numpy as np
import polars as pl

from optimizer.core.schemas import ASSIGNMENT_COLUMNS, OFFER_SUMMARY_COLUMNS
from optimizer.io.validate import Inputs
from optimizer.model.channels import plan_channels
from optimizer.model.problem import AssignmentProblem, Solution


def assignments_frame(inputs: Inputs, problem: AssignmentProblem, solution: Solution
                      ) -> pl.DataFrame:
    """One row per assigned pair: customer_id, rank, offer_id, p_redeem, expected_cost, score
    (and channel_id, the pair's channel, when the inputs have channels)."""
    parts: dict[str, list[np.ndarray]] = {"c": [], "o": [], "p_redeem": [], "expected_cost": [],
                                          "score": [], "k": []}
    channel = plan_channels(solution.chosen)
    for index, (block, chosen) in enumerate(zip(problem.blocks, solution.chosen)):
        rows, slots = np.nonzero(chosen)
        if channel is not None:
            parts["k"].append(channel[index][rows, slots])
        parts["c"].append(block.customers[rows])
        parts["o"].append(block.offer[rows, slots])
        parts["p_redeem"].append(block.p_redeem[rows, slots])
        parts["expected_cost"].append(block.cost[rows, slots])
        parts["score"].append(block.value[rows, slots])
    columns = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in parts.items()}
    frame = pl.DataFrame({
        "c": columns["c"].astype(np.int64), "o": columns["o"].astype(np.int64),
        "p_redeem": columns["p_redeem"].astype(np.float64),
        "expected_cost": columns["expected_cost"].astype(np.float64),
        "score": columns["score"].astype(np.float64),
    })
    if problem.channels is not None:
        names = pl.Series(problem.channels.names, dtype=pl.Utf8)
        frame = frame.with_columns(names.gather(columns["k"].astype(np.int64)).alias("channel_id"))
    frame = (frame.sort(["c", "score", "o"], descending=[False, True, False])
             .with_columns(pl.int_range(1, pl.len() + 1).over("c").cast(pl.Int64).alias("rank")))
    customer_ids = inputs.customers.get_column("customer_id")
    offer_ids = inputs.offers.get_column("offer_id")
    extra = ["channel_id"] if problem.channels is not None else []
    return frame.select(
        customer_ids.gather(frame.get_column("c")).alias("customer_id"),
        pl.col("rank"),
        offer_ids.gather(frame.get_column("o")).alias("offer_id"),
        "p_redeem", "expected_cost", "score", *extra,
    ).select(ASSIGNMENT_COLUMNS + extra)


def offers_summary_frame(inputs: Inputs, problem: AssignmentProblem, assignments: pl.DataFrame,
                         solution: Solution) -> pl.DataFrame:
    """Per offer: customers, expected redemptions and cost, budget (scaled) and its use."""
    offers = problem.offers
    # sums added in the assignments' (sorted) row order with numpy, not by a parallel group-by
    # whose summation order can vary from run to run: byte-identical outputs
    o = (assignments.select("offer_id")
         .join(inputs.offers.select("offer_id", "o"), on="offer_id", how="left",
               maintain_order="left")
         .get_column("o").to_numpy().astype(np.int64))
    n_offers = inputs.n_offers
    per_offer = pl.DataFrame({
        "offer_id": inputs.offers.get_column("offer_id"),
        "customers": np.bincount(o, minlength=n_offers).astype(np.int64),
        "expected_redemptions": np.bincount(
            o, weights=assignments.get_column("p_redeem").to_numpy(), minlength=n_offers),
        "expected_cost": np.bincount(
            o, weights=assignments.get_column("expected_cost").to_numpy(), minlength=n_offers),
    }).filter(pl.col("customers") > 0)
    budget = np.where(np.isfinite(offers.budget), offers.budget, np.nan)
    max_customers = np.where(np.isfinite(offers.max_customers), offers.max_customers, np.nan)
    base = pl.DataFrame({
        "offer_id": inputs.offers.get_column("offer_id"),
        "budget": pl.Series(budget).fill_nan(None),
        "min_customers": pl.Series(offers.min_customers, dtype=pl.Int64),
        "max_customers": pl.Series(max_customers).fill_nan(None).cast(pl.Int64),
        # the offer's own budget's dual price; the global budget's is the manifest's
        # dual_prices.global_budget (one definition each, see docs/contract.md)
        "shadow_price": np.where(np.isfinite(offers.budget), solution.prices.budget, 0.0),
    })
    frame = base.join(per_offer, on="offer_id", how="left", maintain_order="left").with_columns(
        pl.col("customers").fill_null(0), pl.col("expected_redemptions").fill_null(0.0),
        pl.col("expected_cost").fill_null(0.0),
    )
    return frame.with_columns(
        pl.when(pl.col("budget") > 0).then(pl.col("expected_cost") / pl.col("budget"))
        .otherwise(None).alias("budget_used"),
        (pl.col("min_customers") - pl.col("customers")).clip(lower_bound=0).alias("shortfall"),
    ).select(OFFER_SUMMARY_COLUMNS)


def customers_frame(inputs: Inputs, clv: np.ndarray) -> pl.DataFrame:
    """Per customer: customer_id, clv (lifetime value the run used), clv_decile (1 = lowest tenth
    of customers by clv, 10 = highest; ties broken by input order). Unknown (NaN) values, e.g.
    on the ``scores`` path without ``customers.clv``, are left empty and not ranked."""
    known = ~np.isnan(clv)
    order = np.flatnonzero(known)[np.argsort(clv[known], kind="stable")]
    decile = np.zeros(clv.shape[0], dtype=np.int64)
    decile[order] = np.arange(order.size) * 10 // max(order.size, 1) + 1
    return pl.DataFrame({
        "customer_id": inputs.customers.get_column("customer_id"),
        "clv": pl.Series(np.where(known, clv, np.nan).astype(np.float64)).fill_nan(None),
        "clv_decile": pl.Series(decile).replace(0, None),
    })
