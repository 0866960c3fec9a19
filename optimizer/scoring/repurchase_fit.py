"""Fitting the repurchase model (:mod:`optimizer.scoring.repurchase`): the logistic fit, the
held-out check that picks the feature set, and the purchase-proxy pairs.

With redemption labels, the sends of every fourth customer are held out; each feature set of
:data:`~optimizer.scoring.repurchase.LADDER` (the full model, then the core set: buy-again plus
``product_log``, ``product_rarity`` and ``redeemed_log``) is fitted on the rest and ranks them
(AUC). The richest set that ranks them at least as well as buy-again and every smaller set is
fitted on all the sends; where no set does, buy-again's two features. With a hundred redemptions
(the real benchmark) the full model overfits and the core set is kept; with thousands (the demo)
the full model wins.

The same held-out sends are also scored by the heuristic formula (``affinity.model =
"heuristic"``; :meth:`~optimizer.scoring.affinity.AffinityModel.heuristic_pairs`, each send with
her customer features as of its own week, as a plan of that week would have scored it, made by
:mod:`optimizer.scoring.fit`). A higher AUC alone is no reason to plan with the formula: in a
small simulated world (400 customers) it ranked 0.779 against the kept set's 0.751, and planning
with it lost the simulated margin. So the formula replaces the kept set only where it ranks the
held-out sends better with confidence: a paired bootstrap over the held-out customers
(:func:`~optimizer.scoring.ranking_stats.auc_difference`, seeded by ``solver.seed``) of
``AUC(formula) - AUC(kept set)`` whose 95% interval lies above 0. The formula ranks but is not
calibrated, and budgets and expected redemptions use its numbers: where it replaces the model,
its ``p_redeem`` is calibrated on all the training sends by Platt scaling (Platt 1999: a
one-feature logistic regression of the redemptions on the logit of the formula's ``p_redeem``,
:func:`platt`), and no model is fitted (:class:`HeuristicWins`). The manifest's
``propensity.validation`` records every AUC and top-5 recall, the formula's beside the sets', and
the check (``heuristic_check``: the difference, its interval, the resamples, the seed, whether
it switched); ``propensity.fallback`` names both AUCs and the interval where it switched, and
``propensity.calibration`` the Platt parameters.

Platt, J. (1999). Probabilistic outputs for support vector machines and comparisons to
regularized likelihood methods. In Advances in Large Margin Classifiers, MIT Press, 61-74.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from optimizer.core.numerics import fixed_matvec
from optimizer.scoring._pair_kernels import formula_logits, platt_array
from optimizer.scoring.mle import logistic_regression
from optimizer.scoring.ranking_stats import auc, auc_difference
from optimizer.scoring.repurchase import (
    BUY_AGAIN,
    LADDER,
    LADDER_NAMES,
    NAMES,
    PAIR,
    Repurchase,
    Sources,
    design,
)


def logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-3) -> tuple[np.ndarray, bool]:
    """:func:`.mle.logistic_regression`'s coefficients on ``X``'s scale and whether it
    converged to finite ones."""
    beta, result = logistic_regression(X, y, l2)
    return beta, bool(result.success) and bool(np.all(np.isfinite(beta)))


def _split(c: np.ndarray, y: np.ndarray, min_positives: int) -> np.ndarray | str:
    """Mask of the validation pairs: the sends of every fourth customer (a split by customer, as
    the plan ranks offers for customers it has not learned from; the features are point in time
    either way), when both parts keep enough redemptions; else the reason there is none."""
    late = c % 4 == 0
    if y[late].sum() < 10 or y[~late].sum() < min_positives:
        return (f"too few redemptions to hold out ({int(y[late].sum())} held out, "
                f"{int(y[~late].sum())} to fit)")
    return late


HeuristicScore = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class HeuristicWins:
    """The held-out check's verdict that the heuristic formula ranks the held-out sends better,
    with confidence, than the kept feature set: no model is fitted; ``platt``: the formula's
    calibration ``(a, b)`` (:func:`platt`); ``info``: what the manifest records."""

    info: dict[str, Any]
    platt: tuple[float, float]


def fit_repurchase(s: Sources, c: np.ndarray, o: np.ndarray, t: np.ndarray, y: np.ndarray,
                   min_positives: int, rate: float, target: str,
                   heuristic: HeuristicScore | None = None, seed: int = 0
                   ) -> Repurchase | HeuristicWins | str:
    """Fit on pairs (``c``, ``o``) with features as of weeks ``t`` and labels ``y``. With
    redemption labels, each feature set of :data:`LADDER` is first fitted without the sends of
    every fourth customer and ranks them (AUC); the richest set that ranks them at least as well
    as buy-again and as every smaller set is kept, else buy-again's two features (the manifest
    records the figures and the fallback). ``heuristic(c, o, t)``: the heuristic formula's
    ``p_redeem`` of pairs as of weeks ``t``; where it ranks the held-out sends better than the
    kept set with confidence (the module docstring; bootstrap seeded by ``seed``), the calibrated
    formula, :class:`HeuristicWins`, is returned instead of a model. Returns the model, or why it
    cannot be fitted."""
    if y.sum() < min_positives or y.sum() == y.size:
        return f"{target}: {int(y.sum())} positives of {y.size} pairs (needs {min_positives})"
    X = design(s, c, o, t)
    info: dict[str, Any] = {"target": target, "pairs": int(y.size), "positives": int(y.sum())}
    names: tuple[str, ...] = NAMES
    late = _split(c, y, min_positives) if target == "redemption" else "purchase proxy: not checked"
    if isinstance(late, str):
        info["validation"] = {"skipped": late}
    else:
        formula = heuristic(c[late], o[late], t[late]) if heuristic is not None else None
        names, info["validation"], kept_score = _choose(X, y, late, c * 2**21 + t, formula)
        if heuristic is not None and formula is not None:
            wins = _formula_check(info, names, formula, kept_score, y[late], c[late], seed,
                                  lambda: platt(_all_sends(heuristic, c, o, t, late, formula), y))
            if wins is not None:
                return wins
        if names != NAMES:
            full, simple = (info["validation"]["auc"][k] for k in ("full", "buy_again"))
            why = ("the full model's fit did not converge" if full is None
                   else f"the full model ranked the held-out sends worse (AUC {full:.3f}, "
                        f"buy-again {simple:.3f})")
            info["fallback"] = f"{why}: {_label(names)} only"
    cols = [NAMES.index(n) for n in names]
    beta, ok = logistic(X[:, cols], y)
    if not ok:
        return f"{target}: the logistic fit did not converge"
    predicted = special.expit(fixed_matvec(X[:, cols], beta))
    info["calibration"] = {"mean_predicted": float(rate * predicted.mean()),
                           "observed_rate": float(rate * y.mean())}
    return Repurchase(names, beta, rate, info, training_bounds(X[:, cols], names))


def training_bounds(X: np.ndarray, names: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    """Each feature's (low, high) over the training sends' rows ``X`` (columns ``names``), for
    :meth:`~optimizer.scoring.repurchase.Repurchase.clip`. A pair feature's range always holds
    0 (the value of every pair where she never bought the offer's products, which scoring
    leaves out of the sparse pair term), and ``category_weeks`` is bounded by its definition
    (a share capped at 1 in the compiled kernels), so it is not listed."""
    out = {}
    for j, name in enumerate(names):
        if name not in PAIR or name == "category_weeks" or X.shape[0] == 0:
            continue
        lo, hi = float(X[:, j].min()), float(X[:, j].max())
        out[name] = (min(lo, 0.0), max(hi, 0.0))
    return out


def _all_sends(heuristic: HeuristicScore, c: np.ndarray, o: np.ndarray, t: np.ndarray,
               late: np.ndarray, held_out: np.ndarray) -> np.ndarray:
    """The formula's ``p_redeem`` of every training send (the held-out ones already scored)."""
    out = np.empty(c.size)
    out[late] = held_out
    out[~late] = heuristic(c[~late], o[~late], t[~late])
    return out


