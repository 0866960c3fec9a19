"""Offer groups (exclusive offers) in the solver, against the exact OR-Tools model (hypothesis)."""
from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.model.groups import GroupData, violating_rows
from optimizer.model.problem import AssignmentProblem
from optimizer.solve import certified
from optimizer.solve.exact import solve_exact
from optimizer.solve.lagrangian.method import LagrangianSettings, solve_lagrangian
from tests.test_solver_vs_exact import _assert_feasible, random_problem


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
    exact = solve_exact(problem, time_limit_s=30)
    assert exact.status == "optimal"
    for plan in (lag, exact):
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
