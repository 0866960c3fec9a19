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

# kernels compiled in from other modules, as of 871009cfc2bd
from typing import Callable, Sequence, TypeVar

import numba as nb
import numpy as np

from optimizer.model.reduced import reduced_value, reduced_values  # noqa: F401 (re-exported)

T = TypeVar("T")
R = TypeVar("R")
# maps a function over items, results in item order (e.g. the solver's thread pool)
Mapper = Callable[[Callable[[T], R], Sequence[T]], list[R]]


def serial_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """The default :data:`Mapper`: one item after the other."""
    return [fn(item) for item in items]


_JIT = {"cache": True, "nogil": True}
_EMPTY_2D = np.zeros((0, 0))


@nb.njit(inline="always")  # a call passing arrays per candidate is costly
def _count(values, n, x):  # pragma: no cover - compiled
    """How many of ``values[:n]`` equal ``x`` (the categories a customer already holds)."""
    inside = 0
    for h in range(n):
        if values[h] == x:
            inside += 1
    return inside


@nb.njit(inline="always")  # a call passing arrays per candidate is costly
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
def _take_best(i, red, offer, primary, per_category, cap, cat_val, cat_slot, cat_n, touched,
               in_top, take_slot, take_val):  # pragma: no cover - compiled
    """The greedy's picks (best first, ties to the lower slot, skipping a candidate whose category
    is full) into ``take_slot``/``take_val`` in pick order; returns how many.

    Picking best first and skipping full categories takes exactly the ``cap`` best of the
    candidates that are among their category's ``per_category`` best, so one pass keeps each
    category's best few and a second keeps the best of those: O(slots x cap) instead of a scan
    of every slot per step (O(slots ** 2) for a customer whose candidates fill few categories).
    """
    slots = red.shape[0]
    q = per_category
    if cap <= 0:
        return 0
    if q < 0:  # no category rule: cap scans for the best unseen (faster than inserting for 5)
        for s in range(slots):
            in_top[s] = False  # here: picked already
        taken = 0
        while taken < cap:
            best = -1
            best_val = 0.0
            for s in range(slots):
                if not in_top[s] and red[s] > best_val:
                    best = s
                    best_val = red[s]
            if best < 0:
                break
            in_top[best] = True
            take_slot[taken] = best
            take_val[taken] = best_val
            taken += 1
        return taken
    n_touched = 0
    for s in range(slots):
        in_top[s] = False
        r = red[s]
        if not r > 0.0:
            continue
        k = primary[offer[i, s]]
        if k < 0:
            in_top[s] = True
            continue
        if q == 0:
            continue  # no room in any category
        m = cat_n[k]
        if m == 0:
            touched[n_touched] = k
            n_touched += 1
        if m == q and not r > cat_val[k, q - 1]:
            continue  # not above the category's q-th best so far (ties: the lower slot stays)
        j = m if m < q else q - 1
        if m == q:
            in_top[cat_slot[k, q - 1]] = False
        while j > 0 and cat_val[k, j - 1] < r:
            cat_val[k, j] = cat_val[k, j - 1]
            cat_slot[k, j] = cat_slot[k, j - 1]
            j -= 1
        cat_val[k, j] = r
        cat_slot[k, j] = s
        in_top[s] = True
        if m < q:
            cat_n[k] = m + 1
    for t in range(n_touched):
        cat_n[touched[t]] = 0
    taken = 0
    for s in range(slots):  # slot order: a later slot goes after equal values
        if not in_top[s]:
            continue
        r = red[s]
        if taken == cap and not r > take_val[cap - 1]:
            continue
        j = taken if taken < cap else cap - 1
        while j > 0 and take_val[j - 1] < r:
            take_val[j] = take_val[j - 1]
            take_slot[j] = take_slot[j - 1]
            j -= 1
        take_val[j] = r
        take_slot[j] = s
        if taken < cap:
            taken += 1
    return taken


