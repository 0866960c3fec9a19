"""The one reduced-value formula: what a candidate is worth once the prices of the constraints
it uses are paid, ``value - (budget price + global price) x cost - count price + bonus``.

Every kernel that ranks candidates (the best responses, the refill, the bounds, the kept-pair
selection) calls :func:`reduced_value` inline, and :meth:`~optimizer.model.problem.Prices.
reduced_values`, ``explain`` and the solver's array code call :func:`reduced_values`, so every
step sums it in the same order and ranks candidates alike.
"""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(inline="always")
def reduced_value(value, cost, o, budget_price, count_price, glob, bonus):  # pragma: no cover
    """A candidate's reduced value: ``value - (budget_price[o] + glob) * cost - count_price[o] +
    bonus`` (``bonus``: the offer's target bonus, a number), summed in this order everywhere so
    that every kernel ranks candidates alike."""
    return (value - (budget_price[o] + glob) * cost - count_price[o]) + bonus


@nb.njit(cache=True, nogil=True)
def _reduced(value, cost, offer, budget_price, count_price, glob, bonus, out):  # pragma: no cover
    n, slots = offer.shape
    for i in range(n):
        for s in range(slots):
            o = offer[i, s]
            if o < 0:
                out[i, s] = -np.inf
            else:
                out[i, s] = reduced_value(value[i, s], cost[i, s], o, budget_price,
                                          count_price, glob, bonus[o])


def reduced_values(value: np.ndarray, cost: np.ndarray, offer: np.ndarray,
                   budget_price: np.ndarray, count_price: np.ndarray, global_price: float,
                   bonus: np.ndarray) -> np.ndarray:
    """``value - (budget_price + global_price) * cost - count_price + bonus`` of every slot of a
    ``(n, slots)`` layout (``offer`` -1: empty, ``-inf`` there), in one pass without temporaries;
    ``bonus`` per offer."""
    out = np.empty(offer.shape)
    _reduced(value, cost, offer, budget_price, count_price, float(global_price), bonus, out)
    return out
