"""Price updates by coordinate ascent on each constraint's critical price (the prices themselves
are computed by :func:`.critical.critical_prices`; the target bonus is here).

Given every candidate's *critical price* (the price on its constraint above which the candidate
leaves its customer's best response, other prices and choices held fixed), the use of a constraint
is a step function of its price, and the smallest price that satisfies it can be read off a sort:
this is the synchronous coordinate-descent step of Zhang et al., "Solving Billion-Scale Knapsack
Problems" (WWW 2020), which converges in a handful of passes where subgradient steps need hundreds.
"""
from __future__ import annotations

import numpy as np


def target_bonus(group: np.ndarray, margin: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per group, the smallest bonus ``>= 0`` that brings ``target`` candidates to ``margin > 0``.

    ``margin`` is each candidate's reduced value minus its threshold; a bonus ``b`` selects it when
    ``margin + b > 0``. Groups with fewer candidates than their target get the bonus that selects
    all of them.
    """
    n_groups = target.shape[0]
    bonus = np.zeros(n_groups)
    # an offer with `target` candidates already in (margin > 0) needs no bonus: sort only the
    # candidates of the others (at a million customers, most targets are met)
    met = np.bincount(group[margin > 0], minlength=n_groups) >= target
    wants = (target > 0) & ~met
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