@nb.njit(inline="always")  # a call passing arrays per customer is costly
def _row_response(i, value, cost, offer, cap, budget_price, count_price, glob, bonus, primary,
                  per_category, chosen, red, cat_val, cat_slot, cat_n, touched, in_top,
                  take_slot, take_val, take_cat):  # pragma: no cover - compiled
    """Customer ``i``'s relaxed best response into row ``i`` of ``chosen``: how many she takes
    and the sum of their reduced values (picks in ``take_slot``/``take_val``/``take_cat``)."""
    slots = offer.shape[1]
    for s in range(slots):
        o = offer[i, s]
        chosen[i, s] = False
        if o < 0:
            red[s] = -np.inf
        else:
            red[s] = reduced_value(value[i, s], cost[i, s], o, budget_price, count_price,
                                   glob, bonus[o])
    # greedy, best first (ties: lower slot = lower offer), skipping what breaks a category
    taken = _take_best(i, red, offer, primary, per_category, cap[i], cat_val, cat_slot,
                       cat_n, touched, in_top, take_slot, take_val)
    total = 0.0
    for k in range(taken):
        best = take_slot[k]
        take_cat[k] = primary[offer[i, best]] if per_category >= 0 else -1
        chosen[i, best] = True
        total += take_val[k]
    return taken, total


@nb.njit(**_JIT)
def _row_scratch(slots, primary, per_category):  # pragma: no cover - compiled
    """The scratch arrays :func:`_row_response` reuses from row to row (one set per call)."""
    n_cat = 1
    for o in range(primary.shape[0]):
        n_cat = max(n_cat, primary[o] + 1)
    return (np.empty(slots), np.empty(slots + 1, dtype=np.int64),
            np.empty(slots + 1, dtype=np.int64), np.empty(slots + 1),
            np.empty((n_cat, max(per_category, 1))),
            np.empty((n_cat, max(per_category, 1)), dtype=np.int64),
            np.zeros(n_cat, dtype=np.int64), np.empty(slots, dtype=np.int64),
            np.zeros(slots, dtype=np.bool_))


@nb.njit(**_JIT)
def _respond(value, cost, offer, cap, budget_price, count_price, glob, bonus, primary,
             per_category, chosen, totals, margin, limits_only):  # pragma: no cover - compiled
    n, slots = offer.shape
    want_margin = margin.shape[0] > 0
    (red, take_slot, take_cat, take_val, cat_val, cat_slot, cat_n, touched,
     in_top) = _row_scratch(slots, primary, per_category)
    for i in range(n):
        taken, totals[i] = _row_response(i, value, cost, offer, cap, budget_price, count_price,
                                         glob, bonus, primary, per_category, chosen, red,
                                         cat_val, cat_slot, cat_n, touched, in_top, take_slot,
                                         take_val, take_cat)
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
        if limits_only:  # no category: the limits below are these two (.margins)
            margin[i, 0] = best_unsat
            margin[i, 1] = weakest if full else 0.0
            continue
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
            margin: np.ndarray | None = None, limits: bool = False
            ) -> tuple[np.ndarray, np.ndarray]:
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
        ``limits``: ``margin`` is ``(n, 2)`` and receives each row's two limits instead
        (compact margins, :mod:`.margins`; no category cap).

    Returns ``(chosen, totals)``: the ``(n, slots)`` greedy choice (exact for the relaxed
    problem: a laminar matroid) and each row's sum of chosen reduced values.
    """
    n, slots = offer.shape
    limits_only = bool(limits) and margin is not None
    if margin is not None and limits_only and (per_category is not None
                                               or margin.shape != (n, 2)):
        raise ValueError("compact margins are (n, 2) and need no category cap")
    chosen = np.empty((n, slots), dtype=bool)
    totals = np.empty(n)
    _respond(value, cost, offer, cap.astype(np.int64, copy=False), budget_price, count_price,
             float(global_price), bonus, primary.astype(np.int64, copy=False),
             # a row holds ``slots`` offers: a larger cap binds no more, and the kernel's
             # per-category buffers are sized by it (a cap of 2**31 - 1 failed to allocate)
             -1 if per_category is None else min(int(per_category), slots), chosen, totals,
             _EMPTY_2D if margin is None else margin, limits_only)
    return chosen, totals



@nb.njit(**_JIT)
def _respond_unbonused(value, cost, offer, cap, budget_price, count_price, glob, bonus, primary,
                       per_category, bonused, bonused_totals, chosen,
                       totals):  # pragma: no cover - compiled
    n, slots = offer.shape
    zero = np.zeros(bonus.shape[0])
    (red, take_slot, take_cat, take_val, cat_val, cat_slot, cat_n, touched,
     in_top) = _row_scratch(slots, primary, per_category)
    for i in range(n):
        again = False
        for s in range(slots):
            if bonused[i, s] and bonus[offer[i, s]] != 0.0:
                again = True
                break
        if again:
            _, totals[i] = _row_response(i, value, cost, offer, cap, budget_price, count_price,
                                         glob, zero, primary, per_category, chosen, red,
                                         cat_val, cat_slot, cat_n, touched, in_top, take_slot,
                                         take_val, take_cat)
            continue
        for s in range(slots):
            chosen[i, s] = bonused[i, s]
        totals[i] = bonused_totals[i]


def respond_unbonused(value: np.ndarray, cost: np.ndarray, offer: np.ndarray, cap: np.ndarray,
                      budget_price: np.ndarray, count_price: np.ndarray, global_price: float,
                      bonus: np.ndarray, primary: np.ndarray, per_category: int | None,
                      bonused: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`respond` without the target bonus (``bonus`` zero), given ``bonused``, the
    ``(chosen, totals)`` :func:`respond` gave with ``bonus`` at the same prices: the same
    arrays, to the last bit. Taking a non-negative bonus away lowers only the reduced values
    of the offers that carry one; a customer whose response took none of them sees only
    candidates she passed over fall, so the greedy makes the same picks in the same order (the
    same choice and total, every other reduced value summed alike). Only the customers who took
    an offer with a bonus (a few: the bonus goes to offers short of their targets) are
    answered again; with a negative or NaN bonus, everyone is."""
    if not bool(np.all(bonus >= 0)):
        return respond(value, cost, offer, cap, budget_price, count_price, global_price,
                       np.zeros(bonus.shape[0]), primary, per_category)
    n, slots = offer.shape
    chosen = np.empty((n, slots), dtype=bool)
    totals = np.empty(n)
    _respond_unbonused(value, cost, offer, cap.astype(np.int64, copy=False), budget_price,
                       count_price, float(global_price), np.asarray(bonus, float),
                       primary.astype(np.int64, copy=False),
                       -1 if per_category is None else min(int(per_category), slots),
                       bonused[0], bonused[1], chosen, totals)
    return chosen, totals

