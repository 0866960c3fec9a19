"""The always-on campaign rules in the CP-SAT polish (:mod:`optimizer.solve.polish`): offer groups
(per core customer and group, at most the group's limit) and funder budgets (per funder, the
budget left by the fixed pairs), as rows of the core model, and their float re-check.

A core customer's chosen pairs are all free in the core (her fixed pairs are unchosen), so her
whole group limit is hers to fill in the model; a funder's fixed pairs spend part of its budget,
so the model gets what they leave (the relaxation that bounds the whole problem gets the whole
budget, plus the checker's slack, as the offers' budgets do).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from optimizer.model.problem import AssignmentProblem
from optimizer.solve.cpsat_rows import capacity_row, row, runs

if TYPE_CHECKING:
    from optimizer.solve.polish import _Core


def funder_left(problem: AssignmentProblem, fixed: list[np.ndarray]) -> np.ndarray | None:
    """Each funder's budget minus the spend of the ``fixed`` pairs (``None`` without funders)."""
    funders = problem.funders
    if funders is None:
        return None
    return funders.budget - funders.per_funder(problem.usage(fixed).spend)


def add_rows(problem: AssignmentProblem, core: "_Core", proto: Any,
             left: np.ndarray | None, relax: bool) -> None:
    """Group rows and funder rows of the core model (``left``: funders' budgets left by the
    fixed pairs; the whole budgets when ``None``)."""
    n = core.offer.size
    index = np.arange(n, dtype=np.int64)
    groups = problem.groups
    if groups is not None and n:
        width = groups.members.shape[1]
        pair = np.repeat(index, width)
        group = groups.members[core.offer].ravel()
        keep = group >= 0
        pair, group = pair[keep], group[keep]
        order, starts, ends = runs(core.customer[pair] * max(groups.n_groups, 1) + group)
        for s, e in zip(starts, ends):
            members = pair[order[s:e]]
            limit = int(groups.limit[group[order[s]]])
            if members.size > limit:
                row(proto, members, np.ones(members.size, dtype=np.int64), 0, limit)
    funders = problem.funders
    if funders is not None and n:
        budget = funders.budget if left is None else left
        owner = funders.of_offer[core.offer]
        for f in np.flatnonzero(np.isfinite(budget)):
            members = index[owner == f]
            capacity_row(proto, members, core.cost[members], float(budget[f]), relax)


def tight_offers(problem: AssignmentProblem, price: np.ndarray | None, spend: np.ndarray,
                 max_cost: np.ndarray) -> np.ndarray:
    """Offers whose funder's budget binds or could (a positive price, or less left than the
    offer's dearest candidate): their customers are worth a place in the core."""
    funders = problem.funders
    tight = np.zeros(problem.offers.n_offers, dtype=bool)
    if funders is None:
        return tight
    finite = np.isfinite(funders.budget)
    left = np.where(finite, funders.budget, 0.0) - funders.per_funder(spend)
    mu = price if price is not None else np.zeros(funders.n_funders)
    funded = funders.of_offer >= 0
    dearest = np.zeros(funders.n_funders)
    np.maximum.at(dearest, funders.of_offer[funded], max_cost[funded])
    binds = finite & ((mu > 0) | (left < dearest))
    tight[funded] = binds[funders.of_offer[funded]]
    return tight
