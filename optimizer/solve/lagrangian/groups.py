"""Offer groups (``offer_groups``, :mod:`optimizer.model.groups`) in the scale method.

A group's limit binds one customer at a time, so it belongs to each customer's subproblem:

* the bound: a customer's best total under the cap and the groups, each offer counted in its
  first group only and categories left out, is a greedy optimum (the cap and disjoint groups form
  a laminar matroid), and every constraint it leaves out only raises it, so it is an upper bound
  on her true best; the dual keeps, per customer, the least of it and the category bound;
* the plan: a customer whose best response breaks a group gets the greedy that skips any offer
  breaking her cap, a category (every category of the offer) or a group (every group of the
  offer): always feasible. After the refill, rows that break a group keep their best offers by
  value under the same greedy (a subset of the plan, so every budget still holds).

Without groups nothing here runs, and the solver's answers are unchanged.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from optimizer.model.groups import GroupData, violating_rows
from optimizer.model.problem import AssignmentProblem, CandidateBlock, Prices


def tighten_dual(problem: AssignmentProblem, block: CandidateBlock, prices: Prices,
                 dual: np.ndarray) -> np.ndarray:
    """``dual`` (each customer's upper bound at ``prices``, no target bonus) lowered to the group
    bound where that is less (see the module docstring)."""
    groups = problem.groups
    if groups is None or block.n_customers == 0:
        return dual
    reduced = prices.reduced_values(block, with_target=False)
    bound = _laminar_totals(reduced, block.offer, block.cap, groups.first, groups.limit)
    return np.minimum(dual, bound)


def feasible_plan_rows(problem: AssignmentProblem, block: CandidateBlock, chosen: np.ndarray,
                       reduced: np.ndarray) -> np.ndarray:
    """``chosen`` with every row that breaks a group replaced by the feasible greedy over
    ``reduced`` (``-inf``: not a candidate)."""
    groups = problem.groups
    if groups is None or block.n_customers == 0:
        return chosen
    rows = violating_rows(groups, block.offer, chosen)
    if not rows.any():
        return chosen
    out = chosen.copy()
    out[rows] = _greedy_rows(reduced[rows], block.offer[rows], block.cap[rows], problem)
    return out


def trim_plan(problem: AssignmentProblem, chosen: list[np.ndarray]) -> None:
    """Within ``chosen`` (changed in place), rows breaking a group keep their best offers by value
    that obey every per-customer rule."""
    if problem.groups is None:
        return
    for block, mask in zip(problem.blocks, chosen):
        priority = np.where(mask, block.value, -np.inf)
        mask[:] = feasible_plan_rows(problem, block, mask, priority)


def _greedy_rows(reduced: np.ndarray, offer: np.ndarray, cap: np.ndarray,
                 problem: AssignmentProblem) -> np.ndarray:
    groups: GroupData | None = problem.groups
    assert groups is not None
    per_category = -1 if problem.max_per_category is None else problem.max_per_category
    return _feasible_greedy(np.ascontiguousarray(reduced), offer, cap,
                            problem.offers.categories.astype(np.int64), per_category,
                            groups.members, groups.limit)


@nb.njit(cache=True, nogil=True)
def _laminar_totals(reduced, offer, cap, first, limit):  # pragma: no cover - compiled
    n, slots = offer.shape
    totals = np.zeros(n)
    held = np.zeros(limit.shape[0], dtype=np.int64)
    for i in range(n):
        # a customer whose candidates of positive value fill no group beyond its limit: the
        # groups cannot bind, the bound is the cap's alone, never below the category bound
        binds = False
        for s in range(slots):
            o = offer[i, s]
            if o >= 0 and first[o] >= 0 and reduced[i, s] > 0.0:
                held[first[o]] += 1
                if held[first[o]] > limit[first[o]]:
                    binds = True
        for s in range(slots):
            if offer[i, s] >= 0 and first[offer[i, s]] >= 0:
                held[first[offer[i, s]]] = 0
        if not binds:
            totals[i] = np.inf
            continue
        order = np.argsort(-reduced[i], kind="mergesort")  # ties: the lower slot first
        taken = 0
        for t in range(slots):
            s = order[t]
            if taken >= cap[i] or not reduced[i, s] > 0.0:
                break
            g = first[offer[i, s]]
            if g >= 0:
                if held[g] >= limit[g]:
                    continue
                held[g] += 1
            totals[i] += reduced[i, s]
            taken += 1
        for s in range(slots):
            if offer[i, s] >= 0 and first[offer[i, s]] >= 0:
                held[first[offer[i, s]]] = 0
    return totals


@nb.njit(cache=True, nogil=True)
def _feasible_greedy(reduced, offer, cap, categories, per_category, members,
                     limit):  # pragma: no cover - compiled
    n, slots = offer.shape
    chosen = np.zeros((n, slots), dtype=np.bool_)
    picked = np.empty(slots, dtype=np.int64)
    for i in range(n):
        order = np.argsort(-reduced[i], kind="mergesort")
        taken = 0
        for t in range(slots):
            s = order[t]
            if taken >= cap[i] or not reduced[i, s] > 0.0:
                break
            o = offer[i, s]
            if o < 0:
                continue
            ok = True
            for w in range(members.shape[1]):  # every group of the offer has room
                g = members[o, w]
                if g < 0:
                    continue
                inside = 0
                for k in range(taken):
                    for v in range(members.shape[1]):
                        if members[picked[k], v] == g:
                            inside += 1
                if inside >= limit[g]:
                    ok = False
            if ok and per_category >= 0:  # every category of the offer has room
                for w in range(categories.shape[1]):
                    c = categories[o, w]
                    if c < 0:
                        continue
                    inside = 0
                    for k in range(taken):
                        for v in range(categories.shape[1]):
                            if categories[picked[k], v] == c:
                                inside += 1
                    if inside >= per_category:
                        ok = False
            if ok:
                chosen[i, s] = True
                picked[taken] = o
                taken += 1
    return chosen
