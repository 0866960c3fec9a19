"""The measurement's statistics: per-arm sums and their customer-clustered bootstrap (compiled),
the CUPED differences, and pooling across offers (see :mod:`optimizer.apps.measure`).
"""
from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numba as nb
import numpy as np


@nb.njit(cache=True)
def _sums(group, cluster, arm, x, y, weights, n_groups, out):  # pragma: no cover - compiled
    """Per (group, arm): n, sum x, sum x^2, and per metric sum y, sum xy, sum y^2, with each
    row weighted by its customer's weight."""
    k = y.shape[1]
    for r in range(group.shape[0]):
        w = weights[cluster[r]]
        if w == 0:
            continue
        g, a, xr = group[r], arm[r], x[r]
        out[g, a, 0] += w
        out[g, a, 1] += w * xr
        out[g, a, 2] += w * xr * xr
        for j in range(k):
            out[g, a, 3 + j] += w * y[r, j]
            out[g, a, 3 + k + j] += w * xr * y[r, j]
            out[g, a, 3 + 2 * k + j] += w * y[r, j] * y[r, j]


@nb.njit(cache=True)
def _bootstrap(group, cluster, arm, x, y, n_clusters, n_groups, replicates,
               seed):  # pragma: no cover - compiled
    np.random.seed(seed)
    k = y.shape[1]
    out = np.zeros((replicates, n_groups, 2, 3 + 3 * k))
    weights = np.zeros(n_clusters, dtype=np.float64)
    for b in range(replicates):
        weights[:] = 0.0
        for _ in range(n_clusters):
            weights[np.random.randint(0, n_clusters)] += 1.0
        _sums(group, cluster, arm, x, y, weights, n_groups, out[b])
    return out


def _estimates(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From sums ``(..., groups, 2, 3 + 3k)``: CUPED differences ``(..., groups, k)``, the arms'
    sizes ``(..., groups, 2)`` and the adjusted outcome's variance per arm ``(..., groups, 2, k)``."""
    k = (sums.shape[-1] - 3) // 3
    n = sums[..., 0]
    sx, sxx = sums[..., 1], sums[..., 2]
    sy, sxy, syy = sums[..., 3:3 + k], sums[..., 3 + k:3 + 2 * k], sums[..., 3 + 2 * k:]
    with np.errstate(invalid="ignore", divide="ignore"):
        total = n.sum(-1)
        mx = sx.sum(-1) / total
        var_x = sxx.sum(-1) / total - mx ** 2
        cov = sxy.sum(-2) / total[..., None] - mx[..., None] * sy.sum(-2) / total[..., None]
        theta = np.where(var_x[..., None] > 1e-12, cov / var_x[..., None], 0.0)
        mean_y = sy / n[..., None]
        mean_x = sx / n
        adjusted = mean_y - theta[..., None, :] * (mean_x[..., None] - mx[..., None, None])
        diff = adjusted[..., 0, :] - adjusted[..., 1, :]
        var_y = syy / n[..., None] - mean_y ** 2
        cov_arm = sxy / n[..., None] - mean_x[..., None] * mean_y
        var_xa = sxx / n - mean_x ** 2
        var_adj = var_y - 2 * theta[..., None, :] * cov_arm + theta[..., None, :] ** 2 * var_xa[
            ..., None]
    diff = np.where(np.asarray((n > 0).all(-1))[..., None], diff, np.nan)
    return diff, n, var_adj


def _z(p: float) -> float:
    return NormalDist().inv_cdf(p)


def _pooled(diff: np.ndarray, n: np.ndarray, members: list[int]) -> np.ndarray:
    """The members' differences weighted by n_t n_c / (n_t + n_c) (NaN members left out)."""
    d = diff[..., members, :]
    nn = n[..., members, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        w = nn[..., 0] * nn[..., 1] / (nn[..., 0] + nn[..., 1])
    w = np.where(np.isnan(d).any(-1) | ~np.isfinite(w), 0.0, w)
    total = w.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (np.nan_to_num(d) * w[..., None]).sum(-2) / total[..., None]
    return np.where(total[..., None] > 0, out, np.nan)


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None
