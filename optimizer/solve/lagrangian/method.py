"""The scale method: Lagrangian relaxation of the coupling constraints, solved by price updates.

Offer budgets, ``max_customers``, the global budget and funder budgets (:mod:`.funders`) couple
customers; everything else, offer groups included (:mod:`.groups`), is each customer's own
business. Pricing the coupling constraints (``Prices``) splits the problem into one
small subproblem per customer, solved by the vectorised greedy of :mod:`.greedy`. Every pass:

1. each customer's best response to the prices gives the dual function
   ``D(prices) = sum_i max_S sum_{j in S} reduced[i, j] + budget . prices + ...``, an upper bound on
   any feasible plan (weak duality; the relaxed greedy bounds customers whose offers span
   categories from above, so the bound stays valid);
2. the same best responses, repaired and refilled, give a feasible plan and its objective. Plans
   start once the bound settles (see ``_solve``); when no pass certifies the gap, the passes that
   skipped theirs make them at the end, so the best plan is chosen from every pass's prices;
3. prices move to each constraint's critical price (:mod:`.prices`), read off every candidate's
   margin in the responses of step 1 (the exact ones where offers span categories:
   :mod:`.exact_margins`); the global price's step is corrected by the measured spend.

It stops when the relative gap ``(bound - objective) / bound`` is within tolerance, when two passes
in a row improve neither the bound nor the plan ("stalled"), or at the pass or time limit (a
status, never an exception).
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence, TypeVar

import numpy as np

from optimizer.core.allocator import usable_cpus
from optimizer.core.errors import SolverError
from optimizer.model.problem import AssignmentProblem, CandidateBlock, OfferData, Prices, Solution
from optimizer.solve.lagrangian import _kernels as kernels
from optimizer.solve.lagrangian import funders as funder_rules
from optimizer.solve.lagrangian import groups as group_rules
from optimizer.solve.lagrangian.critical import Candidates, critical_prices
from optimizer.solve.lagrangian.exact_margins import exact_response
from optimizer.solve.lagrangian.greedy import ExactChoice, select
from optimizer.solve.lagrangian.repair import refill, repair
from optimizer.solve.lagrangian.targets import secant_global_price, target_bonus
from optimizer.solve.lp import solve_lp

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")
_MIN_STEP = 1.0 / 64  # a coordinate step this short that still worsens the bound: stop
_MAX_RELAXATIONS = 8  # category columns tried when bounding customers with multi-category offers
_TARGET_PASSES = 3  # passes given to min_customers targets before a small gap may stop the solve
_STALL_PASSES = 2  # consecutive passes improving neither the bound nor the plan: stop ("stalled")


@dataclass(frozen=True)
class LagrangianSettings:
    """gap_tolerance: relative gap at which to stop; max_iterations: price passes at most;
    time_limit_s: wall-clock limit of the solve; sample_customers: size of the sample whose LP
    gives the starting prices (0 = start from zero); seed: the sample's seed; target_tolerance:
    share of all ``min_customers`` by which a plan may fall further short than the best seen and
    still win on objective; threads: threads over chunks (0 = one per core)."""

    gap_tolerance: float = 1e-3
    max_iterations: int = 60
    time_limit_s: float = 600.0
    sample_customers: int = 2000
    seed: int = 0
    target_tolerance: float = 0.01
    threads: int = 0


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
    rows = np.flatnonzero(offers.multi_category[np.maximum(block.offer, 0)].any(axis=1))
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
             with_target: bool, margin: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """The block's relaxed best responses (chosen, totals) by the compiled kernel; ``margin``
    (one entry per valid slot) receives each candidate's value minus its threshold."""
    offers = problem.offers
    bonus = prices.target if with_target and prices.target is not None else np.zeros(
        offers.n_offers)
    return kernels.respond(block.value, block.cost, block.offer, block.cap, prices.cost_price,
                           prices.count, prices.global_budget, bonus, offers.categories[:, 0],
                           problem.max_per_category, margin)


