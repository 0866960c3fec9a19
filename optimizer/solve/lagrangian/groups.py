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

# kernels compiled in from other modules, as of 871009cfc2bd
from typing import Callable

import numba as nb
import numpy as np

from optimizer.model.groups import GroupData, violating_rows
from optimizer.model.problem import AssignmentProblem, CandidateBlock, Prices
from optimizer.model.reduced import reduced_value, reduced_values


def breaking_rows(problem: AssignmentProblem, block: CandidateBlock, chosen: np.ndarray,
                  at_risk: "RiskySlots | None" = None) -> np.ndarray | None:
    """Per row of ``block``, whether ``chosen`` breaks a group (``None`` without groups);
    ``at_risk``: the block's :func:`risky_slots`, read instead of every slot."""
    groups = problem.groups
    if groups is None:
        return None
    if at_risk is None:
        return violating_rows(groups, block.offer, chosen)
    return _violating_at(block.n_customers, *at_risk, block.offer, chosen, groups.members,
                         groups.limit)


RiskySlots = tuple[np.ndarray, np.ndarray, np.ndarray]


def risky_slots(problem: AssignmentProblem, block: CandidateBlock) -> RiskySlots | None:
    """The rows of ``block`` whose candidates could break a group (more candidates in one than
    its limit) and, per such row, its slots holding an offer of a group (rows, row starts into
    slots, slots): no other row's choice can break a group, so :func:`breaking_rows` reads these
    slots only. Made once per solve: it depends on the candidates, not on the prices."""
    groups = problem.groups
    if groups is None:
        return None
    return _risky(block.offer, groups.members, groups.limit)


@nb.njit(cache=True, nogil=True)
def _risky(offer, members, limit):  # pragma: no cover - compiled
    n, slots = offer.shape
    width = members.shape[1]
    held = np.zeros(limit.shape[0], dtype=np.int64)
    rows = np.empty(n, dtype=np.int64)
    starts = np.zeros(n + 1, dtype=np.int64)
    kept = np.empty(n * slots, dtype=np.int64)
    m, k = 0, 0
    for i in range(n):
        risky = False
        first = k
        for s in range(slots):
            o = offer[i, s]
            if o < 0:
                continue
            grouped = False
            for w in range(width):
                g = members[o, w]
                if g >= 0:
                    grouped = True
                    held[g] += 1
                    if held[g] > limit[g]:
                        risky = True
            if grouped:
                kept[k] = s
                k += 1
        for t in range(first, k):
            for w in range(width):
                g = members[offer[i, kept[t]], w]
                if g >= 0:
                    held[g] = 0
        if risky:
            rows[m] = i
            m += 1
            starts[m] = k
        else:
            k = first
    return rows[:m].copy(), starts[:m + 1].copy(), kept[:k].copy()


@nb.njit(cache=True, nogil=True)
def _violating_at(n, rows, starts, kept, offer, chosen, members,
                  limit):  # pragma: no cover - compiled
    out = np.zeros(n, dtype=np.bool_)
    held = np.zeros(limit.shape[0], dtype=np.int64)
    width = members.shape[1]
    for r in range(rows.shape[0]):
        i = rows[r]
        for t in range(starts[r], starts[r + 1]):
            s = kept[t]
            o = offer[i, s]
            if chosen[i, s] and o >= 0:
                for w in range(width):
                    g = members[o, w]
                    if g >= 0:
                        held[g] += 1
                        if held[g] > limit[g]:
                            out[i] = True
        for t in range(starts[r], starts[r + 1]):
            o = offer[i, kept[t]]
            if o >= 0:
                for w in range(width):
                    g = members[o, w]
                    if g >= 0:
                        held[g] = 0
    return out


def tighten_dual(problem: AssignmentProblem, block: CandidateBlock, prices: Prices,
                 dual: np.ndarray, breaking: np.ndarray | None = None) -> np.ndarray:
    """``dual`` (each customer's upper bound at ``prices``, no target bonus) lowered to the group
    bound where that is less (see the module docstring). ``breaking``: when ``dual`` holds the
    totals of best responses (no bonus), the rows whose response breaks a group: only those can
    be lowered (a response keeping every group is a plan of the group bound's problem, worth
    ``dual``), so the group bound is made for them alone."""
    groups = problem.groups
    if groups is None or block.n_customers == 0:
        return dual
    at: np.ndarray | slice = slice(None)
    if breaking is not None:
        at = np.flatnonzero(breaking)
        if at.size == 0:
            return dual
    # the reduced values (no bonus) are made row by row inside: no block-sized temporary
    bound = _laminar_totals(block.value[at], block.cost[at], block.offer[at], block.cap[at],
                            prices.cost_price, prices.count, float(prices.global_budget),
                            groups.first, groups.limit)
    out = dual.copy()
    out[at] = np.minimum(dual[at], bound)
    return out


