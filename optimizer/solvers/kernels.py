"""Compiled per-customer kernels of the scale solver (numba).

Why compiled: one price pass over a million customers is a few hundred million small steps (each
customer's best few of ~50 candidates, each candidate's threshold and critical price). As numpy
they are dozens of whole-array passes, each allocating ``customers x slots`` temporaries; as one
compiled loop they run once, in cache, without temporaries. Every kernel releases the GIL, so the
solver's thread pool over chunks runs them on every core, and each writes only its own rows, so
the answer does not depend on the thread count or the chunking.

The kernels mirror, row by row, the vectorised greedy of :mod:`.greedy` (``select`` in relaxed
mode, ``thresholds``); ``tests/test_kernels.py`` checks them against it, the critical prices
against a plain sort, and the exact choice against the vectorised enumeration it replaced.
"""
from __future__ import annotations

import math
from typing import Sequence

import numba as nb
import numpy as np

_JIT = {"cache": True, "nogil": True}
# critical prices: a 1-in-_STRIDE sample places bucket boundaries _OFFSETS sample positions
# either side of its estimate of each constraint's crossing
_STRIDE = 61
_OFFSETS = np.unique(np.round(1.5 ** np.arange(34)).astype(np.int64))[:31]
_WIDTH = 64  # boundaries per group, padded with -inf: a fixed-depth branch-free search
_EMPTY_F = np.zeros(0)
_EMPTY_2D = np.zeros((0, 0))
_PARTS = 16  # fixed slices of the candidates for the critical-price passes (any core count)
_PAR = {"cache": True, "nogil": True, "parallel": True}


@nb.njit(nogil=True)
def _count(values, n, x):  # pragma: no cover - compiled
    """How many of ``values[:n]`` equal ``x`` (the categories a customer already holds)."""
    inside = 0
    for h in range(n):
        if values[h] == x:
            inside += 1
    return inside


@nb.njit(nogil=True)
def _fits(o, categories, per_category, held, n_held):  # pragma: no cover - compiled
    """Whether offer ``o`` keeps every one of its categories within the cap."""
    for w in range(categories.shape[1]):
        cat = categories[o, w]
        if cat < 0:
            continue
        if _count(held, n_held, cat) >= per_category:
            return False
    return True


@nb.njit(**_JIT)
def _respond(value, cost, offer, cap, budget_price, count_price, glob, bonus, primary,
             per_category, chosen, totals, margin):  # pragma: no cover - compiled
    n, slots = offer.shape
    want_margin = margin.shape[0] > 0
    red = np.empty(slots)
    seen = np.zeros(slots, dtype=np.bool_)
    take_slot = np.empty(slots + 1, dtype=np.int64)
    take_cat = np.empty(slots + 1, dtype=np.int64)
    take_val = np.empty(slots + 1)
    for i in range(n):
        for s in range(slots):
            o = offer[i, s]
            chosen[i, s] = False
            seen[s] = False
            if o < 0:
                red[s] = -np.inf
            else:
                red[s] = (value[i, s] - (budget_price[o] + glob) * cost[i, s]
                          - count_price[o]) + bonus[o]
        # greedy, best first (ties: lower slot = lower offer), skipping what breaks a category
        taken = 0
        total = 0.0
        while taken < cap[i]:
            best = -1
            best_val = 0.0
            for s in range(slots):
                if not seen[s] and red[s] > best_val:
                    best = s
                    best_val = red[s]
            if best < 0:
                break
            seen[best] = True
            cat = primary[offer[i, best]] if per_category >= 0 else -1
            if cat >= 0 and _count(take_cat, taken, cat) >= per_category:
                continue
            take_slot[taken] = best
            take_cat[taken] = cat
            take_val[taken] = best_val
            taken += 1
            chosen[i, best] = True
            total += best_val
        totals[i] = total
        if not want_margin:
            continue
        # thresholds: what each candidate must beat to be (stay) in her best response
        full = taken >= cap[i]
        weakest = np.inf
        for k in range(taken):
            weakest = min(weakest, take_val[k])
        best_unsat = 0.0  # best runner-up in a category with room
        for s in range(slots):
            o = offer[i, s]
            if o < 0 or chosen[i, s] or red[s] <= best_unsat:
                continue
            cat = primary[o] if per_category >= 0 else -1
            if cat >= 0 and _count(take_cat, taken, cat) >= per_category:
                continue
            best_unsat = red[s]
        for s in range(slots):
            o = offer[i, s]
            if o < 0:
                continue
            cat = primary[o] if per_category >= 0 else -1
            if chosen[i, s]:
                # the best runner-up that would take its place: one of its own category, or
                # one of a category with room
                limit = best_unsat
                if cat >= 0:
                    for q in range(slots):
                        if (offer[i, q] >= 0 and not chosen[i, q] and red[q] > limit
                                and primary[offer[i, q]] == cat):
                            limit = red[q]
            else:
                held = 0
                weakest_in_cat = np.inf
                if cat >= 0:
                    for k in range(taken):
                        if take_cat[k] == cat:
                            held += 1
                            weakest_in_cat = min(weakest_in_cat, take_val[k])
                if cat >= 0 and held >= per_category:
                    limit = weakest_in_cat
                elif full:
                    limit = weakest
                else:
                    limit = 0.0
            margin[i, s] = value[i, s] - limit