# --- exact best responses with multi-category offers -----------------------------------------

@nb.njit(**_JIT)
def _exact_rows(reduced, offer, cap, categories, per_category, multi, max_enumerated,
                chosen, totals, exact):  # pragma: no cover - compiled
    n, slots = offer.shape
    width = categories.shape[1]
    order = np.empty(slots, dtype=np.int64)  # positive candidates, best first
    held = np.empty(slots * width + 1, dtype=np.int64)
    mult = np.empty(slots, dtype=np.int64)  # positions in `order` of the multi-category ones
    by_slot = np.empty(slots, dtype=np.int64)
    rest = np.empty(slots, dtype=np.int64)
    seen_in_cat = np.zeros(max(categories.max() + 1, 1), dtype=np.int64)
    touched = np.empty(slots, dtype=np.int64)
    n_touched = 0
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
        # the pattern's bits in slot order (= offer order), the order forced ones are taken in
        n_forced = m if m <= max_enumerated else 0
        for q in range(n_forced):
            j = q
            while j > 0 and order[mult[by_slot[j - 1]]] > order[mult[q]]:
                by_slot[j] = by_slot[j - 1]
                j -= 1
            by_slot[j] = q
        patterns = 1 << m if m <= max_enumerated else 1
        # the greedy after the forced ones: all positive candidates without enumeration, else
        # the single-category ones among their category's per_category best (a later one of the
        # same category can never fit: the category is full by then, forced ones only take room)
        enumerated = m <= max_enumerated
        n_rest = 0
        q = 0
        for k in range(npos):
            if enumerated and q < m and mult[q] == k:
                q += 1
                continue
            if enumerated:
                cat = categories[offer[i, order[k]], 0]
                if cat >= 0:
                    if seen_in_cat[cat] == 0:
                        touched[n_touched] = cat
                        n_touched += 1
                    seen_in_cat[cat] += 1
                    if seen_in_cat[cat] > per_category:
                        continue
            rest[n_rest] = k
            n_rest += 1
        for t in range(n_touched):
            seen_in_cat[touched[t]] = 0
        n_touched = 0
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
            for b in range(n_forced):  # forced ones in slot order = offer order
                q = by_slot[b]
                if not (pattern >> q) & 1:
                    continue
                k = mult[q]
                slot = order[k]
                o = offer[i, slot]
                if taken < cap[i] and _fits(o, categories, per_category, held, n_held):
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
            for t in range(n_rest):
                k = rest[t]
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
