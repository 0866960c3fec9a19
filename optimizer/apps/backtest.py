"""Backtest the customer-first scoring on held-out weeks against offer-first habits.

``run_backtest(scenario, holdout_weeks)`` fits everything (features, lifetime value, propensity)
on the weeks before ``cutoff = week - holdout_weeks`` exactly as a run planning week ``cutoff``
would, then builds the lists it would have sent: each customer's best eligible offers at ``cutoff``
by score, as many as her cap (``max_offers_per_customer`` lowered by the frequency window) and at
most ``max_offers_per_category`` per category (a greedy pass down her ranking; budgets and
``max_customers`` are not applied, so this measures the ranking, not the solver). Two baselines
get lists of the same sizes under the same rules: the most popular offers (by redemptions before
the cutoff; sends, then category buyers, when absent), buy-again (her share of shopping weeks
with a purchase of the offer's products, then of its categories: :mod:`optimizer.scoring.baselines`) and
random eligible offers (seeded by ``solver.seed``).

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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from optimizer.apps.backtest_stats import calibration_scores, offer_first_picks, with_intervals
from optimizer.apps.pipeline import score_inputs
from optimizer.core.config import Scenario
from optimizer.core.errors import InputError, ScenarioError
from optimizer.core.numerics import group_sums
from optimizer.core.predicate import read_columns
from optimizer.io.runfolder import csv_writer, json_writer, write_run_folder
from optimizer.io.validate import Inputs, load_inputs
from optimizer.model.build import compile_eligibility
from optimizer.report.backtest_page import render_backtest
from optimizer.scoring.baselines import buy_again
from optimizer.scoring.features import PurchaseLines, purchase_lines
from optimizer.scoring.fit import bought_categories

METHODS = ("fitted", "fitted_score", "buy_again", "offer_first", "popular", "random")
COUNTS = ("list_pairs", "logged_redeemed", "sent", "redeemed_when_sent", "bought", "replay_pairs",
          "replay_redeemed")


@dataclass
class BacktestResult:
    """``table``: one row per method; ``calibration``: one row per decile; ``info``: the setup
    and the fitted models' descriptions; ``seconds``: the fit's seconds per step (written to
    ``timings.json`` alone, so the other files are the same bytes at every re-run)."""

    table: pl.DataFrame
    calibration: pl.DataFrame
    info: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


def _keys(frame: pl.DataFrame | None, start: int, stop: int, n_offers: int) -> np.ndarray:
    if frame is None:
        return np.zeros(0, dtype=np.int64)
    rows = frame.filter((pl.col("week") >= start) & (pl.col("week") < stop))
    return np.unique(rows.get_column("c").to_numpy().astype(np.int64) * n_offers
                     + rows.get_column("o").to_numpy())


def _popularity(inputs: Inputs, cutoff: int, cat_matrix: Any,
                lines: PurchaseLines) -> tuple[np.ndarray, str]:
    for name in ("redemptions", "history"):
        table = getattr(inputs, name)
        if table is not None and table.filter(pl.col("week") < cutoff).height:
            o = table.filter(pl.col("week") < cutoff).get_column("o").to_numpy()
            return np.bincount(o, minlength=inputs.n_offers).astype(float), name
    bought = _bought(inputs, lines, cat_matrix, -(2**31), cutoff)
    buyers = np.asarray(bought.sum(axis=0)).ravel()
    return buyers, "category buyers"


def _bought(inputs: Inputs, lines: PurchaseLines, cat_matrix: Any, start: int,
            stop: int) -> Any:
    """``(n_customers, n_offers)`` sparse: she bought one of the offer's categories in weeks
    ``[start, stop)`` (``lines`` must reach ``stop``)."""
    model, _ = cat_matrix  # its rows are the products' sorted categories, as the lines' are
    return bought_categories(lines, inputs.n_customers, start, stop) @ model


def top_lists(score: np.ndarray, allowed: np.ndarray, caps: np.ndarray, cat_table: np.ndarray,
              per_category: int | None) -> np.ndarray:
    """Mask of each row's best allowed offers: at most ``caps[row]`` and ``per_category`` per
    category, greedily down the whole ranking until the row is full or out of allowed offers (a
    loop over ranks, vectorised over the rows still filling), so every method gets the same list
    sizes whenever it has enough allowed offers."""
    n, m = score.shape
    chosen = np.zeros((n, m), dtype=bool)
    if n == 0 or m == 0:
        return chosen
    masked = np.where(allowed, score, -np.inf)
    order = np.argsort(-masked, axis=1, kind="stable")
    taken = np.zeros(n, dtype=np.int64)
    per_cat = np.zeros((n, int(cat_table.max(initial=-1)) + 2), dtype=np.int64)
    active = np.flatnonzero(caps > 0)
    for j in range(m):
        if active.size == 0:
            break
        o = order[active, j]
        live = np.isfinite(masked[active, o])
        ok = live.copy()
        cats = cat_table[o]  # (rows, width), -1 = none -> the last (unused) column
        if per_category is not None:
            ok &= ((np.take_along_axis(per_cat[active], cats, axis=1) < per_category)
                   | (cats < 0)).all(1)
        chosen[active[ok], o[ok]] = True
        taken[active] += ok
        for w in range(cats.shape[1]):
            hit = ok & (cats[:, w] >= 0)
            per_cat[active[hit], cats[hit, w]] += 1
        active = active[live & (taken[active] < caps[active])]
    return chosen


def replay_units(inputs: Inputs, cutoff: int, week: int) -> tuple[np.ndarray, ...]:
    """The sends of weeks ``cutoff .. week - 1`` (one per customer, offer and week), sorted by
    customer: ``(c, o, redeemed)``. A redemption is credited to the latest send of that offer to
    her in its week or before (``join_asof``), so a pair sent twice is two chances, each judged
    on its own outcome."""
    empty = (np.zeros(0, np.int64),) * 2 + (np.zeros(0, bool),)
    if inputs.history is None:
        return empty
    held = (pl.col("week") >= cutoff) & (pl.col("week") < week)
    sends = (inputs.history.filter(held).select(pl.col("c").cast(pl.Int64),
                                                pl.col("o").cast(pl.Int64), "week")
             .unique().sort("week", "c", "o"))
    if sends.height == 0:
        return empty
    if inputs.redemptions is not None:
        reds = (inputs.redemptions.filter(held)
                .select(pl.col("c").cast(pl.Int64), pl.col("o").cast(pl.Int64), "week")
                .unique().sort("week", "c", "o"))
        credited = (reds.join_asof(sends.with_columns(pl.col("week").alias("sent_week")),
                                   on="week", by=["c", "o"], strategy="backward",
                                   check_sortedness=False)  # sorted by week above
                    .drop_nulls("sent_week").select("c", "o", pl.col("sent_week").alias("week"),
                                                    pl.lit(True).alias("redeemed")).unique())
        sends = sends.join(credited, on=["c", "o", "week"], how="left")
    else:
        sends = sends.with_columns(pl.lit(None, pl.Boolean).alias("redeemed"))
    sends = sends.sort("c", "o", "week")
    return (sends.get_column("c").to_numpy(), sends.get_column("o").to_numpy(),
            sends.get_column("redeemed").fill_null(False).to_numpy())


def better_half(c: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Mask of the units each customer ranks highest: ``floor(n / 2)`` of her ``n`` (``c`` sorted
    ascending; ties keep the earlier unit)."""
    order = np.lexsort((np.arange(c.size), -score, c))
    starts = np.searchsorted(c, c[order], side="left")
    n = np.searchsorted(c, c[order], side="right") - starts
    rank = np.arange(c.size) - starts
    kept = np.zeros(c.size, dtype=bool)
    kept[order] = rank < n // 2
    return kept


