"""The conditional (fixed-effects) logit and the within-group ranking figures of the repurchase
fit (:mod:`optimizer.scoring.repurchase_fit`).

The sends a fit learns from come in choice sets: a customer reached by a campaign gets every one
of its offers in the same week, and a redemption is her choice among them. A pooled logistic
regression over all sends mixes two signals in each coefficient: which customers redeem at all
(across customers) and which of her own offers she redeems (within her set). The conditional
logit (McFadden 1974; equivalently the logistic regression stratified by customer x week,
Chamberlain 1980) learns coefficients from the within-set contrasts only: each customer x week
term cancels from the likelihood

    sum over sets g with a redemption and a non-redemption,
        sum over the redeemed rows r of g:  x_r . b - log sum_{j in g} exp(x_j . b)

(several redemptions in one set: Breslow's approximation, each redeemed row a choice among the
whole set). Sets without both outcomes carry no within-set information and drop out.
"""
from __future__ import annotations

import numpy as np
from scipy import optimize
from scipy.stats import rankdata


def _segments(group: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (sorted by group, stable) of the groups with both outcomes, the start of each such
    group among them, and each group's number of positives."""
    order = np.argsort(group, kind="stable")
    g = group[order]
    cut = np.flatnonzero(np.concatenate([[True], g[1:] != g[:-1]]))
    size = np.diff(np.concatenate([cut, [g.size]]))
    pos = np.add.reduceat(y[order], cut) if g.size else np.zeros(0)
    both = (pos > 0) & (pos < size)
    keep = np.repeat(both, size)
    rows = order[keep]
    kept_size = size[both]
    start = (np.cumsum(kept_size) - kept_size).astype(np.int64)
    return rows, start, pos[both]


def conditional_logit(X: np.ndarray, y: np.ndarray, group: np.ndarray, l2: float = 1e-3
                      ) -> tuple[np.ndarray, bool]:
    """Coefficients of the columns ``X`` (no intercept: it cancels within a group) maximising
    the conditional likelihood of the module docstring over the groups ``group``, L2-penalised
    on standardised columns as :func:`~optimizer.scoring.repurchase_fit.logistic` is; returns
    them on the original scale and whether the fit converged (not when no group holds both
    outcomes)."""
    rows, start, n_pos = _segments(np.asarray(group), np.asarray(y, float))
    k = X.shape[1]
    if start.size == 0:
        return np.zeros(k), False
    Xs, ys = X[rows], np.asarray(y, float)[rows]
    mean, scale = Xs.mean(axis=0), Xs.std(axis=0)
    constant = scale <= 1e-12
    scale = np.where(constant, 1.0, scale)
    Z = (Xs - mean) / scale
    Z[:, constant] = 0.0
    size = np.diff(np.concatenate([start, [rows.size]]))
    weight = np.repeat(n_pos, size)  # each row's group positives
    total = float(n_pos.sum())

    def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = np.einsum("ij,j->i", Z, beta)
        top = np.maximum.reduceat(eta, start)
        e = np.exp(eta - np.repeat(top, size))
        denom = np.add.reduceat(e, start)
        lse = np.log(denom) + top
        nll = (float(np.dot(n_pos, lse)) - float(np.dot(ys, eta))) / total
        share = e / np.repeat(denom, size)
        grad = np.einsum("ij,i->j", Z, weight * share - ys) / total + 2 * l2 * beta
        return nll + l2 * float(beta @ beta), grad
    result = optimize.minimize(loss, np.zeros(k), jac=True, method="L-BFGS-B",
                               options={"maxiter": 500})
    beta = result.x / scale
    return beta, bool(result.success) and bool(np.all(np.isfinite(beta)))


def grouped_auc(score: np.ndarray, y: np.ndarray, group: np.ndarray) -> float:
    """AUC within each group (ties count half), averaged over the groups with both outcomes,
    weighted by their positives; NaN where no group has both."""
    dense = rankdata(score, method="dense")
    _, g = np.unique(group, return_inverse=True)
    ranks = rankdata(g.astype(np.float64) * (dense.max() + 1) + dense)  # average within ties
    size = np.bincount(g)
    ranks = ranks - np.concatenate([[0], np.cumsum(size)])[g]  # ranks within the group
    pos = np.bincount(g, weights=y)
    neg = size - pos
    s = np.bincount(g, weights=ranks * y)
    ok = (pos > 0) & (neg > 0)
    if not ok.any():
        return float("nan")
    auc = (s[ok] - pos[ok] * (pos[ok] + 1) / 2) / (pos[ok] * neg[ok])
    return float(np.average(auc, weights=pos[ok]))
