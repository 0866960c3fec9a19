"""Margins of the exact best response where offers span several categories (numba).

The price update (:mod:`.critical`) reads, for every candidate, the reduced value it must beat to
be in its customer's best response (its *limit*; the margin is ``value - limit``). The kernel of
:mod:`.kernels` computes limits for the relaxed response, where each offer counts in its primary
category only. A customer who holds a multi-category offer really occupies every one of its
categories, so her exact best response (the one the bound and the plan use) differs, and prices
steered by relaxed limits miss the demand the plan meets: on the demo the relaxed responses fit
the budgets while the exact ones, repaired, lost 0.25% of the value.

Here the limits are those of the exact response, by enumeration, for every customer with a
candidate whose offer spans categories and at most ``max_enumerated`` positive such candidates:

* a chosen candidate ``s`` stays while ``reduced[s] >= W(without s) - (W* - reduced[s])``;
* an unchosen one enters when ``reduced[s] > W* - W(others | s taken)``;

where ``W*`` is her best total and ``W(...)`` the best total under the stated condition (each an
enumeration over her positive multi-category candidates, the rest by the greedy, which is exact
once those are decided: a laminar matroid). Other customers keep the relaxed limits.
"""
from __future__ import annotations

# kernels compiled in from other modules, as of 5724039851a4
import numba as nb
import numpy as np

from optimizer.model.problem import AssignmentProblem, CandidateBlock, Prices
from optimizer.solve.lagrangian import _kernels as kernels
from optimizer.solve.lagrangian._kernels import _JIT, _fits
from optimizer.solve.lagrangian.greedy import ExactChoice


@nb.njit(inline="always")
def _room(o, categories, per_category, cat_count):  # pragma: no cover - compiled
    """Whether offer ``o`` keeps each of its categories within the cap (``cat_count``: how
    many taken offers count in each category)."""
    for w in range(categories.shape[1]):
        c = categories[o, w]
        if c >= 0 and cat_count[c] >= per_category:
            return False
    return True


@nb.njit(inline="always")
def _hold(o, categories, cat_count, touched, n_touched):  # pragma: no cover - compiled
    """Count offer ``o`` in its categories; returns the new length of ``touched``."""
    for w in range(categories.shape[1]):
        c = categories[o, w]
        if c >= 0:
            if cat_count[c] == 0:
                touched[n_touched] = c
                n_touched += 1
            cat_count[c] += 1
    return n_touched


@nb.njit(**_JIT)
def _best_given(i, reduced, offer, cap, categories, per_category, multi, order, npos, force,
                exclude, mult, cat_count, touched):  # pragma: no cover - compiled
    """Her best total with slot ``force`` taken first (-1: none) and slot ``exclude`` left out
    (-1: none), over her positive candidates ``order[:npos]`` (best first); -inf if ``force``
    cannot be taken. ``cat_count`` is all zeros on entry and on return."""
    if force >= 0 and cap <= 0:
        return -np.inf
    m = 0
    for k in range(npos):
        s = order[k]
        if s != force and s != exclude and multi[offer[i, s]]:
            mult[m] = k
            m += 1
    best = -np.inf
    n_touched = 0
    for pattern in range(1 << m):
        for t in range(n_touched):
            cat_count[touched[t]] = 0
        n_touched = 0
        count = 0
        total = 0.0
        if force >= 0:
            n_touched = _hold(offer[i, force], categories, cat_count, touched, n_touched)
            count = 1
            total = reduced[i, force]
        feasible = True
        for q in range(m):  # forced multi-category ones, best first
            if not (pattern >> q) & 1:
                continue
            s = order[mult[q]]
            o = offer[i, s]
            if count < cap and _room(o, categories, per_category, cat_count):
                count += 1
                total += reduced[i, s]
                n_touched = _hold(o, categories, cat_count, touched, n_touched)
            else:
                feasible = False
                break
        if not feasible:
            continue
        for k in range(npos):  # then the single-category ones, greedily
            if count >= cap:
                break
            s = order[k]
            o = offer[i, s]
            if s == force or s == exclude or multi[o]:
                continue
            if _room(o, categories, per_category, cat_count):
                count += 1
                total += reduced[i, s]
                n_touched = _hold(o, categories, cat_count, touched, n_touched)
        if total > best:
            best = total
    for t in range(n_touched):
        cat_count[touched[t]] = 0
    return best


