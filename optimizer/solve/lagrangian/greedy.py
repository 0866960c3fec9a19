"""Each customer's best response to prices: the greedy over her own candidates, vectorised.

Under prices, a customer's subproblem is: pick at most ``cap`` offers, at most ``Q`` per category,
maximising the sum of positive reduced values. When every offer has one category, the feasible sets
form a laminar matroid and the greedy (best first, skip what breaks a cap) is exact (Edmonds, 1971;
Gabow & Kohler, laminar matroids). An offer with several categories breaks that structure, so the
greedy is run in two modes:

- ``relaxed``: each offer counts only in its primary category. The constraints are weaker, so the
  greedy optimum is an upper bound on the customer's true optimum; this is what the dual bound uses.
- exact feasibility: an offer counts in every one of its categories. The greedy answer is always
  feasible (maybe not optimal for that customer); this is what the plan uses.

When no candidate of a customer spans categories, both modes coincide.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EXTRA_DEPTH = 8  # candidates examined beyond the cap before falling back to a full sort


@dataclass
class Selection:
    """The greedy's answer on a block.

    chosen: ``(n, slots)`` bool, the selected candidates.
    order: ``(n, depth)`` slot indices of the best candidates, best first (the examined ones).
    taken: ``(n, depth)`` whether each examined candidate was selected.
    values: ``(n, depth)`` reduced values of the examined candidates (``-inf`` for none).
    """

    chosen: np.ndarray
    order: np.ndarray
    taken: np.ndarray
    values: np.ndarray

    def row_totals(self, reduced: np.ndarray) -> np.ndarray:
        """Per customer, the sum of reduced values of her chosen candidates."""
        return np.where(self.chosen, reduced, 0.0).sum(axis=1)


def _top_sorted(reduced: np.ndarray, offer: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Slot indices of the ``depth`` best candidates per row, best first (ties: lower offer index)."""
    n, slots = reduced.shape
    if depth < slots:
        part = np.argpartition(-reduced, depth - 1, axis=1)[:, :depth]
        # which candidates tied with the depth-th best get in follows numpy's selection
        # algorithm (introselect, or a SIMD one by CPU), not the offer: such rows sort whole
        kth = np.take_along_axis(reduced, part, axis=1).min(axis=1)
        tied = np.flatnonzero((reduced >= kth[:, None]).sum(axis=1) > depth)
        if tied.size:
            part[tied] = np.lexsort((offer[tied], -reduced[tied]), axis=1)[:, :depth]
    else:
        part = np.broadcast_to(np.arange(slots), (n, slots))
    vals = np.take_along_axis(reduced, part, axis=1)
    offs = np.take_along_axis(offer, part, axis=1)
    order = np.lexsort((offs, -vals), axis=1)
    part = np.take_along_axis(part, order, axis=1)
    return part, np.take_along_axis(reduced, part, axis=1)


def _greedy_on_sorted(vals: np.ndarray, cats: np.ndarray, cap: np.ndarray,
                      per_category: int | None) -> np.ndarray:
    """Greedy over candidates already sorted best first. ``cats``: (n, depth, width) categories."""
    n, depth = vals.shape
    taken = np.zeros((n, depth), dtype=bool)
    count = np.zeros(n, dtype=np.int64)
    if per_category is None:
        for t in range(depth):
            ok = (vals[:, t] > 0) & (count < cap)
            taken[:, t] = ok
            count += ok
        return taken
    width = cats.shape[2]
    # categories of the offers taken so far, one column per (taken offer, category slot)
    max_take = int(cap.max()) if n else 0
    held = np.full((n, max(1, max_take * width)), -2, dtype=np.int64)
    for t in range(depth):
        ok = (vals[:, t] > 0) & (count < cap)
        for w in range(width):
            cat = cats[:, t, w]
            in_cat = (held == cat[:, None]).sum(axis=1)
            ok &= (cat < 0) | (in_cat < per_category)
        taken[:, t] = ok
        rows = np.flatnonzero(ok)
        if rows.size:
            base = count[rows] * width
            for w in range(width):
                held[rows, base + w] = cats[rows, t, w]
        count += ok
    return taken


