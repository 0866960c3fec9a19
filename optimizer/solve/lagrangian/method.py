"""The scale method: Lagrangian relaxation of the coupling constraints, solved by price updates.

Offer budgets, ``max_customers``, the global budget and funder budgets (:mod:`.funders`) couple
customers; everything else, offer groups included (:mod:`.groups`), is each customer's own
business. Pricing the coupling constraints (``Prices``) splits the problem into one
small subproblem per customer, solved by the vectorised greedy of :mod:`.greedy`. Every pass:

1. each customer's best response to the prices gives the dual function
   ``D(prices) = sum_i max_S sum_{j in S} reduced[i, j] + budget . prices + ...``, an upper bound on
   any feasible plan (weak duality; the relaxed greedy bounds customers whose offers span
   categories from above, so the bound stays valid); where the start solved the whole problem's
   LP (:func:`.start.start_prices`), the reported bound is the least of the dual values and that
   LP's weak-duality bound;
2. the same best responses, repaired and refilled, give a feasible plan and its objective. Plans
   start once the bound settles (see ``_solve``); when no pass certifies the gap, the passes that
   skipped theirs make them at the end, so the best plan is chosen from every pass's prices;
3. prices move to each constraint's critical price (:mod:`.prices`), read off every candidate's
   margin in the responses of step 1 (the exact ones where offers span categories:
   :mod:`.exact_margins`); the global price's step is corrected by the measured spend.

The customers live in fixed shards (:mod:`.shards`) that a shard executor holds, in this process
or on a cluster (:mod:`.executor`): each step above runs on every shard, and the shards' sums are
added in shard order, so the plan does not depend on where they live.

It stops when the relative gap ``(bound - objective) / bound`` is within tolerance, when four passes
in a row improve neither the bound nor the plan ("stalled"), or at the pass or time limit (a
status, never an exception).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from optimizer.core.parallel import ThreadMap
from optimizer.model.problem import (
    AssignmentProblem,
    CandidateBlock,
    Prices,
    Solution,
    Status,
)
from optimizer.solve.lagrangian import _kernels as kernels
from optimizer.solve.lagrangian import channels as channel_rules
from optimizer.solve.lagrangian import funders as funder_rules
from optimizer.solve.lagrangian import groups as group_rules
from optimizer.solve.lagrangian._kernels import Mapper
from optimizer.solve.lagrangian.critical import critical_prices
from optimizer.solve.lagrangian.exact_margins import exact_response
from optimizer.solve.lagrangian.executor import LocalShards, ShardedCandidates, ShardExecutor
from optimizer.solve.lagrangian.greedy import ExactChoice, select
from optimizer.solve.lagrangian.planning import (
    BestPlan,
    first_plans,
    plan_gap,
    plan_pass,
    replan,
    target_step,
)
from optimizer.solve.lagrangian.start import admissible_prices, start_prices
from optimizer.solve.lagrangian.targets import secant_global_price

_MIN_STEP = 1.0 / 64  # a coordinate step this short that still worsens the bound: stop
_MAX_RELAXATIONS = 8  # category columns tried when bounding customers with multi-category offers
# consecutive passes improving neither the bound nor the plan: stop ("stalled"). Two stopped the
# 1 M affinity benchmark at a 0.37 % gap after a coordinate step overshot twice; the halved steps
# that follow recovered to 0.063 % (benchmarks/results, docs/performance.md)
_STALL_PASSES = 4


@dataclass(frozen=True)
class LagrangianSettings:
    """gap_tolerance: relative gap at which to stop; max_iterations: price passes at most;
    time_limit_s: wall-clock limit of the solve; sample_customers: size of the sample whose LP
    gives the starting prices (0 = start from zero); seed: the sample's seed; target_tolerance:
    share of all ``min_customers`` by which a plan may fall further short than the best seen and
    still win on objective; threads: threads over chunks (0 = one per core); shard_customers:
    customers per shard, whose sums are added in shard order (:mod:`.shards`); repair_on_shards:
    the plans' repair from the shards' exact tallies (:mod:`.repair_shards`) rather than on the
    driver's pairs."""

    gap_tolerance: float = 1e-3
    max_iterations: int = 60
    time_limit_s: float = 600.0
    sample_customers: int = 2000
    seed: int = 0
    target_tolerance: float = 0.01
    threads: int = 0
    shard_customers: int = 1 << 20
    repair_on_shards: bool = False