def _formula_check(info: dict[str, Any], names: tuple[str, ...], formula: np.ndarray,
                   kept_score: np.ndarray, y: np.ndarray, customer: np.ndarray, seed: int,
                   calibrate: Callable[[], dict[str, Any] | str]) -> HeuristicWins | None:
    """Whether the formula replaces the kept set ``names`` (the module docstring): the paired
    bootstrap of the held-out AUCs' difference, recorded as ``validation.heuristic_check``; where
    its 95% interval lies above 0, the formula calibrated on every training send
    (``calibrate()``: :func:`platt`), else ``None``."""
    v = info["validation"]
    kept = "buy_again" if names == BUY_AGAIN else LADDER_NAMES[names]
    check = {"against": kept, **auc_difference(formula, kept_score, y, customer, seed),
             "rule": "the formula replaces the kept set where the 95% interval of its AUC "
                     "difference lies above 0", "switched": False}
    v["heuristic_check"] = check
    if not check["ci95"][0] > 0:  # NaN (no resample with both classes) does not switch either
        check["ci95"] = [x if np.isfinite(x) else None for x in check["ci95"]]
        return None
    calibration = calibrate()
    if isinstance(calibration, str):
        check["not_switched_because"] = calibration
        return None
    check["switched"] = True
    info.update(model="heuristic", calibration=calibration, fallback=(
        f"the heuristic formula ranked the held-out sends better than the fitted model (AUC "
        f"{v['auc']['heuristic']:.3f} against {v['auc'][kept]:.3f} for {_label(names)}; "
        f"difference {check['auc_difference']:.3f}, 95% interval {check['ci95'][0]:.3f} to "
        f"{check['ci95'][1]:.3f}): the heuristic formula, calibrated (Platt scaling, a = "
        f"{calibration['a']:.4g}, b = {calibration['b']:.4g})"))
    return HeuristicWins(info, (calibration["a"], calibration["b"]))


