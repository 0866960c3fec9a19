"""The always-on campaign rules' part of the run: usage of each offer group (``offer_groups``),
written to the manifest (``offer_groups``) and shown in the report. Nothing is added without
the tables, so a run without them keeps its manifest and report as before."""
from __future__ import annotations

from typing import Any

import numpy as np

from optimizer.model.groups import group_usage
from optimizer.model.problem import AssignmentProblem, Solution


def chosen_pairs(problem: AssignmentProblem, solution: Solution) -> tuple[np.ndarray, np.ndarray]:
    """The plan's (customer index, offer index) pairs, flat."""
    if not problem.blocks:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    customer = np.concatenate([np.repeat(b.customers, c.sum(axis=1))
                               for b, c in zip(problem.blocks, solution.chosen)])
    offer = np.concatenate([b.offer[c] for b, c in zip(problem.blocks, solution.chosen)])
    return customer.astype(np.int64), offer.astype(np.int64)


def campaign_manifest(problem: AssignmentProblem, solution: Solution,
                      offer_ids: list[Any]) -> dict[str, Any]:
    """The manifest entries of the campaign rules present in ``problem`` (empty: none)."""
    out: dict[str, Any] = {}
    groups = problem.groups
    if groups is None:
        return out
    customer, offer = chosen_pairs(problem, solution)
    usage = group_usage(groups, customer, offer)
    members = [[offer_ids[j] for j in np.flatnonzero((groups.members == g).any(axis=1))]
               for g in range(groups.n_groups)]
    out["offer_groups"] = [
        {"group_id": name, "max_per_customer": int(groups.limit[g]), "offers": members[g],
         "assignments": int(usage["assignments"][g]), "customers": int(usage["customers"][g]),
         "customers_at_limit": int(usage["at_limit"][g])}
        for g, name in enumerate(groups.names)]
    return out
