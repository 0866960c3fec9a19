"""Compact margins (:mod:`optimizer.solve.lagrangian.margins`): each customer's two limits
instead of one margin per candidate slot, the margin made where it is read. The margins made
are the stored ones to the bit, and a solve gives the same plan, prices and trace with either."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from optimizer.model.problem import AssignmentProblem, Solution
from optimizer.solve.lagrangian import _kernels as kernels
from optimizer.solve.lagrangian import margins as margin_rules
from optimizer.solve.lagrangian.method import LagrangianSettings, solve_lagrangian
from tests.test_campaign_solver import with_funders
from tests.test_solver_vs_exact import random_problem


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.int64)


@pytest.mark.parametrize("seed", range(6))
def test_limits_make_the_stored_margins_bit_for_bit(seed):
    """The margins the kernel stores per slot are the ones made from its two limits per row and
    its responses, to the bit, on every valid slot (ties, full and not full customers)."""
    rng = np.random.default_rng(seed)
    n, slots, m = 3_000, 9, 14
    offer = np.sort(rng.integers(-1, m, (n, slots)), axis=1).astype(np.int32)
    value = np.round(rng.gamma(1.0, 2.0, (n, slots)), 1)  # rounded: ties
    cost = np.round(rng.uniform(0.0, 3.0, (n, slots)), 1)
    cap = rng.integers(0, 5, n)
    prices = (rng.random(m) * 0.5, rng.random(m) * 0.3, 0.05, np.zeros(m))
    primary = rng.integers(0, 4, m)
    stored = np.zeros((n, slots))
    chosen, totals = kernels.respond(value, cost, offer, cap, *prices, primary, None, stored)
    limits = np.zeros((n, margin_rules.LIMITS))
    again, again_totals = kernels.respond(value, cost, offer, cap, *prices, primary, None,
                                          limits, limits=True)
    assert np.array_equal(chosen, again) and np.array_equal(_bits(totals), _bits(again_totals))
    made = margin_rules.dense(limits, value, chosen, True)
    live = offer >= 0
    assert np.array_equal(_bits(made[live]), _bits(stored[live]))
    assert (chosen & ~live).sum() == 0 and chosen.any() and (~chosen & live).any()


def test_limits_refuse_a_category_cap():
    """Two limits a row cannot hold a category cap's limits: the kernel refuses them."""
    offer = np.zeros((2, 3), dtype=np.int32)
    with pytest.raises(ValueError, match="no category cap"):
        kernels.respond(np.ones((2, 3)), np.ones((2, 3)), offer, np.ones(2, dtype=np.int64),
                        np.zeros(1), np.zeros(1), 0.0, np.zeros(1), np.zeros(1, dtype=np.int64),
                        1, np.zeros((2, 2)), limits=True)


def _solve(problem: AssignmentProblem, shard: int, compact: bool,
           monkeypatch: pytest.MonkeyPatch) -> Solution:
    with monkeypatch.context() as patch:
        if not compact:
            patch.setattr(margin_rules, "compact", lambda problem: False)
        return solve_lagrangian(problem, LagrangianSettings(
            gap_tolerance=1e-7, max_iterations=12, shard_customers=shard))


def _targeted(problem: AssignmentProblem) -> AssignmentProblem:
    offers = problem.offers
    minimum = np.where(np.arange(offers.n_offers) % 3 == 0, 40, 0).astype(offers.min_customers.dtype)
    return dataclasses.replace(problem, offers=dataclasses.replace(offers, min_customers=minimum))


@pytest.mark.parametrize("case", ["budgets", "global", "funders", "targets"])
@pytest.mark.parametrize("shard", [1 << 20, 1_500])
def test_a_solve_with_compact_margins_is_the_dense_ones(case, shard, monkeypatch):
    """The same plan, objective, bound, prices and trace with compact margins as with one
    margin a slot: every constraint kind's critical prices (budgets, the global budget,
    max_customers, funders' budgets, targets' bonus), on one shard and on several."""
    problem = random_problem(7, 4_000, 10, 8, multi=False, per_category=None,
                             global_share=0.4 if case == "global" else None, block=700)
    if case == "funders":
        problem = with_funders(problem, 7, 3, 0.3)
    if case == "targets":
        problem = _targeted(problem)
    assert margin_rules.compact(problem)
    dense = _solve(problem, shard, False, monkeypatch)
    compact = _solve(problem, shard, True, monkeypatch)
    assert dense.iterations > 1  # the critical prices were read
    assert len(compact.chosen) == len(dense.chosen)
    for a, b in zip(compact.chosen, dense.chosen):
        assert np.array_equal(a, b)
    assert (compact.objective, compact.bound, compact.status) == (
        dense.objective, dense.bound, dense.status)
    assert np.array_equal(compact.prices.budget, dense.prices.budget)
    assert np.array_equal(compact.prices.count, dense.prices.count)
    assert compact.prices.global_budget == dense.prices.global_budget
    strip = [{k: v for k, v in t.items() if k != "seconds"} for t in dense.trace]
    assert [{k: v for k, v in t.items() if k != "seconds"} for t in compact.trace] == strip


def test_compact_only_where_each_customer_has_two_limits():
    """A category cap, offer groups or channels give candidates their own limits: dense."""
    problem = random_problem(1, 50, 6, 4, multi=False, per_category=None, global_share=None)
    assert margin_rules.compact(problem)
    capped = random_problem(1, 50, 6, 4, multi=False, per_category=1, global_share=None)
    assert not margin_rules.compact(capped)
    assert not margin_rules.compact(dataclasses.replace(problem, groups=object()))
    assert not margin_rules.compact(dataclasses.replace(problem, channels=object()))
    blocks = problem.blocks
    assert all(m.shape == (b.n_customers, margin_rules.LIMITS)
               for m, b in zip(margin_rules.empty_margins(blocks, True), blocks))
    assert all(m.shape == b.offer.shape
               for m, b in zip(margin_rules.empty_margins(blocks, False), blocks))
