"""Offer groups (exclusive offers) and funder budgets in the solver, against the exact OR-Tools
model (hypothesis): every plan obeys them, the Lagrangian bound stays above the exact optimum."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.model.funders import FunderData
from optimizer.model.groups import GroupData, violating_rows
from optimizer.model.problem import AssignmentProblem
from optimizer.solve import certified
from optimizer.solve.exact import solve_exact
from optimizer.solve.lagrangian.method import LagrangianSettings, solve_lagrangian
from optimizer.solve.polish import PolishSettings, polish
from tests.test_solver_vs_exact import OBJECTIVE_TOLERANCE, _assert_feasible, random_problem


def with_groups(problem: AssignmentProblem, seed: int, n_groups: int) -> AssignmentProblem:
    """``problem`` with ``n_groups`` random groups (offers in up to two), limits 0..2."""
    rng = np.random.default_rng(seed + 1)
    m = problem.offers.n_offers
    members = np.full((m, 2), -1, dtype=np.int64)
    members[:, 0] = np.where(rng.random(m) < 0.7, rng.integers(0, n_groups, m), -1)
    second = (rng.random(m) < 0.2) & (members[:, 0] >= 0)
    members[second, 1] = (members[second, 0] + 1) % n_groups
    members[members[:, 1] == members[:, 0], 1] = -1
    groups = GroupData(members, rng.integers(0, 3, n_groups).astype(np.int64),
                       [f"g{k}" for k in range(n_groups)])
    return dataclasses.replace(problem, groups=groups)


def with_funders(problem: AssignmentProblem, seed: int, n_funders: int,
                 share: float) -> AssignmentProblem:
    """``problem`` with ``n_funders`` funders (some offers unfunded), each budgeted at ``share``
    of what its offers' candidates could spend (one funder without a budget)."""
    rng = np.random.default_rng(seed + 2)
    m = problem.offers.n_offers
    of_offer = np.where(rng.random(m) < 0.8, rng.integers(0, n_funders, m), -1)
    spend = np.zeros(m)
    for block in problem.blocks:
        spend += np.bincount(block.offer[block.offer >= 0], weights=block.cost[block.offer >= 0],
                             minlength=m)
    funded = of_offer >= 0
    potential = np.bincount(of_offer[funded], weights=spend[funded], minlength=n_funders)
    budget = potential * share
    budget[n_funders - 1] = np.inf
    funders = FunderData(of_offer, budget, np.zeros(n_funders),
                         [f"f{k}" for k in range(n_funders)])
    return dataclasses.replace(problem, funders=funders)


def _funder_spend(problem: AssignmentProblem, chosen: list[np.ndarray]) -> np.ndarray:
    assert problem.funders is not None
    spend = np.zeros(problem.offers.n_offers)
    for block, mask in zip(problem.blocks, chosen):
        spend += np.bincount(block.offer[mask], weights=block.cost[mask],
                             minlength=problem.offers.n_offers)
    return problem.funders.per_funder(spend)


def _assert_polished_close(polished, lag, exact) -> None:
    """The polish (whole problem in its core here) within 1% of the exact optimum, never worse
    than the plan it polished, its bound still valid."""
    slack = 1e-6 * max(1.0, exact.objective)
    assert polished.objective >= (1 - OBJECTIVE_TOLERANCE) * exact.objective - slack, (
        polished.objective, exact.objective, polished.polish)
    assert polished.objective <= exact.objective + slack
    assert polished.objective >= lag.objective
    assert polished.bound >= exact.objective - slack


def _assert_within_groups(problem: AssignmentProblem, chosen: list[np.ndarray]) -> None:
    assert problem.groups is not None
    for block, mask in zip(problem.blocks, chosen):
        assert not violating_rows(problem.groups, block.offer, mask).any()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), n=st.integers(1, 30), m=st.integers(1, 8),
       slots=st.integers(1, 6), multi=st.booleans(), per_category=st.sampled_from([None, 1, 2]),
       global_share=st.sampled_from([None, 0.5]), n_groups=st.integers(1, 3))