def respond(value: np.ndarray, cost: np.ndarray, offer: np.ndarray, cap: np.ndarray,
            budget_price: np.ndarray, count_price: np.ndarray, global_price: float,
            bonus: np.ndarray, primary: np.ndarray, per_category: int | None,
            margin: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each customer's best response to prices, in the relaxed (primary-category) mode.

    Parameters
    ----------
    value, cost: ``(n, slots)`` candidate values and expected costs.
    offer: ``(n, slots)`` offer index per slot, -1 when empty; slots in increasing offer order.
    cap: ``(n,)`` offers each customer may still get.
    budget_price, count_price, bonus: ``(n_offers,)`` prices and target bonus;
        ``global_price``: the global budget's price. The reduced value of a candidate is
        ``value - (budget_price + global_price) * cost - count_price + bonus``.
    primary: ``(n_offers,)`` the category each offer counts in (-1: none).
    per_category: the per-customer per-category cap, or ``None``.
    margin: optional ``(n, slots)`` output: per valid slot, ``value`` minus the reduced value
        it must beat to be in the best response (the thresholds of :func:`.greedy.thresholds`,
        over every candidate rather than the examined ones); empty slots are left as they are.

    Returns ``(chosen, totals)``: the ``(n, slots)`` greedy choice (exact for the relaxed
    problem: a laminar matroid) and each row's sum of chosen reduced values.
    """
    n, slots = offer.shape
    chosen = np.empty((n, slots), dtype=bool)
    totals = np.empty(n)
    _respond(value, cost, offer, cap.astype(np.int64, copy=False), budget_price, count_price,
             float(global_price), bonus, primary.astype(np.int64, copy=False),
             -1 if per_category is None else int(per_category), chosen, totals,
             _EMPTY_2D if margin is None else margin)
    return chosen, totals


@nb.njit(**_JIT)
def _reduced(value, cost, offer, budget_price, count_price, glob, bonus, out):  # pragma: no cover
    n, slots = offer.shape
    for i in range(n):
        for s in range(slots):
            o = offer[i, s]
            if o < 0:
                out[i, s] = -np.inf
            else:
                out[i, s] = (value[i, s] - (budget_price[o] + glob) * cost[i, s]
                             - count_price[o]) + bonus[o]


def reduced_values(value: np.ndarray, cost: np.ndarray, offer: np.ndarray,
                   budget_price: np.ndarray, count_price: np.ndarray, global_price: float,
                   bonus: np.ndarray) -> np.ndarray:
    """``value - (budget_price + global_price) * cost - count_price + bonus``, ``-inf`` where the
    slot is empty: :meth:`Prices.reduced_values` in one pass without temporaries."""
    out = np.empty(offer.shape)
    _reduced(value, cost, offer, budget_price, count_price, float(global_price), bonus, out)
    return out


# --- critical prices -------------------------------------------------------------------------
# mode 0: each offer's budget price; mode 1: the global budget's price over the candidates still
# in at their offer's price; mode 2: each offer's max_customers price at the budget prices.

@nb.njit(nogil=True)
def _candidate(mode, o, c, m, target, count, own, glob, budget_price):  # pragma: no cover
    """(critical price, weight) of one candidate; weight 0 = does not count."""
    lifted = m + target[o]
    if not lifted > 0:
        return 0.0, 0.0
    if mode == 2:
        return lifted - (budget_price[o] + glob) * c, 1.0
    base = lifted - count[o]
    if c > 0:
        per_unit = base / c
    elif base > 0:
        per_unit = np.inf
    else:
        per_unit = -np.inf
    if mode == 1 and not per_unit > own[o]:
        return 0.0, 0.0
    return per_unit, c


@nb.njit(inline="always")
def _critical(mode, offers, costs, margins, seg_block, seg_lo, seg_hi, part_first, samp_block,
              samp_row, target, count, own, glob, budget_price, capacity):  # pragma: no cover
    # inlined into one kernel per mode below, so that `mode` is a constant the compiler folds
    # out of the candidate loops (a run-time mode made every pass twice as slow)
    n_groups = capacity.shape[0]
    single = mode == 1
    price = np.zeros(n_groups)
    # 1. the candidates of every _STRIDE-th customer, sorted by (group, critical price
    # descending): each stands for _STRIDE candidates
    room = 0
    for q in range(samp_block.shape[0]):
        room += offers[samp_block[q]].shape[1]
    s_group = np.empty(room, dtype=np.int64)
    s_crit = np.empty(room)
    s_weight = np.empty(room)
    n_s = 0
    for q in range(samp_block.shape[0]):
        b, i = samp_block[q], samp_row[q]
        off, cst, mar = offers[b], costs[b], margins[b]
        for s in range(off.shape[1]):
            o = off[i, s]
            if o < 0:
                continue
            g = 0 if single else o
            if not math.isfinite(capacity[g]):
                continue
            crit, w = _candidate(mode, o, cst[i, s], mar[i, s], target, count, own, glob,
                                 budget_price)
            if crit > 0 and w > 0:
                s_group[n_s] = g
                s_crit[n_s] = crit
                s_weight[n_s] = w
                n_s += 1
    s_group, s_crit, s_weight = s_group[:n_s], s_crit[:n_s], s_weight[:n_s]
    order = np.argsort(-s_crit, kind="mergesort")
    order = order[np.argsort(s_group[order], kind="mergesort")]
    # 2. per group, bucket boundaries (descending prices) from the sample, dense around where the
    # sample puts the crossing and sparser away from it; any boundaries give the exact answer,
    # good ones only make the crossing bucket small
    n_off = _OFFSETS.shape[0]
    bounds = np.full((n_groups, _WIDTH), -np.inf)
    n_bounds = np.zeros(n_groups, dtype=np.int64)
    at = 0
    while at < n_s:
        g = s_group[order[at]]
        end = at
        while end < n_s and s_group[order[end]] == g:
            end += 1
        members = end - at
        cross = members - 1
        used = 0.0
        for j in range(members):
            used += s_weight[order[at + j]] * _STRIDE
            if used > capacity[g]:
                cross = j
                break
        positions = np.empty(2 * n_off, dtype=np.int64)
        for d in range(n_off):
            positions[2 * d] = min(max(cross - _OFFSETS[d] - 1, 0), members - 1)
            positions[2 * d + 1] = min(cross + _OFFSETS[d], members - 1)
        positions = np.unique(positions)
        for j in range(positions.shape[0]):
            bounds[g, j] = s_crit[order[at + positions[j]]]
        n_bounds[g] = positions.shape[0]
        at = end
    # 3. one pass: each group's weight and number of candidates per bucket, in _PARTS fixed
    # ranges of customers on all cores; the parts' sums are added in part order, so the prices
    # depend neither on the number of cores nor on the chunking
    n_parts = part_first.shape[0] - 1
    part_mass = np.zeros((n_parts, n_groups, _WIDTH))
    part_tally = np.zeros((n_parts, n_groups, _WIDTH), dtype=np.int64)
    for part in nb.prange(n_parts):
        for sg in range(part_first[part], part_first[part + 1]):
            b = seg_block[sg]
            off, cst, mar = offers[b], costs[b], margins[b]
            for i in range(seg_lo[sg], seg_hi[sg]):
                for s in range(off.shape[1]):
                    o = off[i, s]
                    if o < 0:
                        continue
                    g = 0 if single else o
                    if not math.isfinite(capacity[g]):
                        continue
                    crit, w = _candidate(mode, o, cst[i, s], mar[i, s], target, count, own,
                                         glob, budget_price)
                    if crit > 0 and w > 0:
                        bucket = _bucket_of(bounds, g, crit)
                        part_mass[part, g, bucket] += w
                        part_tally[part, g, bucket] += 1
    mass = np.zeros((n_groups, _WIDTH))
    tally = np.zeros((n_groups, _WIDTH), dtype=np.int64)
    for part in range(n_parts):
        mass += part_mass[part]
        tally += part_tally[part]
    # 4. per group over its capacity, the bucket where the weight above first exceeds it
    crossing = np.full(n_groups, -1, dtype=np.int64)
    fits_above = np.zeros(n_groups)
    size = np.zeros(n_groups + 1, dtype=np.int64)
    for g in range(n_groups):
        if not mass[g].sum() > capacity[g]:
            continue
        above = 0.0
        for bucket in range(n_bounds[g] + 1):
            if above + mass[g, bucket] > capacity[g]:
                crossing[g] = bucket
                break
            above += mass[g, bucket]
        if crossing[g] < 0:  # rounding: over in total, not bucket by bucket; sort the last
            crossing[g] = n_bounds[g]
            above -= mass[g, n_bounds[g]]
        fits_above[g] = above
        size[g + 1] = tally[g, crossing[g]]
    if not (crossing >= 0).any():
        return price
    # 5. one more pass collects the crossing buckets' candidates; only they are sorted
    start = np.cumsum(size)
    top = np.full(n_groups, np.inf)  # the crossing bucket is [bottom, top)
    bottom = np.full(n_groups, -np.inf)
    for g in range(n_groups):
        if crossing[g] >= 0:
            if crossing[g] > 0:
                top[g] = bounds[g, crossing[g] - 1]
            bottom[g] = bounds[g, crossing[g]]
    crits = np.empty(start[-1])
    weights = np.empty(start[-1])
    # each part writes its own stretch of every group's range, so the collected order is the
    # candidates' order whatever the number of cores
    part_fill = np.empty((n_parts, n_groups), dtype=np.int64)
    for g in range(n_groups):
        at = start[g]
        for part in range(n_parts):
            part_fill[part, g] = at
            if crossing[g] >= 0:
                at += part_tally[part, g, crossing[g]]
    for part in nb.prange(n_parts):
        fill = part_fill[part]
        for sg in range(part_first[part], part_first[part + 1]):
            b = seg_block[sg]
            off, cst, mar = offers[b], costs[b], margins[b]
            for i in range(seg_lo[sg], seg_hi[sg]):
                for s in range(off.shape[1]):
                    o = off[i, s]
                    if o < 0:
                        continue
                    g = 0 if single else o
                    if crossing[g] < 0:
                        continue
                    crit, w = _candidate(mode, o, cst[i, s], mar[i, s], target, count, own,
                                         glob, budget_price)
                    if crit > 0 and w > 0 and bottom[g] <= crit < top[g]:
                        crits[fill[g]] = crit
                        weights[fill[g]] = w
                        fill[g] += 1
    for g in range(n_groups):
        if crossing[g] < 0:
            continue
        in_bucket = crits[start[g]:start[g + 1]]
        used = fits_above[g]
        for j in np.argsort(-in_bucket, kind="mergesort"):
            used += weights[start[g] + j]
            if used > capacity[g] * (1 + 1e-12):
                price[g] = in_bucket[j]
                break
    return price


@nb.njit(**_PAR)
def _budget_prices(offers, costs, margins, seg_block, seg_lo, seg_hi, part_first, samp_block,
                   samp_row, target, count, capacity):  # pragma: no cover
    return _critical(0, offers, costs, margins, seg_block, seg_lo, seg_hi, part_first,
                     samp_block, samp_row, target, count, _EMPTY_F, 0.0, _EMPTY_F, capacity)


@nb.njit(**_PAR)
def _global_price(offers, costs, margins, seg_block, seg_lo, seg_hi, part_first, samp_block,
                  samp_row, target, count, own, capacity):  # pragma: no cover
    return _critical(1, offers, costs, margins, seg_block, seg_lo, seg_hi, part_first,
                     samp_block, samp_row, target, count, own, 0.0, _EMPTY_F, capacity)


@nb.njit(**_PAR)
def _count_prices(offers, costs, margins, seg_block, seg_lo, seg_hi, part_first, samp_block,
                  samp_row, target, count, glob, budget_price, capacity):  # pragma: no cover
    return _critical(2, offers, costs, margins, seg_block, seg_lo, seg_hi, part_first,
                     samp_block, samp_row, target, count, _EMPTY_F, glob, budget_price,
                     capacity)


@nb.njit(nogil=True)
def _bucket_of(bounds, g, crit):  # pragma: no cover - compiled
    """How many of row ``g`` of ``bounds`` (descending, -inf padded to 64) exceed ``crit``;
    bucket 0 is the top one. Six steps without branches: the comparisons are unpredictable."""
    b = 0
    for half in (32, 16, 8, 4, 2, 1):
        b += half * (bounds[g, b + half - 1] > crit)
    return b


def _layout(rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """Parts and sample of the critical-price passes over blocks of ``rows`` customers each.

    Part ``p`` is the customers ``[p N / P, (p + 1) N / P)`` of all ``N``, cut into one segment
    per block it spans: ``(seg_block, seg_lo, seg_hi)`` with ``part_first`` the first segment
    of each part. The sample is every ``_STRIDE``-th customer, as ``(block, row)``.
    """
    starts = np.r_[0, np.cumsum(rows)]
    total = int(starts[-1])
    cuts = np.arange(_PARTS + 1, dtype=np.int64) * total // _PARTS
    seg_block, seg_lo, seg_hi, part_first = [], [], [], [0]
    for part in range(_PARTS):  # a loop over parts and blocks, never customers
        for b in range(rows.shape[0]):
            lo, hi = max(cuts[part], starts[b]), min(cuts[part + 1], starts[b + 1])
            if lo < hi:
                seg_block.append(b)
                seg_lo.append(lo - starts[b])
                seg_hi.append(hi - starts[b])
        part_first.append(len(seg_block))
    sampled = np.arange(0, total, _STRIDE, dtype=np.int64)
    samp_block = np.searchsorted(starts, sampled, side="right") - 1
    as_int = lambda x: np.asarray(x, dtype=np.int64)  # noqa: E731
    return (as_int(seg_block), as_int(seg_lo), as_int(seg_hi), as_int(part_first),
            samp_block.astype(np.int64), sampled - starts[samp_block])


def critical_prices(offers: Sequence[np.ndarray], costs: Sequence[np.ndarray],
                    margins: Sequence[np.ndarray], target: np.ndarray, count_price: np.ndarray,
                    budget: np.ndarray, max_customers: np.ndarray, global_budget: float
                    ) -> tuple[np.ndarray, float, np.ndarray]:
    """Budget, global and ``max_customers`` prices at which each constraint is just met.

    Each candidate leaves its customer's best response when its offer's price exceeds its
    critical price; the smallest price that fits a capacity is read off those (coordinate
    ascent on each constraint, Zhang et al., WWW 2020). The offers' budget prices are set
    first, the global price over the candidates they keep, then the count prices at those
    budget prices.

    Parameters
    ----------
    offers, costs, margins: per block of customers, ``(n, slots)`` offer indices (-1: empty
        slot), expected costs, and margins (value minus the reduced value the candidate must
        beat, as :func:`respond` writes them).
    target: the target bonus per offer; count_price: the current count prices.
    budget, max_customers, global_budget: the capacities (``inf``: none).
    """
    offers = nb.typed.List([np.ascontiguousarray(o, dtype=np.int32) for o in offers])
    costs = nb.typed.List([np.ascontiguousarray(c, dtype=np.float64) for c in costs])
    margins = nb.typed.List([np.ascontiguousarray(m, dtype=np.float64) for m in margins])
    layout = _layout(np.array([o.shape[0] for o in offers], dtype=np.int64))
    own = np.zeros(budget.shape[0])
    if np.isfinite(budget).any():
        own = _budget_prices(offers, costs, margins, *layout, target, count_price, budget)
    glob = 0.0
    if np.isfinite(global_budget):
        glob = float(_global_price(offers, costs, margins, *layout, target, count_price, own,
                                   np.array([float(global_budget)]))[0])
    budget_price = np.maximum(own - glob, 0.0)
    count = np.zeros(max_customers.shape[0])
    if np.isfinite(max_customers).any():
        count = _count_prices(offers, costs, margins, *layout, target, count_price, glob,
                              budget_price, max_customers)
    return budget_price, glob, count


# --- exact best responses with multi-category offers -----------------------------------------

@nb.njit(**_JIT)
def _exact_rows(reduced, offer, cap, categories, per_category, multi, max_enumerated,
                chosen, totals, exact):  # pragma: no cover - compiled
    n, slots = offer.shape
    width = categories.shape[1]
    order = np.empty(slots, dtype=np.int64)  # positive candidates, best first
    held = np.empty(slots * width + 1, dtype=np.int64)
    mult = np.empty(slots, dtype=np.int64)  # positions in `order` of the multi-category ones
    pick = np.zeros(slots, dtype=np.bool_)
    best_pick = np.zeros(slots, dtype=np.bool_)
    for i in range(n):
        npos = 0
        for s in range(slots):
            chosen[i, s] = False
            r = reduced[i, s]
            if offer[i, s] < 0 or not r > 0:
                continue
            k = npos
            while k > 0 and reduced[i, order[k - 1]] < r:  # ties keep slot (offer) order
                order[k] = order[k - 1]
                k -= 1
            order[k] = s
            npos += 1
        m = 0
        for k in range(npos):
            if multi[offer[i, order[k]]]:
                mult[m] = k
                m += 1
        patterns = 1 << m if m <= max_enumerated else 1
        best_total = -np.inf
        for pattern in range(patterns):
            # forced multi-category candidates first (in offer order), then the rest best first;
            # without enumeration (too many), the plain greedy with every category counted
            n_held = 0
            taken = 0
            total = 0.0
            feasible = True
            for k in range(npos):
                pick[k] = False
            if m <= max_enumerated:
                for slot in range(slots):  # forced ones in slot order = offer order
                    for q in range(m):
                        k = mult[q]
                        if order[k] == slot and (pattern >> q) & 1:
                            o = offer[i, slot]
                            if taken < cap[i] and _fits(o, categories, per_category, held,
                                                        n_held):
                                pick[k] = True
                                taken += 1
                                total += reduced[i, slot]
                                for w in range(width):
                                    if categories[o, w] >= 0:
                                        held[n_held] = categories[o, w]
                                        n_held += 1
                            else:
                                feasible = False
                if not feasible:
                    continue
            q = 0
            for k in range(npos):
                if m <= max_enumerated and q < m and mult[q] == k:
                    q += 1
                    continue  # decided by the pattern
                if taken >= cap[i]:
                    break
                o = offer[i, order[k]]
                if _fits(o, categories, per_category, held, n_held):
                    pick[k] = True
                    taken += 1
                    total += reduced[i, order[k]]
                    for w in range(width):
                        if categories[o, w] >= 0:
                            held[n_held] = categories[o, w]
                            n_held += 1
            if total > best_total:
                best_total = total
                for k in range(npos):
                    best_pick[k] = pick[k]
        total = 0.0
        for k in range(npos):
            if best_pick[k]:
                chosen[i, order[k]] = True
                total += reduced[i, order[k]]
        totals[i] = total
        exact[i] = m <= max_enumerated


def exact_rows(reduced: np.ndarray, offer: np.ndarray, cap: np.ndarray, categories: np.ndarray,
               per_category: int, multi_category: np.ndarray, max_enumerated: int = 4
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each customer's best response when offers may count in several categories.

    With the in-or-out of her positive multi-category candidates decided, the rest is a laminar
    problem the greedy solves exactly; enumerating the ``2**m`` decisions (``m <=
    max_enumerated``) and keeping the best feasible one is therefore exact (``exact`` True).
    Customers with more such candidates get the greedy with every category counted (feasible,
    not proven optimal). Returns ``(chosen, totals, exact)``; see
    ``tests/test_kernels.py`` for the vectorised reference.
    """
    n, slots = offer.shape
    chosen = np.empty((n, slots), dtype=bool)
    totals = np.empty(n)
    exact = np.empty(n, dtype=bool)
    _exact_rows(reduced, offer, cap.astype(np.int64, copy=False),
                categories.astype(np.int64, copy=False), int(per_category),
                multi_category.astype(np.bool_, copy=False), int(max_enumerated), chosen,
                totals, exact)
    return chosen, totals, exact