def select(reduced: np.ndarray, offer: np.ndarray, cap: np.ndarray, categories: np.ndarray,
           per_category: int | None, relaxed: bool, count_in: int = 0,
           depth_cap: int | None = None) -> Selection:
    """Each row's greedy best response to ``reduced`` values.

    Parameters
    ----------
    reduced: ``(n, slots)`` reduced values, ``-inf`` in empty slots.
    offer: ``(n, slots)`` offer index per slot, -1 when empty.
    cap: ``(n,)`` offers each customer may still get.
    categories: ``(n_offers, width)`` category indices per offer, -1 padded; column 0 primary.
    per_category: the per-customer per-category cap, or ``None``.
    relaxed: count each offer in one category only (upper-bound mode): column ``count_in`` of
        ``categories`` where the offer has one, else its primary category. Any such choice gives an
        upper bound, so callers may take the least of several.
    depth_cap: the largest cap of the whole problem. How many candidates are examined follows from
        it, so a customer's answer never depends on which chunk she was solved in.
    """
    n, slots = reduced.shape
    max_cap = int(cap.max()) if n else 0
    if n == 0 or slots == 0 or max_cap == 0:
        empty = np.zeros((n, 0), dtype=np.int64)
        return Selection(np.zeros((n, slots), dtype=bool), empty, empty.astype(bool),
                         empty.astype(float))
    if relaxed or per_category is None:
        column = categories[:, min(count_in, categories.shape[1] - 1)]
        cat_table = np.where(column >= 0, column, categories[:, 0])[:, None]
    else:
        cat_table = categories
    # one candidate beyond the cap is examined too: it is the runner-up the thresholds need
    extra = 1 if per_category is None else _EXTRA_DEPTH
    depth = min(slots, (max_cap if depth_cap is None else max(depth_cap, max_cap)) + extra)
    order, vals = _top_sorted(reduced, offer, depth)
    cats = cat_table[np.take_along_axis(offer, order, axis=1)]
    cats = np.where((np.take_along_axis(offer, order, axis=1) >= 0)[:, :, None], cats, -1)
    taken = _greedy_on_sorted(vals, cats, cap, per_category)
    if depth < slots:
        order = np.pad(order, ((0, 0), (0, slots - depth)))
        vals = np.pad(vals, ((0, 0), (0, slots - depth)), constant_values=-np.inf)
        taken = np.pad(taken, ((0, 0), (0, slots - depth)))
        # rows that skipped candidates for category reasons and may still want more look twice
        # as deep, again and again; the depths do not depend on the block's width (only capped
        # by it), so what a customer examines, and her thresholds, are the same in any chunk
        reach = depth
        while reach < slots:
            unfinished = ((taken.sum(axis=1) < cap)
                          & (vals[np.arange(n), reach - 1] > 0))
            rows = np.flatnonzero(unfinished)
            if rows.size == 0:
                break
            reach = min(2 * reach, slots)
            deep_order, deep_vals = _top_sorted(reduced[rows], offer[rows], reach)
            deep_off = np.take_along_axis(offer[rows], deep_order, axis=1)
            deep_cats = np.where((deep_off >= 0)[:, :, None], cat_table[deep_off], -1)
            deep_taken = _greedy_on_sorted(deep_vals, deep_cats, cap[rows], per_category)
            order[rows, :reach], vals[rows, :reach] = deep_order, deep_vals
            taken[rows, :reach] = deep_taken
            # padded columns of other rows point at slot 0 but are never taken
    chosen = np.zeros((n, slots), dtype=bool)
    r_idx, t_idx = np.nonzero(taken)
    chosen[r_idx, order[r_idx, t_idx]] = True
    return Selection(chosen, order, taken, vals)


def thresholds(sel: Selection, offer: np.ndarray, cap: np.ndarray, categories: np.ndarray,
               per_category: int | None) -> np.ndarray:
    """For every candidate, the reduced value it must exceed to be in the customer's best response.

    For a chosen candidate that is the best runner-up that would take its place (or 0); for one not
    chosen, the weakest chosen candidate it would have to displace (in its category when that
    category is full, else overall when the customer is full, else 0). Computed on a ``relaxed``
    selection, where the laminar structure makes these exchanges exact; items beyond the examined
    depth are treated as absent, so the thresholds steer prices and never enter the bound.
    """
    n, slots = offer.shape
    depth = sel.order.shape[1]
    if n == 0 or depth == 0:
        return np.full((n, slots), np.inf)
    max_take = max(1, int(cap.max()))
    pos = np.cumsum(sel.taken, axis=1) - 1
    r_idx, t_idx = np.nonzero(sel.taken)
    taken_val = np.full((n, max_take), np.inf)
    taken_val[r_idx, pos[r_idx, t_idx]] = sel.values[r_idx, t_idx]
    n_taken = sel.taken.sum(axis=1)
    weakest = taken_val.min(axis=1)
    full = n_taken >= cap
    examined_off = np.take_along_axis(offer, sel.order, axis=1)
    runner = np.where(~sel.taken & (examined_off >= 0), sel.values, -np.inf)
    if per_category is None:
        t_out = np.where(full, weakest, 0.0)
        result = np.broadcast_to(t_out[:, None], (n, slots)).copy()
        t_in = np.maximum(runner.max(axis=1), 0.0)
        result[r_idx, sel.order[r_idx, t_idx]] = t_in[r_idx]
        return result
    prim = np.where(offer >= 0, categories[np.maximum(offer, 0), 0], -1)
    taken_prim = np.full((n, max_take), -2, dtype=np.int64)
    taken_prim[r_idx, pos[r_idx, t_idx]] = prim[r_idx, sel.order[r_idx, t_idx]]
    in_cat = np.zeros((n, slots), dtype=np.int64)
    weakest_in_cat = np.full((n, slots), np.inf)
    for k in range(max_take):
        match = taken_prim[:, k][:, None] == prim
        in_cat += match
        weakest_in_cat = np.where(match, np.minimum(weakest_in_cat, taken_val[:, k][:, None]),
                                  weakest_in_cat)
    saturated = in_cat >= per_category
    result = np.where(saturated, weakest_in_cat, np.where(full, weakest, 0.0)[:, None])
    ex_prim = np.take_along_axis(prim, sel.order, axis=1)
    ex_sat = np.take_along_axis(saturated, sel.order, axis=1)
    best_unsat = np.maximum(np.where(ex_sat, -np.inf, runner).max(axis=1), 0.0)
    # per chosen candidate k, the best runner-up of its own category
    t_in = np.empty((n, max_take))
    for k in range(max_take):
        same = ex_prim == taken_prim[:, k][:, None]
        t_in[:, k] = np.maximum(np.where(same, runner, -np.inf).max(axis=1), best_unsat)
    result[r_idx, sel.order[r_idx, t_idx]] = t_in[r_idx, pos[r_idx, t_idx]]
    return result


@dataclass
class ExactChoice:
    """Each customer's exact best response where it could be enumerated.

    chosen: ``(n, slots)`` a feasible best response (exact on ``exact`` rows, greedy elsewhere).
    totals: ``(n,)`` the sum of reduced values of ``chosen``.
    exact: ``(n,)`` whether ``chosen`` is proven optimal for that customer.
    """

    chosen: np.ndarray
    totals: np.ndarray
    exact: np.ndarray