def _choosers(c: np.ndarray) -> np.ndarray:
    """Units of customers with at least two (the only ones a half can choose among)."""
    n = np.searchsorted(c, c, side="right") - np.searchsorted(c, c, side="left")
    return n >= 2


# how to read the backtest's figures (backtest.json)
_READING = {
    "lists": "top-k eligible by each method's score under the customer, window and category caps, "
             "unconstrained by budgets and max_customers (a ranking, not the solver's plan); "
             "fitted ranks by p_redeem, fitted_score by the planning score "
             "(p_redeem x worth x clv factor)",
    "replay": "per customer, the eligible offers she was sent in the held-out weeks; each method "
              "keeps the better half (floor(n/2), customers with >= 2)",
    "intervals": "95% bootstrap over customers (recall_lo/hi, precision_lo/hi; log loss and Brier "
                 "score of p_redeem on the held-out sends)",
    "offer_first": "each offer picks its best customers by p_redeem up to its quota (its "
                   "max_customers, at most an equal share of the customers' caps), then each "
                   "customer keeps her caps' worth of those picks",
}


def _count(c: dict[str, int], lists: np.ndarray, is_red: np.ndarray, is_sent: np.ndarray,
           is_bought: np.ndarray, kept: np.ndarray, ured: np.ndarray) -> None:
    """Add one chunk's counts of one method: its lists against the logged redemptions, sends
    and purchases, and its replay's kept and redeemed units."""
    c["list_pairs"] += int(lists.sum())
    c["logged_redeemed"] += int((lists & is_red).sum())
    c["sent"] += int((lists & is_sent).sum())
    c["redeemed_when_sent"] += int((lists & is_sent & is_red).sum())
    c["bought"] += int((lists & is_bought).sum())
    c["replay_pairs"] += int(kept.sum())
    c["replay_redeemed"] += int((kept & ured).sum())


