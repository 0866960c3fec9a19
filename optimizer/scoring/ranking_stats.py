"""How well scores rank labelled pairs: the AUC, weighted or not, and the paired bootstrap over
customers of the difference of two scores' AUCs (the repurchase fit's check of the heuristic
formula, :mod:`optimizer.scoring.repurchase_fit`).

The weighted AUC of a resample (each pair weighted by its customer's bootstrap weight,
:func:`optimizer.core.bootstrap.poisson_weights`) is the weighted share of (redeemed, not
redeemed) pairs the score orders right, ties counting half: the pairs sorted by score once, each
distinct score's weight of positives times the weight of the negatives below it plus half those
beside it. With unit weights these are the exact integer counts of the rank-sum formula, so the
unweighted AUC is the same number. One compiled pass over the sorted pairs per resample (the
customers' weights of a resample, a few hundred kilobytes, stay in cache).
"""
from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

from optimizer.core.bootstrap import RESAMPLES, interval95, poisson_weights


@nb.njit(cache=True, nogil=True)
def _auc_kernel(new_group, positive, customer, weights, out):  # pragma: no cover - compiled
    """Per resample ``r``: the weighted AUC of pairs sorted by score (``new_group[i]``: pair
    ``i`` starts a new distinct score), pair ``i`` weighing ``weights[r, customer[i]]``."""
    n = positive.shape[0]
    for r in range(weights.shape[0]):
        below = 0.0
        num = 0.0
        total_pos = 0.0
        i = 0
        while i < n:
            gp = 0.0
            gn = 0.0
            j = i
            while j < n and (j == i or not new_group[j]):
                w = weights[r, customer[j]]
                if positive[j]:
                    gp += w
                else:
                    gn += w
                j += 1
            num += gp * (below + 0.5 * gn)
            below += gn
            total_pos += gp
            i = j
        den = total_pos * below
        out[r] = num / den if den > 0 else np.nan


def weighted_auc(score: np.ndarray, y: np.ndarray, weights: np.ndarray,
                 customer: np.ndarray | None = None) -> np.ndarray:
    """``(R,)`` AUCs of ``score`` against the labels ``y`` (``(n,)``, positive: redeemed), pair
    ``i`` weighing ``weights[r, customer[i]]`` in resample ``r`` (``customer``: default each
    pair its own column of ``weights``; ties count half); NaN where a resample weighs no
    positive or no negative."""
    order = np.argsort(score, kind="stable")
    s = score[order]
    new_group = np.concatenate([[True], s[1:] != s[:-1]]) if s.size else np.zeros(0, bool)
    who = (np.arange(score.size) if customer is None else customer)[order]
    out = np.empty(weights.shape[0])
    _auc_kernel(new_group, np.ascontiguousarray(y[order] > 0), who.astype(np.int64),
                np.ascontiguousarray(weights), out)
    return out


def auc(score: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN without both classes."""
    return float(weighted_auc(score, y, np.ones((1, 1)), np.zeros(score.size, np.int64))[0])


def auc_difference(a: np.ndarray, b: np.ndarray, y: np.ndarray, customer: np.ndarray,
                   seed: int, resamples: int = RESAMPLES) -> dict[str, Any]:
    """``AUC(a) - AUC(b)`` on the same labelled pairs (``y``) and its 95% interval from a paired
    bootstrap over their customers (``customer`` of each pair): each resample weighs every pair
    by its customer's Poisson(1) weight (seeded by ``seed``) and scores both ``a`` and ``b`` with
    those weights."""
    _, inverse = np.unique(customer, return_inverse=True)
    n_customers = int(inverse.max(initial=-1)) + 1
    rng = np.random.default_rng(seed)
    # counts, exact in float32 (half the memory of the draws' float64)
    blocks = [w.astype(np.float32) for _, w in poisson_weights(rng, resamples, n_customers)]
    weights = (np.concatenate(blocks, axis=1) if blocks
               else np.zeros((resamples, 0), np.float32))
    diff = weighted_auc(a, y, weights, inverse) - weighted_auc(b, y, weights, inverse)
    low, high = interval95(diff)
    return {"auc_difference": auc(a, y) - auc(b, y), "ci95": [low, high],
            "resamples": resamples, "seed": seed, "customers": n_customers}
