"""The bound over all candidates: what keeping each customer's best few candidates may cost.

Dropped candidates and the bound over all candidates (:func:`virtual_totals`): for each customer
the scoring kernel (:func:`~optimizer.scoring._pair_kernels.score_select`) records, per primary category, the largest value among her live candidates that were
not kept (the ``top`` largest such categories, and one ``residual`` value bounding every other
dropped candidate). At non-negative prices a candidate's reduced value is at most its value, so
these stand in for every dropped candidate in the relaxed best response; see
:func:`virtual_totals` for why the result is an upper bound, and exact for a customer whose best
response takes none of them.

The kernels re-score a customer's candidates with the scoring kernel of
:mod:`optimizer.scoring._pair_kernels` (same sums in the same order) and price them with the
solver's reduced value.
"""
from __future__ import annotations

# kernels compiled in from other modules, as of 11263a8975f3
import numba as nb
import numpy as np

from optimizer.scoring._pair_kernels import _score_row, _score_scratch
from optimizer.solve.lagrangian._kernels import reduced_value

_JIT = {"cache": True, "nogil": True}


@nb.njit(**_JIT)
def _best_totals(rows, cs, oc, bs, ob, ps, op, redeemed, sent, cat_redeemed, cat_sent, offer_cats,
                 has_history, heuristic, coef, rate, customer_part, offer_part, ds, depth,
                 weights, shape, sensitivity, worth, clv, allowed, primary, n_categories,
                 per_category, cap, budget_price, count_price, glob, discount,
                 totals):  # pragma: no cover - compiled
    """See :func:`best_totals`."""
    n = rows.shape[0]
    m = worth.shape[0]
    acc, vals, ps_buf, offs = _score_scratch(m)
    q = max(per_category, 1)
    held = np.empty((n_categories, q))  # per category its best q reduced values, best first
    n_held = np.zeros(n_categories, dtype=np.int64)
    touched = np.empty(n_categories, dtype=np.int64)
    pool = np.empty(n_categories * q + m)
    every = np.empty(0)  # no floor: every live candidate is scored
    for r in range(n):
        live = _score_row(r, rows[r], cs, oc, bs, ob, ps, op, redeemed, sent, cat_redeemed,
                          cat_sent, offer_cats, has_history, heuristic, coef, rate,
                          customer_part, offer_part, ds, depth, weights, shape, sensitivity,
                          worth, clv, allowed, acc, vals, ps_buf, offs, every)
        size = 0
        n_touched = 0
        for x in range(live):
            j = offs[x]
            cost = ps_buf[x] * discount[j]  # the block's cost (problem._pack)
            red = reduced_value(vals[x], cost, j, budget_price, count_price, glob, 0.0)
            if not red > 0:
                continue
            k = primary[j] if per_category >= 0 else -1
            if k < 0:
                pool[size] = red
                size += 1
                continue
            if per_category == 0:
                continue
            # only her best per_category of a category can be in the greedy's choice
            h = n_held[k]
            if h == 0:
                touched[n_touched] = k
                n_touched += 1
            if h < per_category:
                n_held[k] = h + 1
            elif not red > held[k, h - 1]:
                continue
            else:
                h -= 1
            while h > 0 and held[k, h - 1] < red:
                held[k, h] = held[k, h - 1]
                h -= 1
            held[k, h] = red
        for u in range(n_touched):
            k = touched[u]
            for h in range(n_held[k]):
                pool[size] = held[k, h]
                size += 1
            n_held[k] = 0
        # no category can overflow now: the greedy takes the best cap of the pool, best first
        total = 0.0
        for t in range(min(cap[r], size)):
            b = t
            for x in range(t + 1, size):
                if pool[x] > pool[b]:
                    b = x
            pool[t], pool[b] = pool[b], pool[t]
            total += pool[t]
        totals[r] = total


