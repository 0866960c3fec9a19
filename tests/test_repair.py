"""Repair and refill on hand-made blocks: what they must add back, and what they must never do."""
from __future__ import annotations

import numpy as np

from optimizer.model.problem import AssignmentProblem, CandidateBlock, OfferData, Prices
from optimizer.solve.lagrangian.repair import refill, repair


def _problem(budget: list[float], value: list[float], cost: list[float], cap: int = 1,
             global_budget: float = np.inf) -> AssignmentProblem:
    n = len(budget)
    offers = OfferData(discount=np.ones(n), budget=np.array(budget, dtype=float),
                       max_customers=np.full(n, np.inf), min_customers=np.zeros(n, dtype=np.int64),
                       categories=np.arange(n)[:, None], category_names=[f"c{i}" for i in range(n)])
    value_row, cost_row = np.array([value]), np.array([cost])
    block = CandidateBlock(customers=np.array([0]), offer=np.arange(n)[None, :], value=value_row,
                           cost=cost_row, p_redeem=cost_row.copy(), cap=np.array([cap]))
    return AssignmentProblem(offers=offers, blocks=[block], max_per_category=1,
                             global_budget=global_budget, n_customers=1)


def test_refill_gives_back_the_slot_repair_freed():
    """The best response wants an offer whose budget cannot pay for her; repair drops it and the
    refill must hand her the next offer that fits (a lone customer once ended up with nothing:
    the refill stopped after its last round without writing what it had accepted)."""
    problem = _problem(budget=[np.inf, 0.03], value=[0.02, 0.6], cost=[0.06, 0.08],
                       global_budget=0.4)
    chosen = [np.array([[False, True]])]
    repair(problem, chosen)
    assert not chosen[0].any()
    refill(problem, chosen, Prices.zeros(2))
    assert chosen[0].tolist() == [[True, False]]


def test_refill_respects_budgets_and_the_global_budget():
    problem = _problem(budget=[0.05, np.inf, np.inf], value=[0.9, 0.5, 0.4],
                       cost=[0.06, 0.3, 0.2], cap=3, global_budget=0.25)
    chosen = [np.zeros((1, 3), dtype=bool)]
    refill(problem, chosen, Prices.zeros(3))
    # offer 0 is over its own budget, offer 1 over the global budget: only offer 2 fits
    assert chosen[0].tolist() == [[False, False, True]]


def test_keep_best_orders_only_the_tail_yet_keeps_what_a_full_sort_keeps():
    """The global cut sorts only the tail that can spill over: it must keep exactly the
    candidates the full best-first prefix keeps, ties (by index) included."""
    from optimizer.solve.lagrangian.repair import _keep_best, _keep_prefix

    rng = np.random.default_rng(5)
    for trial in range(200):
        n = int(rng.integers(1, 400))
        priority = rng.integers(0, 6, n).astype(float) if trial % 2 else rng.random(n)
        weight = rng.random(n) * (rng.random(n) < 0.9)
        capacity = float(weight.sum() * rng.choice([0.01, 0.3, 0.9, 0.999, 1.5]))
        full = _keep_prefix(np.zeros(n, dtype=np.int64), priority, weight, np.array([capacity]))
        np.testing.assert_array_equal(_keep_best(priority, weight, capacity), full,
                                      err_msg=f"trial {trial}")