def capacity_terms(problem: AssignmentProblem, prices: Prices) -> float:
    """The part of the dual function that does not depend on customers: prices x capacities
    (``prices`` admissible, see :func:`admissible_prices`)."""
    offers = problem.offers
    return (_finite_dot(prices.budget, offers.budget)
            + _finite_dot(prices.count, offers.max_customers)
            + (prices.global_budget * problem.global_budget
               if np.isfinite(problem.global_budget) else 0.0)
            + funder_rules.capacity_term(problem, prices))


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
            rows[k].append(_dual_value(problem, block, at, None, tighten=False)[0])
    return [(float(np.concatenate(r).sum()) if r else 0.0) + capacity_terms(problem, at)
            for r, at in zip(rows, prices)]


def _shortfall(problem: AssignmentProblem, chosen: list[np.ndarray]) -> int:
    """Customers missing from ``min_customers`` targets in ``chosen``, summed over offers."""
    targets = problem.offers.min_customers
    if not (targets > 0).any():
        return 0
    counts = np.zeros(problem.offers.n_offers, dtype=np.int64)
    for block, mask in zip(problem.blocks, chosen):
        counts += np.bincount(block.offer[mask], minlength=problem.offers.n_offers)
    return int(np.maximum(targets - counts, 0).sum())


class _BestPlan:
    """The best plan seen: targets first (a plan closer to every ``min_customers`` wins), then the
    objective; plans within ``target_step`` of the least shortfall seen compete on objective, so
    a plan is not kept over a much better one for a few customers more."""

    def __init__(self, problem: AssignmentProblem, prices: Prices, target_step: int) -> None:
        self.problem, self.target_step = problem, target_step
        self.objective = -np.inf
        self.chosen = [np.zeros_like(b.offer, dtype=bool) for b in problem.blocks]
        self.prices, self.short = prices, np.iinfo(np.int64).max
        self.least_short = self.short

    def consider(self, chosen: list[np.ndarray], objective: float, prices: Prices) -> int:
        """Keep the plan if it is the best so far; returns its shortfall."""
        short = _shortfall(self.problem, chosen)
        self.least_short = min(self.least_short, short)
        slack = self.least_short + self.target_step
        if short <= slack and (objective > self.objective or self.short > slack):
            self.objective, self.chosen, self.prices, self.short = objective, chosen, prices, short
        return short


def _plan(problem: AssignmentProblem, prices: Prices, relaxed_choice: list[np.ndarray],
          exact_choices: list[ExactChoice | None], run: "_Runner"
          ) -> tuple[list[np.ndarray], float]:
    """A feasible plan from the customers' best responses to ``prices``."""
    offers = problem.offers
    multi = offers.multi_category

    def respond(item: tuple[CandidateBlock, np.ndarray, ExactChoice | None]) -> np.ndarray:
        block, relaxed, exact = item
        if problem.max_per_category is not None and multi[np.maximum(block.offer, 0)].any():
            if exact is None:
                target = (prices.target if prices.target is not None
                          else np.zeros(offers.n_offers))
                exact = _exact(problem, block, kernels.reduced_values(
                    block.value, block.cost, block.offer, prices.cost_price, prices.count,
                    prices.global_budget, target))
            relaxed = exact.chosen
        if problem.groups is not None:
            relaxed = group_rules.feasible_plan_rows(problem, block, relaxed,
                                                     prices.reduced_values(block))
        return relaxed.copy()

    chosen = run(respond, list(zip(problem.blocks, relaxed_choice, exact_choices)))
    kept = repair(problem, chosen)
    # refill ranks candidates by their reduced values at these prices, target bonus included
    refill(problem, chosen, prices, kept, map_blocks=run)
    group_rules.trim_plan(problem, chosen)  # the refill knows no groups
    funder_rules.cut_plan(problem, chosen)  # nor funders
    objective = float(np.concatenate([b.value[c] for b, c in zip(problem.blocks, chosen)]).sum()
                      ) if chosen else 0.0
    return chosen, objective


