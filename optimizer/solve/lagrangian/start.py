"""Which of each customer's listed pairs enter the solve when only her best few may
(``solver.scores_per_customer``): the best by reduced value at the prices of a sample LP.

Ranking by value alone keeps the offers every customer wants most, and when their budgets bind
those are the offers she cannot get: on the 1 M-customer benchmark with a third of the budgets
binding, keeping each customer's 12 most valuable of her 43 allowed pairs cost 2.0 % of the
objective. The LP relaxation of a sample of customers (capacities scaled to the sample) prices
the budgets; ranking by ``value - (budget price + global price) x cost - count price`` keeps the
pairs a customer could actually get, and the substitutes behind them: the same 12 pairs cost
0.017 % with a sample of 10,000 customers (4.7 s of PDLP).

The sample is drawn (seeded) from the first ``_HEAD_CUSTOMERS`` customers of the table, whose
blocks are held until the prices are known; every later block is narrowed as it is built, so
memory holds one head and the kept pairs, never every listed pair. The loss is still measured:
the pipeline bounds the plan over every listed pair (:func:`~optimizer.solve.lagrangian.method.dual_bound`).
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from optimizer.core.errors import SolverError
from optimizer.model.problem import AssignmentProblem, CandidateBlock, OfferData, Prices
from optimizer.solve.lagrangian import _kernels as kernels
from optimizer.solve.lagrangian import channels as channel_rules
from optimizer.solve.lagrangian import funders as funder_rules
from optimizer.solve.lagrangian.sample_rows import picked_blocks
from optimizer.solve.lp import LPRelaxation, solve_lp

if TYPE_CHECKING:  # the executor's module imports the solve's; only its type is read here
    from optimizer.solve.lagrangian.executor import ShardExecutor

log = logging.getLogger(__name__)
SAMPLE_CUSTOMERS = 10_000
_HEAD_CUSTOMERS = 200_000


def sample_prices(problem: AssignmentProblem, customers: int, seed: int) -> Prices | None:
    """Starting prices from the LP relaxation of a random sample of customers.

    Offers in one category are near-perfect substitutes (often exact ties in value), and from zero
    prices coordinate steps creep along the ridge where such offers' reduced values tie. The LP of
    a sample, with every capacity scaled by the sample's share of customers, puts prices near that
    ridge's optimum at once; coordinate steps on the whole population then only refine them.
    With a funder budget, a channel capacity or a contact budget (:func:`coupled`) those are
    rows of the LP too (scaled alike), and so are the offer groups, so its prices split a cost
    between the global, funder and offer budgets and the contact charge as the LP does: the
    coordinate steps find that split slowly (docs/method.md, "Starting prices and coupled
    budgets"). Returns ``None`` when the problem is small enough that sampling buys nothing,
    unless it has such rows: then the LP is the whole problem's.
    """
    lp = sample_lp(problem, customers, seed)
    return None if lp is None else lp[0].prices


def sample_lp(problem: AssignmentProblem, customers: int, seed: int,
              shards: ShardExecutor | None = None) -> tuple[LPRelaxation, bool] | None:
    """The LP of :func:`sample_prices` and whether it is the whole problem's (then its
    :attr:`~optimizer.solve.lp.LPRelaxation.bound` bounds every plan of ``problem``); ``None``
    where :func:`sample_prices` is. With ``shards``, the sample is drawn on the shards
    (:meth:`.executor.ShardExecutor.sample`: the same rows, ``problem.blocks`` not read, so
    the driver may hold none) and the customers are counted from their ranges."""
    total = (sum(b.n_customers for b in problem.blocks) if shards is None
             else sum(spec.hi - spec.lo for spec in shards.specs))
    if total == 0 or (total <= customers and not coupled(problem)):
        return None
    share = None if total <= customers else customers / total  # None: every customer
    picked = (picked_blocks(problem.blocks, share, seed) if shards is None
              else shards.sample(share, seed))
    drawn = sum(b.n_customers for b in picked)
    if drawn == 0:
        return None
    scale = drawn / total
    offers = problem.offers
    whole = drawn == total
    # the coupled rows (and the groups) only where such rows exist: otherwise the LP holds the
    # offers' and the global budget's rows alone, as before
    full = coupled(problem)
    funders, channels = (problem.funders, problem.channels) if full else (None, None)
    sample = AssignmentProblem(
        offers=OfferData(offers.discount, offers.budget * scale, offers.max_customers * scale,
                         np.zeros_like(offers.min_customers), offers.categories,
                         offers.category_names),
        blocks=picked, max_per_category=problem.max_per_category,
        global_budget=problem.global_budget * scale, n_customers=drawn,
        groups=problem.groups if full else None,
        funders=None if funders is None else replace(funders, budget=funders.budget * scale),
        channels=None if channels is None else replace(
            channels, capacity=channels.capacity * scale,
            contact_budget=channels.contact_budget * scale))
    try:
        # PDLP (first-order, one thread) reaches prices as good as GLOP's simplex in half the
        # time on these LPs; they are only a starting point, refined by the passes, so a loose
        # tolerance does (demo sample: 4.6 s at PDLP's default, 1.1 s at 1e-4)
        lp = solve_lp(sample, backend="PDLP", time_limit_s=60.0, pdlp_tolerance=1e-4)
    except SolverError:
        log.warning("sample LP failed; starting from zero prices")
        return None
    return lp, whole


def coupled(problem: AssignmentProblem) -> bool:
    """Whether ``problem`` has a funder budget, a channel capacity or a contact budget: rows that
    share a cost or a contact with the offers' and the global budgets, whose prices the
    coordinate steps split slowly (:func:`sample_prices`)."""
    funders, channels = problem.funders, problem.channels
    return bool((funders is not None and np.isfinite(funders.budget).any())
                or (channels is not None and (np.isfinite(channels.capacity).any()
                                              or np.isfinite(channels.contact_budget))))


def keep_best(block: CandidateBlock, rank: np.ndarray, keep: int) -> CandidateBlock:
    """``block`` narrowed to each customer's ``keep`` slots of highest ``rank`` (``-inf`` in
    empty slots), ties to the lower slot (the lower offer); kept slots stay in offer order."""
    n, width = block.offer.shape
    if width <= keep:
        return block
    order = np.argsort(-rank, axis=1, kind="stable")[:, :keep]
    order.sort(axis=1)  # offer order; a row's empty slots sit right of its listed ones
    offer = np.take_along_axis(block.offer, order, axis=1)
    live = offer >= 0
    width = int(live.sum(axis=1).max()) if n else 0
    order, live = order[:, :width], live[:, :width]

    def taken(values: np.ndarray, empty: float) -> np.ndarray:
        return np.where(live, np.take_along_axis(values, order, axis=1), empty)
    return CandidateBlock(block.customers, taken(block.offer, -1).astype(block.offer.dtype),
                          taken(block.value, 0.0), taken(block.cost, 0.0),
                          taken(block.p_redeem, 0.0), block.cap)


def selection_prices(head: list[CandidateBlock], offers: OfferData,
                     max_per_category: int | None, global_budget: float, n_customers: int,
                     seed: int) -> Prices:
    """The LP prices of a sample of the ``head`` blocks' customers, every capacity scaled to the
    sample's share of all ``n_customers``."""
    held = sum(b.n_customers for b in head)
    share = held / max(n_customers, 1)
    problem = AssignmentProblem(
        offers=replace(offers, budget=offers.budget * share,
                       max_customers=offers.max_customers * share,
                       min_customers=np.zeros_like(offers.min_customers)),
        blocks=head, max_per_category=max_per_category, global_budget=global_budget * share,
        n_customers=held)
    prices = sample_prices(problem, SAMPLE_CUSTOMERS, seed)
    if prices is None:  # the head is no larger than the sample: its own LP
        prices = solve_lp(problem, backend="PDLP", time_limit_s=60.0, pdlp_tolerance=1e-4).prices
    return prices