def run_backtest(scenario: Scenario, holdout_weeks: int) -> BacktestResult:
    """Fit before ``week - holdout_weeks`` and score the lists on the held-out weeks."""
    if holdout_weeks < 1:
        raise ScenarioError("--holdout-weeks must be at least 1")
    inputs = load_inputs(scenario.data, customer_columns=read_columns(
        [r.require for r in scenario.rules.eligibility]), scores_url=scenario.scores_url)
    cutoff, week = scenario.week - holdout_weeks, scenario.week
    require_weeks(inputs, cutoff, week)
    # the run's own steps, taken at the cutoff: its scoring and its eligibility
    # (the built-in scoring is what is backtested, fitted even beside a scores table)
    scoring = score_inputs(inputs, scenario, cutoff, fit=True)
    cats, model = scoring.cats, scoring.model
    assert model is not None  # fit=True
    rules, caps, _ = compile_eligibility(inputs, scenario.rules, cutoff, cats)
    n_offers = inputs.n_offers
    cat_matrix = (model.offer_categories_, model.features_.categories)
    lines = purchase_lines(inputs, (), week)  # built once: both uses filter their weeks
    popularity, popular_by = _popularity(inputs, cutoff, cat_matrix, lines)
    popular_score = popularity - np.arange(n_offers) * 1e-9  # ties: lower offer index first
    # her share of shopping weeks buying the offer's products, then its categories; ties by
    # popularity (:mod:`optimizer.scoring.baselines`)
    again = buy_again(inputs, cats, cutoff)
    tie = popular_score / max(float(np.abs(popular_score).max(initial=0.0)), 1e-12) * 1e-6
    redeemed = _keys(inputs.redemptions, cutoff, week, n_offers)
    sent = _keys(inputs.history, cutoff, week, n_offers)
    bought = _bought(inputs, lines, cat_matrix, cutoff, week).tocsr()
    del lines
    units = replay_units(inputs, cutoff, week)
    rng = np.random.default_rng(scenario.solver.seed)
    counts = {m: dict.fromkeys(COUNTS, 0) for m in METHODS}
    totals = dict.fromkeys(("bought", "replay_redeemed"), 0)
    predicted, observed, sent_by = [], [], []
    size = scenario.solver.chunk_size
    picks = _offer_first(model, rules, inputs, caps, cutoff, size)
    per_customer = {m: {k: np.zeros(inputs.n_customers) for k in ("hits", "pairs", "relevant")}
                    for m in METHODS}
    for start in range(0, inputs.n_customers, size):
        stop = min(start + size, inputs.n_customers)
        p, value = model.score(start, stop)
        customers = np.arange(start, stop, dtype=np.int64)
        grid = np.broadcast_to(np.arange(n_offers, dtype=np.int64), p.shape)
        allowed = rules.allowed(customers, grid)
        keys = customers[:, None] * n_offers + grid
        is_red, is_sent = np.isin(keys, redeemed), np.isin(keys, sent)
        is_bought = bought[start:stop].toarray() > 0
        picked = picks[start:stop].toarray()
        totals["bought"] += int((is_bought & allowed).sum())
        predicted.append(p[is_sent])
        observed.append(is_red[is_sent])
        sent_by.append(np.nonzero(is_sent)[0] + start)
        lo, hi = np.searchsorted(units[0], [start, stop])
        uc, uo, ured = units[0][lo:hi] - start, units[1][lo:hi], units[2][lo:hi]
        ok = allowed[uc, uo]
        uc, uo, ured = uc[ok], uo[ok], ured[ok]
        scores = {"fitted": p, "fitted_score": value,
                  "buy_again": again[start:stop].toarray() + tie[None, :],
                  "offer_first": p + 2.0 * picked,  # its picks first (p <= 1)
                  "popular": np.broadcast_to(popular_score, p.shape), "random": rng.random(p.shape)}
        for method, score in scores.items():
            lists = top_lists(score, allowed & (picked > 0) if method == "offer_first" else allowed,
                              caps[start:stop], cats.table, scenario.rules.max_offers_per_category)
            kept = better_half(uc, score[uc, uo])
            _per_customer(per_customer[method], start, stop, uc, kept, ured)
            _count(counts[method], lists, is_red, is_sent, is_bought, kept, ured)
        totals["replay_redeemed"] += int(ured[_choosers(uc)].sum())
    _require_replay(totals["replay_redeemed"], inputs.n_customers, sent.size, cutoff, week)
    table = with_intervals(_table(counts, redeemed.size, totals), per_customer,
                           scenario.solver.seed)
    calibration = calibration_table(np.concatenate(predicted), np.concatenate(observed))
    scores_ = calibration_scores(np.concatenate(predicted), np.concatenate(observed),
                                 np.concatenate(sent_by), inputs.n_customers, scenario.solver.seed)
    info = {"scenario": scenario.name, "week": week, "cutoff": cutoff,
            "holdout_weeks": [cutoff, week - 1], "customers": inputs.n_customers,
            "offers": n_offers, "holdout_redemptions": int(redeemed.size),
            "holdout_sends": int(sent.size), "popular_by": popular_by, **_READING,
            "lifetime_value": scoring.lifetime_value, "propensity": scoring.propensity,
            "calibration_scores": scores_,
            "fallback": label_fallback(inputs, cutoff, scoring.propensity, popular_by)}
    return BacktestResult(table, calibration, info, dict(scoring.seconds))