class _Runner:
    """Maps a function over blocks on a pool of threads (numpy releases the GIL in the heavy
    loops); results come back in block order, so the answer is the same for any thread count."""

    def __init__(self, threads: int) -> None:
        self.threads = threads if threads > 0 else usable_cpus()
        self.pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def __call__(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        if self.pool is None or len(items) < 2:
            return [fn(item) for item in items]
        return list(self.pool.map(fn, items))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def _update(problem: AssignmentProblem, prices: Prices, candidates: Candidates,
            run: "_Runner") -> Prices:
    """Move every price to its critical value given each candidate's margin ``v - threshold``
    (``candidates``: the blocks' candidates and the margins the best response wrote)."""
    offers = problem.offers
    target = prices.target if prices.target is not None else np.zeros(offers.n_offers)
    budget_price, glob, count_price = critical_prices(
        candidates, target, prices.count, offers.budget, offers.max_customers,
        problem.global_budget, map_parts=run)
    budget_price, funder = funder_rules.critical(
        problem, list(candidates.offers), list(candidates.costs), list(candidates.margins),
        prices, budget_price, glob, target)
    funder_of = problem.funders.of_offer if problem.funders is not None else None
    bonus = np.zeros(offers.n_offers)
    targeted = offers.min_customers > 0
    if targeted.any():
        cost_price = Prices(budget_price, count_price, glob, None, funder, funder_of).cost_price
        t_offer, t_margin = candidates.targeted(targeted, cost_price, glob, count_price,
                                               map_parts=run)
        bonus = target_bonus(t_offer, t_margin, offers.min_customers)
    return Prices(budget_price, count_price, glob, bonus, funder, funder_of)


def admissible_prices(problem: AssignmentProblem, prices: Prices) -> Prices:
    """Prices a bound may use: non-negative, and zero on constraints this problem does not have
    (a warm start from another scenario may price a budget that is uncapped here)."""
    offers = problem.offers
    if prices.budget.shape != (offers.n_offers,):
        return Prices.zeros(offers.n_offers)
    return Prices(np.where(np.isfinite(offers.budget), np.maximum(prices.budget, 0.0), 0.0),
                  np.where(np.isfinite(offers.max_customers), np.maximum(prices.count, 0.0), 0.0),
                  max(prices.global_budget, 0.0) if np.isfinite(problem.global_budget) else 0.0,
                  np.zeros(offers.n_offers), *funder_rules.admissible(problem, prices))


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
                  prices.funder_of)


def sample_prices(problem: AssignmentProblem, customers: int, seed: int) -> Prices | None:
    """Starting prices from the LP relaxation of a random sample of customers.

    Offers in one category are near-perfect substitutes (often exact ties in value), and from zero
    prices coordinate steps creep along the ridge where such offers' reduced values tie. The LP of
    a sample, with every capacity scaled by the sample's share of customers, puts prices near that
    ridge's optimum at once; coordinate steps on the whole population then only refine them.
    Returns ``None`` when the problem is small enough that sampling buys nothing.
    """
    total = sum(b.n_customers for b in problem.blocks)
    if total <= customers or not problem.blocks:
        return None
    rng = np.random.default_rng(seed)
    share = customers / total
    picked = []
    for block in problem.blocks:
        rows = np.flatnonzero(rng.random(block.n_customers) < share)
        if rows.size:
            picked.append(CandidateBlock(block.customers[rows], block.offer[rows],
                                         block.value[rows], block.cost[rows],
                                         block.p_redeem[rows], block.cap[rows]))
    drawn = sum(b.n_customers for b in picked)
    if drawn == 0:
        return None
    scale = drawn / total
    offers = problem.offers
    sample = AssignmentProblem(
        offers=OfferData(offers.discount, offers.budget * scale, offers.max_customers * scale,
                         np.zeros_like(offers.min_customers), offers.categories,
                         offers.category_names),
        blocks=picked, max_per_category=problem.max_per_category,
        global_budget=problem.global_budget * scale, n_customers=drawn)
    try:
        # PDLP (first-order, one thread) reaches prices as good as GLOP's simplex in half the
        # time on these LPs; they are only a starting point, refined by the passes, so a loose
        # tolerance does (demo sample: 4.6 s at PDLP's default, 1.1 s at 1e-4)
        lp = solve_lp(sample, backend="PDLP", time_limit_s=60.0, pdlp_tolerance=1e-4)
    except SolverError:
        log.warning("sample LP failed; starting from zero prices")
        return None
    return lp.prices