def test_groups_hold_and_bound_valid_against_exact(seed, n, m, slots, multi, per_category,
                                                   global_share, n_groups):
    problem = with_groups(random_problem(seed, n, m, slots, multi, per_category, global_share),
                          seed, n_groups)
    lag = certified(problem, solve_lagrangian(
        problem, LagrangianSettings(gap_tolerance=1e-6, max_iterations=25)))
    polished = certified(problem, polish(problem, lag, PolishSettings(seed=seed % 1000)))
    exact = solve_exact(problem, time_limit_s=30)
    assert exact.status == "optimal"
    _assert_polished_close(polished, lag, exact)
    for plan in (lag, polished, exact):
        _assert_feasible(problem, plan.chosen)
        _assert_within_groups(problem, plan.chosen)
    slack = 1e-6 * max(1.0, exact.objective)
    assert lag.bound >= exact.objective - slack
    assert lag.objective <= exact.objective + slack


def test_a_group_changes_the_answer():
    """Two offers in one group of limit 1: the exact plan and the solver's give each customer at
    most one of them, where without the group most customers get both."""
    problem = random_problem(3, 40, 4, 4, multi=False, per_category=None, global_share=None)
    problem = dataclasses.replace(problem, offers=dataclasses.replace(
        problem.offers, budget=np.full(4, np.inf), max_customers=np.full(4, np.inf)))
    members = np.array([[0], [0], [-1], [-1]])
    grouped = dataclasses.replace(problem, groups=GroupData(members, np.array([1]), ["fam"]))
    free = solve_lagrangian(problem, LagrangianSettings())
    both = sum(int((m[:, :] & np.isin(b.offer, [0, 1])).sum(axis=1).max(initial=0) >= 2)
               for b, m in zip(problem.blocks, free.chosen))
    assert both > 0
    for plan in (solve_lagrangian(grouped, LagrangianSettings()), solve_exact(grouped)):
        _assert_within_groups(grouped, plan.chosen)
        assert plan.objective < free.objective
    lag, exact = solve_lagrangian(grouped, LagrangianSettings()), solve_exact(grouped)
    assert abs(lag.objective - exact.objective) <= 1e-9 * exact.objective
    assert lag.bound >= exact.objective * (1 - 1e-12)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), n=st.integers(1, 30), m=st.integers(1, 8),
       slots=st.integers(1, 6), multi=st.booleans(), per_category=st.sampled_from([None, 1, 2]),
       global_share=st.sampled_from([None, 0.5]), n_funders=st.integers(1, 3),
       share=st.sampled_from([0.0, 0.2, 0.5]), groups=st.booleans())
def test_funders_hold_and_bound_valid_against_exact(seed, n, m, slots, multi, per_category,
                                                    global_share, n_funders, share, groups):
    problem = with_funders(random_problem(seed, n, m, slots, multi, per_category, global_share),
                           seed, n_funders, share)
    if groups:
        problem = with_groups(problem, seed, 2)
    lag = certified(problem, solve_lagrangian(
        problem, LagrangianSettings(gap_tolerance=1e-6, max_iterations=25)))
    polished = certified(problem, polish(problem, lag, PolishSettings(seed=seed % 1000)))
    exact = solve_exact(problem, time_limit_s=30)
    assert exact.status == "optimal"
    assert problem.funders is not None
    _assert_polished_close(polished, lag, exact)
    for plan in (lag, polished, exact):
        _assert_feasible(problem, plan.chosen)
        if groups:
            _assert_within_groups(problem, plan.chosen)
        assert (_funder_spend(problem, plan.chosen)
                <= problem.funders.budget * (1 + 1e-9) + 1e-9).all()
    slack = 1e-6 * max(1.0, exact.objective)
    assert lag.bound >= exact.objective - slack
    assert lag.objective <= exact.objective + slack