def _finite_dot(price: np.ndarray, capacity: np.ndarray) -> float:
    finite = np.isfinite(capacity)
    return float((price[finite] * capacity[finite]).sum())


def _dual_value(problem: AssignmentProblem, block: CandidateBlock, prices: Prices,
                totals: np.ndarray | None, tighten: bool = True,
                choice: ExactChoice | None = None) -> tuple[np.ndarray, ExactChoice | None]:
    """The block's share of the dual function: each customer's best total (no target bonus).

    ``totals``: each customer's relaxed best total at ``prices`` without the bonus, when the
    caller has it (else computed here). Customers whose candidates all count in one category get
    the greedy, which is exact for them. Customers with multi-category candidates are solved
    exactly by enumeration where that is small (:func:`.kernels.exact_rows`); the rest get the least of
    several relaxations (each offer counted in its first, or its second, ... category), all upper
    bounds. The exact choices are returned so the plan can reuse them when they were computed
    with the same prices. ``tighten=False`` keeps the first relaxation for everyone (still an
    upper bound, without the enumeration). ``choice``: the exact choice at these prices without
    the target bonus when the caller has it (else computed here).
    """
    offers = problem.offers
    if totals is None:
        totals = _respond(problem, block, prices, with_target=False)[1]
    if problem.max_per_category is None or not tighten:
        return totals, None
    rows = np.flatnonzero(offers.multi_category_rows(block.offer))
    if rows.size == 0:
        return totals, None
    plain = prices.reduced_values(block, with_target=False)
    if choice is None:
        choice = _exact(problem, block, plain)
    solved = rows[choice.exact[rows]]
    totals[solved] = choice.totals[solved]
    rows = rows[~choice.exact[rows]]
    for column in range(1, min(offers.categories.shape[1], _MAX_RELAXATIONS)):
        if rows.size == 0:
            break
        other = select(plain[rows], block.offer[rows], block.cap[rows], offers.categories,
                       problem.max_per_category, relaxed=True, count_in=column,
                       depth_cap=problem.max_cap)
        totals[rows] = np.minimum(totals[rows], other.row_totals(plain[rows]))
    return totals, choice


def _exact(problem: AssignmentProblem, block: CandidateBlock, reduced: np.ndarray
           ) -> ExactChoice:
    """Exact best responses by enumeration over multi-category candidates (compiled kernel)."""
    assert problem.max_per_category is not None
    offers = problem.offers
    return ExactChoice(*kernels.exact_rows(reduced, block.offer, block.cap, offers.categories,
                                           problem.max_per_category, offers.multi_category))


def _respond(problem: AssignmentProblem, block: CandidateBlock, prices: Prices,
             with_target: bool, margin: np.ndarray | None = None, limits: bool = False
             ) -> tuple[np.ndarray, np.ndarray]:
    """The block's relaxed best responses (chosen, totals) by the compiled kernel; ``margin``
    (one entry per valid slot) receives each candidate's value minus its threshold (with
    ``limits``, each customer's two limits: compact margins, :mod:`.margins`)."""
    offers = problem.offers
    bonus = prices.target if with_target and prices.target is not None else np.zeros(
        offers.n_offers)
    return kernels.respond(block.value, block.cost, block.offer, block.cap, prices.cost_price,
                           prices.count, prices.global_budget, bonus, offers.categories[:, 0],
                           problem.max_per_category, margin, limits)


