"""How well scores rank labelled pairs: the AUC, weighted or not, and the paired bootstrap over
customers of the difference of two scores' AUCs (the repurchase fit's check of the heuristic
formula, :mod:`optimizer.scoring.repurchase_fit`).

The weighted AUC of a resample (each pair weighted by its customer's bootstrap weight,
:func:`optimizer.core.bootstrap.poisson_weights`) is the weighted share of (redeemed, not
redeemed) pairs the score orders right, ties counting half: the pairs sorted by score once, each
distinct score's weight of positives times the weight of the negatives below it plus half those
beside it. With unit weights these are the exact integer counts of the rank-sum formula, so the
unweighted AUC is the same number. Whole resamples at a time: no loop over customers or pairs.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from optimizer.core.bootstrap import RESAMPLES, interval95, poisson_weights

_CELLS = 4_000_000  # resample x pair weights held at once


def weighted_auc(score: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(R,)`` AUCs of ``score`` against the labels ``y`` (``(n,)``, positive: redeemed) with
    pair weights ``weights`` (``(R, n)``, one row per resample; ties count half); NaN where a
    resample weighs no positive or no negative."""
    pos = y > 0
    if not pos.any() or pos.all():
        return np.full(weights.shape[0], np.nan)
    order = np.argsort(score, kind="stable")
    s = score[order]
    start = np.flatnonzero(np.concatenate([[True], s[1:] != s[:-1]]))
    w = weights[:, order]
    positive = pos[order]
    wp = np.add.reduceat(np.where(positive, w, 0.0), start, axis=1)
    wn = np.add.reduceat(np.where(positive, 0.0, w), start, axis=1)
    below = np.cumsum(wn, axis=1) - wn
    num = np.einsum("rg,rg->r", wp, below + 0.5 * wn)
    den = wp.sum(axis=1) * wn.sum(axis=1)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def auc(score: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN without both classes."""
    return float(weighted_auc(score, y, np.ones((1, y.size)))[0])


def auc_difference(a: np.ndarray, b: np.ndarray, y: np.ndarray, customer: np.ndarray,
                   seed: int, resamples: int = RESAMPLES) -> dict[str, Any]:
    """``AUC(a) - AUC(b)`` on the same labelled pairs (``y``) and its 95% interval from a paired
    bootstrap over their customers (``customer`` of each pair): each resample weighs every pair
    by its customer's Poisson(1) weight (seeded by ``seed``) and scores both ``a`` and ``b`` with
    those weights."""
    _, inverse = np.unique(customer, return_inverse=True)
    n_customers = int(inverse.max(initial=-1)) + 1
    rng = np.random.default_rng(seed)
    blocks = [w for _, w in poisson_weights(rng, resamples, n_customers)]
    per_customer = np.concatenate(blocks, axis=1) if blocks else np.zeros((resamples, 0))
    step = max(1, _CELLS // max(y.size, 1))
    diff = np.empty(resamples)
    for lo in range(0, resamples, step):  # resamples in batches: bounded memory
        w = per_customer[lo:lo + step][:, inverse]
        diff[lo:lo + step] = weighted_auc(a, y, w) - weighted_auc(b, y, w)
    low, high = interval95(diff)
    return {"auc_difference": auc(a, y) - auc(b, y), "ci95": [low, high],
            "resamples": resamples, "seed": seed, "customers": n_customers}
