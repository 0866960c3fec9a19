"""The bootstrap over customers, one implementation for every stage: the backtest's intervals
(:mod:`optimizer.apps.backtest_stats`) and the repurchase fit's check of the heuristic formula
(:mod:`optimizer.scoring.repurchase_fit`).

Customers are resampled with a Poisson(1) bootstrap: each customer's weight in a resample is
drawn on its own from Poisson(1) (its count of copies, in expectation that of a resample with
replacement), so customers can be drawn in chunks and no resample x customer table need be held
whole. Seeded; a 95% interval is the 2.5th and 97.5th percentiles of the resampled statistic.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from optimizer.core.numerics import fixed_matvec

RESAMPLES = 200
_CHUNK = 50_000


def poisson_weights(rng: np.random.Generator, resamples: int, n: int, chunk: int = _CHUNK
                    ) -> Iterator[tuple[int, np.ndarray]]:
    """The Poisson(1) weights of ``n`` customers in ``resamples`` resamples, in chunks of
    customers: ``(lo, w)`` with ``w`` the ``(resamples, chunk)`` weights of customers ``lo ..``
    (the same draws for the same seed and ``chunk``)."""
    for lo in range(0, n, chunk):
        yield lo, rng.poisson(1.0, (resamples, min(chunk, n - lo))).astype(float)


def interval95(values: np.ndarray) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the resampled ``values`` (NaN ones left out; NaN, NaN
    when all are)."""
    if np.all(np.isnan(values)):
        return float("nan"), float("nan")
    low, high = np.nanpercentile(values, [2.5, 97.5])
    return float(low), float(high)


def bootstrap_ratio(num: np.ndarray, den: np.ndarray, seed: int,
                    resamples: int = RESAMPLES) -> tuple[float, float]:
    """95% interval of ``sum(num) / sum(den)`` over customers resampled with replacement
    (per-customer ``num`` and ``den``, each ``(n_customers,)``; NaN where ``den`` sums to 0)."""
    top = np.zeros(resamples)
    bottom = np.zeros(resamples)
    # fixed-order sums, not BLAS's gemv: its bits followed the CPU's kernel (docs/contract.md,
    # "Same inputs, same bytes")
    for lo, w in poisson_weights(np.random.default_rng(seed), resamples, num.size):
        top += fixed_matvec(w, num[lo:lo + w.shape[1]])
        bottom += fixed_matvec(w, den[lo:lo + w.shape[1]])
    return interval95(np.where(bottom > 0, top / np.maximum(bottom, 1e-300), np.nan))
