"""Fitting the repurchase model (:mod:`optimizer.scoring.repurchase`): training rows, the
logistic fit, and the held-out check that falls back to buy-again.

Training rows (:func:`sent_rows`): every past send, seen as of its send week and as of each of
the :data:`AS_OF_WEEKS` - 1 weeks after it while the offer is still open and she has not yet
redeemed it, labelled by whether she redeems it at or after that week (before the planning
week). A plan is made part way through campaigns, knowing the redemptions so far; seeing each
send only at its first week would never teach the model what those early redemptions
(``offer_redemptions``) say. Every feature of a row is as of the row's own week.

The classifier is an L2-penalised logistic regression (:func:`logistic`): its score splits into
customer + offer + sparse pair terms, so scoring a million customers stays one sparse pass,
and maximum likelihood keeps it calibrated on its rows; the features carry the non-linearity
(``product_log``). A gradient-boosted model (scikit-learn's, say) does not split into such
terms, so it would score every customer x offer pair, and on the real benchmark it would learn
from a few hundred redemptions.

The held-out check (:func:`fit_repurchase`): the rows of the latest weeks (a time slice holding
a quarter of the redemptions; the sends of every fourth customer when that slice is too thin)
are set aside, the model is fitted on the rest, and it is compared with buy-again
(``product_weeks`` then ``category_weeks``) by how many held-out redemptions each puts in the top
:data:`TOP_K` of her offers of that week (recall, as the plan's lists are; AUC recorded too).
Where the model recalls fewer, it keeps buy-again's features only; the manifest records the
figures.

The full model's coefficients are pulled towards a prior (:data:`PRIOR`, :func:`logistic_prior`)
instead of towards 0: on the real benchmark the past sends come mostly from one or two
campaigns, and weights learned from a hundred redemptions of one campaign ranked the next
campaigns' coupons no better than buy-again; the prior is the ranking that did best on the
development weeks, and the data move it as far as their evidence goes.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from scipy import special

from optimizer.io.validate import Inputs
from optimizer.scoring.repurchase import BUY_AGAIN, NAMES, Repurchase, Sources, design

# The coefficients' prior mean (the penalty pulls towards it, not towards 0): the ranking that
# recalled best on the real benchmark's development weeks (benchmarks/completejourney.py, planning
# weeks 20-24, never later than 30): log of her buying share, her discount share on the products,
# smaller offers and offers already being redeemed first. Its pull per training row is
# PRIOR_STRENGTH / (redemptions in the rows): a few hundred redemptions barely move it; thousands
# (the demo) overrule it.
PRIOR = {"product_log": 1.0, "product_discount": 1.1, "offer_size": -0.2,
         "offer_redemptions": 0.3}
PRIOR_STRENGTH = 0.4
AS_OF_WEEKS = 8  # each send is a training row at its week and at most 7 weeks after
TOP_K = 5  # the held-out check counts the redemptions in her top 5 offers of a week


def sent_rows(inputs: Inputs, plain: np.ndarray, start: int, week: int, max_rows: int,
              rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | str:
    """Training rows (module docstring) of the non-sensitive offers first sent in weeks
    ``start .. week - 1``: customer, offer, the row's week, its label and whether it is the
    send's own week; at most ``max_rows`` (seeded sample), or why there are none."""
    if inputs.history is None or inputs.redemptions is None:
        return "redemption: no history and redemptions tables"
    window = (pl.col("week") >= start) & (pl.col("week") < week) & pl.col("o").is_in(plain.tolist())
    sent = (inputs.history.filter(window).group_by("c", "o").agg(pl.col("week").min())
            .sort("c", "o"))
    if sent.height == 0:
        return f"redemption: no offers sent in weeks {start}..{week - 1}"
    redeemed = (inputs.redemptions.filter(window).group_by("c", "o")
                .agg(pl.col("week").min().alias("first"), pl.col("week").max().alias("last")))
    sent = sent.join(redeemed, on=["c", "o"], how="left", maintain_order="left")
    c = sent.get_column("c").to_numpy().astype(np.int64)
    o = sent.get_column("o").to_numpy().astype(np.int64)
    t0 = sent.get_column("week").to_numpy().astype(np.int64)
    first = sent.get_column("first").fill_null(2**40).to_numpy().astype(np.int64)
    last = sent.get_column("last").fill_null(-2**40).to_numpy().astype(np.int64)
    end = inputs.offers.get_column("end_week").cast(pl.Int64).fill_null(week).to_numpy()[o]
    if c.size * AS_OF_WEEKS > max_rows:  # sample sends first: the rows of one send stay together
        keep = np.sort(rng.choice(c.size, max(max_rows // AS_OF_WEEKS, 1), replace=False))
        c, o, t0, first, last, end = c[keep], o[keep], t0[keep], first[keep], last[keep], end[keep]
    step = np.repeat(np.arange(AS_OF_WEEKS, dtype=np.int64)[None, :], c.size, axis=0).ravel()
    send = np.repeat(np.arange(c.size), AS_OF_WEEKS)
    t = t0[send] + step
    # a later row only while the offer is open, before the plan, and not yet redeemed by her
    ok = (step == 0) | ((t < week) & (t <= end[send]) & (first[send] >= t))
    send, t = send[ok], t[ok]
    return c[send], o[send], t, (last[send] >= t).astype(float), step[ok] == 0


def logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-3) -> tuple[np.ndarray, bool]:
    """L2-penalised logistic regression on standardised columns (column 0 = intercept, not
    penalised); returns the coefficients on the original scale and whether it converged."""
    from scipy import optimize
    mean, scale = X.mean(axis=0), X.std(axis=0)
    mean[0], scale[0] = 0.0, 1.0
    constant = scale <= 1e-12
    constant[0] = False
    scale = np.where(constant, 1.0, scale)
    Z = (X - mean) / scale
    Z[:, constant] = 0.0
    n = max(y.size, 1)
    penalty = np.full(X.shape[1], l2)
    penalty[0] = 0.0

    def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = Z @ beta
        nll = float(np.sum(np.logaddexp(0.0, eta) - y * eta)) / n
        grad = Z.T @ (special.expit(eta) - y) / n + 2 * penalty * beta
        return nll + float(penalty @ beta**2), grad
    rate = min(max(float(y.mean()), 1e-6), 1 - 1e-6)
    start = np.zeros(X.shape[1])
    start[0] = np.log(rate / (1 - rate))
    result = optimize.minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    beta = result.x / scale
    beta[0] = result.x[0] - float(np.sum(result.x[1:] * mean[1:] / scale[1:]))
    return beta, bool(result.success) and bool(np.all(np.isfinite(beta)))


def logistic_prior(X: np.ndarray, y: np.ndarray, names: tuple[str, ...],
                   strength: float = PRIOR_STRENGTH) -> tuple[np.ndarray, bool]:
    """Logistic regression (column 0 = intercept) whose coefficients are pulled towards
    :data:`PRIOR` (0 for the names it omits) by ``strength / positives`` x squared distance per
    row, on the features' own scale; the coefficients and whether it converged. Solved on
    standardised columns (the same optimum, reached in far fewer steps)."""
    from scipy import optimize
    prior = np.array([PRIOR.get(n, 0.0) for n in names])
    n = max(y.size, 1)
    strength = strength / max(float(y.sum()), 1.0)
    mean, scale = X.mean(axis=0), X.std(axis=0)
    mean[0], scale[0] = 0.0, 1.0
    scale = np.where(scale <= 1e-12, 1.0, scale)
    Z = (X - mean) / scale
    weight = np.full(X.shape[1], strength) / scale**2  # the penalty of b / scale - prior
    weight[0] = 0.0
    target = prior * scale

    def loss(b: np.ndarray) -> tuple[float, np.ndarray]:
        eta = Z @ b
        gap = b - target
        nll = float(np.sum(np.logaddexp(0.0, eta) - y * eta)) / n
        return (nll + float(weight @ gap**2),
                Z.T @ (special.expit(eta) - y) / n + 2 * weight * gap)
    rate = min(max(float(y.mean()), 1e-6), 1 - 1e-6)
    start = target.copy()
    start[0] = np.log(rate / (1 - rate))
    result = optimize.minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    beta = result.x / scale
    beta[0] = result.x[0] - float(np.sum(result.x[1:] * mean[1:] / scale[1:]))
    return beta, bool(result.success) and bool(np.all(np.isfinite(beta)))


def _fit(X: np.ndarray, y: np.ndarray, names: tuple[str, ...]) -> tuple[np.ndarray, bool]:
    """The full model with the prior; buy-again's features without (they need none)."""
    return logistic_prior(X, y, names) if names == NAMES else logistic(X, y)


def _intercept_shift(eta: np.ndarray, rate: float) -> float:
    """The shift ``d`` with ``mean(expit(eta + d)) == rate`` (0 < rate < 1)."""
    from scipy import optimize
    return float(optimize.brentq(lambda d: float(special.expit(eta + d).mean()) - rate,
                                 -50.0, 50.0))


def auc(score: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN without both classes."""
    from scipy.stats import rankdata
    pos = y > 0
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def top_k_recall(score: np.ndarray, group: np.ndarray, y: np.ndarray, k: int = TOP_K) -> float:
    """Share of the positives ``y`` ranked in the top ``k`` of their ``group`` by ``score``
    (ties broken against them: a constant score earns nothing); NaN without positives."""
    if y.sum() == 0:
        return float("nan")
    order = np.lexsort((y, -score, group))  # within a tie, the positives come last
    g = group[order]
    start = np.flatnonzero(np.concatenate([[True], g[1:] != g[:-1]]))
    position = np.arange(g.size) - np.repeat(start, np.diff(np.concatenate([start, [g.size]])))
    return float(y[order][position < k].sum() / y.sum())


def _split(c: np.ndarray, t: np.ndarray, y: np.ndarray, min_positives: int
           ) -> tuple[np.ndarray, str] | str:
    """Mask of the held-out rows and what they are: the latest weeks holding a quarter of the
    redemptions, else the sends of every fourth customer, when both parts keep enough
    redemptions; else the reason there is none."""
    weeks = np.sort(t[y > 0])
    if weeks.size:
        cut = weeks[int(0.75 * weeks.size)]
        late = t >= cut
        if y[late].sum() >= 10 and y[~late].sum() >= min_positives and cut > t.min():
            return late, f"the rows of weeks {int(cut)} and later"
    late = c % 4 == 0
    if y[late].sum() < 10 or y[~late].sum() < min_positives:
        return (f"too few redemptions to hold out ({int(y[late].sum())} held out, "
                f"{int(y[~late].sum())} to fit)")
    return late, "the sends of every fourth customer"


def _check(X: np.ndarray, c: np.ndarray, t: np.ndarray, y: np.ndarray, late: np.ndarray,
           what: str) -> tuple[bool, dict[str, Any]]:
    """Fit on the rows not ``late``, score the ``late`` ones; whether the model beats buy-again
    there (top-k recall, then AUC) and the figures."""
    beta, ok = _fit(X[~late], y[~late], NAMES)
    simple = [NAMES.index(n) for n in BUY_AGAIN[1:]]
    baseline = X[late][:, simple[0]] + 0.01 * X[late][:, simple[1]]
    fitted = X[late] @ beta if ok else np.zeros(int(late.sum()))
    group = c[late] * 2**21 + t[late]  # her offers of one week
    recall_fitted = top_k_recall(fitted, group, y[late])
    recall_buy_again = top_k_recall(baseline, group, y[late])
    figures: dict[str, Any] = {
        "rows": what, "pairs": int(late.sum()), "positives": int(y[late].sum()), "top_k": TOP_K,
        "recall_fitted": recall_fitted, "recall_buy_again": recall_buy_again,
        "auc_fitted": auc(fitted, y[late]) if ok else float("nan"),
        "auc_buy_again": auc(baseline, y[late])}
    # recall decides (the plans are judged by it); AUC, recorded, would reject ties of recall
    # that a few dozen held-out redemptions cannot separate
    wins = ok and recall_fitted >= recall_buy_again
    return bool(wins), figures


def fit_repurchase(s: Sources, c: np.ndarray, o: np.ndarray, t: np.ndarray, y: np.ndarray,
                   min_positives: int, rate: float, target: str,
                   fresh: np.ndarray | None = None) -> Repurchase | str:
    """Fit on pairs (``c``, ``o``) with features as of weeks ``t`` and labels ``y``; check the
    model on held-out rows first and fall back to buy-again's two features where it does worse
    (module docstring). Returns the model, or why it cannot be fitted."""
    if y.sum() < min_positives or y.sum() == y.size:
        return f"{target}: {int(y.sum())} positives of {y.size} pairs (needs {min_positives})"
    X = design(s, c, o, t)
    info: dict[str, Any] = {"target": target, "pairs": int(y.size), "positives": int(y.sum())}
    names: tuple[str, ...] = NAMES
    split = (_split(c, t, y, min_positives) if target == "redemption"
             else "purchase proxy: not checked")
    if isinstance(split, str):
        info["validation"] = {"skipped": split}
    else:
        wins, info["validation"] = _check(X, c, t, y, *split)
        if not wins:
            names = BUY_AGAIN
            v = info["validation"]
            info["fallback"] = (
                f"the full model did worse than buy-again on {split[1]} (top-{TOP_K} recall "
                f"{v['recall_fitted']:.3f} vs {v['recall_buy_again']:.3f}, AUC "
                f"{v['auc_fitted']:.3f} vs {v['auc_buy_again']:.3f}): buy-again's features only")
    cols = [NAMES.index(n) for n in names]
    beta, ok = _fit(X[:, cols], y, names)
    if not ok:
        return f"{target}: the logistic fit did not converge"
    if fresh is not None and 0 < y[fresh].sum() < fresh.sum():
        # p_redeem is a send's chance from its own week: the later rows (fewer redemptions
        # left to come) teach the ranking, the intercept matches the fresh sends' rate
        beta[0] += _intercept_shift(X[fresh][:, cols] @ beta, float(y[fresh].mean()))
    rows = np.ones(y.size, bool) if fresh is None else fresh
    info["calibration"] = {"rows": "all" if fresh is None else "the sends' own weeks",
                           "mean_predicted": float(rate * special.expit(X[rows][:, cols] @ beta)
                                                   .mean()),
                           "observed_rate": float(rate * y[rows].mean())}
    return Repurchase(names, beta, rate, info)


def proxy_pairs(s: Sources, n_customers: int, plain: np.ndarray, start: int, week: int,
                n_pairs: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sampled customer x offer pairs as of ``start``, labelled by a purchase of the offer's
    products in weeks ``start .. week - 1`` (the proxy where there are no redemptions)."""
    n = int(min(n_pairs, n_customers * plain.size))
    c = np.sort(rng.integers(0, n_customers, n))
    o = plain[rng.integers(0, plain.size, n)]
    pair = c * s.n_offers + o
    after, _, _ = s.product.before(pair, np.full(n, week, np.int64))
    before, _, _ = s.product.before(pair, np.full(n, start, np.int64))
    return c, o, np.full(n, start, np.int64), (after > before).astype(float)