def best_totals(arrays: dict, rows: np.ndarray, allowed: np.ndarray, primary: np.ndarray,
                per_category: int | None, cap: np.ndarray, budget_price: np.ndarray,
                count_price: np.ndarray, global_price: float, discount: np.ndarray) -> np.ndarray:
    """Each customer's relaxed best response total over all her ``allowed`` candidates at
    (non-negative) prices, scored on the fly: the ``totals`` of
    :func:`optimizer.solve.lagrangian._kernels.respond` (no target bonus) over a block of all of them,
    without building the block. In the relaxed problem (each offer counted in its primary
    category) only a customer's best ``per_category`` candidates of each category can be
    chosen, and among those no category can overflow, so the greedy takes her best ``cap`` of
    them, best first: the same values added in the same order as ``respond``.
    """
    n = rows.shape[0]
    totals = np.zeros(n)
    n_categories = int(primary.max(initial=-1)) + 1
    _best_totals(np.asarray(rows, dtype=np.int64), *arrays["csr"], arrays["has_history"],
                 arrays["heuristic"], arrays["coef"], arrays["rate"], arrays["customer_part"],
                 arrays["offer_part"], arrays["ds"], arrays["depth"], arrays["weights"],
                 arrays["shape"], arrays["sensitivity"], arrays["worth"], arrays["clv"],
                 np.ascontiguousarray(allowed, dtype=np.bool_), np.asarray(primary, np.int64),
                 max(n_categories, 1), -1 if per_category is None else int(per_category),
                 np.asarray(cap, dtype=np.int64), np.asarray(budget_price, float),
                 np.asarray(count_price, float), float(global_price),
                 np.asarray(discount, float), totals)
    return totals


@nb.njit(nogil=True)
def _at_prices(value, clv, kappa, mu, members, lo, hi):  # pragma: no cover - compiled
    """The largest reduced value a candidate of value <= ``value`` of an offer in
    ``members[lo:hi]`` can have: ``max_j value * max(1 - kappa_j / clv, 0) - mu_j``, plus a
    rounding allowance."""
    best = -np.inf
    for x in range(lo, hi):
        j = members[x]
        factor = 1.0 - kappa[j] / clv if clv > 0 else 0.0
        best = max(best, value * max(factor, 0.0) - mu[j])
    return best + 1e-9 * value


@nb.njit(**_JIT)
def _virtual_totals(reduced, offer, cap, primary, per_category, top_value, top_category, residual,
                    clv, kappa, mu, members, group, totals, virtual):  # pragma: no cover
    n, slots = offer.shape
    tighten = kappa.shape[0] > 0
    m = members.shape[0]
    top = top_value.shape[1]
    size = slots + top + 1
    val = np.empty(size)
    cat = np.empty(size, dtype=np.int64)
    copies = np.empty(size, dtype=np.int64)
    is_virtual = np.empty(size, dtype=np.bool_)
    most = 1
    for i in range(n):
        most = max(most, cap[i])
    held = np.empty(most, dtype=np.int64)
    for i in range(n):
        c = cap[i]
        items = 0
        for s in range(slots):
            o = offer[i, s]
            if o >= 0 and reduced[i, s] > 0:
                val[items] = reduced[i, s]
                cat[items] = primary[o] if per_category >= 0 else -1
                copies[items] = 1
                is_virtual[items] = False
                items += 1
        for t in range(top):
            if top_value[i, t] > 0:
                val[items] = top_value[i, t]
                k = top_category[i, t]
                if tighten:
                    val[items] = _at_prices(val[items], clv[i], kappa, mu, members, group[k],
                                            group[k + 1])
                    if not val[items] > 0:
                        continue
                cat[items] = k if per_category >= 0 else -1
                copies[items] = min(per_category, c) if per_category >= 0 else c
                is_virtual[items] = True
                items += 1
        if residual[i] > 0:
            val[items] = residual[i]
            if tighten:
                val[items] = _at_prices(val[items], clv[i], kappa, mu, members, 0, m)
        if residual[i] > 0 and val[items] > 0:
            cat[items] = -1
            copies[items] = c
            is_virtual[items] = True
            items += 1
        # the greedy of the laminar matroid (cap in all, per_category in each category)
        taken = 0
        total = 0.0
        used = False
        while taken < c:
            best = -1
            best_val = 0.0
            for q in range(items):
                if copies[q] > 0 and val[q] > best_val:
                    best = q
                    best_val = val[q]
            if best < 0:
                break
            k = cat[best]
            if k >= 0:
                inside = 0
                for h in range(taken):
                    if held[h] == k:
                        inside += 1
                if inside >= per_category:
                    copies[best] = 0
                    continue
            copies[best] -= 1
            held[taken] = k
            taken += 1
            total += best_val
            used = used or is_virtual[best]
        totals[i] = total
        virtual[i] = used


