"""What keeping only each customer's best few candidates may have cost: the bound over all
candidates, for both candidate paths (the affinity model's best few, and a ``scores`` table's
best ``solver.scores_per_customer``), from the final prices (weak duality holds for any
non-negative prices).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterator

import numpy as np

from optimizer.core.config import Scenario
from optimizer.core.parallel import in_order, thread_count
from optimizer.io.validate import Inputs
from optimizer.model.build import Dropped, scores_blocks
from optimizer.model.eligibility import EligibilityRules
from optimizer.model.problem import (
    AssignmentProblem,
    CandidateBlock,
    Prices,
    Solution,
    relative_gap,
)
from optimizer.scoring.affinity import AffinityModel
from optimizer.solve.lagrangian import _kernels as kernels
from optimizer.solve.lagrangian.bounds import best_totals, virtual_totals
from optimizer.solve.lagrangian.method import capacity_terms, dual_bounds
from optimizer.solve.lagrangian.start import admissible_prices

# customers re-scored over every offer at a time in the bound over all candidates
_RESCORE_ROWS = 10_000


def affinity_truncation(model: AffinityModel, inputs: Inputs, scenario: Scenario,
                rules: EligibilityRules, caps: np.ndarray, problem: AssignmentProblem,
                solution: Solution, dropped: list[Dropped]) -> dict[str, Any]:
    """What keeping only each customer's best few candidates may have cost.

    The final prices bound every eligible pair too (weak duality holds for any non-negative
    prices): the sum over customers of each one's relaxed best response over ALL her eligible
    candidates, plus prices x capacities, bounds the best plan over all candidates
    (as :func:`~optimizer.solve.lagrangian.method.dual_bound` computes it). Each customer's term is
    first bounded from her kept candidates and what she dropped
    (:func:`optimizer.solve.lagrangian.bounds.virtual_totals`: an upper bound, equal to her best response over
    the kept ones when it takes none of the dropped); only the customers for whom a dropped
    candidate could count are re-scored over every eligible offer, and get their exact term.
    The bound is therefore the one a full re-scoring gives (up to rounding), at the cost of
    re-scoring those customers only.
    """
    prices = admissible_prices(problem, solution.prices)
    offers = problem.offers
    primary = offers.categories[:, 0]
    per_category = problem.max_per_category
    bonus = np.zeros(offers.n_offers)
    n_offers = inputs.n_offers

    def customer_terms(item: tuple[CandidateBlock, Dropped]) -> tuple[np.ndarray, int]:
        block, drop = item
        reduced = kernels.reduced_values(block.value, block.cost, block.offer, prices.cost_price,
                                         prices.count, prices.global_budget, bonus)
        totals, virtual = virtual_totals(
            reduced, block.offer, block.cap, primary, per_category, drop.top_value,
            drop.top_category, drop.residual,
            (prices.cost_price, prices.count, prices.global_budget),
            model.redemption_worth_, offers.discount, model.clv_factor_[block.customers])
        del reduced
        positions = np.flatnonzero(virtual)
        for lo in range(0, positions.size, _RESCORE_ROWS):
            at = positions[lo:lo + _RESCORE_ROWS]
            customers = block.customers[at]
            offer = np.broadcast_to(np.arange(n_offers, dtype=np.int64),
                                    (customers.size, n_offers))
            # into an audit of its own: the run's audit already counted these pairs
            eligible = replace(rules, audit=dict.fromkeys(rules.audit, 0)).allowed(customers,
                                                                                 offer)
            totals[at] = best_totals(model.kernel_arrays(customers), customers, eligible,
                                     primary, per_category, block.cap[at], prices.cost_price,
                                     prices.count, prices.global_budget, offers.discount)
        return totals, int(positions.size)
    terms = list(in_order(customer_terms, list(zip(problem.blocks, dropped)),
                           thread_count(scenario.solver.threads)))
    customers = float(np.concatenate([t for t, _ in terms]).sum()) if terms else 0.0
    bound = customers + capacity_terms(problem, prices)
    gap = relative_gap(bound, solution.objective)
    return {"candidates_per_customer": scenario.affinity.candidates_per_customer,
            "pairs": problem.n_pairs, "bound_all_candidates": bound,
            "gap_all_candidates": gap,
            # how much the dropped candidates could add, as far as the final prices can tell
            "bound_increase": max(0.0, bound - solution.bound),
            "customers_rescored": sum(n for _, n in terms)}


def scores_truncation(inputs: Inputs, scenario: Scenario, rules: EligibilityRules,
                       caps: np.ndarray, problem: AssignmentProblem, solution: Solution,
                       selection_prices: Prices | None) -> dict[str, Any]:
    """What keeping only each customer's best ``solver.scores_per_customer`` listed pairs
    (:mod:`optimizer.solve.lagrangian.start`) may have cost: prices bound the plan over every listed pair the
    rules allow (weak duality, :func:`~optimizer.solve.lagrangian.method.dual_bounds`), here the least
    at the final prices, the selection's and points between; the pairs built again chunk by
    chunk."""
    every = scores_blocks(inputs, scenario, rules, caps, problem.offers.discount, audit=False)
    pairs = [0]

    def counted(blocks: Iterator[CandidateBlock]) -> Iterator[CandidateBlock]:
        for block in blocks:
            pairs[0] += block.n_pairs
            yield block
    # any prices bound the plan over every pair: the final ones, the selection's (an LP of a
    # sample with every pair), and points between them, since the dual function is convex in
    # the prices (1 M customers, 12 kept: 644,196 at the midpoint, 645,408 and 645,670 at the
    # ends; each point costs one best response per chunk, the table is read once)
    tried = [solution.prices]
    if selection_prices is not None:
        tried += [solution.prices.towards(selection_prices, share)
                  for share in (0.25, 0.5, 0.75, 1.0)]
    bound = min(dual_bounds(problem, tried, counted(every)))
    gap = relative_gap(bound, solution.objective)
    return {"candidates_per_customer": scenario.solver.scores_per_customer,
            "pairs": problem.n_pairs, "pairs_all_candidates": pairs[0],
            "bound_all_candidates": bound, "gap_all_candidates": gap,
            "bound_increase": max(0.0, bound - solution.bound)}


__all__ = ["affinity_truncation", "scores_truncation"]