def _unbonused(problem: AssignmentProblem, block: CandidateBlock, prices: Prices,
               bonused: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_respond` without the target bonus, from ``bonused``, its responses with it
    (:func:`.kernels.respond_unbonused`: the same arrays, only her who took a bonus answered
    again)."""
    assert prices.target is not None
    return kernels.respond_unbonused(block.value, block.cost, block.offer, block.cap,
                                     prices.cost_price, prices.count, prices.global_budget,
                                     prices.target, problem.offers.categories[:, 0],
                                     problem.max_per_category, bonused)


def capacity_terms(problem: AssignmentProblem, prices: Prices) -> float:
    """The part of the dual function that does not depend on customers: prices x capacities
    (``prices`` admissible, see :func:`admissible_prices`)."""
    offers = problem.offers
    return (_finite_dot(prices.budget, offers.budget)
            + _finite_dot(prices.count, offers.max_customers)
            + (prices.global_budget * problem.global_budget
               if np.isfinite(problem.global_budget) else 0.0)
            + funder_rules.capacity_term(problem, prices)
            + channel_rules.capacity_term(problem, prices))


def dual_bound(problem: AssignmentProblem, prices: Prices,
               blocks: Iterable[CandidateBlock]) -> float:
    """The dual function at ``prices`` over ``blocks`` instead of ``problem.blocks``.

    Weak duality makes it an upper bound on any plan over those blocks' candidates under the
    problem's offers and rules, whatever the prices (made admissible first). Blocks are consumed
    one at a time, so a larger candidate set than the solved one (e.g. every eligible pair, not
    only each customer's best few) can be bounded in bounded memory. Customers whose offers span
    categories get the relaxed bound (each offer counted in its primary category), not the
    enumeration the solver uses to tighten it.
    """
    return dual_bounds(problem, [prices], blocks)[0]


def dual_bounds(problem: AssignmentProblem, prices: Sequence[Prices],
                blocks: Iterable[CandidateBlock]) -> list[float]:
    """:func:`dual_bound` at each of several ``prices`` in one pass over ``blocks`` (each is an
    upper bound, so their least is one too)."""
    prices = [admissible_prices(problem, p) for p in prices]
    rows: list[list[np.ndarray]] = [[] for _ in prices]
    for block in blocks:
        for k, at in enumerate(prices):
            # relaxed only: these blocks may hold every offer, too many for the enumeration
            priced = (block if problem.channels is None
                      else channel_rules.priced_block(problem.channels, block, at))
            rows[k].append(_dual_value(problem, priced, at, None, tighten=False)[0])
    return [(float(np.concatenate(r).sum()) if r else 0.0) + capacity_terms(problem, at)
            for r, at in zip(rows, prices)]


def plan_rows(problem: AssignmentProblem, prices: Prices, block: CandidateBlock,
              relaxed: np.ndarray, exact: ExactChoice | None, grouped: bool = False
              ) -> np.ndarray:
    """The block's first plan from its customers' best responses to ``prices`` (``relaxed``,
    and ``exact`` where the pass enumerated them): each customer's own rules kept (run on the
    shard that holds the block). ``grouped``: ``relaxed`` are the pass's responses, which keep
    every offer's first group (:func:`.groups.group_response`)."""
    offers = problem.offers
    if (problem.max_per_category is not None
            and offers.multi_category_rows(block.offer).any()):
        if exact is None:
            target = prices.target if prices.target is not None else np.zeros(offers.n_offers)
            exact = _exact(problem, block, kernels.reduced_values(
                block.value, block.cost, block.offer, prices.cost_price, prices.count,
                prices.global_budget, target))
        relaxed = exact.chosen
    # responses that keep every offer's only group need no repair
    if problem.groups is not None and not (grouped and exact is None
                                           and problem.groups.members.shape[1] == 1):
        relaxed = group_rules.feasible_plan_rows(problem, block, relaxed,
                                                 group_rules.reduced_rows(block, prices))
    return relaxed.copy()


def _update(problem: AssignmentProblem, prices: Prices, candidates: ShardedCandidates,
            run: ThreadMap) -> Prices:
    """Move every price to its critical value given each candidate's margin ``v - threshold``
    (``candidates``: the blocks' candidates and the margins the best response wrote)."""
    offers = problem.offers
    target = prices.target if prices.target is not None else np.zeros(offers.n_offers)
    budget_price, glob, count_price = critical_prices(
        candidates, target, prices.count, offers.budget, offers.max_customers,
        problem.global_budget, map_parts=run)
    budget_price, funder = funder_rules.critical(
        problem, candidates.funder_prices(prices, budget_price, glob, target), budget_price)
    funder_of = problem.funders.of_offer if problem.funders is not None else None
    bonus = np.zeros(offers.n_offers)
    targeted = offers.min_customers > 0
    if targeted.any():
        cost_price = Prices(budget_price, count_price, glob, None, funder, funder_of).cost_price
        bonus = candidates.target_bonus(targeted, cost_price, glob, count_price,
                                        offers.min_customers)
    return Prices(budget_price, count_price, glob, bonus, funder, funder_of)


def _subgradient_step(problem: AssignmentProblem, prices: Prices, use: dict[str, np.ndarray],
                      bound: float, target: float, step: float) -> Prices:
    """A Polyak step (Polyak, 1969) from ``prices`` along the constraints' slack.

    Coordinate ascent can stall at a corner of the non-smooth dual; a subgradient step with the
    best plan's objective as target leaves the corner. ``use`` holds each constraint's use in the
    customers' best responses at ``prices``.
    """
    offers = problem.offers
    finite_b, finite_c = np.isfinite(offers.budget), np.isfinite(offers.max_customers)
    g_budget = np.where(finite_b, np.where(finite_b, offers.budget, 0) - use["spend"], 0.0)
    g_count = np.where(finite_c, np.where(finite_c, offers.max_customers, 0) - use["count"], 0.0)
    g_global = (problem.global_budget - use["spend"].sum()
                if np.isfinite(problem.global_budget) else 0.0)
    # only directions that can move: a zero price with slack stays at zero
    g_budget = np.where((prices.budget <= 0) & (g_budget > 0), 0.0, g_budget)
    g_count = np.where((prices.count <= 0) & (g_count > 0), 0.0, g_count)
    if prices.global_budget <= 0 and g_global > 0:
        g_global = 0.0
    g_funder = funder_rules.slack(problem, prices, use["spend"])
    norm = float((g_budget ** 2).sum() + (g_count ** 2).sum() + g_global ** 2
                 + (0.0 if g_funder is None else (g_funder ** 2).sum()))
    if norm <= 0:
        return prices
    size = step * max(bound - target, 0.0) / norm
    funder = (None if g_funder is None or prices.funder is None
              else np.maximum(prices.funder - size * g_funder, 0.0))
    return Prices(np.maximum(prices.budget - size * g_budget, 0.0),
                  np.maximum(prices.count - size * g_count, 0.0),
                  max(prices.global_budget - size * g_global, 0.0), prices.target, funder,
                  prices.funder_of, prices.channel, prices.contact)


def solve_lagrangian(problem: AssignmentProblem, settings: LagrangianSettings,
                     warm_start: Prices | None = None,
                     progress: Callable[[dict[str, float | None]], None] | None = None,
                     shards: ShardExecutor | None = None) -> Solution:
    """Solve ``problem`` by price passes; see the module docstring. ``shards``: where the
    customers' shards live (default: in this process, :class:`.executor.LocalShards`)."""
    with ThreadMap(settings.threads) as run:
        ex = shards if shards is not None else LocalShards(problem, settings.shard_customers,
                                                           run)
        ex.repair_on_shards = settings.repair_on_shards
        return _solve(problem, settings, warm_start, progress, run, ex)


def _solve(problem: AssignmentProblem, settings: LagrangianSettings, warm_start: Prices | None,
           progress: Callable[[dict[str, float | None]], None] | None, run: ThreadMap,
           ex: ShardExecutor) -> Solution:
    start = time.perf_counter()
    prices, lp_bound = start_prices(problem, warm_start, settings.sample_customers,
                                    settings.seed, ex)  # the sample drawn on the shards
    # the least dual value seen steers the steps; reported: it or the whole LP's bound, the least
    best_bound = reported = np.inf
    best = BestPlan(problem, prices, target_step(problem, settings.target_tolerance))
    trace: list[dict[str, float | None]] = []
    status, iteration = Status.ITERATION_LIMIT, 0
    anchor = _Anchor(prices)
    stalled_passes = 0
    planning = False
    # prices of the passes that made no plan, planned after the passes if none certified
    unplanned: list[Prices] = []
    for iteration in range(1, settings.max_iterations + 1):
        # each shard keeps its customers' responses and writes their candidates' margins; the
        # sums over customers are made per shard in one array each and added in shard order,
        # so their rounding is the same for any chunking and any number of workers
        use, dual_sum = ex.respond(prices)
        bound = dual_sum + capacity_terms(problem, prices)
        improved = bound < best_bound * (1 - 1e-12) or anchor.target is None
        drop = ((best_bound - bound) / (bound + problem.fixed_value)
                if np.isfinite(best_bound) and bound > 0 else np.inf)
        best_bound = min(best_bound, bound)
        reported = min(best_bound, lp_bound)
        before = (best.objective, best.short)
        out_of_time = time.perf_counter() - start > settings.time_limit_s
        # a plan costs about a pass and cannot certify while the bound still falls by more than
        # the tolerance: planning starts once it settles, from warm prices, or on the last pass
        planning = (planning or drop <= settings.gap_tolerance or out_of_time
                    or iteration == settings.max_iterations
                    or (warm_start is not None and iteration == 1))
        objective, short = None, None
        if planning:  # (None, None) for a plan that could not win: see planning.make_plan
            objective, short = plan_pass(problem, prices, first_plans(problem, prices, ex),
                                         run, best, ex)
        else:
            unplanned.append(prices)
        gap = plan_gap(reported, best.objective, problem.fixed_value)
        entry = {"iteration": iteration, "bound": bound, "objective": objective,
                 "best_bound": reported,
                 "best_objective": best.objective if gap is not None else None,
                 "gap": gap, "shortfall": short, "seconds": time.perf_counter() - start}
        trace.append(entry)
        if progress is not None:
            progress(entry)
        if best.certified(reported, settings.gap_tolerance, iteration):
            status = Status.OPTIMAL
            break
        if out_of_time:
            status = Status.TIME_LIMIT
            break
        progressed = improved or (best.objective, best.short) != before
        stalled_passes = 0 if progressed else stalled_passes + 1
        if stalled_passes >= _STALL_PASSES:
            # the backtracking steps from the best prices keep finding neither a better bound
            # nor a better plan (at a million customers, each such pass costs seconds)
            status = Status.STALLED
            break
        following = anchor.next_prices(problem, improved, prices, use, ex.candidates, run,
                                       best_bound, best.objective)
        if following is None:
            status = Status.STALLED
            break
        prices = following
    if status != Status.OPTIMAL and unplanned:
        # uncertified: the early prices' plans may be the best (a small or degenerate problem's
        # bound can stall far from its plans), so the passes that skipped them make them now
        replanned = replan(problem, unplanned, best, run, ex, start + settings.time_limit_s)
        gap = plan_gap(reported, best.objective, problem.fixed_value)
        trace.append({"iteration": iteration, "replanned_passes": replanned,
                      "best_bound": reported, "best_objective": best.objective,
                      "gap": gap, "seconds": time.perf_counter() - start})
        if best.certified(reported, settings.gap_tolerance, iteration):
            status = Status.OPTIMAL
    plan_problem, chosen = best.final_problem(ex)  # its own problem: the driver held no pair
    return Solution(chosen, max(best.objective, 0.0), max(reported, 0.0), status, "lagrangian",
                    iteration, best.prices, trace, plan_problem=plan_problem)


@dataclass
class _Anchor:
    """Backtracking along the coordinate direction keeps the bound monotone: ``prices`` are the
    best prices so far, ``target`` the coordinate target computed there and ``use`` the
    constraints' use there; a worse pass halves the ``step``. ``spent``: (global price, spend)
    of the last anchor, for the secant step on the global price."""

    prices: Prices
    target: Prices | None = None
    step: float = 1.0
    use: dict[str, np.ndarray] = field(default_factory=dict)
    spent: tuple[float, float] | None = None

    def next_prices(self, problem: AssignmentProblem, improved: bool, prices: Prices,
                    use: dict[str, np.ndarray], candidates: ShardedCandidates, run: ThreadMap,
                    best_bound: float, best_objective: float) -> Prices | None:
        """The next pass's prices (None: the steps have shrunk to nothing, the passes stall)."""
        if improved:
            self.prices, self.use = prices, use
            target = channel_rules.critical(problem, _update(problem, prices, candidates, run),
                                            use)
            self.target = secant_global_price(problem, target, self.spent, prices.global_budget,
                                              float(use["spend"].sum()))
            self.spent = (prices.global_budget, float(use["spend"].sum()))
            self.step = min(1.0, self.step * 2.0)
        else:
            self.step /= 2.0
        if self.step >= _MIN_STEP:
            assert self.target is not None  # set by the first pass, which always improves
            return self.prices.towards(self.target, self.step)
        # the coordinate direction no longer helps: a Polyak step from the best prices,
        # shrinking with every pass that fails to improve the bound
        polyak = self.step / _MIN_STEP
        if polyak < _MIN_STEP:
            return None
        return _subgradient_step(problem, self.prices, self.use, best_bound, best_objective,
                                 polyak)


def _responses(problem: AssignmentProblem, prices: Prices, margins: list[np.ndarray],
               run: Mapper, at_risk: list[group_rules.RiskySlots | None] | None = None,
               compact: bool = False
               ) -> tuple[list[np.ndarray], list[np.ndarray], list[ExactChoice | None]]:
    """One pass's best responses at ``prices``, block by block: each customer's choice (the
    exact one where multi-category offers need it), each customer's term of the bound, and the
    exact choices the plan starts from; every candidate's margin is written into ``margins``
    (``compact``: each customer's limits, :func:`.margins.compact`; the choices returned are
    then the ones the limits were written with). ``at_risk``: per block, its
    :func:`.groups.risky_slots` (else every slot is read)."""
    steering = prices.target is not None and bool(prices.target.any())

    def respond(item: tuple[CandidateBlock, np.ndarray, group_rules.RiskySlots | None]
                ) -> tuple[np.ndarray, np.ndarray, ExactChoice | None]:
        block, block_margin, risky = item
        chosen, totals = _respond(problem, block, prices, True, block_margin, compact)
        # the bound's responses without the bonus, from these before anything changes them
        unbonused = _unbonused(problem, block, prices, (chosen, totals)) if steering else None
        exact = exact_response(problem, block, prices, block_margin)
        if exact is not None:
            # the exact responses are what the bound and the plan use, so they are what
            # the prices steer and what the constraints' use is measured on
            chosen = exact.chosen
        breaking = group_rules.breaking_rows(problem, block, chosen, risky)
        plain = chosen  # the responses whose totals the bound takes (no bonus)
        chosen = group_rules.group_response(problem, block, prices, chosen, block_margin,
                                            breaking)
        if unbonused is not None:  # the bound takes the best responses without the bonus
            plain, totals = unbonused
            breaking = group_rules.breaking_rows(problem, block, plain, risky)
        block_dual, _ = _dual_value(problem, block, prices, totals,
                                    choice=None if steering else exact)
        # without exact responses the bound's terms are the totals of ``plain``
        block_dual = group_rules.tighten_dual(problem, block, prices, block_dual,
                                              None if exact is not None else breaking)
        # the plan starts from the exact responses with the target bonus: these
        return chosen, block_dual, exact

    risks = at_risk if at_risk is not None else [None] * len(margins)
    responses = run(respond, list(zip(problem.blocks, margins, risks)))
    return [r[0] for r in responses], [r[1] for r in responses], [r[2] for r in responses]
