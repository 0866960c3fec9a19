"""The channels' part of the run (optional ``channels`` tables): per channel its contacts,
capacity, cost per contact, contact cost and the shadow price of its capacity, and the contact
budget's use, written to the manifest under ``channels`` and ``contact_budget`` and shown in the
report. Nothing is added without the tables, so a run without them keeps its manifest and
report as before."""
from __future__ import annotations

from typing import Any

import numpy as np

from optimizer.core.numerics import fixed_dot
from optimizer.model.channels import channels_used
from optimizer.model.problem import AssignmentProblem, Solution


def channel_manifest(problem: AssignmentProblem, solution: Solution) -> dict[str, Any]:
    """The manifest entries of the channels (empty without them)."""
    channels = problem.channels
    if channels is None:
        return {}
    used = channels_used(channels, solution.chosen)
    price = (solution.prices.channel if solution.prices.channel is not None
             else np.zeros(channels.n_channels))
    rows = []
    for k, name in enumerate(channels.names):
        capacity = float(channels.capacity[k])
        rows.append({"channel_id": name, "contacts": int(used[k]),
                     "capacity": int(capacity) if np.isfinite(capacity) else None,
                     "cost_per_contact": float(channels.cost[k]),
                     "contact_cost": float(used[k] * channels.cost[k]),
                     "consenting_customers": int(channels.consent[:, k].sum()),
                     "shadow_price": float(price[k])})
    budget = channels.contact_budget
    spent = fixed_dot(used.astype(float), channels.cost)
    return {"channels": rows,
            "contact_budget": {"budget": budget if np.isfinite(budget) else None,
                               "contact_cost": spent,
                               "shadow_price": float(solution.prices.contact)}}