def label_fallback(inputs: Inputs, cutoff: int, propensity: dict[str, Any],
                   popular_by: str) -> str | None:
    """What the backtest judges when the weeks before ``cutoff`` hold no redemption (the history
    may hold sends): the scoring was fitted without redemption labels, on the fallback its
    ``propensity`` record names (a purchase proxy), and popular ranks by ``popular_by``; said
    in ``backtest.json``'s ``fallback`` and as a warning. ``None`` when redemptions before the
    cutoff were there to learn from."""
    reds, sends = inputs.redemptions, inputs.history
    if reds is not None and reds.filter(pl.col("week") < cutoff).height:
        return None
    sent = 0 if sends is None else sends.filter(pl.col("week") < cutoff).height
    fitted = propensity.get("model", "heuristic")
    how = propensity.get("fallback") or propensity.get("target") or "no labels"
    return (f"no redemption before the cutoff week {cutoff} ({sent:,} sends before it): the "
            f"scoring was fitted without redemption labels (propensity {fitted}: {how}) and "
            f"popular ranks offers by {'sends' if popular_by == 'history' else popular_by}, so "
            "recall and calibration judge a model trained on a proxy against the held-out "
            "redemptions")


_EVENTS = ("history", "redemptions", "transactions")


def _week_span(inputs: Inputs, name: str) -> tuple[int, int] | None:
    table = getattr(inputs, name)
    if table is None or table.height == 0:
        return None
    weeks = table.get_column("week")
    return int(weeks.min()), int(weeks.max())


def require_weeks(inputs: Inputs, cutoff: int, week: int) -> None:
    """Refuse a backtest with nothing to fit or nothing to measure: the table the fit learns
    from (``history``, the sends, when it has rows, else ``transactions``) holds no row before
    ``cutoff`` (more weeks held out than it holds), or no redemption (the truth the lists are
    judged by) falls in the held-out weeks ``cutoff .. week - 1``."""
    spans = {name: _week_span(inputs, name) for name in _EVENTS}
    held = f"weeks {cutoff}..{week - 1}"
    shown = ", ".join(f"{name} weeks {s[0]}..{s[1]}" if s else f"{name} no rows"
                      for name, s in spans.items())
    asked = (f"--holdout-weeks {week - cutoff} fits on the weeks before {cutoff} and holds out "
             f"{held}")
    fit = next((name for name in ("history", "transactions") if spans[name]), None)
    span = spans[fit] if fit else None
    if fit and span and span[0] >= cutoff:
        most = week - span[0] - 1
        hint = (f"use --holdout-weeks {most} or fewer" if most >= 1 else
                "the data holds no week before the scenario's week to fit on")
        raise InputError(fit, "week", f"{asked}, but {fit} holds weeks {span[0]}..{span[1]}: "
                         f"nothing before the cutoff to fit on ({shown}); {hint}")
    reds = inputs.redemptions
    truth = 0 if reds is None else reds.filter(pl.col("week").is_between(cutoff, week - 1)).height
    if truth == 0:  # recall has no denominator, its intervals no value
        raise InputError("redemptions", "week", f"{asked}, but no redemption falls in {held}: "
                         f"no truth pair, nothing to measure ({shown})")


