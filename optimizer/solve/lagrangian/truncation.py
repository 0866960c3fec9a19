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
from optimizer.model.affinity_blocks import Dropped
from optimizer.model.build import scores_blocks
from optimizer.model.eligibility import EligibilityRules
from optimizer.model.problem import (
    AssignmentProblem,
    CandidateBlock,
    Prices,
    Solution,
    relative_gap,
)
from optimizer.model.stability import Previous, on_previous
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

    ``bound_increase`` compares like with like: the bound over all candidates less the same
    dual function over the kept candidates only, at the same prices (``bound_kept_candidates``);
    not less ``solution.bound``, which is the least bound of the solve (other prices, or the
    LP's).
    """
    prices = admissible_prices(problem, solution.prices)
    primary = problem.offers.categories[:, 0]
    per_category = problem.max_per_category
    n_offers = inputs.n_offers

    def customer_terms(item: tuple[CandidateBlock, Dropped]
                       ) -> tuple[np.ndarray, np.ndarray, int]:
        block, drop = item
        totals, virtual = _kept_terms(model, problem, prices, block, drop)
        positions = np.flatnonzero(virtual)
        # each customer's term over the kept candidates alone: those re-scored below count at
        # their kept best responses, the others' terms are those already
        kept = totals.copy()
        kept[positions] = _kept_only(problem, prices, block, positions)
        for lo in range(0, positions.size, _RESCORE_ROWS):
            at = positions[lo:lo + _RESCORE_ROWS]
            customers = block.customers[at]
            eligible = _eligible(rules, customers, n_offers)
            totals[at] = best_totals(model.kernel_arrays(customers), customers, eligible,
                                     primary, per_category, block.cap[at], prices.cost_price,
                                     prices.count, prices.global_budget,
                                     problem.offers.discount)
        return totals, kept, int(positions.size)
    terms = list(in_order(customer_terms, list(zip(problem.blocks, dropped)),
                           thread_count(scenario.solver.threads)))
    capacity = capacity_terms(problem, prices)
    # each sum over every customer at once, in customer order: a sum of per-chunk sums moved
    # the last digits with solver.chunk_size
    bound = _sum_over_customers([t for t, _, _ in terms]) + capacity
    # the same dual function over the kept candidates
    kept = _sum_over_customers([k for _, k, _ in terms]) + capacity
    return {"candidates_per_customer": scenario.affinity.candidates_per_customer,
            "pairs": problem.n_pairs, "bound_all_candidates": bound,
            "gap_all_candidates": relative_gap(bound, solution.objective),
            "bound_kept_candidates": kept,
            # how much the dropped candidates could add, as far as the final prices can tell
            "bound_increase": max(0.0, bound - kept),
            "customers_rescored": sum(n for _, _, n in terms)}


def _sum_over_customers(parts: list[np.ndarray]) -> float:
    """The sum of the blocks' per-customer terms, all customers at once (numpy's fixed order
    over one array, whatever the chunking)."""
    return float(np.concatenate(parts).sum()) if parts else 0.0


def priced_pairs(model: AffinityModel, inputs: Inputs, scenario: Scenario,
                 rules: EligibilityRules, problem: AssignmentProblem, solution: Solution,
                 dropped: list[Dropped], previous: Previous | None = None
                 ) -> tuple[np.ndarray, int]:
    """The pricing step of column generation (Desrosiers, J. and Lubbecke, M. E. (2005), A
    primer in column generation, in Column Generation, Springer, 1-32): the eligible pairs left
    out of the candidates whose reduced value at the solution's prices is positive, each
    customer's best ``cap`` of them (as many as her best response could take), that can enter
    her best response (:func:`_marginals`), as sorted keys ``c * n_offers + o``; and how many of
    her best positive ones could not (skipped). Only the customers for whom a dropped candidate
    could count (:func:`_kept_terms`, the bound's own test) are re-scored; none found: the kept
    candidates already hold every customer's best response at these prices. ``previous``: last
    week's lists, whose pairs alone carry ``rules.change_penalty`` more value in the solve
    (:func:`optimizer.model.stability.add_bonus`), so only they are lifted by it here."""
    prices = admissible_prices(problem, solution.prices)
    primary, discount = problem.offers.categories[:, 0], problem.offers.discount
    n_offers = inputs.n_offers
    no_bonus = np.zeros(problem.offers.n_offers)
    # a pair may help the bound (no bonus) or the solve's plans (the targets' bonus); and were it
    # on last week's list, the change penalty's bonus would be added to its value (to no other)
    bonuses = [no_bonus]
    if prices.target is not None and prices.target.any():
        bonuses.append(prices.target)
    penalty = scenario.rules.change_penalty if previous is not None else 0.0

    def block_pairs(item: tuple[CandidateBlock, Dropped]) -> tuple[np.ndarray, int]:
        block, drop = item
        positions = np.flatnonzero(_kept_terms(model, problem, prices, block, drop)[1])
        found, skipped = [np.zeros(0, dtype=np.int64)], 0
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
            lift = _change_lift(previous, penalty, customers, n_offers)
            floors = [(_marginals(problem, prices, block, at, bonus), bonus[None, :] + lift)
                      for bonus in bonuses]
            keys, unable = _best_per_row(left.row, left.offer, reduced, block.cap[at], customers,
                                         n_offers, floors)
            found.append(keys)
            skipped += unable
        return np.concatenate(found), skipped
    parts = list(in_order(block_pairs, list(zip(problem.blocks, dropped)),
                          thread_count(scenario.solver.threads)))
    if not parts:
        return np.zeros(0, dtype=np.int64), 0
    return np.sort(np.concatenate([k for k, _ in parts])), sum(n for _, n in parts)


def _change_lift(previous: Previous | None, penalty: float, customers: np.ndarray,
                 n_offers: int) -> np.ndarray:
    """``(len(customers), n_offers)``, or ``(1, 1)`` when nothing is lifted: the change
    penalty's bonus of each pair, ``penalty`` on last week's lists and 0 elsewhere."""
    if previous is None or penalty == 0 or previous.keys.size == 0:
        return np.zeros((1, 1))
    offer = np.broadcast_to(np.arange(n_offers, dtype=np.int64), (customers.size, n_offers))
    return np.where(on_previous(customers, offer, previous.keys, max(previous.n_offers, 1)),
                    penalty, 0.0)


def _marginals(problem: AssignmentProblem, prices: Prices, block: CandidateBlock,
               at: np.ndarray, bonus: np.ndarray) -> np.ndarray:
    """Per customer at rows ``at`` of ``block``: a reduced value (with ``bonus`` per offer) that
    a left-out pair must exceed to raise her best response over her kept candidates at
    ``prices``: ``F - R`` with ``F`` her best response's value (the solver's own: the relaxed
    greedy, or where her offers span categories under a category cap the exact response's,
    :func:`~optimizer.solve.lagrangian._kernels.exact_rows`) and ``R`` her relaxed best
    response's value with one offer fewer (``inf`` when her cap is 0).

    Why a pair at or below it cannot help. Any plan of hers holding the new pair holds at most
    ``cap - 1`` kept candidates, obeying at least the relaxed rules (each offer counted in its
    primary category): they are worth at most ``R``, so the plan at most ``pair + R <= F``. For
    a customer whose offers each count in one category, ``F - R`` is the weakest offer of her
    response when she is full and 0 when she is not (a laminar matroid's greedy). Customers of
    a problem with offer groups or channels get 0 (their plans are trimmed to groups or priced
    on channels): every positive pair is kept."""
    offers = problem.offers
    cap = block.cap[at]
    if problem.groups is not None or problem.channels is not None:
        return np.where(cap > 0, 0.0, np.inf)
    value, cost, offer = block.value[at], block.cost[at], block.offer[at]
    primary, per_category = offers.categories[:, 0], problem.max_per_category
    terms = (prices.cost_price, prices.count, prices.global_budget, bonus, primary, per_category)
    _, best = kernels.respond(value, cost, offer, cap, *terms)
    _, fewer = kernels.respond(value, cost, offer, np.maximum(cap - 1, 0), *terms)
    if per_category is not None:
        multi = offers.multi_category_rows(offer)
        if multi.any():
            rows = np.flatnonzero(multi)
            reduced = kernels.reduced_values(value[rows], cost[rows], offer[rows],
                                             prices.cost_price, prices.count,
                                             prices.global_budget, bonus)
            best[rows] = kernels.exact_rows(reduced, offer[rows], cap[rows], offers.categories,
                                            per_category, offers.multi_category)[1]
    # a hair below, so that rounding in the two sums never leaves out a pair that pays
    marginal = best - fewer - 1e-9 * np.maximum(np.abs(best), 1.0)
    return np.where(cap > 0, np.maximum(marginal, 0.0), np.inf)


def _best_per_row(row: np.ndarray, offer: np.ndarray, reduced: np.ndarray, cap: np.ndarray,
                  customers: np.ndarray, n_offers: int,
                  floors: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, int]:
    """Keys ``c * n_offers + o`` of each row's pairs of positive ``reduced`` value at or above
    its ``cap``-th largest (ties at the cut all kept, so the choice does not depend on how a
    selection breaks them) that may help: ``reduced`` plus the lift (per row and offer,
    broadcast) of some
    ``(marginal, lift)`` of ``floors`` exceeds the row's ``marginal`` (:func:`_marginals`); in
    row then offer order, one dense row per customer. Also how many of the first kind none of
    the ``floors`` let through."""
    k = min(int(cap.max(initial=0)), n_offers)
    if k == 0 or not row.size:
        return np.zeros(0, dtype=np.int64), 0
    dense = np.full((customers.size, n_offers), -np.inf)
    dense[row, offer] = reduced
    top = -np.sort(np.partition(-dense, k - 1, axis=1)[:, :k], axis=1)  # each row's k best
    nth = np.minimum(np.maximum(cap, 1), k) - 1
    cut = np.where(cap > 0, top[np.arange(customers.size), nth], np.inf)
    best = (dense >= cut[:, None]) & (dense > 0)
    helps = np.zeros_like(best)
    for marginal, lift in floors:
        helps |= best & (dense + lift > marginal[:, None])
    rows, offers = np.nonzero(helps)
    return customers[rows] * n_offers + offers, int(best.sum()) - int(rows.size)


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


def _kept_only(problem: AssignmentProblem, prices: Prices, block: CandidateBlock,
               at: np.ndarray) -> np.ndarray:
    """The relaxed best responses (no target bonus) over the kept candidates only of the
    customers at rows ``at`` of ``block``: their terms of the dual function over the kept
    candidates (:func:`~optimizer.solve.lagrangian.method.dual_bounds`' own kernel)."""
    offers = problem.offers
    return kernels.respond(block.value[at], block.cost[at], block.offer[at], block.cap[at],
                           prices.cost_price, prices.count, prices.global_budget,
                           np.zeros(offers.n_offers), offers.categories[:, 0],
                           problem.max_per_category)[1]


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
    chunk. ``bound_increase``: that bound less the dual function over the kept pairs at the
    same prices (``bound_kept_candidates``)."""
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
    bounds = dual_bounds(problem, tried, counted(every))
    least = int(np.argmin(bounds))
    bound = bounds[least]
    # like with like: the same dual function over the kept pairs, at the same prices
    kept = dual_bounds(problem, [tried[least]], problem.blocks)[0]
    gap = relative_gap(bound, solution.objective)
    return {"candidates_per_customer": scenario.solver.scores_per_customer,
            "pairs": problem.n_pairs, "pairs_all_candidates": pairs[0],
            "bound_all_candidates": bound, "gap_all_candidates": gap,
            "bound_kept_candidates": kept, "bound_increase": max(0.0, bound - kept)}


__all__ = ["affinity_truncation", "priced_pairs", "scores_truncation"]