def platt(score: np.ndarray, y: np.ndarray) -> dict[str, Any] | str:
    """Platt scaling (Platt 1999) of the heuristic formula's ``p_redeem`` ``score`` on the
    labelled sends ``y``: the maximum-likelihood logistic regression of ``y`` on
    ``logit(score)`` (:func:`~optimizer.scoring._pair_kernels.formula_logit`), whose
    ``1 / (1 + exp(-(a + b * logit(p))))`` the calibrated scorers compute
    (:func:`~optimizer.scoring._pair_kernels.platt`). Returns ``a``, ``b`` and the fit's figures
    for the manifest, or why it cannot calibrate: a slope ``b`` not above 0 would reverse the
    ranking the held-out check judged."""
    x = formula_logits(np.ascontiguousarray(score, dtype=float))
    beta, ok = logistic(np.column_stack([np.ones(x.size), x]), y, l2=0.0)
    if not ok:
        return "Platt scaling of the formula did not converge"
    a, b = float(beta[0]), float(beta[1])
    if not b > 0:
        return f"Platt scaling of the formula gave slope {b:.4g} (not above 0)"
    return {"calibrated": True, "method": "Platt (1999) scaling on the training sends",
            "p_redeem": "1 / (1 + exp(-(a + b * logit(formula p_redeem))))", "a": a, "b": b,
            "pairs": int(y.size), "positives": int(y.sum()),
            "formula_mean": float(np.mean(score)),
            "mean_predicted": float(platt_array(np.ascontiguousarray(score, dtype=float), a, b)
                                    .mean()),
            "observed_rate": float(y.mean())}


def _label(names: tuple[str, ...]) -> str:
    if names == NAMES:
        return "the full model's features"
    return ("buy-again's features" if names == BUY_AGAIN
            else f"the {LADDER_NAMES[names]} features")


TOP_K = 5  # the held-out check counts the redemptions in her top 5 offers of a week


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


def _choose(X: np.ndarray, y: np.ndarray, late: np.ndarray, group: np.ndarray,
            heuristic: np.ndarray | None = None
            ) -> tuple[tuple[str, ...], dict[str, Any], np.ndarray]:
    """The feature set to keep (:func:`fit_repurchase`), the held-out figures and the kept set's
    scores of the held-out pairs: each set is judged by AUC; the share of held-out redemptions
    it ranks in the top :data:`TOP_K` of her offers of a week (``group``) is recorded beside it,
    and both figures of the heuristic formula's scores of the held-out pairs (``heuristic``, when
    given). Recall does not decide: on the real benchmark the full model recalled the held-out
    past sends best yet planned the next campaign worse than the core set, which AUC kept
    (benchmarks/README.md)."""
    simple = [NAMES.index(n) for n in BUY_AGAIN[1:]]
    g, yl = group[late], y[late]
    baseline = X[late][:, simple[0]] + 0.01 * X[late][:, simple[1]]
    recall = {"buy_again": top_k_recall(baseline, g, yl)}
    aucs = {"buy_again": auc(baseline, yl)}
    best, kept = aucs["buy_again"], baseline
    names: tuple[str, ...] = BUY_AGAIN
    for candidate in reversed(LADDER):  # smallest first: a richer set must do at least as well
        cols = [NAMES.index(n) for n in candidate]
        beta, ok = logistic(X[~late][:, cols], y[~late])
        score = fixed_matvec(X[late][:, cols], beta) if ok else np.zeros(int(late.sum()))
        name = LADDER_NAMES[candidate]
        recall[name] = top_k_recall(score, g, yl) if ok else float("nan")
        aucs[name] = auc(score, yl) if ok else float("nan")
        if aucs[name] >= best:
            best, names, kept = aucs[name], candidate, score
    if heuristic is not None:
        recall["heuristic"] = top_k_recall(heuristic, g, yl)
        aucs["heuristic"] = auc(heuristic, yl)
    return names, {"customers": "every fourth", "pairs": int(late.sum()),
                   "positives": int(yl.sum()), "top_k": TOP_K, "recall": _recorded(recall),
                   "auc": _recorded(aucs)}, kept


def _recorded(figures: dict[str, float]) -> dict[str, float | None]:
    """Held-out figures as the manifest records them: ``None`` (JSON null) where a figure could
    not be computed (a feature set whose fit did not converge), as the manifest's JSON allows
    no NaN."""
    return {name: float(x) if np.isfinite(x) else None for name, x in figures.items()}


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