def test_a_funder_budget_changes_the_answer_and_is_priced():
    """One funder of every offer, budgeted at a tenth of the unconstrained plan's spend: the plan
    spends at most that, and the bound is within 5% of the exact optimum, far below the plan
    without the funder: only the funder's price can bring it there."""
    problem = random_problem(5, 60, 6, 5, multi=False, per_category=None, global_share=None)
    problem = dataclasses.replace(problem, offers=dataclasses.replace(
        problem.offers, budget=np.full(6, np.inf), max_customers=np.full(6, np.inf)))
    free = solve_lagrangian(problem, LagrangianSettings())
    budget = 0.1 * float(sum(b.cost[c].sum() for b, c in zip(problem.blocks, free.chosen)))
    funded = dataclasses.replace(problem, funders=FunderData(
        np.zeros(6, dtype=np.int64), np.array([budget]), np.zeros(1), ["brand"]))
    lag = certified(funded, solve_lagrangian(funded, LagrangianSettings(gap_tolerance=1e-4)))
    exact = solve_exact(funded)
    assert _funder_spend(funded, lag.chosen)[0] <= budget * (1 + 1e-9)
    assert lag.objective < free.objective
    assert lag.prices.funder is not None
    assert exact.objective < 0.5 * free.objective
    assert exact.objective <= lag.bound <= exact.objective * 1.05
    assert lag.objective >= exact.objective * 0.95


@pytest.mark.parametrize("split", [None, 20])
@pytest.mark.parametrize("seed, n, shard", [(0, 10, 4), (1, 5000, 1 << 20), (2, 60_000, 7_000),
                                           (3, 60_000, 1 << 20)])
def test_funder_prices_match_a_plain_sort(seed, n, shard, split, monkeypatch):
    """Each funder's price from the shards' sketches, bucket tallies and crossing buckets is
    the plain sort's over every funded candidate, ties and zero costs included, on one shard or
    several, the crossing buckets of more than ``split`` candidates narrowed first or not."""
    # margins one per slot, written in by hand (not each customer's two limits)
    monkeypatch.setattr("optimizer.solve.lagrangian.margins.compact", lambda problem: False)
    from optimizer.model.problem import Prices
    from optimizer.solve.lagrangian._kernels import serial_map
    from optimizer.solve.lagrangian.funders import funded
    from tests.test_shards import CallsSeen

    problem = with_funders(random_problem(seed, n, 12, 8, multi=False, per_category=None,
                                          global_share=None, block=1000), seed, 4, 0.1)
    rng = np.random.default_rng(seed)
    margins = [np.round(rng.normal(0.3, 0.5, b.offer.shape), 2) for b in problem.blocks]
    for b in problem.blocks:  # zero costs, with margins, among the funded candidates
        b.cost[rng.random(b.cost.shape) < 0.03] = 0.0
    ex = CallsSeen(problem, shard, serial_map)
    ex.split_above = split
    for held, spec in zip(ex.shards, ex.specs):
        for mine, (b, first, end) in zip(held.margins, spec.pieces):
            mine[...] = margins[b][first:end]
    m = problem.offers.n_offers
    prices = Prices(budget=np.zeros(m), count=rng.random(m) * 0.05, global_budget=0.0)
    budget_price, target = rng.random(m) * 0.05, np.zeros(m)
    mu = ex.candidates.funder_prices(prices, budget_price, 0.01, target)
    key, weight, owner = funded(problem, [b.offer for b in problem.blocks],
                                [b.cost for b in problem.blocks], margins, prices, budget_price,
                                0.01, target)
    assert problem.funders is not None and mu is not None
    budget = problem.funders.budget
    for f in range(budget.shape[0]):
        mine = owner == f
        k, w = key[mine], weight[mine]
        order = np.argsort(-k, kind="stable")
        over = np.flatnonzero(np.cumsum(w[order]) > budget[f] * (1 + 1e-12))
        naive = float(k[order[over[0]]]) if over.size and w.sum() > budget[f] * (
            1 + 1e-12) else 0.0
        assert mu[f] == (naive if np.isfinite(naive) else 0.0), (f, mu[f], naive)
        assert w[k > mu[f]].sum() <= budget[f] * (1 + 1e-12)
    assert (mu > 0).sum() >= (1 if n > 10 else 0)
    assert ("kept_collect" in getattr(ex, "seen", ())) == (split is not None and n > 10)
