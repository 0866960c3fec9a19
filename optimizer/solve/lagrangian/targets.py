"""Price updates by coordinate ascent on each constraint's critical price (the prices themselves
are computed by :func:`.critical.critical_prices`; the target bonus and the global price's secant
correction are here).

Given every candidate's *critical price* (the price on its constraint above which the candidate
leaves its customer's best response, other prices and choices held fixed), the use of a constraint
is a step function of its price, and the smallest price that satisfies it can be read off a sort:
this is the synchronous coordinate-descent step of Zhang et al., "Solving Billion-Scale Knapsack
Problems" (WWW 2020), which converges in a handful of passes where subgradient steps need hundreds.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from optimizer.model.problem import AssignmentProblem, Prices


def bonus_at(kth: np.ndarray) -> np.ndarray:
    """The bonus that brings a candidate of margin ``kth`` (the k-th largest of its offer's) to
    ``margin > 0``, a hair over ``-kth`` (none for a positive one)."""
    return np.maximum(0.0, -kth) * (1 + 1e-9) + 1e-12 * (kth <= 0)


def target_bonus(group: np.ndarray, margin: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per group, the smallest bonus ``>= 0`` that brings ``target`` candidates to ``margin > 0``.

    ``margin`` is each candidate's reduced value minus its threshold; a bonus ``b`` selects it when
    ``margin + b > 0``. Groups with fewer candidates than their target get the bonus that selects
    all of them. The plain definition, over every candidate gathered: the solve reads the same
    bits off the shards' tallies (:meth:`.executor.ShardedCandidates.target_bonus`).
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
    # grouped by a stable sort of the group alone, in the narrowest integer type (numpy sorts
    # 8- and 16-bit integers by radix), then a partial sort per group: a lexsort by group and
    # margin of every targeted candidate cost 0.2 s a pass at a million customers
    order = np.argsort(group.astype(np.min_scalar_type(n_groups)), kind="stable")
    group, margin = group[order], margin[order]
    starts = np.searchsorted(group, np.arange(n_groups + 1), side="left")
    for g in np.flatnonzero(wants):  # a loop over the offers short of their target
        in_group = margin[starts[g]:starts[g + 1]]
        k = min(int(target[g]), in_group.size)
        if k == 0:
            continue
        kth = np.partition(in_group, in_group.size - k)[in_group.size - k]  # k-th largest
        bonus[g] = bonus_at(kth)
    return bonus


def secant_global_price(problem: AssignmentProblem, target: Prices,
                        last: tuple[float, float] | None, price: float, spend: float) -> Prices:
    """``target`` with its global price replaced by a secant step on the measured spend.

    The critical global price counts a leaving candidate's whole cost as saved, but her
    runner-up takes her place at a cost of its own, so that price leaves the spend over the
    global budget pass after pass. ``last`` is the (global price, spend of the customers' best
    responses) of the previous anchor, ``price`` and ``spend`` the current one's; their secant
    gives the price at which the spend meets the budget. Other prices move too between anchors,
    so the step is clipped to within a factor of two of ``price``; ``target`` is returned as it
    is without a previous anchor, a global budget or a spend that falls as the price rises.
    """
    glob = problem.global_budget
    if last is None or not np.isfinite(glob) or price <= 0:
        return target
    (_, spent_before), change = last, price - last[0]
    slope = (spend - spent_before) / change if change != 0 else 0.0
    if not slope < 0:
        return target
    guess = price + (glob - spend) / slope
    guess = min(max(guess, 0.5 * price), 2.0 * price)
    return dataclasses.replace(target, global_budget=guess)  # funder prices kept
