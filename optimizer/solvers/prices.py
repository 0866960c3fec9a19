"""Price updates by coordinate ascent on each constraint's critical price.

Given every candidate's *critical price* (the price on its constraint above which the candidate
leaves its customer's best response, other prices and choices held fixed), the use of a constraint
is a step function of its price, and the smallest price that satisfies it can be read off a sort:
this is the synchronous coordinate-descent step of Zhang et al., "Solving Billion-Scale Knapsack
Problems" (WWW 2020), which converges in a handful of passes where subgradient steps need hundreds.
"""
from __future__ import annotations

import numpy as np

_BUCKETS = 4096  # log-scale buckets of critical prices per group


def critical_price(group: np.ndarray, crit: np.ndarray, weight: np.ndarray,
                   capacity: np.ndarray) -> np.ndarray:
    """Per group, the smallest price ``>= 0`` at which the selected weight fits the capacity.

    A candidate is selected at price ``q`` when ``crit > q``. For group ``g`` the result is the
    least ``q >= 0`` with ``sum(weight[crit > q]) <= capacity[g]``: 0 when everything fits, else
    the critical price of the first candidate (in decreasing ``crit``) that does not fit.

    Parameters
    ----------
    group: ``(k,)`` group (offer) index of each candidate, in ``[0, len(capacity))``.
    crit: ``(k,)`` critical prices.
    weight: ``(k,)`` weights (expected costs, or 1 for counts), ``>= 0``.
    capacity: ``(g,)`` capacities; ``inf`` = no constraint.
    """
    n_groups = capacity.shape[0]
    price = np.zeros(n_groups)
    live = (crit > 0) & (weight > 0) & np.isfinite(capacity)[group]
    if not live.any():
        return price
    group, crit, weight = group[live], crit[live], weight[live]
    demand = np.bincount(group, weights=weight, minlength=n_groups)
    over = demand > capacity
    if not over.any():
        return price
    keep = over[group]
    group, crit, weight = group[keep], crit[keep], weight[keep]
    # Bucket critical prices on a log scale, find each group's crossing bucket from the top, and
    # sort only the candidates of that bucket: linear time instead of a sort of everything.
    log_crit = np.log(crit)
    low, high = float(log_crit.min()), float(log_crit.max())
    width = max((high - low) / _BUCKETS, 1e-12)
    bucket = np.minimum(((log_crit - low) / width).astype(np.int64), _BUCKETS - 1)
    mass = np.bincount(group * _BUCKETS + bucket, weights=weight,
                       minlength=n_groups * _BUCKETS).reshape(n_groups, _BUCKETS)
    above = np.cumsum(mass[:, ::-1], axis=1)[:, ::-1]  # weight in this bucket and higher ones
    crossing = np.where(over, (above > capacity[:, None]).sum(axis=1) - 1, -1)
    fits_above = np.where(crossing >= 0, np.take_along_axis(
        np.pad(above, ((0, 0), (0, 1)))[:, 1:], np.maximum(crossing, 0)[:, None], axis=1)[:, 0],
        0.0)
    in_bucket = bucket == crossing[group]
    group, crit, weight = group[in_bucket], crit[in_bucket], weight[in_bucket]
    order = np.lexsort((-crit, group))
    group, crit, weight = group[order], crit[order], weight[order]
    cum = np.cumsum(weight)
    starts = np.searchsorted(group, np.arange(n_groups), side="left")
    before = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
    used = cum - before[group] + fits_above[group]
    # the first candidate per group whose running use exceeds the capacity sets the price
    spill = used > capacity[group] * (1 + 1e-12)
    first = np.full(n_groups, -1)
    idx = np.flatnonzero(spill)
    if idx.size:
        g = group[idx]
        uniq, pos = np.unique(g, return_index=True)
        first[uniq] = idx[pos]
    has = first >= 0
    price[has] = crit[first[has]]
    return price


def target_bonus(group: np.ndarray, margin: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per group, the smallest bonus ``>= 0`` that brings ``target`` candidates to ``margin > 0``.

    ``margin`` is each candidate's reduced value minus its threshold; a bonus ``b`` selects it when
    ``margin + b > 0``. Groups with fewer candidates than their target get the bonus that selects
    all of them.
    """
    n_groups = target.shape[0]
    bonus = np.zeros(n_groups)
    wants = target > 0
    if not wants.any():
        return bonus
    keep = wants[group] & np.isfinite(margin)
    group, margin = group[keep], margin[keep]
    order = np.lexsort((-margin, group))
    group, margin = group[order], margin[order]
    starts = np.searchsorted(group, np.arange(n_groups), side="left")
    counts = np.bincount(group, minlength=n_groups)
    k = np.minimum(target.astype(np.int64), counts)
    has = wants & (k > 0)
    kth = margin[starts[has] + k[has] - 1]
    bonus[has] = np.maximum(0.0, -kth) * (1 + 1e-9) + 1e-12 * (kth <= 0)
    return bonus
