"""The compiled kernels agree with the vectorised numpy reference they replace in the passes."""
from __future__ import annotations

import numpy as np
import pytest

from optimizer.solve.lagrangian import _kernels as kernels
from optimizer.solve.lagrangian.critical import Candidates, critical_prices
from optimizer.solve.lagrangian.greedy import ExactChoice, _top_sorted, select, thresholds


def _sorted_price(group, crit, weight, capacity):
    """Per group, the least price >= 0 at which the weight of candidates with crit > price fits
    the capacity, by a plain sort (the definition the bucketed kernel must reproduce)."""
    price = np.zeros(capacity.shape[0])
    for g in range(capacity.shape[0]):
        if not np.isfinite(capacity[g]):
            continue
        mine = (group == g) & (crit > 0) & (weight > 0)
        order = np.argsort(-crit[mine], kind="stable")
        running = np.cumsum(weight[mine][order])
        spill = np.flatnonzero(running > capacity[g] * (1 + 1e-12))
        price[g] = crit[mine][order][spill[0]] if spill.size else 0.0
    return price


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
        margin = np.full(offer.shape, np.nan)
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
        np.testing.assert_allclose(margin[valid], (value - limits)[valid], rtol=1e-12,
                                   atol=1e-12, err_msg=f"trial {trial}")
        assert np.isnan(margin[~valid]).all()  # empty slots are left alone
        np.testing.assert_allclose(
            kernels.reduced_values(value, cost, offer, budget, count, glob, bonus), reduced)


@pytest.mark.parametrize("per_category", [None, 1, 2])
def test_responses_without_the_bonus_from_those_with_it_are_the_same_bits(per_category):
    """respond_unbonused (the bound's responses of a steering pass, from the plan's responses
    with the target bonus) gives exactly the arrays of respond with a zero bonus, ties and
    empty slots included, and falls back to answering everyone with a negative bonus."""
    rng = np.random.default_rng(5)
    answered_again = 0
    for trial in range(60):
        n_offers = int(rng.integers(2, 40))
        offer, value, cost, cap, categories, (budget, count, glob, bonus) = _instance(
            rng, int(rng.integers(1, 60)), int(rng.integers(1, min(n_offers, 25) + 1)),
            n_offers, int(rng.integers(1, 6)))
        value = np.round(value * 4) / 4  # exact ties
        if trial % 3 == 0:
            bonus = bonus * 20  # bonuses that win: those customers are answered again
        if trial % 10 == 9:
            bonus = bonus - 0.02  # negative somewhere: everyone is answered again
        primary = categories[:, 0]
        bonused = kernels.respond(value, cost, offer, cap, budget, count, glob, bonus, primary,
                                  per_category)
        want = kernels.respond(value, cost, offer, cap, budget, count, glob,
                               np.zeros(n_offers), primary, per_category)
        got = kernels.respond_unbonused(value, cost, offer, cap, budget, count, glob, bonus,
                                        primary, per_category, bonused)
        np.testing.assert_array_equal(got[0], want[0], err_msg=f"trial {trial}")
        assert got[1].tobytes() == want[1].tobytes(), f"trial {trial}"
        answered_again += int((bonused[0] != want[0]).any())
    assert answered_again  # the bonus changed some responses: the rows answered again count


@pytest.mark.parametrize("per_category", [None, 1, 2, 3])
def test_best_response_breaks_exact_ties_like_the_numpy_greedy(per_category):
    """Offers of one category often tie exactly: the lower slot (offer) must win every tie."""
    rng = np.random.default_rng(11)
    for trial in range(40):
        n_offers = int(rng.integers(2, 30))
        offer, value, cost, cap, categories, _ = _instance(
            rng, int(rng.integers(1, 40)), int(rng.integers(1, min(n_offers, 20) + 1)),
            n_offers, int(rng.integers(1, 4)))
        value = np.where(offer >= 0, np.round(value * 4) / 4, 0.0)  # a few distinct values
        zeros = np.zeros(n_offers)
        chosen, totals = kernels.respond(value, np.zeros_like(value), offer, cap, zeros, zeros,
                                         0.0, zeros, categories[:, 0], per_category)
        reduced = np.where(offer >= 0, value, -np.inf)
        sel = select(reduced, offer, cap, categories, per_category, relaxed=True,
                     depth_cap=offer.shape[1])
        np.testing.assert_array_equal(chosen, sel.chosen, err_msg=f"trial {trial}")
        np.testing.assert_array_equal(totals, sel.row_totals(reduced))


def test_an_offer_without_category_is_not_capped():
    offer = np.array([[0, 1, 2]], dtype=np.int32)
    value = np.array([[0.9, 0.8, 0.7]])
    primary = np.array([-1, -1, 0])
    zeros = np.zeros(3)
    chosen, _ = kernels.respond(value, np.zeros((1, 3)), offer, np.array([3]), zeros, zeros,
                                0.0, zeros, primary, 1)
    assert chosen.all()


