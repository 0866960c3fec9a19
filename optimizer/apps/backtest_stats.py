"""Backtest statistics: bootstrap intervals over customers, calibration scores, and the
offer-first baseline's lists (:mod:`optimizer.apps.backtest`).

Intervals resample customers (:mod:`optimizer.core.bootstrap`: a Poisson(1) bootstrap, seeded,
:data:`~optimizer.core.bootstrap.RESAMPLES` times); each statistic is a ratio of per-customer
sums (:func:`~optimizer.core.bootstrap.bootstrap_ratio`), and its 95% interval the 2.5th and
97.5th percentiles of the resampled ratios.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import polars as pl
import scipy.sparse as sp

from optimizer.core import numerics as nx
from optimizer.core.bootstrap import bootstrap_ratio
from optimizer.scoring.baselines import offer_first, offer_quotas


def calibration_scores(predicted: np.ndarray, observed: np.ndarray, customer: np.ndarray,
                       n_customers: int, seed: int) -> dict[str, Any]:
    """Log loss and Brier score of ``predicted`` against ``observed`` (0/1) over the held-out
    sends, each with its 95% bootstrap interval over customers (``customer`` of each send)."""
    if predicted.size == 0:
        return {"sends": 0, "log_loss": None, "brier": None}
    p = np.clip(predicted.astype(float), 1e-9, 1 - 1e-9)
    y = observed.astype(float)
    losses = {"log_loss": -(y * nx.log(p) + (1 - y) * nx.log1p(-p)), "brier": (p - y) ** 2}
    count = np.bincount(customer, minlength=n_customers).astype(float)
    out: dict[str, Any] = {"sends": int(p.size), "mean_predicted": float(p.mean()),
                           "observed_rate": float(y.mean())}
    for name, loss in losses.items():
        total = np.bincount(customer, weights=loss, minlength=n_customers)
        out[name] = float(loss.mean())
        out[f"{name}_ci95"] = list(bootstrap_ratio(total, count, seed))
    return out


def offer_first_picks(score_chunk: Callable[[int, int], np.ndarray], n_customers: int,
                      offers: pl.DataFrame, eligible: np.ndarray, slots: int,
                      chunk_size: int) -> sp.csr_matrix:
    """``(n_customers, n_offers)`` 0/1: the pairs each eligible offer picks on its own (its best
    customers by ``score_chunk``, -inf where not allowed, up to its quota:
    :func:`optimizer.scoring.baselines.offer_quotas` of the customers' summed caps ``slots``)."""
    max_customers = offers.get_column("max_customers").cast(pl.Float64).to_numpy()
    quotas = offer_quotas(max_customers, eligible, slots)
    c, o = offer_first(score_chunk, n_customers, quotas, chunk_size)
    return sp.csr_matrix((np.ones(c.size), (c, o)), shape=(n_customers, eligible.size))


def with_intervals(table: pl.DataFrame, per_customer: dict[str, dict[str, np.ndarray]],
                   seed: int) -> pl.DataFrame:
    """``table`` with 95% bootstrap intervals over customers of each method's ``recall`` and
    ``precision`` (``per_customer[method]``: ``hits``, ``pairs`` and ``relevant`` arrays)."""
    cols: dict[str, list[float]] = {k: [] for k in ("recall_lo", "recall_hi", "precision_lo",
                                                    "precision_hi")}
    for method in table.get_column("method").to_list():
        d = per_customer[method]
        for name, den in (("recall", d["relevant"]), ("precision", d["pairs"])):
            lo, hi = bootstrap_ratio(d["hits"], den, seed)
            cols[f"{name}_lo"].append(lo)
            cols[f"{name}_hi"].append(hi)
    return table.with_columns(*(pl.Series(k, v, pl.Float64) for k, v in cols.items()))
