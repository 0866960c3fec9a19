"""Price updates by coordinate ascent on each constraint's critical price (the prices themselves
are computed by :func:`.critical.critical_prices`; the target bonus at a k-th largest margin and
the global price's secant correction are here: the shards find that margin,
:meth:`.executor.ShardedCandidates.target_bonus`).

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