def virtual_totals(reduced: np.ndarray, offer: np.ndarray, cap: np.ndarray, primary: np.ndarray,
                   per_category: int | None, top_value: np.ndarray, top_category: np.ndarray,
                   residual: np.ndarray, prices: tuple[np.ndarray, np.ndarray, float] | None = None,
                   worth: np.ndarray | None = None, discount: np.ndarray | None = None,
                   clv: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per customer an upper bound on her relaxed best response over ALL her candidates, from
    her kept ones and what :func:`score_select` recorded about the dropped ones; and whether
    the bound used a dropped one (else it is her best response over the kept ones, exactly).

    ``reduced``, ``offer``: ``(n, slots)`` reduced values at non-negative prices and offers of
    the kept candidates (-1: empty slot); ``cap``: ``(n,)``; ``primary``: ``(n_offers,)`` the
    category each offer counts in (-1: none), ``per_category``: the cap per category (``None``:
    none); ``top_value``, ``top_category``, ``residual``: from the :class:`Selection`.

    Why it is an upper bound. The relaxed best response (each offer counted in its primary
    category; :func:`optimizer.solve.lagrangian._kernels.respond`) maximises the sum of reduced values
    over sets of at most ``cap`` candidates with at most ``per_category`` in each category: a
    laminar matroid, on which the greedy (best first, skipping what does not fit) is optimal.
    Add *virtual* candidates: for each recorded category k, ``min(per_category, cap)`` copies
    worth ``top_value`` counting in k, and ``cap`` copies worth ``residual`` counting in no
    category. Every dropped candidate e was live (allowed, value > 0) but not kept; its reduced
    value at prices >= 0 is at most its value (costs are >= 0), which is at most the recorded
    value of its category if that category is recorded, else at most ``residual``. Take an
    optimal set S over all candidates; replace each dropped member by a distinct virtual copy
    (S holds at most ``min(per_category, cap)`` members of one category and at most ``cap`` in
    all, so copies suffice): the new set keeps every category count and the total, so it is
    feasible, and it is worth at least as much. Hence the greedy over kept and virtual
    candidates is >= the optimum over all candidates. If it took no virtual copy, its value is
    the optimum over the kept candidates, which is <= the optimum over all: the two are equal.

    Tighter with the ``prices`` ``(budget, count, global)`` that made ``reduced`` (with the
    offers' ``worth`` and ``discount`` and the customers' ``clv`` factor, the model's): a
    candidate of offer j has value ``v = p worth_j clv`` and cost ``p discount_j``, so its
    reduced value is ``v (1 - kappa_j / clv) - count_j`` with ``kappa_j = (budget_j + global)
    discount_j / worth_j``; for ``v <= V`` that is at most ``V max(1 - kappa_j / clv, 0) -
    count_j``. A virtual candidate is worth the largest of these over the offers of its category
    (over all offers for ``residual``), plus 1e-9 V for rounding, and is left out when that is
    not positive (then no dropped candidate it stands for has a positive reduced value).
    """
    n = offer.shape[0]
    totals = np.zeros(n)
    virtual = np.zeros(n, dtype=np.bool_)
    primary = np.asarray(primary, dtype=np.int64)
    n_categories = int(primary.max(initial=-1)) + 1
    if prices is None:
        kappa = mu = np.zeros(0)
        members = np.zeros(0, dtype=np.int64)
        group = np.zeros(n_categories + 1, dtype=np.int64)
        clv = np.zeros(n)
    else:
        budget, count, glob = prices
        assert worth is not None and discount is not None and clv is not None
        with np.errstate(divide="ignore", invalid="ignore"):
            kappa = np.where(worth > 0, (budget + glob) * discount / worth, np.inf)
        live = np.flatnonzero(worth > 0)  # offers of no worth never have a candidate
        members = live[np.argsort(primary[live], kind="stable")]
        group = np.searchsorted(primary[members], np.arange(n_categories + 1)).astype(np.int64)
        # members[group[k]:group[k + 1]] are the offers of primary category k; the ones without
        # a category come first, below group[0], and only the residual (all offers) covers them
        mu = np.asarray(count, dtype=np.float64)
        kappa = np.asarray(kappa, dtype=np.float64)
        clv = np.asarray(clv, dtype=np.float64)
    _virtual_totals(np.ascontiguousarray(reduced, dtype=np.float64), np.ascontiguousarray(offer),
                    np.asarray(cap, dtype=np.int64), np.asarray(primary, dtype=np.int64),
                    -1 if per_category is None else int(per_category),
                    np.ascontiguousarray(top_value, dtype=np.float64),
                    np.asarray(top_category, dtype=np.int64),
                    np.asarray(residual, dtype=np.float64), clv, kappa, mu, members, group,
                    totals, virtual)
    return totals, virtual
