"""Backtest the customer-first scoring on held-out weeks against offer-first habits.

``run_backtest(scenario, holdout_weeks)`` fits everything (features, lifetime value, propensity)
on the weeks before ``cutoff = week - holdout_weeks`` exactly as a run planning week ``cutoff``
would, then builds the lists it would have sent: each customer's best eligible offers at ``cutoff``
by score, as many as her cap (``max_offers_per_customer`` lowered by the frequency window) and at
most ``max_offers_per_category`` per category (a greedy pass down her ranking; budgets and
``max_customers`` are not applied, so this measures the ranking, not the solver). Two baselines
get lists of the same sizes under the same rules: the most popular offers (by redemptions before
the cutoff; sends, then category buyers, when absent) and random eligible offers (seeded by
``solver.seed``).

Outcomes in weeks ``cutoff .. week - 1``: redemptions (``recall`` = share of all of them that were
on the lists, ``precision`` = share of list pairs redeemed), the redemption rate of the listed
pairs that were actually sent (``redeemed_when_sent``: offers can only be redeemed where a campaign
sent them, so this is the like-for-like rate; ``redemptions_if_sent`` = list pairs x that rate, the
redemptions the lists would have brought had they been sent, valid when campaigns chose offers
without regard to each customer's response), and category purchases (she bought one of the
offer's categories). Raw ``recall`` favours whatever the past campaigns sent most (the popular
baseline copies their habit), which is why the like-for-like columns come with it. Calibration: sent pairs of the holdout in deciles of predicted ``p_redeem``,
mean prediction against the observed redemption rate.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .config import Scenario
from .eligibility import compile_rules, customer_caps
from .errors import ScenarioError
from .features import offer_categories
from .output import json_writer, write_files
from .scoring import bought_categories, fit_scoring
from .validate import Inputs, load_inputs

METHODS = ("fitted", "popular", "random")


@dataclass
class BacktestResult:
    """``table``: one row per method; ``calibration``: one row per decile; ``info``: the setup
    and the fitted models' descriptions."""

    table: pl.DataFrame
    calibration: pl.DataFrame
    info: dict[str, Any]


def _keys(frame: pl.DataFrame | None, start: int, stop: int, n_offers: int) -> np.ndarray:
    if frame is None:
        return np.zeros(0, dtype=np.int64)
    rows = frame.filter((pl.col("week") >= start) & (pl.col("week") < stop))
    return np.unique(rows.get_column("c").to_numpy().astype(np.int64) * n_offers
                     + rows.get_column("o").to_numpy())


def _popularity(inputs: Inputs, cutoff: int, cat_matrix: Any) -> tuple[np.ndarray, str]:
    for name in ("redemptions", "history"):
        table = getattr(inputs, name)
        if table is not None and table.filter(pl.col("week") < cutoff).height:
            o = table.filter(pl.col("week") < cutoff).get_column("o").to_numpy()
            return np.bincount(o, minlength=inputs.n_offers).astype(float), name
    bought = _bought(inputs, cat_matrix, -(2**31), cutoff)
    buyers = np.asarray(bought.sum(axis=0)).ravel()
    return buyers, "category buyers"


def _bought(inputs: Inputs, cat_matrix: Any, start: int, stop: int) -> Any:
    """``(n_customers, n_offers)`` sparse: she bought one of the offer's categories."""
    model, categories = cat_matrix
    return bought_categories(inputs, categories, start, stop) @ model


def top_lists(score: np.ndarray, allowed: np.ndarray, caps: np.ndarray, cat_table: np.ndarray,
              per_category: int | None) -> np.ndarray:
    """Mask of each row's best allowed offers: at most ``caps[row]`` and ``per_category`` per
    category, greedily down the ranking (a loop over ranks, vectorised over customers)."""
    n, m = score.shape
    chosen = np.zeros((n, m), dtype=bool)
    depth = min(m, int(caps.max(initial=0)) * (4 if per_category is not None else 1) + 1)
    if depth == 0 or n == 0:
        return chosen
    masked = np.where(allowed, score, -np.inf)
    order = np.argsort(-masked, axis=1, kind="stable")[:, :depth]
    taken = np.zeros(n, dtype=np.int64)
    n_cats = int(cat_table.max(initial=-1)) + 2
    per_cat = np.zeros((n, n_cats), dtype=np.int64)
    rows = np.arange(n)
    for j in range(depth):
        o = order[:, j]
        ok = np.isfinite(masked[rows, o]) & (taken < caps)
        cats = cat_table[o]  # (n, width), -1 = none -> the last (unused) column
        if per_category is not None:
            ok &= ((np.take_along_axis(per_cat, cats, axis=1) < per_category) | (cats < 0)).all(1)
        chosen[rows[ok], o[ok]] = True
        taken += ok
        for w in range(cats.shape[1]):
            k = cats[:, w]
            hit = ok & (k >= 0)
            per_cat[rows[hit], k[hit]] += 1
    return chosen


