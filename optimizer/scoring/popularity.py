"""The popularity factor of a running campaign's offers (:mod:`optimizer.scoring.repurchase`).

The repurchase fit never sees an offer redeemed before its send (a campaign's sends are in its
start week), so it learns no weight for a running campaign's redemptions so far; this module reads
them as a gamma-Poisson rate model when the planning week is scored (benchmarks/README.md, "Real
data": the learned alternatives tried did not carry over).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from optimizer.core import numerics as nx

if TYPE_CHECKING:
    from optimizer.scoring.repurchase import Sources


def popularity_factor(s: Sources, c: np.ndarray, o: np.ndarray,
                      terms: tuple[np.ndarray, np.ndarray, np.ndarray], week: int,
                      info: dict[str, Any]) -> np.ndarray | None:
    """Log of each pair's offer popularity factor, for the pairs (``c``, ``o``) of the sparse
    pair term, as of ``week``; None when no offer has one. ``terms``: the customer ``(C,)`` and
    offer ``(M,)`` terms and the pairs' term, whose sum is a pair's log-odds without it.

    The offers it applies to are open at ``week`` (``start_week`` < week <= ``end_week``, an open
    end allowed) with no send in history before it (a running campaign, whose sends are what is
    planned): the model never saw such an offer redeemed before its send, so it has no weight for
    its redemptions so far. They are read as a rate model instead: over the customers who bought
    an offer's products (the pairs given), ``R`` = those who redeemed it before ``week``, ``E``
    = their predicted redemptions ``sum p_redeem x weeks open so far``, scaled so that both sum
    to the same over these offers; each offer's rate ``theta ~ Gamma(a, a)`` (mean 1) with ``R ~
    Poisson(E theta)``, ``1 / a`` by the method of moments (``sum((R - E)^2 - R) / sum(E^2)``, at
    least 0), and her odds where she bought its products are multiplied by the posterior mean
    ``(R + a) / (E + a)``. Every count is of weeks before ``week``. The manifest records the
    offers, their redemptions, ``1 / a`` and the factors' range."""
    start, end = s.window
    m = s.n_offers
    if start.size == 0:
        return None
    o_all = np.arange(m, dtype=np.int64)
    t_all = np.full(m, week, np.int64)
    # ``offer_sent`` counts redemptions as sends: as many as its redemptions = none in history
    unsent = s.offer_sent.before(o_all, t_all)[0] == s.offer_redeemed.before(o_all, t_all)[0]
    live = unsent & (start >= 0) & (start < week) & ((end < 0) | (end >= week))
    if not live.any():
        return None
    rows = np.flatnonzero(live[o])
    pair = c[rows].astype(np.int64) * m + o[rows]
    t_rows = np.full(rows.size, week, np.int64)
    bought = s.product.before(pair, t_rows)[0] > 0
    rows, pair, t_rows = rows[bought], pair[bought], t_rows[bought]
    redeemed = (s.pair_redeemed.before(pair, t_rows)[0] > 0).astype(float)
    R = np.bincount(o[rows], weights=redeemed, minlength=m)[live]
    customer, offer, value = terms
    eta = customer[c[rows]] + offer[o[rows]] + value[rows]  # the rows only: no full-size temporary
    E = (np.bincount(o[rows], weights=1.0 / (1.0 + nx.exp(-eta)), minlength=m)[live]
         * (week - start[live]))
    entry: dict[str, Any] = {"offers": int(live.sum()), "redeemed": int(R.sum())}
    info["popularity"] = entry
    if R.sum() <= 0 or E.sum() <= 0:
        return None
    E = E * (R.sum() / E.sum())
    inverse_a = max(float(np.sum((R - E) ** 2 - R)) / float(np.sum(E ** 2)), 0.0)
    entry["inverse_a"] = round(inverse_a, 9)
    if inverse_a <= 0:
        return None
    a = 1.0 / inverse_a
    factor = np.zeros(m)
    factor[live] = nx.log((R + a) / (E + a))
    entry["log_factor_range"] = [round(float(factor[live].min()), 9),
                                 round(float(factor[live].max()), 9)]
    out = np.zeros(c.size)
    out[rows] = factor[o[rows]]
    return out