def _as_blocks(rng, offer, cost, margin):
    """The flat candidates laid out as blocks of customers (random widths and block sizes,
    empty slots between customers), in the same row-major order."""
    k = offer.shape[0]
    per_row = []
    while sum(per_row) < k:
        per_row.append(int(min(rng.integers(0, 12), k - sum(per_row))))
    rows = len(per_row)
    cuts = np.unique(np.r_[0, np.sort(rng.integers(0, rows + 1, 3)), rows])
    blocks, at = ([], [], []), 0
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        width = max(per_row[lo:hi], default=0) + int(rng.integers(0, 3))
        b_offer = np.full((hi - lo, width), -1, dtype=np.int32)
        b_cost, b_margin = np.zeros((hi - lo, width)), np.full((hi - lo, width), np.nan)
        for r in range(hi - lo):
            n = per_row[lo + r]
            b_offer[r, :n], b_cost[r, :n] = offer[at:at + n], cost[at:at + n]
            b_margin[r, :n] = margin[at:at + n]
            at += n
        for part, arr in zip(blocks, (b_offer, b_cost, b_margin)):
            part.append(arr)
    return blocks


def test_nothing_over_capacity_means_zero_prices():
    offer = np.array([[0, 0, 1]], dtype=np.int32)
    got = critical_prices(Candidates([offer], [np.ones((1, 3))], [np.array([[1.0, 2.0, 3.0]])]),
                          np.zeros(2), np.zeros(2), np.array([5.0, np.inf]), np.full(2, np.inf),
                          np.inf)
    assert (got[0] == 0).all() and got[1] == 0 and (got[2] == 0).all()


def test_critical_prices_match_a_plain_sort():
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
        got = critical_prices(Candidates(*_as_blocks(rng, offer, cost, margin)), target, count,
                              budget, max_customers, global_budget)
        # the reference: the same three steps, each price read off a plain sort
        lifted = margin + target[offer]
        live = lifted > 0
        lo, lc, lifted = offer[live], cost[live], lifted[live]
        base = lifted - count[lo]
        with np.errstate(divide="ignore", invalid="ignore"):
            per_unit = np.where(lc > 0, base / lc, np.where(base > 0, np.inf, -np.inf))
        own = _sorted_price(lo, per_unit, lc, budget)
        still = per_unit > own[lo]
        glob = 0.0
        if np.isfinite(global_budget):
            glob = float(_sorted_price(np.zeros(int(still.sum()), dtype=np.int64),
                                        per_unit[still], lc[still],
                                        np.array([global_budget]))[0])
        budget_price = np.maximum(own - glob, 0.0)
        counts = _sorted_price(lo, lifted - (budget_price[lo] + glob) * lc, np.ones_like(lc),
                                max_customers)
        np.testing.assert_allclose(got[0], budget_price, rtol=1e-9)
        assert got[1] == pytest.approx(glob, rel=1e-9)
        np.testing.assert_allclose(got[2], counts, rtol=1e-9)


@pytest.mark.parametrize("per_category", [1, 2])
def test_exact_rows_match_the_numpy_enumeration(per_category):
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
        ref = _numpy_exact_choice(reduced, offer, cap, categories, per_category, multi,
                           depth_cap=offer.shape[1])
        np.testing.assert_array_equal(exact, ref.exact, err_msg=f"trial {trial}")
        np.testing.assert_allclose(totals, ref.totals, rtol=1e-12, atol=1e-12,
                                   err_msg=f"trial {trial}")
        np.testing.assert_array_equal(chosen, ref.chosen, err_msg=f"trial {trial}")