def best_by_prices(blocks: Iterable[CandidateBlock], keep: int, offers: OfferData,
                   max_per_category: int | None, global_budget: float, n_customers: int,
                   seed: int, found: dict[str, object] | None = None
                   ) -> Iterator[CandidateBlock]:
    """``blocks`` (every allowed listed pair) narrowed to each customer's ``keep`` best by
    reduced value at :func:`selection_prices` of the first blocks; ``found`` receives the
    prices (``"prices"``), what they came from (``"description"``) and the number of pairs
    left out (``"dropped"``)."""
    source = iter(blocks)
    head: list[CandidateBlock] = []
    for block in source:
        head.append(block)
        if sum(b.n_customers for b in head) >= _HEAD_CUSTOMERS:
            break
    prices = selection_prices(head, offers, max_per_category, global_budget, n_customers, seed)
    held = sum(b.n_customers for b in head)
    if found is not None:
        found["prices"] = prices
        # selection_prices samples only a head larger than the sample
        found["description"] = (
            f"reduced value at the LP prices of {SAMPLE_CUSTOMERS:,} customers sampled from "
            f"the first {held:,}" if held > SAMPLE_CUSTOMERS
            else f"reduced value at the LP prices of the first {held:,} customers")
    no_bonus = np.zeros(offers.n_offers)

    dropped = 0

    def narrowed(block: CandidateBlock) -> CandidateBlock:
        nonlocal dropped
        rank = kernels.reduced_values(block.value, block.cost, block.offer, prices.budget,
                                      prices.count, prices.global_budget, no_bonus)
        kept = keep_best(block, rank, keep)
        dropped += block.n_pairs - kept.n_pairs
        if found is not None:
            found["dropped"] = dropped
        return kept
    while head:
        yield narrowed(head.pop(0))
    for block in source:
        yield narrowed(block)