@nb.njit(**_JIT)
def _exact_margins(reduced, value, offer, cap, categories, per_category, multi, max_enumerated,
                   chosen, totals, margin):  # pragma: no cover - compiled
    n, slots = offer.shape
    width = categories.shape[1]
    order = np.empty(slots, dtype=np.int64)
    mult = np.empty(slots, dtype=np.int64)
    cat_count = np.zeros(max(categories.max() + 1, 1), dtype=np.int64)
    touched = np.empty(slots * width + width + 1, dtype=np.int64)
    done = np.zeros(n, dtype=np.bool_)
    seen_a = np.empty(slots, dtype=np.int64)  # category sets met in a row, and the rest's best
    seen_b = np.empty(slots, dtype=np.int64)
    seen_rest = np.empty(slots)
    taken_cats = np.empty(slots * width + 1, dtype=np.int64)
    for i in range(n):
        any_multi = False
        npos = 0
        m = 0
        for s in range(slots):
            o = offer[i, s]
            if o < 0:
                continue
            if multi[o]:
                any_multi = True
            r = reduced[i, s]
            if not r > 0:
                continue
            if multi[o]:
                m += 1
            k = npos
            while k > 0 and reduced[i, order[k - 1]] < r:  # ties keep slot order
                order[k] = order[k - 1]
                k -= 1
            order[k] = s
            npos += 1
        if not any_multi or m > max_enumerated:
            continue
        best = totals[i]
        n_seen = 0
        n_taken = 0  # her best set's size and the categories it holds
        n_taken_cats = 0
        for s in range(slots):
            if offer[i, s] >= 0 and chosen[i, s]:
                n_taken += 1
                for w in range(width):
                    if categories[offer[i, s], w] >= 0:
                        taken_cats[n_taken_cats] = categories[offer[i, s], w]
                        n_taken_cats += 1
        for s in range(slots):
            o = offer[i, s]
            if o < 0:
                continue
            if m == 0 and not multi[o]:
                # no positive multi-category candidate: her response is the laminar greedy's
                # and so is this candidate's relaxed limit (only a multi-category one, held in
                # its primary category alone there, needs the enumeration)
                continue
            if chosen[i, s]:
                without = _best_given(i, reduced, offer, cap[i], categories, per_category, multi,
                                      order, npos, -1, s, mult, cat_count, touched)
                limit = max(without, 0.0) - (best - reduced[i, s])
            else:
                positive = reduced[i, s] > 0
                rest = -np.inf
                found = False
                if n_taken < cap[i] and _fits(o, categories, per_category, taken_cats,
                                              n_taken_cats):
                    # her best set has room for it: the others still make all of it
                    rest = best
                    found = True
                cacheable = not positive or per_category == 1
                if not found and cacheable:
                    # what the others make beside it depends on its categories alone when it is
                    # not among her positive candidates, or when a category holds one offer
                    # (taking it then bars every other of its categories, itself included):
                    # computed once per category set
                    for h in range(n_seen):
                        if seen_a[h] == categories[o, 0] and seen_b[h] == categories[o, 1 % width]:
                            rest = seen_rest[h]
                            found = True
                            break
                if not found:
                    with_s = _best_given(i, reduced, offer, cap[i], categories, per_category,
                                         multi, order, npos, s, -1, mult, cat_count,
                                         touched)
                    rest = with_s - reduced[i, s] if with_s != -np.inf else -np.inf
                    if cacheable:
                        seen_a[n_seen] = categories[o, 0]
                        seen_b[n_seen] = categories[o, 1 % width]
                        seen_rest[n_seen] = rest
                        n_seen += 1
                limit = np.inf if rest == -np.inf else best - rest  # -inf: no room at all
            margin[i, s] = value[i, s] - limit
        done[i] = True
    return done


def exact_margins(reduced: np.ndarray, value: np.ndarray, offer: np.ndarray, cap: np.ndarray,
                  categories: np.ndarray, per_category: int, multi_category: np.ndarray,
                  chosen: np.ndarray, totals: np.ndarray, margin: np.ndarray,
                  max_enumerated: int = 4) -> np.ndarray:
    """Overwrite ``margin`` with the exact response's margins on the rows this can enumerate.

    ``reduced``: the candidates' reduced values (``-inf`` or any value in empty slots);
    ``chosen``/``totals``: the exact best response to them and its total
    (:func:`.kernels.exact_rows`, same ``max_enumerated``). Rows with a candidate of a
    multi-category offer and at most ``max_enumerated`` positive such candidates get
    ``value - limit`` per valid slot (see the module docstring); returns which rows were
    rewritten. Other rows and empty slots are left as they are.
    """
    return _exact_margins(reduced, value, offer, cap.astype(np.int64, copy=False),
                          categories.astype(np.int64, copy=False), int(per_category),
                          multi_category.astype(np.bool_, copy=False), int(max_enumerated),
                          chosen, totals, margin)


def exact_response(problem: AssignmentProblem, block: CandidateBlock, prices: Prices,
                   margin: np.ndarray) -> ExactChoice | None:
    """The block's exact best responses to ``prices`` (target bonus included) where its offers
    span categories, their margins written into ``margin``; ``None`` where the relaxed response
    is exact (no category cap, or no multi-category candidate)."""
    offers = problem.offers
    if (problem.max_per_category is None
            or not offers.multi_category_rows(block.offer).any()):
        return None
    bonus = prices.target if prices.target is not None else np.zeros(offers.n_offers)
    reduced = kernels.reduced_values(block.value, block.cost, block.offer, prices.cost_price,
                                     prices.count, prices.global_budget, bonus)
    choice = ExactChoice(*kernels.exact_rows(reduced, block.offer, block.cap, offers.categories,
                                             problem.max_per_category, offers.multi_category))
    exact_margins(reduced, block.value, block.offer, block.cap, offers.categories,
                  problem.max_per_category, offers.multi_category, choice.chosen, choice.totals,
                  margin)
    return choice