def _numpy_exact_choice(reduced: np.ndarray, offer: np.ndarray, cap: np.ndarray, categories: np.ndarray,
                 per_category: int, multi_category: np.ndarray, max_enumerated: int = 4,
                 depth_cap: int | None = None) -> ExactChoice:
    """The vectorised enumeration the solver used before :func:`kernels.exact_rows` (reference).

    Best responses of customers whose candidates include offers spanning several categories.

    With the multi-category candidates' in-or-out decided, the rest is a laminar problem the greedy
    solves exactly; so enumerating the ``2**m`` decisions over a customer's ``m`` positive
    multi-category candidates and keeping the best feasible one is exact. Customers with more than
    ``max_enumerated`` of them keep the exact-feasibility greedy (``exact`` False).
    """
    n, slots = reduced.shape
    multi = (offer >= 0) & multi_category[np.maximum(offer, 0)] & (reduced > 0)
    count = multi.sum(axis=1)
    greedy = select(reduced, offer, cap, categories, per_category, relaxed=False,
                    depth_cap=depth_cap).chosen
    chosen = greedy.copy()
    totals = np.where(greedy, reduced, 0.0).sum(axis=1)
    exact = count == 0
    rows = np.flatnonzero((count > 0) & (count <= max_enumerated))
    if rows.size == 0:
        return ExactChoice(chosen, totals, exact)
    # only each customer's best few candidates can matter; look no deeper than that
    reach = int(cap[rows].max()) if depth_cap is None else max(depth_cap, int(cap[rows].max()))
    depth = min(slots, reach * 3 + 8 + max_enumerated)
    top, _ = _top_sorted(reduced[rows], offer[rows], depth)
    r = np.take_along_axis(reduced[rows], top, axis=1)
    o = np.take_along_axis(offer[rows], top, axis=1)
    mul = np.take_along_axis(multi[rows], top, axis=1)
    c = cap[rows]
    m = mul.sum(axis=1)
    rank = np.cumsum(mul, axis=1) - 1
    best_total = np.full(rows.size, -np.inf)
    best = np.zeros_like(mul)
    for pattern in range(2 ** int(m.max())):
        live = np.flatnonzero(pattern < 2 ** m)
        forced = mul[live] & ((pattern >> np.maximum(rank[live], 0)) & 1).astype(bool)
        dropped = mul[live] & ~forced
        rr = r[live]
        # forced candidates first (infinitely attractive), dropped ones never
        trial = np.where(forced, np.inf, np.where(dropped, -np.inf, rr))
        pick = select(trial, o[live], c[live], categories, per_category, relaxed=False,
                      depth_cap=reach).chosen
        feasible = ~(forced & ~pick).any(axis=1)
        total = np.where(pick, rr, 0.0).sum(axis=1)
        better = feasible & (total > best_total[live])
        best_total[live[better]] = total[better]
        best[live[better]] = pick[better]
    # a customer whose examined candidates were all worth taking may have more beyond: not proven
    proven = (depth == slots) | (r[:, -1] <= 0) | (best.sum(axis=1) >= c)
    full = np.zeros((rows.size, slots), dtype=bool)
    rr_idx, tt_idx = np.nonzero(best)
    full[rr_idx, top[rr_idx, tt_idx]] = True
    chosen[rows[proven]] = full[proven]
    totals[rows[proven]] = best_total[proven]
    exact[rows[proven]] = True
    return ExactChoice(chosen, totals, exact)


def test_one_shards_sketch_is_kept_as_the_boundaries():
    """Merged alone, a shard's boundary points are the boundaries it placed on its sample (so a
    solve on one shard keeps the bits it had when the driver placed them on the sample)."""
    from optimizer.solve.lagrangian.sketch import WIDTH, merged_bounds

    rng = np.random.default_rng(8)
    offer = rng.integers(0, 4, 60_000).astype(np.int32)
    cost = rng.random(60_000)
    candidates = Candidates(*_as_blocks(rng, offer, cost, rng.normal(0.3, 0.5, 60_000)))
    capacity = np.array([2_000.0, 3_000.0, np.inf, 50.0])
    prices = (np.zeros(4), np.zeros(4), np.zeros(0), 0.0, np.zeros(0))
    bounds, n_bounds, rank, before, members, total = candidates.sketch(0, prices, capacity)
    assert n_bounds.max() > 20 and (members >= 5 * n_bounds).all()  # groups beyond their points
    kept = np.arange(WIDTH) < n_bounds[:, None]
    merged = merged_bounds(n_bounds[None], bounds[kept], rank[kept], before[kept],
                           members[None], total[None], capacity)
    np.testing.assert_array_equal(merged[0], bounds)
    np.testing.assert_array_equal(merged[1], n_bounds)
    assert (np.diff(rank[kept][:n_bounds[0]]) > 0).all()


def test_multi_category_rows_ignores_empty_slots():
    """The solver's one test of rows whose candidates span categories (OfferData
    .multi_category_rows): an empty slot (-1) never counts, even when offer 0 spans two."""
    from optimizer.model.problem import OfferData
    categories = np.array([[0, 1], [1, -1], [2, -1]])
    offers = OfferData(np.ones(3), np.full(3, np.inf), np.full(3, np.inf), np.zeros(3),
                       categories, ["a", "b", "c"])
    offer = np.array([[1, 2, -1], [0, 2, -1], [-1, -1, -1], [2, 1, 1]])
    assert offers.multi_category_rows(offer).tolist() == [False, True, False, False]


def test_top_candidates_break_ties_at_the_depth_by_lower_offer():
    """The ``depth`` best candidates of a row, ties by lower offer index, also for the ties at
    the cut: ``np.argpartition`` let its selection algorithm pick among those (numpy may run a
    SIMD one by CPU), so the candidates examined did not follow the offers."""
    rng = np.random.default_rng(0)
    reduced = rng.integers(0, 3, (500, 30)).astype(float)  # many ties
    offer = np.argsort(rng.random((500, 30)), axis=1) - 1  # -1: an empty slot
    top, vals = _top_sorted(reduced, offer, 7)
    want = np.lexsort((offer, -reduced), axis=1)[:, :7]
    np.testing.assert_array_equal(top, want)
    np.testing.assert_array_equal(vals, np.take_along_axis(reduced, want, axis=1))
