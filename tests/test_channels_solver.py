"""Channels (capacity, consent, cost per contact, contact budget) in the solver, against the
exact OR-Tools model (hypothesis): every plan obeys them, the Lagrangian bound stays above the
exact optimum; tiny problems where a channel changes the answer."""
from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.model.channels import ChannelData, ChannelPlan, channels_used
from optimizer.model.problem import AssignmentProblem
from optimizer.solve import certified
from optimizer.solve.exact import solve_exact
from optimizer.solve.lagrangian.method import LagrangianSettings, solve_lagrangian
from tests.test_campaign_solver import with_funders, with_groups
from tests.test_solver_vs_exact import _assert_feasible, random_problem


def with_channels(problem: AssignmentProblem, seed: int, n_channels: int, capacity_share: float,
                  budget_share: float | None) -> AssignmentProblem:
    """``problem`` with ``n_channels`` channels (random costs, one uncapped, the others capped
    at ``capacity_share`` of the candidates), random consent (some customers none), and a
    contact budget at ``budget_share`` of what every candidate's cheapest contact would cost."""
    rng = np.random.default_rng(seed + 3)
    n = problem.n_customers
    consent = rng.random((n, n_channels)) < 0.6
    cost = np.round(rng.uniform(0.0, 0.4, n_channels), 2)
    pairs = problem.n_pairs
    capacity = np.floor(np.full(n_channels, capacity_share * pairs))
    capacity[0] = np.inf
    budget = float("inf")
    if budget_share is not None:
        budget = budget_share * pairs * float(cost.mean())
    channels = ChannelData([f"ch{k}" for k in range(n_channels)], capacity, cost, consent,
                           budget)
    blocks = [dataclasses.replace(b, cap=np.where(consent[b.customers].any(axis=1), b.cap, 0))
              for b in problem.blocks]
    return dataclasses.replace(problem, blocks=blocks, channels=channels)


def _assert_channels_hold(problem: AssignmentProblem, chosen: list[np.ndarray]) -> None:
    channels = problem.channels
    assert channels is not None and isinstance(chosen, ChannelPlan)
    for block, mask, ch in zip(problem.blocks, chosen, chosen.channel):
        assert (ch[mask] >= 0).all()
        rows, slots = np.nonzero(mask)
        assert channels.consent[block.customers[rows], ch[rows, slots]].all()
    used = channels_used(channels, chosen)
    assert (used <= channels.capacity).all()
    assert used @ channels.cost <= channels.contact_budget * (1 + 1e-9) + 1e-9


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), n=st.integers(1, 30), m=st.integers(1, 8),
       slots=st.integers(1, 6), multi=st.booleans(), per_category=st.sampled_from([None, 1, 2]),
       global_share=st.sampled_from([None, 0.5]), n_channels=st.integers(1, 3),
       capacity_share=st.sampled_from([0.0, 0.1, 0.3]),
       budget_share=st.sampled_from([None, 0.1, 0.4]), others=st.sampled_from(
           ["none", "groups", "funders"]))
def test_channels_hold_and_bound_valid_against_exact(seed, n, m, slots, multi, per_category,
                                                     global_share, n_channels, capacity_share,
                                                     budget_share, others):
    problem = random_problem(seed, n, m, slots, multi, per_category, global_share)
    if others == "groups":
        problem = with_groups(problem, seed, 2)
    elif others == "funders":
        problem = with_funders(problem, seed, 2, 0.3)
    problem = with_channels(problem, seed, n_channels, capacity_share, budget_share)
    lag = certified(problem, solve_lagrangian(
        problem, LagrangianSettings(gap_tolerance=1e-6, max_iterations=25)))
    exact = solve_exact(problem, time_limit_s=30)
    assert exact.status == "optimal"
    for plan in (lag, exact):
        _assert_feasible(problem, plan.chosen)
        _assert_channels_hold(problem, plan.chosen)
        assert abs(problem.objective(plan.chosen) - plan.objective) <= 1e-6 * max(
            1.0, abs(plan.objective))
    slack = 1e-6 * max(1.0, exact.objective)
    assert lag.bound >= exact.objective - slack
    assert lag.objective <= exact.objective + slack
