"""The compiled kernels agree with the vectorised numpy reference they replace in the passes."""
from __future__ import annotations

import numpy as np
import pytest

from optimizer.solvers import kernels
from optimizer.solvers.greedy import select, thresholds
from optimizer.solvers.prices import critical_price


def _instance(rng: np.random.Generator, n: int, slots: int, n_offers: int, n_cats: int):
    offer = np.full((n, slots), -1, dtype=np.int32)
    value = np.zeros((n, slots))
    cost = np.zeros((n, slots))
    for i in range(n):
        k = int(rng.integers(0, slots + 1))
        offer[i, :k] = np.sort(rng.choice(n_offers, k, replace=False))
        value[i, :k] = rng.random(k)
        cost[i, :k] = rng.random(k) * 0.5
    cap = rng.integers(0, 6, n)
    categories = rng.integers(0, n_cats, n_offers)[:, None]
    prices = (rng.random(n_offers) * 0.6 * (rng.random(n_offers) < 0.5),
              rng.random(n_offers) * 0.2 * (rng.random(n_offers) < 0.3),
              float(rng.random() * 0.1), rng.random(n_offers) * 0.1 * (rng.random(n_offers) < 0.2))
    return offer, value, cost, cap, categories, prices


@pytest.mark.parametrize("per_category", [None, 1, 2])
def test_best_response_and_margins_match_the_numpy_greedy(per_category):
    rng = np.random.default_rng(7)
    for trial in range(30):
        n_offers = int(rng.integers(2, 40))
        offer, value, cost, cap, categories, (budget, count, glob, bonus) = _instance(
            rng, int(rng.integers(1, 60)), int(rng.integers(1, min(n_offers, 25) + 1)),
            n_offers, int(rng.integers(1, 6)))
        valid = offer >= 0
        margin = np.full(int(valid.sum()), np.nan)
        chosen, totals = kernels.respond(value, cost, offer, cap, budget, count, glob, bonus,
                                         categories[:, 0], per_category, margin)
        safe = np.maximum(offer, 0)
        reduced = np.where(valid, value - (budget[safe] + glob) * cost - count[safe]
                           + bonus[safe], -np.inf)
        sel = select(reduced, offer, cap, categories, per_category, relaxed=True,
                     depth_cap=offer.shape[1])
        np.testing.assert_array_equal(chosen, sel.chosen, err_msg=f"trial {trial}")
        np.testing.assert_allclose(totals, sel.row_totals(reduced), rtol=1e-12, atol=1e-12)
        limits = thresholds(sel, offer, cap, categories, per_category)
        np.testing.assert_allclose(margin, (value - limits)[valid], rtol=1e-12, atol=1e-12,
                                   err_msg=f"trial {trial}")
        np.testing.assert_allclose(
            kernels.reduced_values(value, cost, offer, budget, count, glob, bonus), reduced)


def test_an_offer_without_category_is_not_capped():
    offer = np.array([[0, 1, 2]], dtype=np.int32)
    value = np.array([[0.9, 0.8, 0.7]])
    primary = np.array([-1, -1, 0])
    zeros = np.zeros(3)
    chosen, _ = kernels.respond(value, np.zeros((1, 3)), offer, np.array([3]), zeros, zeros,
                                0.0, zeros, primary, 1)
    assert chosen.all()


def test_critical_prices_match_the_numpy_coordinate_step():
    rng = np.random.default_rng(3)
    for _ in range(25):
        n_offers = int(rng.integers(1, 30))
        k = int(rng.integers(1, 5000))
        offer = rng.integers(0, n_offers, k).astype(np.int32)
        cost = rng.random(k) * (rng.random(k) < 0.95)
        margin = rng.normal(0.3, 0.5, k)
        target = rng.random(n_offers) * 0.1 * (rng.random(n_offers) < 0.3)
        count = rng.random(n_offers) * 0.05
        budget = np.where(rng.random(n_offers) < 0.3, np.inf, rng.random(n_offers) * k / n_offers / 8)
        max_customers = np.where(rng.random(n_offers) < 0.5, np.inf,
                                 rng.integers(1, max(2, k // n_offers), n_offers).astype(float))
        global_budget = float(cost.sum() * rng.random() * 0.5) if rng.random() < 0.7 else np.inf
        got = kernels.critical_prices(offer, cost, margin, target, count, budget, max_customers,
                                      global_budget)
        # the reference: the numpy steps the passes used before the kernels
        lifted = margin + target[offer]
        live = lifted > 0
        lo, lc, lifted = offer[live], cost[live], lifted[live]
        base = lifted - count[lo]
        with np.errstate(divide="ignore", invalid="ignore"):
            per_unit = np.where(lc > 0, base / lc, np.where(base > 0, np.inf, -np.inf))
        own = critical_price(lo, per_unit, lc, budget)
        still = per_unit > own[lo]
        glob = 0.0
        if np.isfinite(global_budget):
            glob = float(critical_price(np.zeros(int(still.sum()), dtype=np.int64),
                                        per_unit[still], lc[still],
                                        np.array([global_budget]))[0])
        budget_price = np.maximum(own - glob, 0.0)
        counts = critical_price(lo, lifted - (budget_price[lo] + glob) * lc, np.ones_like(lc),
                                max_customers)
        np.testing.assert_allclose(got[0], budget_price, rtol=1e-9)
        assert got[1] == pytest.approx(glob, rel=1e-9)
        np.testing.assert_allclose(got[2], counts, rtol=1e-9)


@pytest.mark.parametrize("per_category", [1, 2])
def test_exact_rows_match_the_numpy_enumeration(per_category):
    from optimizer.solvers.greedy import exact_choice
    rng = np.random.default_rng(11)
    for trial in range(30):
        n_offers = int(rng.integers(3, 30))
        offer, value, _, cap, _, _ = _instance(rng, int(rng.integers(1, 50)),
                                               int(rng.integers(1, min(n_offers, 20) + 1)),
                                               n_offers, 1)
        n_cats = int(rng.integers(2, 6))
        categories = np.full((n_offers, 2), -1)
        categories[:, 0] = rng.integers(0, n_cats, n_offers)
        second = rng.random(n_offers) < 0.3
        categories[second, 1] = (categories[second, 0] + 1 + rng.integers(0, n_cats - 1,
                                                                          second.sum())) % n_cats
        multi = categories[:, 1] >= 0
        reduced = np.where(offer >= 0, value - 0.3, -np.inf)
        chosen, totals, exact = kernels.exact_rows(reduced, offer, cap, categories, per_category,
                                                   multi)
        ref = exact_choice(reduced, offer, cap, categories, per_category, multi,
                           depth_cap=offer.shape[1])
        np.testing.assert_array_equal(exact, ref.exact, err_msg=f"trial {trial}")
        np.testing.assert_allclose(totals, ref.totals, rtol=1e-12, atol=1e-12,
                                   err_msg=f"trial {trial}")
        np.testing.assert_array_equal(chosen, ref.chosen, err_msg=f"trial {trial}")