def _require_replay(redeemed: int, customers: int, sends: int, cutoff: int, week: int) -> None:
    """Refuse a replay with no redeemed send of a customer with a choice (two or more eligible
    held-out sends): its recall has no denominator, its intervals no value (one customer)."""
    if redeemed == 0:
        raise InputError("history", "week", f"no customer has two or more eligible sends in "
                         f"weeks {cutoff}..{week - 1} with one redeemed: the replay has nothing "
                         f"to rank ({customers:,} customers, {sends:,} held-out sends); hold "
                         "out more weeks or add customers")


def _offer_first(model: Any, rules: Any, inputs: Inputs, caps: np.ndarray, cutoff: int,
                 size: int) -> Any:
    """The offer-first picks (:func:`optimizer.apps.backtest_stats.offer_first_picks`) by the
    model's ``p_redeem`` among the pairs the rules allow at ``cutoff``."""
    m = inputs.n_offers
    grid = np.arange(m, dtype=np.int64)

    def chunk(lo: int, hi: int) -> np.ndarray:
        p, _ = model.score(lo, hi)
        allowed = rules.allowed(np.arange(lo, hi, dtype=np.int64), np.broadcast_to(grid, p.shape))
        return np.where(allowed, p, -np.inf)
    offers = inputs.offers
    def week(name: str, missing: float) -> np.ndarray:
        if name not in offers.columns:
            return np.full(m, missing)
        return offers.get_column(name).cast(pl.Float64).fill_null(missing).to_numpy()
    start, end = week("start_week", -np.inf), week("end_week", np.inf)
    eligible = (start <= cutoff) & (cutoff <= end)
    return offer_first_picks(chunk, inputs.n_customers, offers, eligible, int(caps.sum()), size)


def _per_customer(acc: dict[str, np.ndarray], start: int, stop: int, uc: np.ndarray,
                  kept: np.ndarray, redeemed: np.ndarray) -> None:
    """Add one chunk's replay counts per customer: kept units, kept redeemed ones, and the
    redeemed units of customers with a choice (recall's denominator)."""
    n = stop - start
    acc["pairs"][start:stop] += np.bincount(uc[kept], minlength=n)
    acc["hits"][start:stop] += np.bincount(uc[kept & redeemed], minlength=n)
    acc["relevant"][start:stop] += np.bincount(uc[_choosers(uc) & redeemed], minlength=n)


def write_backtest(result: BacktestResult, folder: Path) -> list[Path]:
    """Write the backtest folder ``folder`` whole or not at all: ``backtest.json`` (setup, table,
    calibration), ``backtest.csv`` (the table) and ``backtest.html`` (the page with the recall
    intervals and the reliability chart), the same bytes at every re-run, and ``timings.json``
    (the fit's ``seconds``); returns their paths. The folder is the
    backtest's own (never a run folder, whose next run would delete it)."""
    data = {**result.info, "table": result.table.to_dicts(),
            "calibration": result.calibration.to_dicts()}
    page = render_backtest(result.info, data["table"], data["calibration"])
    writers = {"backtest.json": json_writer(data), "backtest.csv": csv_writer(result.table),
               "backtest.html": lambda path: path.write_text(page, "utf-8"),
               "timings.json": json_writer({"seconds": result.seconds})}
    write_run_folder(Path(folder), writers, kind="backtest")
    return [Path(folder) / name for name in writers]


def _table(counts: dict[str, dict[str, int]], redemptions: int, totals: dict[str, int]
           ) -> pl.DataFrame:
    rows = []
    for method, c in counts.items():
        pairs = max(c["list_pairs"], 1)
        rate = c["redeemed_when_sent"] / max(c["sent"], 1)
        rows.append({
            "method": method, "list_pairs": c["list_pairs"],
            "recall": c["replay_redeemed"] / max(totals["replay_redeemed"], 1),
            "precision": c["replay_redeemed"] / max(c["replay_pairs"], 1),
            "replay_pairs": c["replay_pairs"], "sent": c["sent"], "redeemed_when_sent": rate,
            "redemptions_if_sent": c["list_pairs"] * rate,
            "category_precision": c["bought"] / pairs,
            "category_recall": c["bought"] / max(totals["bought"], 1),
            "logged_recall": c["logged_redeemed"] / max(redemptions, 1),
            "logged_precision": c["logged_redeemed"] / pairs,
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
    sums = group_sums(pl.DataFrame({"decile": decile + 1, "predicted": predicted,
                                    "observed": observed.astype(float)}), ["decile"],
                      {"pairs": pl.lit(1, dtype=pl.Int64), "predicted": pl.col("predicted"),
                       "observed": pl.col("observed")})
    return sums.with_columns(pl.col("predicted", "observed") / pl.col("pairs"))