def feasible_plan_rows(problem: AssignmentProblem, block: CandidateBlock, chosen: np.ndarray,
                       reduced: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``chosen`` with every row that breaks a group replaced by the feasible greedy over
    ``reduced(rows)`` (those rows' priorities; ``-inf``: not a candidate), made for the breaking
    rows only."""
    groups = problem.groups
    if groups is None or block.n_customers == 0:
        return chosen
    rows = violating_rows(groups, block.offer, chosen)
    if not rows.any():
        return chosen
    at = np.flatnonzero(rows)
    out = chosen.copy()
    out[at] = _greedy_rows(reduced(at), block.offer[at], block.cap[at], problem)
    return out


def reduced_rows(block: CandidateBlock, prices: Prices) -> Callable[[np.ndarray], np.ndarray]:
    """The reduced values at ``prices`` (target bonus included) of a block's given rows, the
    same bits as :meth:`Prices.reduced_values` of the whole block."""
    bonus = prices.target if prices.target is not None else np.zeros(prices.budget.shape[0])
    return lambda at: reduced_values(block.value[at], block.cost[at], block.offer[at],
                                     prices.cost_price, prices.count, prices.global_budget, bonus)


def trim_plan(problem: AssignmentProblem, chosen: list[np.ndarray]) -> None:
    """Within ``chosen`` (changed in place), rows breaking a group keep their best offers by value
    that obey every per-customer rule."""
    if problem.groups is None:
        return
    for block, mask in zip(problem.blocks, chosen):
        out = feasible_plan_rows(problem, block, mask, _chosen_values(block, mask))
        if out is not mask:
            mask[:] = out


def _chosen_values(block: CandidateBlock, mask: np.ndarray
                   ) -> Callable[[np.ndarray], np.ndarray]:
    """The given rows' values where ``mask`` holds, ``-inf`` elsewhere."""
    return lambda at: np.where(mask[at], block.value[at], -np.inf)


def _greedy_rows(reduced: np.ndarray, offer: np.ndarray, cap: np.ndarray,
                 problem: AssignmentProblem) -> np.ndarray:
    groups: GroupData | None = problem.groups
    assert groups is not None
    per_category = -1 if problem.max_per_category is None else problem.max_per_category
    return _feasible_greedy(np.ascontiguousarray(reduced), offer, cap,
                            problem.offers.categories.astype(np.int64), per_category,
                            groups.members, groups.limit)


@nb.njit(cache=True, nogil=True)
def _laminar_totals(value, cost, offer, cap, budget_price, count_price, glob, first,
                    limit):  # pragma: no cover - compiled
    n, slots = offer.shape
    totals = np.zeros(n)
    held = np.zeros(limit.shape[0], dtype=np.int64)
    live = np.empty(slots, dtype=np.int64)  # the row's slots of positive value, slot order
    row = np.empty(slots)  # the row's reduced values, no bonus (-inf: no candidate)
    for i in range(n):
        # a customer whose candidates of positive value fill no group beyond its limit: the
        # groups cannot bind, the bound is the cap's alone, never below the category bound
        binds = False
        m = 0
        for s in range(slots):
            o = offer[i, s]
            row[s] = -np.inf if o < 0 else reduced_value(value[i, s], cost[i, s], o,
                                                         budget_price, count_price, glob, 0.0)
            if o >= 0 and row[s] > 0.0:
                live[m] = s
                m += 1
                if first[o] >= 0:
                    held[first[o]] += 1
                    if held[first[o]] > limit[first[o]]:
                        binds = True
        for t in range(m):
            if first[offer[i, live[t]]] >= 0:
                held[first[offer[i, live[t]]]] = 0
        if not binds:
            totals[i] = np.inf
            continue
        # best first (ties: the lower slot first) by selection over the positive slots: the
        # greedy stops at the cap, long before a sort of the row would
        taken = 0
        while taken < cap[i] and m > 0:
            k = 0
            for t in range(1, m):
                if row[live[t]] > row[live[k]]:
                    k = t
            s = live[k]
            for t in range(k, m - 1):  # keep the rest in slot order
                live[t] = live[t + 1]
            m -= 1
            g = first[offer[i, s]]
            if g >= 0:
                if held[g] >= limit[g]:
                    continue
                held[g] += 1
            totals[i] += row[s]
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


def group_response(problem: AssignmentProblem, block: CandidateBlock, prices: Prices,
                   chosen: np.ndarray, margin: np.ndarray,
                   breaking: np.ndarray | None = None) -> np.ndarray:
    """The price pass's responses with the groups: rows whose best response breaks a group get
    the greedy that respects them (each offer in its first group, its primary category, the cap)
    and their margins rewritten to that greedy's thresholds (in place in ``margin``), so that the
    prices read the constraints' use from responses the groups allow. Returns ``chosen``.
    ``breaking``: :func:`breaking_rows` of ``chosen`` when the caller has them."""
    groups = problem.groups
    if groups is None or block.n_customers == 0:
        return chosen
    rows = breaking if breaking is not None else violating_rows(groups, block.offer, chosen)
    if not rows.any():
        return chosen
    at = np.flatnonzero(rows)
    reduced = reduced_rows(block, prices)(at)
    per_category = -1 if problem.max_per_category is None else problem.max_per_category
    picked, row_margin = _laminar_respond(
        np.ascontiguousarray(reduced), block.value[at], block.offer[at], block.cap[at],
        groups.first, groups.limit, problem.offers.categories[:, 0].astype(np.int64),
        per_category)
    out = chosen.copy()
    out[at] = picked
    if margin.shape[0]:
        margin[at] = np.where(block.offer[at] >= 0, row_margin, margin[at])
    return out


@nb.njit(cache=True, nogil=True)
def _laminar_respond(reduced, value, offer, cap, first, limit, primary,
                     per_category):  # pragma: no cover - compiled
    """Greedy best first under the cap, each offer's first group and primary category, and each
    candidate's margin ``value - threshold`` (what its reduced value must beat to be, or stay,
    in the response), as :func:`._kernels.respond` reads them for categories."""
    n, slots = offer.shape
    chosen = np.zeros((n, slots), dtype=np.bool_)
    margin = np.zeros((n, slots))
    g_held = np.zeros(limit.shape[0], dtype=np.int64)
    n_cat = 1
    for o in range(primary.shape[0]):
        n_cat = max(n_cat, primary[o] + 1)
    c_held = np.zeros(n_cat, dtype=np.int64)
    for i in range(n):
        order = np.argsort(-reduced[i], kind="mergesort")
        taken = 0
        for t in range(slots):
            s = order[t]
            if taken >= cap[i] or not reduced[i, s] > 0.0:
                break
            o = offer[i, s]
            g, c = first[o], primary[o]
            if g >= 0 and g_held[g] >= limit[g]:
                continue
            if per_category >= 0 and c >= 0 and c_held[c] >= per_category:
                continue
            chosen[i, s] = True
            taken += 1
            if g >= 0:
                g_held[g] += 1
            if per_category >= 0 and c >= 0:
                c_held[c] += 1
        full = taken >= cap[i]
        weakest = np.inf
        best_free = 0.0  # best unchosen candidate whose group and category have room
        for s in range(slots):
            o = offer[i, s]
            if o < 0:
                continue
            if chosen[i, s]:
                weakest = min(weakest, reduced[i, s])
            elif reduced[i, s] > best_free and _room(o, first, limit, g_held, primary,
                                                     per_category, c_held):
                best_free = reduced[i, s]
        for s in range(slots):
            o = offer[i, s]
            if o < 0:
                continue
            g, c = first[o], primary[o]
            if chosen[i, s]:
                # who takes its place: one of its own group or category, or one with room
                bound = best_free
                for q in range(slots):
                    p = offer[i, q]
                    if (p >= 0 and not chosen[i, q] and reduced[i, q] > bound
                            and ((g >= 0 and first[p] == g)
                                 or (per_category >= 0 and c >= 0 and primary[p] == c))):
                        bound = reduced[i, q]
            else:
                # what it must push out: the weakest of a full group or category, else of a
                # full customer
                bound = 0.0
                blocked = False
                if g >= 0 and g_held[g] >= limit[g]:
                    blocked = True
                    weakest_in = np.inf
                    for q in range(slots):
                        if chosen[i, q] and first[offer[i, q]] == g:
                            weakest_in = min(weakest_in, reduced[i, q])
                    bound = max(bound, weakest_in)
                if per_category >= 0 and c >= 0 and c_held[c] >= per_category:
                    blocked = True
                    weakest_in = np.inf
                    for q in range(slots):
                        if chosen[i, q] and primary[offer[i, q]] == c:
                            weakest_in = min(weakest_in, reduced[i, q])
                    bound = max(bound, weakest_in)
                if not blocked and full:
                    bound = weakest
            margin[i, s] = value[i, s] - bound
        for s in range(slots):  # reset what this row held
            if chosen[i, s]:
                o = offer[i, s]
                if first[o] >= 0:
                    g_held[first[o]] = 0
                if per_category >= 0 and primary[o] >= 0:
                    c_held[primary[o]] = 0
    return chosen, margin


@nb.njit(inline="always")
def _room(o, first, limit, g_held, primary, per_category, c_held):  # pragma: no cover
    g, c = first[o], primary[o]
    if g >= 0 and g_held[g] >= limit[g]:
        return False
    if per_category >= 0 and c >= 0 and c_held[c] >= per_category:
        return False
    return True