def run_backtest(scenario: Scenario, holdout_weeks: int) -> BacktestResult:
    """Fit before ``week - holdout_weeks`` and score the lists on the held-out weeks."""
    if holdout_weeks < 1:
        raise ScenarioError("--holdout-weeks must be at least 1")
    inputs = load_inputs(scenario.data)
    cutoff, week = scenario.week - holdout_weeks, scenario.week
    cats = offer_categories(inputs)
    scoring = fit_scoring(inputs, scenario, cats, cutoff)
    model = scoring.model
    rules = compile_rules(inputs, scenario.rules, cutoff, cats)
    caps, _ = customer_caps(inputs, scenario.rules, cutoff)
    n_offers = inputs.n_offers
    cat_matrix = (model.offer_categories_, model.features_.categories)
    popularity, popular_by = _popularity(inputs, cutoff, cat_matrix)
    popular_score = popularity - np.arange(n_offers) * 1e-9  # ties: lower offer index first
    redeemed = _keys(inputs.redemptions, cutoff, week, n_offers)
    sent = _keys(inputs.history, cutoff, week, n_offers)
    bought = _bought(inputs, cat_matrix, cutoff, week).tocsr()
    rng = np.random.default_rng(scenario.solver.seed)
    counts = {m: dict.fromkeys(("list_pairs", "redeemed", "sent", "redeemed_when_sent",
                                "bought"), 0) for m in METHODS}
    bought_positives = 0
    predicted, observed = [], []
    size = scenario.solver.chunk_size
    for start in range(0, inputs.n_customers, size):
        stop = min(start + size, inputs.n_customers)
        p, value = model.score(start, stop)
        customers = np.arange(start, stop, dtype=np.int64)
        grid = np.broadcast_to(np.arange(n_offers, dtype=np.int64), p.shape)
        allowed = rules.allowed(customers, grid)
        keys = customers[:, None] * n_offers + grid
        is_red, is_sent = np.isin(keys, redeemed), np.isin(keys, sent)
        is_bought = bought[start:stop].toarray() > 0
        bought_positives += int((is_bought & allowed).sum())
        predicted.append(p[is_sent])
        observed.append(is_red[is_sent])
        scores = {"fitted": value, "popular": np.broadcast_to(popular_score, p.shape),
                  "random": rng.random(p.shape)}
        for method, score in scores.items():
            lists = top_lists(score, allowed, caps[start:stop], cats.table,
                              scenario.rules.max_offers_per_category)
            c = counts[method]
            c["list_pairs"] += int(lists.sum())
            c["redeemed"] += int((lists & is_red).sum())
            c["sent"] += int((lists & is_sent).sum())
            c["redeemed_when_sent"] += int((lists & is_sent & is_red).sum())
            c["bought"] += int((lists & is_bought).sum())
    table = _table(counts, redeemed.size, bought_positives)
    calibration = calibration_table(np.concatenate(predicted), np.concatenate(observed))
    info = {"scenario": scenario.name, "week": week, "cutoff": cutoff,
            "holdout_weeks": [cutoff, week - 1], "customers": inputs.n_customers,
            "offers": n_offers, "holdout_redemptions": int(redeemed.size),
            "holdout_sends": int(sent.size), "popular_by": popular_by,
            "lists": "top-k eligible by score under the customer, window and category caps; "
                     "budgets and max_customers not applied",
            "lifetime_value": scoring.lifetime_value, "propensity": scoring.propensity,
            "seconds": scoring.seconds}
    return BacktestResult(table, calibration, info)


def write_backtest(result: BacktestResult, folder: Path) -> list[Path]:
    """Write ``backtest.json`` (setup, table, calibration) and ``backtest.csv`` (the table) into
    ``folder`` (a run folder), each file atomically; returns their paths."""
    data = {**result.info, "table": result.table.to_dicts(),
            "calibration": result.calibration.to_dicts()}
    write_files(folder, {"backtest.json": json_writer(data),
                         "backtest.csv": lambda path: result.table.write_csv(path)})
    return [Path(folder) / "backtest.json", Path(folder) / "backtest.csv"]


def _table(counts: dict[str, dict[str, int]], redemptions: int, bought_positives: int
           ) -> pl.DataFrame:
    rows = []
    for method, c in counts.items():
        pairs = max(c["list_pairs"], 1)
        rows.append({
            "method": method, "list_pairs": c["list_pairs"], "redeemed": c["redeemed"],
            "precision": c["redeemed"] / pairs, "recall": c["redeemed"] / max(redemptions, 1),
            "sent": c["sent"], "redeemed_when_sent": c["redeemed_when_sent"] / max(c["sent"], 1),
            "redemptions_if_sent": c["list_pairs"] * c["redeemed_when_sent"] / max(c["sent"], 1),
            "category_precision": c["bought"] / pairs,
            "category_recall": c["bought"] / max(bought_positives, 1),
        })
    return pl.DataFrame(rows)


def calibration_table(predicted: np.ndarray, observed: np.ndarray, bins: int = 10
                      ) -> pl.DataFrame:
    """Pairs in deciles of predicted probability: count, mean prediction, observed rate."""
    if predicted.size == 0:
        return pl.DataFrame(schema={"decile": pl.Int64, "pairs": pl.Int64,
                                    "predicted": pl.Float64, "observed": pl.Float64})
    order = np.argsort(predicted, kind="stable")
    decile = np.empty(predicted.size, dtype=np.int64)
    decile[order] = np.arange(predicted.size) * bins // predicted.size
    return (pl.DataFrame({"decile": decile + 1, "predicted": predicted,
                          "observed": observed.astype(float)})
            .group_by("decile").agg(pl.len().cast(pl.Int64).alias("pairs"),
                                    pl.col("predicted").mean(), pl.col("observed").mean())
            .sort("decile"))