__all__ = ["SAMPLE_CUSTOMERS", "best_by_prices", "coupled", "keep_best", "sample_lp",
           "sample_prices", "selection_prices"]


def admissible_prices(problem: AssignmentProblem, prices: Prices) -> Prices:
    """Prices a bound may use: non-negative, and zero on constraints this problem does not have
    (a warm start from another scenario may price a budget that is uncapped here)."""
    offers = problem.offers
    if prices.budget.shape != (offers.n_offers,):
        return Prices.zeros(offers.n_offers)
    offer_prices = Prices(
        np.where(np.isfinite(offers.budget), np.maximum(prices.budget, 0.0), 0.0),
        np.where(np.isfinite(offers.max_customers), np.maximum(prices.count, 0.0), 0.0),
        max(prices.global_budget, 0.0) if np.isfinite(problem.global_budget) else 0.0,
        np.zeros(offers.n_offers), *funder_rules.admissible(problem, prices))
    return channel_rules.admissible(problem, replace(offer_prices, channel=prices.channel,
                                                     contact=prices.contact))


def start_prices(problem: AssignmentProblem, warm_start: Prices | None, sample_customers: int,
                 seed: int, shards: ShardExecutor | None = None) -> tuple[Prices, float]:
    """The first pass's prices: the warm start (made admissible), else a sample LP's, else 0;
    and an upper bound on every plan known before the passes: the LP's weak-duality bound when
    that LP was the whole problem's (:func:`sample_lp`), else ``inf``. ``shards``: the solve's
    executor, whose shards draw the sample (else the driver's blocks)."""
    prices = admissible_prices(problem, warm_start) if warm_start is not None else None
    bound = float("inf")
    if prices is None and sample_customers > 0:
        lp = sample_lp(problem, sample_customers, seed, shards)
        if lp is not None:
            prices, bound = lp[0].prices, (lp[0].bound if lp[1] else bound)
    if prices is None:
        prices = Prices.zeros(problem.offers.n_offers)
    if problem.funders is not None and prices.funder is None:  # funders start unpriced
        prices = Prices(prices.budget, prices.count, prices.global_budget, prices.target,
                        *funder_rules.admissible(problem, prices))
    if problem.channels is not None and prices.channel is None:  # channels start unpriced
        prices = channel_rules.admissible(problem, prices)
    return prices, bound
