"""The always-on campaign rules' part of the run: usage of each offer group (``offer_groups``)
and each funder's spend, redemptions and shortfall (``funders``), and each group flight's week
budget, spend and price (``group_flights``), written to the manifest under those names and shown in the report. Nothing is added without the tables, so a run without them
keeps its manifest and report as before."""
from __future__ import annotations

from typing import Any

import numpy as np

from optimizer.model.groups import group_usage
from optimizer.model.problem import AssignmentProblem, Solution


def campaign_manifest(problem: AssignmentProblem, solution: Solution,
                      offer_ids: list[Any]) -> dict[str, Any]:
    """The manifest entries of the campaign rules present in ``problem`` (empty: none)."""
    out: dict[str, Any] = {}
    funders = problem.funders
    if funders is not None and (funders.n_listed or not funders.n_flights):
        out["funders"] = _funder_rows(problem, solution)[:funders.n_listed]
    if funders is not None and funders.n_flights:  # shared budgets of group flights
        out["group_flights"] = [
            {"flight_id": r["funded_by"], "offers": r["offers"], "week_budget": r["budget"],
             "expected_cost": r["expected_cost"], "budget_used": r["budget_used"],
             "shadow_price": r["shadow_price"]}
            for r in _funder_rows(problem, solution)[funders.n_listed:]]
    groups = problem.groups
    if groups is None:
        return out
    customer, offer = problem.chosen_pairs(solution.chosen)
    usage = group_usage(groups, customer, offer)
    members = [[offer_ids[j] for j in np.flatnonzero((groups.members == g).any(axis=1))]
               for g in range(groups.n_groups)]
    out["offer_groups"] = [
        {"group_id": name, "max_per_customer": int(groups.limit[g]), "offers": members[g],
         "assignments": int(usage["assignments"][g]), "customers": int(usage["customers"][g]),
         "customers_at_limit": int(usage["at_limit"][g])}
        for g, name in enumerate(groups.names)]
    return out


def _funder_rows(problem: AssignmentProblem, solution: Solution) -> list[dict[str, Any]]:
    """Per funder: offers, budget, expected cost and share used, expected redemptions against
    ``min_redemptions`` and the shortfall, and the shadow price of its budget."""
    funders = problem.funders
    assert funders is not None
    n = problem.offers.n_offers
    _, offer = problem.chosen_pairs(solution.chosen)
    p_redeem = np.concatenate([np.zeros(0)] + [b.p_redeem[c] for b, c in
                                               zip(problem.blocks, solution.chosen)])
    redemptions = np.bincount(offer, weights=p_redeem, minlength=n)
    spend = funders.per_funder(problem.usage(solution.chosen).spend)
    redeemed = funders.per_funder(redemptions)
    offers = np.bincount(funders.of_offer[funders.of_offer >= 0], minlength=funders.n_funders)
    price = (solution.prices.funder if solution.prices.funder is not None
             else np.zeros(funders.n_funders))
    rows = []
    for f, name in enumerate(funders.names):
        budget = float(funders.budget[f])
        floor = float(funders.min_redemptions[f])
        rows.append({
            "funded_by": name, "offers": int(offers[f]),
            "budget": budget if np.isfinite(budget) else None,
            "expected_cost": float(spend[f]),
            "budget_used": float(spend[f] / budget) if np.isfinite(budget) and budget > 0
            else None,
            "expected_redemptions": float(redeemed[f]), "min_redemptions": floor,
            "redemption_shortfall": max(0.0, floor - float(redeemed[f])),
            "shadow_price": float(price[f]) if np.isfinite(budget) else 0.0})
    return rows
