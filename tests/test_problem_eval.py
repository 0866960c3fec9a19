"""The problem evaluates plans (``AssignmentProblem.objective``, ``usage``, ``shortfall``,
``violations``, ``feasible``; ``relative_gap``; ``Status``): each figure on a hand-made problem
whose answers are known, each rule broken once on its own."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from optimizer.core.parallel import ThreadMap
from optimizer.model.problem import (
    AssignmentProblem,
    CandidateBlock,
    OfferData,
    Status,
    relative_gap,
)


def _problem(budget=(1.0, 10.0), max_customers=(2.0, np.inf), min_customers=(0, 3),
             per_category=1, global_budget=np.inf) -> AssignmentProblem:
    # two customers, two offers in one category; customer 1 may get only one offer
    offers = OfferData(discount=np.array([1.0, 2.0]), budget=np.array(budget),
                       max_customers=np.array(max_customers),
                       min_customers=np.array(min_customers, dtype=np.int64),
                       categories=np.array([[0], [0]]), category_names=["a"])
    block = CandidateBlock(customers=np.array([0, 1]), offer=np.array([[0, 1], [0, -1]]),
                           value=np.array([[3.0, 2.0], [1.5, 0.0]]),
                           cost=np.array([[0.5, 0.8], [0.25, 0.0]]),
                           p_redeem=np.array([[0.5, 0.4], [0.25, 0.0]]), cap=np.array([2, 1]))
    return AssignmentProblem(offers, [block], per_category, global_budget, 2)


def _plan(*rows):
    return [np.array(rows, dtype=bool)]


def test_objective_usage_and_shortfall() -> None:
    problem = _problem()
    plan = _plan([True, False], [True, False])
    assert problem.objective(plan) == 4.5
    used = problem.usage(plan)
    assert used.spend.tolist() == [0.75, 0.0] and used.customers.tolist() == [2, 0]
    assert used.total_spend == 0.75
    assert problem.shortfall(plan) == 3  # offer 1 wants 3 customers, has none
    assert problem.violations(plan) == dict.fromkeys(
        ("empty_slot", "customer_cap", "category_cap", "budget", "max_customers",
         "global_budget"), 0)
    assert problem.feasible(plan)


@pytest.mark.parametrize("kwargs, plan, rule", [
    ({}, _plan([True, True], [False, False]), "category_cap"),
    ({"per_category": None}, _plan([False, False], [True, True]), "empty_slot"),
    ({"budget": (0.5, 10.0)}, _plan([True, False], [True, False]), "budget"),
    ({"max_customers": (1.0, np.inf)}, _plan([True, False], [True, False]), "max_customers"),
    ({"global_budget": 0.7}, _plan([True, False], [True, False]), "global_budget"),
])
def test_each_rule_broken_alone(kwargs, plan, rule) -> None:
    problem = _problem(**kwargs)
    broken = problem.violations(plan)
    assert {k for k, v in broken.items() if v} >= {rule} and not problem.feasible(plan)


def test_customer_cap_and_tolerance() -> None:
    problem = _problem(per_category=None)
    assert problem.violations(_plan([True, True], [False, False]))["customer_cap"] == 0
    problem.blocks[0].cap[0] = 1
    assert problem.violations(_plan([True, True], [False, False]))["customer_cap"] == 1
    tight = _problem(budget=(0.75 * (1 - 1e-13), 10.0))
    plan = _plan([True, False], [True, False])
    assert not tight.feasible(plan) and tight.feasible(plan, rtol=1e-12, atol=0.0)


def test_gap_and_status_values() -> None:
    assert relative_gap(100.0, 99.0) == pytest.approx(0.01)
    assert relative_gap(100.0, 101.0) == 0.0 and relative_gap(0.0, 5.0) == 0.0
    # the manifest's solver.status strings
    assert [s.value for s in Status] == ["optimal", "iteration_limit", "time_limit", "stalled"]
    assert json.dumps({"status": Status.STALLED}) == '{"status": "stalled"}'


@pytest.mark.parametrize("threads", [1, 3])
def test_plan_sums_match_numpy_to_the_bit(threads: int) -> None:
    # the compiled walk over the masks adds in np.bincount's order over the concatenated
    # chosen entries, so usage and objective are the same floats as numpy's gather gives; on
    # a thread map (the solve's) the blocks are walked on its threads, added in block order
    run = ThreadMap(threads) if threads > 1 else None
    rng = np.random.default_rng(3)
    n_offers, blocks, chosen = 40, [], []
    for start in range(0, 300 * 20, 300):  # more blocks than a batch of the thread map's
        offer = rng.integers(-1, n_offers, (300, 7))
        cost = np.where(offer >= 0, rng.random(offer.shape) * 1e3, 0.0)
        blocks.append(CandidateBlock(customers=np.arange(start, start + 300), offer=offer,
                                     value=rng.random(offer.shape) * 1e5, cost=cost,
                                     p_redeem=cost / 1e3, cap=np.full(300, 3)))
        chosen.append((rng.random(offer.shape) < 0.3) & (offer >= 0))
    offers = OfferData(discount=np.ones(n_offers), budget=np.full(n_offers, np.inf),
                       max_customers=np.full(n_offers, np.inf),
                       min_customers=np.zeros(n_offers, dtype=np.int64),
                       categories=np.zeros((n_offers, 1), dtype=np.int64), category_names=["a"])
    problem = AssignmentProblem(offers, blocks, None, np.inf, 1000)
    used = problem.usage(chosen, run)
    offer = np.concatenate([b.offer[m] for b, m in zip(blocks, chosen)])
    cost = np.concatenate([b.cost[m] for b, m in zip(blocks, chosen)])
    assert used.spend.tobytes() == np.bincount(offer, cost, n_offers).tobytes()
    assert np.array_equal(used.customers, np.bincount(offer, minlength=n_offers))
    assert problem.objective(chosen, run) == float(
        np.concatenate([b.value[m] for b, m in zip(blocks, chosen)]).sum())
    # the shortfall counts customers per offer without gathering the entries: the same counts
    targets = np.arange(n_offers, dtype=np.int64) * 40
    aimed = AssignmentProblem(dataclasses.replace(offers, min_customers=targets), blocks, None,
                              np.inf, 1000)
    counts = np.bincount(offer, minlength=n_offers)
    assert 0 < aimed.shortfall(chosen, run) == int(np.maximum(targets - counts, 0).sum())
    # a chosen empty slot is refused as numpy refuses offer -1
    chosen[17] = chosen[17] | (blocks[17].offer < 0)
    with pytest.raises(ValueError):
        problem.usage(chosen, run)
    with pytest.raises(ValueError):
        aimed.shortfall(chosen, run)
    if run is not None:
        run.close()
