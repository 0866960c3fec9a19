"""The exact response's margins (optimizer.solve.lagrangian.exact_margins) against brute force: a
candidate is in a customer's exact best response exactly when its reduced value exceeds the
limit the kernel reports."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from optimizer.solve.lagrangian import _kernels as kernels
from optimizer.solve.lagrangian.exact_margins import exact_margins


def _best_total(red: np.ndarray, offers: np.ndarray, cap: int, categories: np.ndarray,
                per_category: int) -> float:
    """One customer's best total by trying every subset (small rows only)."""
    best = 0.0
    k = red.size
    for size in range(1, min(cap, k) + 1):
        for subset in itertools.combinations(range(k), size):
            cats = categories[offers[list(subset)]].ravel()
            cats = cats[cats >= 0]
            if cats.size and np.bincount(cats).max() > per_category:
                continue
            best = max(best, float(red[list(subset)].sum()))
    return best


@pytest.mark.parametrize("per_category", [1, 2])
def test_margins_are_the_exact_responses_limits(per_category):
    rng = np.random.default_rng(5)
    checked = 0
    for trial in range(40):
        n_offers, slots, n_cats = 9, 6, 4
        categories = np.full((n_offers, 2), -1)
        categories[:, 0] = rng.integers(0, n_cats, n_offers)
        second = rng.random(n_offers) < 0.4
        categories[second, 1] = (categories[second, 0] + 1) % n_cats
        multi = categories[:, 1] >= 0
        n = 5
        offer = np.full((n, slots), -1)
        for r in range(n):
            k = int(rng.integers(1, slots + 1))
            offer[r, :k] = np.sort(rng.choice(n_offers, k, replace=False))
        value = np.where(offer >= 0, rng.uniform(0, 2, (n, slots)), 0.0)
        cost = np.where(offer >= 0, rng.uniform(0, 1, (n, slots)), 0.0)
        reduced = np.where(offer >= 0, value - cost, -np.inf)
        cap = rng.integers(0, 4, n)
        chosen, totals, _ = kernels.exact_rows(reduced, offer, cap, categories, per_category,
                                               multi)
        # the relaxed kernel's margins first, as in the solver: rows or slots whose relaxed
        # limit is already exact keep them
        zeros = np.zeros(n_offers)
        margin = np.full(offer.shape, np.nan)
        kernels.respond(value, cost, offer, cap, zeros, zeros, 1.0, zeros, categories[:, 0],
                        per_category, margin)
        done = exact_margins(reduced, value, offer, cap, categories, per_category, multi,
                             chosen, totals, margin)
        for i in np.flatnonzero(done):
            valid = np.flatnonzero(offer[i] >= 0)
            for s in valid:
                limit = value[i, s] - margin[i, s]
                if not np.isfinite(limit):
                    assert cap[i] == 0
                    continue
                red = reduced[i, valid].copy()
                at = int(np.flatnonzero(valid == s)[0])
                rest = np.delete(np.arange(valid.size), at)
                for shift, inside in ((1e-6, True), (-1e-6, False)):
                    red[at] = limit + shift
                    without = _best_total(red[rest], offer[i, valid][rest], int(cap[i]),
                                          categories, per_category)
                    # with s forced, the rest must also respect s's categories
                    with_s = red[at] + _best_with(red, offer[i, valid], at, int(cap[i]),
                                                  categories, per_category)
                    assert (with_s > without) == inside, (trial, i, s, shift)
                    checked += 1
    assert checked > 200


def _best_with(red: np.ndarray, offers: np.ndarray, at: int, cap: int, categories: np.ndarray,
               per_category: int) -> float:
    """Best total of the others given candidate ``at`` is taken (-inf if it cannot be)."""
    if cap < 1:
        return -np.inf
    best = 0.0
    others = [k for k in range(red.size) if k != at]
    for size in range(0, min(cap - 1, len(others)) + 1):
        for subset in itertools.combinations(others, size):
            picked = list(subset) + [at]
            cats = categories[offers[picked]].ravel()
            cats = cats[cats >= 0]
            if cats.size and np.bincount(cats).max() > per_category:
                continue
            best = max(best, float(red[list(subset)].sum()) if subset else 0.0)
    return best


def test_the_global_price_steps_to_where_the_measured_spend_meets_the_budget():
    """Two anchors' (global price, spend) give the price at which the spend meets the global
    budget; the critical target's global price is replaced by it (clipped to a factor of two)."""
    from optimizer.model.problem import AssignmentProblem, OfferData, Prices
    from optimizer.solve.lagrangian.targets import secant_global_price

    offers = OfferData(np.ones(2), np.full(2, np.inf), np.full(2, np.inf), np.zeros(2, dtype=int),
                       np.array([[0, -1], [1, -1]]), ["a", "b"])
    problem = AssignmentProblem(offers, [], 1, 100.0, 0)
    target = Prices(np.zeros(2), np.zeros(2), 0.5, np.zeros(2))
    # spend 120 at price 1.0, 110 at price 1.1: the spend falls 100 per unit, meets 100 at 1.2
    moved = secant_global_price(problem, target, (1.0, 120.0), 1.1, 110.0)
    assert moved.global_budget == pytest.approx(1.2)
    assert secant_global_price(problem, target, None, 1.1, 110.0) is target  # one anchor: no slope
    # a spend that does not fall with the price says nothing: the critical target stands
    assert secant_global_price(problem, target, (1.0, 100.0), 1.1, 110.0) is target
    far = secant_global_price(problem, target, (1.0, 120.0), 1.1, 119.999)
    assert far.global_budget == pytest.approx(2.2)  # clipped to twice the current price