def solve_lagrangian(problem: AssignmentProblem, settings: LagrangianSettings,
                     warm_start: Prices | None = None,
                     progress: Callable[[dict[str, float | None]], None] | None = None) -> Solution:
    """Solve ``problem`` by price passes; see the module docstring."""
    run = _Runner(settings.threads)
    try:
        return _solve(problem, settings, warm_start, progress, run)
    finally:
        run.close()


def _solve(problem: AssignmentProblem, settings: LagrangianSettings, warm_start: Prices | None,
           progress: Callable[[dict[str, float | None]], None] | None, run: _Runner) -> Solution:
    offers = problem.offers
    start = time.perf_counter()
    prices = admissible_prices(problem, warm_start) if warm_start is not None else None
    if prices is None and settings.sample_customers > 0:
        prices = sample_prices(problem, settings.sample_customers, settings.seed)
    if prices is None:
        prices = Prices.zeros(offers.n_offers)
    if problem.funders is not None and prices.funder is None:  # funders start unpriced
        prices = Prices(prices.budget, prices.count, prices.global_budget, prices.target,
                        *funder_rules.admissible(problem, prices))
    best_bound = np.inf
    target_step = max(1, int(settings.target_tolerance * float(offers.min_customers.sum())))
    best = _BestPlan(problem, prices, target_step)
    trace: list[dict[str, float | None]] = []
    status, iteration = "iteration_limit", 0
    # backtracking along the coordinate direction keeps the bound monotone: `anchor` holds the
    # best prices so far and the coordinate target computed there; a worse pass halves the step
    anchor, anchor_target, step = prices, None, 1.0
    anchor_use: dict[str, np.ndarray] = {}
    stalled_passes = 0
    spent: tuple[float, float] | None = None  # (global price, spend) of the last anchor
    planning = False
    # prices of the passes that made no plan, planned after the passes if none certified
    unplanned: list[Prices] = []
    # each pass writes every candidate's margin here, one array per block
    margins = [np.zeros(block.offer.shape) for block in problem.blocks]
    candidates = Candidates([b.offer for b in problem.blocks], [b.cost for b in problem.blocks],
                            margins)
    for iteration in range(1, settings.max_iterations + 1):
        steering = prices.target is not None and bool(prices.target.any())

        def respond(item: tuple[CandidateBlock, np.ndarray]
                    ) -> tuple[np.ndarray, np.ndarray, ExactChoice | None]:
            block, block_margin = item
            chosen, totals = _respond(problem, block, prices, True, block_margin)
            exact = exact_response(problem, block, prices, block_margin)
            if exact is not None:
                # the exact responses are what the bound and the plan use, so they are what
                # the prices steer and what the constraints' use is measured on
                chosen = exact.chosen
            chosen = group_rules.group_response(problem, block, prices, chosen, block_margin)
            if steering:  # the bound takes the best responses without the bonus
                totals = _respond(problem, block, prices, False)[1]
            block_dual, _ = _dual_value(problem, block, prices, totals,
                                        choice=None if steering else exact)
            block_dual = group_rules.tighten_dual(problem, block, prices, block_dual)
            # the plan starts from the exact responses with the target bonus: these
            return chosen, block_dual, exact

        responses = run(respond, list(zip(problem.blocks, margins)))
        relaxed_choice = [r[0] for r in responses]
        dual_rows = [r[1] for r in responses]
        exact_choices: list[ExactChoice | None] = [r[2] for r in responses]
        del responses
        # sums over customers in one array each, so their rounding is the same for any chunking
        taken = np.concatenate([b.offer[c] for b, c in zip(problem.blocks, relaxed_choice)])
        taken_cost = np.concatenate([b.cost[c] for b, c in zip(problem.blocks, relaxed_choice)])
        use = {"spend": np.bincount(taken, weights=taken_cost, minlength=offers.n_offers),
               "count": np.bincount(taken, minlength=offers.n_offers).astype(float)}
        dual_sum = float(np.concatenate(dual_rows).sum()) if dual_rows else 0.0
        bound = dual_sum + capacity_terms(problem, prices)
        improved = bound < best_bound * (1 - 1e-12) or anchor_target is None
        drop = (best_bound - bound) / bound if np.isfinite(best_bound) and bound > 0 else np.inf
        best_bound = min(best_bound, bound)
        before = (best.objective, best.short)
        out_of_time = time.perf_counter() - start > settings.time_limit_s
        # a plan costs about as much as the rest of a pass, and no plan can certify the gap
        # while the bound still falls by more than the tolerance each pass: planning starts once
        # it settles (then every pass plans), or at once from warm prices, and always on the
        # last pass
        planning = (planning or drop <= settings.gap_tolerance or out_of_time
                    or iteration == settings.max_iterations
                    or (warm_start is not None and iteration == 1))
        objective, short = None, None
        if planning:
            chosen, objective = _plan(problem, prices, relaxed_choice, exact_choices, run)
            short = best.consider(chosen, objective, prices)
        else:
            unplanned.append(prices)
        gap = _gap(best_bound, best.objective)
        entry = {"iteration": iteration, "bound": bound, "objective": objective,
                 "best_bound": best_bound,
                 "best_objective": best.objective if gap is not None else None,
                 "gap": gap, "shortfall": short, "seconds": time.perf_counter() - start}
        trace.append(entry)
        if progress is not None:
            progress(entry)
        if gap is not None and gap <= settings.gap_tolerance and not (
                best.short and iteration < _TARGET_PASSES):
            status = "optimal"
            break
        if out_of_time:
            status = "time_limit"
            break
        progressed = improved or (best.objective, best.short) != before
        stalled_passes = 0 if progressed else stalled_passes + 1
        if stalled_passes >= _STALL_PASSES:
            # the backtracking steps from the best prices keep finding neither a better bound
            # nor a better plan (at a million customers, each such pass costs seconds)
            status = "stalled"
            break
        if improved:
            anchor, anchor_use = prices, use
            anchor_target = _update(problem, prices, candidates, run)
            anchor_target = secant_global_price(problem, anchor_target, spent,
                                                prices.global_budget,
                                                float(use["spend"].sum()))
            spent = (prices.global_budget, float(use["spend"].sum()))
            step = min(1.0, step * 2.0)
        else:
            step /= 2.0
        if step >= _MIN_STEP:
            prices = anchor.towards(anchor_target, step)
        else:
            # the coordinate direction no longer helps: a Polyak step from the best prices,
            # shrinking with every pass that fails to improve the bound
            polyak = step / _MIN_STEP
            if polyak < _MIN_STEP:
                status = "stalled"
                break
            prices = _subgradient_step(problem, anchor, anchor_use, best_bound, best.objective,
                                       polyak)
    if status != "optimal" and unplanned:
        # uncertified: the early prices' plans may be the best (a small or degenerate problem's
        # bound can stall far from its plans), so the passes that skipped them make them now
        replanned = 0
        for at in unplanned:
            if time.perf_counter() - start > settings.time_limit_s:
                break
            relaxed = run(lambda block, at=at: _respond(problem, block, at, True)[0],
                          problem.blocks)
            chosen, objective = _plan(problem, at, relaxed, [None] * len(relaxed), run)
            best.consider(chosen, objective, at)
            replanned += 1
        gap = _gap(best_bound, best.objective)
        trace.append({"iteration": iteration, "replanned_passes": replanned,
                      "best_bound": best_bound, "best_objective": best.objective, "gap": gap,
                      "seconds": time.perf_counter() - start})
        if gap is not None and gap <= settings.gap_tolerance and not (
                best.short and iteration < _TARGET_PASSES):
            status = "optimal"
    return Solution(chosen=best.chosen, objective=max(best.objective, 0.0),
                    bound=max(best_bound, 0.0), status=status, method="lagrangian",
                    iterations=iteration, prices=best.prices, trace=trace)


def _gap(bound: float, objective: float) -> float | None:
    """The relative gap, ``None`` before any plan."""
    if objective == -np.inf:
        return None
    return (bound - objective) / bound if bound > 0 else 0.0
