"""Are the planned offers inside the training support of the default model? A diagnostic of the
real-data benchmark (benchmarks/README.md, "Real data", "Training support"), development weeks
only.

For a planning week W the default (repurchase) model is fitted as ``offeropt run`` fits it
(``cj_features.scored_rows``), and every household x open coupon is scored. It reports:

* each kept feature's range on the training sends against its values on the plan's rows, for
  all open coupons and for the "broad" ones (more products than any offer of a training send:
  campaign 8's department coupons in weeks 20-26), with the share of rows outside the range and
  beyond the training sends' 99th percentile;
* calibration by breadth: the model's summed ``p_redeem`` (the popularity factor in) against
  the truth pairs, narrow and broad coupons, each broad coupon's truth pairs in its top
  ``max_customers`` households;
* the breadth-relative purchase lift (her weeks buying the offer's products against what her
  shopping weeks and everyone's share of shopping weeks with them predict,
  ``log((n + 1) / (weeks x share + 1))``) as a pair term beside the kept set (``core_plus``) or
  instead of ``product_log`` (``core_swap``), dense (every pair) or sparse (0 where she never
  bought the products, as the product's sparse pair term would hold it): each refitted on the
  training sends, judged by the held-out check's AUC (every fourth household's sends) and by
  top-5 recall of the truth within her open coupons (no solver, the popularity factor in; these
  refits score without the clipping to the training range that the product applies).

    python benchmarks/cj_support.py --weeks 20,21,22,23,24
    python benchmarks/cj_support.py --weeks 25,26,27,28,29,30
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cj_features import prepare, run_development_weeks, scored_rows  # noqa: E402
from completejourney import LIST_SIZE  # noqa: E402
from stamp import write_result  # noqa: E402

import optimizer.scoring.repurchase as rp  # noqa: E402
from optimizer.scoring.ranking_stats import auc  # noqa: E402
from optimizer.scoring.repurchase_fit import logistic, top_k_recall  # noqa: E402


def purchase_lift(s: rp.Sources, c: np.ndarray, o: np.ndarray, t: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pair as of weeks ``t``: the lift ``log((n + 1) / (weeks x share + 1))`` with ``n`` her
    weeks buying the offer's products, ``weeks`` her shopping weeks and ``share`` everyone's
    share of shopping weeks with a purchase of them (all before ``t``); ``n``; ``share``."""
    shops = s.shop.before(c, t)[0]
    n_p = s.product.before(c.astype(np.int64) * s.n_offers + o, t)[0]
    offer = (s.product.keys // rp._SHIFT) % s.n_offers
    week = s.product.keys % rp._SHIFT - 2**20
    shop_week = s.shop.keys % rp._SHIFT - 2**20
    share = np.zeros(c.size)
    for tt in np.unique(t):  # a few distinct weeks: the sends' and the plan's
        at = t == tt
        counts = np.bincount(offer[week < tt], minlength=s.n_offers)
        share[at] = counts[o[at]] / max(int(np.sum(shop_week < tt)), 1)
    return np.log((n_p + 1.0) / (shops * share + 1.0)), n_p, share


def _support(r: Any, X_train: np.ndarray, X: np.ndarray, broad: np.ndarray,
             ids: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in rp.CORE[1:]:
        j = rp.NAMES.index(name)
        lo, hi = float(X_train[:, j].min()), float(X_train[:, j].max())
        p99 = float(np.quantile(X_train[:, j], 0.99))
        row: dict[str, Any] = {"train": [lo, hi], "train_p99": p99,
                               "plan_max": float(X[:, j].max()),
                               "outside_share": float(np.mean((X[:, j] < lo) | (X[:, j] > hi)))}
        for b in broad:
            m = r.o == b
            row[str(ids[b])] = {"max": float(X[m, j].max()),
                                "outside_share": float(np.mean(X[m, j] > hi)),
                                "above_p99_share": float(np.mean(X[m, j] > p99))}
        out[name] = row
    return out


def run_week(raw: Any, week: int, out: Path) -> dict[str, Any]:
    """The support, calibration by breadth and the lift candidates of one week."""
    folder, info = prepare(raw, week, out)
    r = scored_rows(folder, week)
    if r.train is None or not isinstance(r.fitted, rp.Repurchase):
        return {"skipped": "no repurchase fit"}
    s = r.sources
    c, o, t, y = r.train
    X_train = rp.design(s, c, o, t)
    t_plan = np.full(r.c.size, week, np.int64)
    X = rp.design(s, r.c, r.o, t_plan)
    op = r.inputs.offer_products
    n_products = np.bincount(op.get_column("o").to_numpy(), minlength=r.inputs.n_offers)
    ids = r.inputs.offers.get_column("offer_id").to_numpy()
    open_now = np.unique(r.o)
    broad = open_now[n_products[open_now] > n_products[np.unique(o)].max()]
    p = 1.0 / (1.0 + np.exp(-r.logit))
    cap = r.inputs.offers.get_column("max_customers").fill_null(r.inputs.n_customers).to_numpy()
    narrow = ~np.isin(r.o, broad)
    calibration: dict[str, Any] = {"narrow": {"sum_p": float(p[narrow].sum()),
                                              "truth": int(r.y[narrow].sum())}}
    for b in broad:
        m = r.o == b
        top = np.argsort(-p[m], kind="stable")[:int(cap[b])]
        calibration[str(ids[b])] = {"products": int(n_products[b]), "sum_p": float(p[m].sum()),
                                    "truth": int(r.y[m].sum()),
                                    "truth_in_top_max_customers": int(r.y[m][top].sum())}
    lift_train, n_train, share_train = purchase_lift(s, c, o, t)
    lift_plan, n_plan, share_plan = purchase_lift(s, r.c, r.o, t_plan)
    core = [rp.NAMES.index(n) for n in rp.CORE]
    at_log = core.index(rp.NAMES.index("product_log"))
    late = c % 4 == 0
    variants: dict[str, Any] = {}
    for mode in ("dense", "sparse"):
        lt = lift_train if mode == "dense" else np.where(n_train > 0, lift_train, 0.0)
        lp = lift_plan if mode == "dense" else np.where(n_plan > 0, lift_plan, 0.0)
        swap_t, swap_p = X_train[:, core].copy(), X[:, core].copy()
        swap_t[:, at_log], swap_p[:, at_log] = lt, lp
        sets = {"core": (X_train[:, core], X[:, core]), f"core_swap_{mode}": (swap_t, swap_p),
                f"core_plus_{mode}": (np.column_stack([X_train[:, core], lt]),
                                      np.column_stack([X[:, core], lp]))}
        for name, (A, B) in sets.items():
            beta, _ = logistic(A[~late], y[~late])
            held_out = auc(A[late] @ beta, y[late])
            beta, _ = logistic(A, y)
            eta = B @ beta + r.bump
            variants[name] = {"held_out_auc": held_out, "coef": np.round(beta, 4).tolist(),
                              "top5_recall": top_k_recall(eta, r.c, r.y, LIST_SIZE)}
    print(f"week {week}: " + "; ".join(f"{k} auc {v['held_out_auc']:.4f} top-5 "
                                       f"{v['top5_recall']:.3f}" for k, v in variants.items()),
          flush=True)
    return {"truth_pairs": info["truth_pairs"], "train_sends": int(y.size),
            "train_redemptions": int(y.sum()),
            "max_products_of_a_training_offer": int(n_products[np.unique(o)].max()),
            "support": _support(r, X_train, X, broad, ids), "calibration": calibration,
            "share_of_shopping_weeks": {"train_max": float(share_train.max()),
                                        "plan_broad": sorted({round(float(x), 3) for x in
                                                              share_plan[~narrow]})},
            "lift_variants": variants}


def main(argv: list[str] | None = None) -> int:
    """Run the weeks (development weeks only), write the stamped JSON and print the means."""
    ran = run_development_weeks(__doc__ or "", Path("benchmarks/out/cj_features"), argv,
                                run_week)
    if ran is None:
        return 2
    args, weeks, stamped, per_week = ran
    fitted = [r for r in per_week.values() if "lift_variants" in r]
    mean = {k: {m: float(np.mean([r["lift_variants"][k][m] for r in fitted]))
                for m in ("held_out_auc", "top5_recall")}
            for k in (fitted[0]["lift_variants"] if fitted else {})}
    path = write_result("cj_support", f"w{weeks[0]}-{weeks[-1]}",
                        {**stamped, "weeks": per_week, "mean_over_weeks": mean}, args.results)
    for k, v in mean.items():
        print(f"{k:18s} held-out auc {v['held_out_auc']:.4f} top-5 recall {v['top5_recall']:.3f}")
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
