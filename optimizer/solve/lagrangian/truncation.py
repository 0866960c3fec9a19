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
    primary = problem.offers.categories[:, 0]
    per_category = problem.max_per_category
    n_offers = inputs.n_offers

    def customer_terms(item: tuple[CandidateBlock, Dropped]) -> tuple[np.ndarray, int]:
        block, drop = item
        totals, virtual = _kept_terms(model, problem, prices, block, drop)
        positions = np.flatnonzero(virtual)
        for lo in range(0, positions.size, _RESCORE_ROWS):
            at = positions[lo:lo + _RESCORE_ROWS]
            customers = block.customers[at]
            eligible = _eligible(rules, customers, n_offers)
            totals[at] = best_totals(model.kernel_arrays(customers), customers, eligible,
                                     primary, per_category, block.cap[at], prices.cost_price,
                                     prices.count, prices.global_budget,
                                     problem.offers.discount)
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


def priced_pairs(model: AffinityModel, inputs: Inputs, scenario: Scenario,
                 rules: EligibilityRules, problem: AssignmentProblem, solution: Solution,
                 dropped: list[Dropped]) -> np.ndarray:
    """The pricing step of column generation (Desrosiers, J. and Lubbecke, M. E. (2005), A
    primer in column generation, in Column Generation, Springer, 1-32): the eligible pairs left
    out of the candidates whose reduced value at the solution's prices is positive, each
    customer's best ``cap`` of them (as many as her best response could take), as sorted keys
    ``c * n_offers + o``. Only the customers for whom a dropped candidate could count
    (:func:`_kept_terms`, the bound's own test) are re-scored; none found: the kept candidates
    already hold every customer's best response at these prices."""
    prices = admissible_prices(problem, solution.prices)
    primary, discount = problem.offers.categories[:, 0], problem.offers.discount
    n_offers = inputs.n_offers
    no_bonus = np.zeros(problem.offers.n_offers)

    def block_pairs(item: tuple[CandidateBlock, Dropped]) -> np.ndarray:
        block, drop = item
        positions = np.flatnonzero(_kept_terms(model, problem, prices, block, drop)[1])
        found = [np.zeros(0, dtype=np.int64)]
        for lo in range(0, positions.size, _RESCORE_ROWS):
            at = positions[lo:lo + _RESCORE_ROWS]
            customers = block.customers[at]
            eligible = _eligible(rules, customers, n_offers)
            kept = block.offer[at]
            live = kept >= 0
            eligible[np.nonzero(live)[0], kept[live]] = False  # already candidates
            left = model.select(customers, eligible, None, primary, 0)
            # the one reduced-value formula, over the left-out pairs as a one-slot layout
            reduced = kernels.reduced_values(
                left.value[:, None], (left.p_redeem * discount[left.offer])[:, None],
                left.offer[:, None], prices.cost_price, prices.count, prices.global_budget,
                no_bonus)[:, 0]
            found.append(_best_per_row(
                left.row, left.offer, reduced, block.cap[at], customers, n_offers))
        return np.concatenate(found)
    keys = list(in_order(block_pairs, list(zip(problem.blocks, dropped)),
                         thread_count(scenario.solver.threads)))
    return np.sort(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64)


def _best_per_row(row: np.ndarray, offer: np.ndarray, reduced: np.ndarray, cap: np.ndarray,
                  customers: np.ndarray, n_offers: int) -> np.ndarray:
    """Keys ``c * n_offers + o`` of each row's pairs of positive ``reduced`` value at or above
    its ``cap``-th largest (ties at the cut all kept, so the choice does not depend on how a
    selection breaks them), in row then offer order; one dense row per customer."""
    k = min(int(cap.max(initial=0)), n_offers)
    if k == 0 or not row.size:
        return np.zeros(0, dtype=np.int64)
    dense = np.full((customers.size, n_offers), -np.inf)
    dense[row, offer] = reduced
    top = -np.sort(np.partition(-dense, k - 1, axis=1)[:, :k], axis=1)  # each row's k best
    nth = np.minimum(np.maximum(cap, 1), k) - 1
    cut = np.where(cap > 0, top[np.arange(customers.size), nth], np.inf)
    rows, offers = np.nonzero((dense >= cut[:, None]) & (dense > 0))
    return customers[rows] * n_offers + offers


def _kept_terms(model: AffinityModel, problem: AssignmentProblem, prices: Prices,
                block: CandidateBlock, drop: Dropped) -> tuple[np.ndarray, np.ndarray]:
    """Per customer of ``block``: the bound on her relaxed best response over all her candidates
    from her kept ones and what she dropped, and whether a dropped one could count
    (:func:`~optimizer.solve.lagrangian.bounds.virtual_totals`)."""
    offers = problem.offers
    reduced = kernels.reduced_values(block.value, block.cost, block.offer, prices.cost_price,
                                     prices.count, prices.global_budget,
                                     np.zeros(offers.n_offers))
    return virtual_totals(
        reduced, block.offer, block.cap, offers.categories[:, 0], problem.max_per_category,
        drop.top_value, drop.top_category, drop.residual,
        (prices.cost_price, prices.count, prices.global_budget),
        model.redemption_worth_, offers.discount, model.clv_factor_[block.customers])


def _eligible(rules: EligibilityRules, customers: np.ndarray, n_offers: int) -> np.ndarray:
    """``(len(customers), n_offers)``: which pairs the rules allow, counted in an audit of its
    own (the run's audit already counted these pairs)."""
    offer = np.broadcast_to(np.arange(n_offers, dtype=np.int64), (customers.size, n_offers))
    return replace(rules, audit=dict.fromkeys(rules.audit, 0)).allowed(customers, offer)


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


__all__ = ["affinity_truncation", "priced_pairs", "scores_truncation"]
