"""Funder budgets (:mod:`optimizer.model.funders`) in the scale method: coupling constraints
with their own prices.

* Prices: a funder's price ``mu_f >= 0`` is added to the cost price of each offer it funds
  (:attr:`Prices.cost_price`), and ``mu . budget`` to the dual function's capacity terms, so the
  bound stays an upper bound for any non-negative prices (weak duality), funder budgets included.
* Update: each candidate's critical total price per unit of cost, ``(margin + bonus - count
  price) / cost``, is read as for the global budget (:mod:`.critical`, mode 1): over the
  candidates still in at their offer's price, ``mu_f`` is the smallest price at which the
  funder's expected spend fits its budget; the offer's own budget price then keeps only what the
  funder's price does not already charge (``max(budget price - mu_f, 0)``). Found as the
  critical prices are, once per price pass: each shard sketches its funded candidates, tallies
  them in the merged buckets and sends the crossing bucket's (O(funders) bytes a shard, not its
  funded candidates: :meth:`.executor.ShardedCandidates.funder_prices`).
* Plan: the repair cuts each funder's pairs to its budget, those returning least per unit of cost
  first (the per-offer budget cut, per funder); the refill does not know funders, so its plan is
  cut again after it.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from optimizer.model.problem import AssignmentProblem, Prices

Funded = tuple[np.ndarray, np.ndarray, np.ndarray]  # (key, weight, funder) per candidate


def funded(problem: AssignmentProblem, offers_of: list[np.ndarray], costs: list[np.ndarray],
           margins: Iterable[np.ndarray], prices: Prices, budget_price: np.ndarray, glob: float,
           target: np.ndarray) -> Funded | None:
    """The candidates that count against a funder's budget at these prices, in customer order:
    (critical price per unit of cost net of the global price, cost, funder); ``offers_of``,
    ``costs``, ``margins``: per block, as the price pass wrote them (one per slot, read in
    block order: :meth:`.critical.Candidates.dense_margins`). ``None`` without a funder
    budget. A shard held elsewhere sends its own, added in shard order (:mod:`.shards`)."""
    funders = problem.funders
    if funders is None or not np.isfinite(funders.budget).any():
        return None
    capped = np.isfinite(funders.budget)
    keys, weights, owners = [], [], []
    for offer, cost, margin in zip(offers_of, costs, margins):
        live = offer >= 0
        o = offer[live].astype(np.int64)
        f = funders.of_offer[o]
        has = f >= 0
        o, f = o[has], f[has]
        c, m = cost[live][has], margin[live][has]
        lifted = m + target[o]
        base = lifted - prices.count[o]
        with np.errstate(divide="ignore", invalid="ignore"):
            per_unit = np.where(c > 0, base / np.where(c > 0, c, 1.0),
                                np.where(base > 0, np.inf, -np.inf))
        keep = (lifted > 0) & (per_unit > budget_price[o] + glob) & capped[f]
        keys.append(per_unit[keep] - glob)
        weights.append(c[keep])
        owners.append(f[keep])
    if not keys:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.concatenate(keys), np.concatenate(weights), np.concatenate(owners)


def critical(problem: AssignmentProblem, mu: np.ndarray | None, budget_price: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """(offer budget prices net of the funders', funder prices) from the funders' prices ``mu``
    (:meth:`.executor.ShardedCandidates.funder_prices`; ``None``: no funder budget, zeros)."""
    funders = problem.funders
    if funders is None:
        return budget_price, None
    if mu is None:
        return budget_price, np.zeros(funders.n_funders)
    return np.maximum(budget_price - np.append(mu, 0.0)[funders.of_offer], 0.0), mu


def admissible(problem: AssignmentProblem, prices: Prices) -> tuple[np.ndarray | None,
                                                                   np.ndarray | None]:
    """(funder prices, funder of each offer) a bound may use: non-negative, zero on funders
    without a budget, zero when ``prices`` carry none (``None`` without funders)."""
    funders = problem.funders
    if funders is None:
        return None, None
    mu = prices.funder
    if mu is None or mu.shape != (funders.n_funders,):
        mu = np.zeros(funders.n_funders)
    return (np.where(np.isfinite(funders.budget), np.maximum(mu, 0.0), 0.0),
            funders.of_offer)


def capacity_term(problem: AssignmentProblem, prices: Prices) -> float:
    """``mu . budget`` over funders with a budget (0 without funders)."""
    funders = problem.funders
    if funders is None or prices.funder is None:
        return 0.0
    finite = np.isfinite(funders.budget)
    return float((prices.funder[finite] * funders.budget[finite]).sum())


def slack(problem: AssignmentProblem, prices: Prices, spend: np.ndarray) -> np.ndarray | None:
    """Each funder's budget minus its spend in the responses (``spend`` per offer), zero where
    the price is 0 and there is room (a subgradient direction that can move)."""
    funders = problem.funders
    if funders is None or prices.funder is None:
        return None
    finite = np.isfinite(funders.budget)
    g = np.where(finite, np.where(finite, funders.budget, 0.0) - funders.per_funder(spend), 0.0)
    return np.where((prices.funder <= 0) & (g > 0), 0.0, g)


def keep_within(problem: AssignmentProblem, offer: np.ndarray, value: np.ndarray,
                cost: np.ndarray) -> np.ndarray | None:
    """Which of a plan's pairs (flat ``offer``, ``value``, ``cost``) to keep so that every
    funder's spend fits its budget (``None``: all fit)."""
    from optimizer.solve.lagrangian.repair import _keep_prefix, _or_best_single

    funders = problem.funders
    if funders is None or offer.size == 0:
        return None
    owner = funders.of_offer[offer]
    spend = np.bincount(owner[owner >= 0], weights=cost[owner >= 0],
                        minlength=funders.n_funders)
    over = spend > funders.budget * (1 + 1e-12)
    if not over.any():
        return None
    sub = np.flatnonzero((owner >= 0) & over[np.maximum(owner, 0)])
    group, v, c = owner[sub], value[sub], cost[sub]
    keep_sub = _keep_prefix(group, v / np.maximum(c, 1e-300), c, funders.budget)
    keep_sub = _or_best_single(group, v, c, funders.budget, keep_sub)
    keep = np.ones(offer.size, dtype=bool)
    keep[sub] = keep_sub
    return keep


def cut_plan(problem: AssignmentProblem, chosen: list[np.ndarray]) -> None:
    """Unchoose, in place, what breaks a funder's budget in ``chosen`` (after the refill)."""
    if problem.funders is None or not chosen:
        return
    rows = [np.nonzero(mask) for mask in chosen]
    offer = np.concatenate([b.offer[r] for b, r in zip(problem.blocks, rows)]).astype(np.int64)
    value = np.concatenate([b.value[r] for b, r in zip(problem.blocks, rows)])
    cost = np.concatenate([b.cost[r] for b, r in zip(problem.blocks, rows)])
    keep = keep_within(problem, offer, value, cost)
    if keep is None:
        return
    at = 0
    for mask, (r, s) in zip(chosen, rows):
        drop = ~keep[at:at + r.size]
        mask[r[drop], s[drop]] = False
        at += r.size
