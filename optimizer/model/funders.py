"""Funders: budgets per funder over the offers they fund (``offers.funded_by``, the optional
``funders`` table: funded_by, budget, min_redemptions).

The constraint, per funder ``f`` with a budget: ``sum_{i, j: funded_by(j) = f} cost[i, j] x[i, j]
<= budget[f]`` (expected cost, as every budget). It couples customers like an offer's budget, so
the scale method prices it (:mod:`optimizer.solve.lagrangian.funders`). ``min_redemptions`` (the
funder's minimum commitment, in expected redemptions ``sum p_redeem x``) is a target, not a
constraint: like ``min_customers``, no plan may be refused for missing it, and a hard floor would
make the bound's weak duality depend on the plan meeting it; the run reports each funder's
expected redemptions and shortfall instead.

**Shared budgets.** :class:`FunderData` holds every budget shared by a set of offers: the listed
funders first, then (``n_flights`` of them) the week shares of the group flights covering the
week (:mod:`optimizer.model.flights`, :func:`with_group_flights`). The solvers (the Lagrangian's
prices, the repair, the exact model, the polish) treat them all alike; only the funders are
reported as funders. Each offer is under at most one shared budget (``of_offer``): an offer in a
group flight whose ``funded_by`` names a listed funder is bad input (see
:func:`optimizer.io.validate_flights.validate_flight_table`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import polars as pl

    from optimizer.model.flights import FlightPlan


@dataclass(frozen=True)
class FunderData:
    """Shared budgets (module docstring). of_offer: ``(n_offers,)`` shared budget of each offer
    (-1: none); budget: ``(n_funders,)`` cap on expected spend (``inf``: none); min_redemptions:
    ``(n_funders,)`` target of expected redemptions (0: none); names: each ``funded_by`` (group
    flights: ``flight_id``); n_flights: how many of the last entries are group flights."""

    of_offer: np.ndarray
    budget: np.ndarray
    min_redemptions: np.ndarray
    names: list[str]
    n_flights: int = 0

    @property
    def n_listed(self) -> int:
        """The number of funders (the first entries; the group flights follow)."""
        return self.n_funders - self.n_flights

    @property
    def n_funders(self) -> int:
        return int(self.budget.shape[0])

    def per_funder(self, per_offer: np.ndarray) -> np.ndarray:
        """Sum a per-offer quantity over each funder's offers."""
        funded = self.of_offer >= 0
        return np.bincount(self.of_offer[funded], weights=per_offer[funded],
                           minlength=self.n_funders)


def funder_data(funders: "pl.DataFrame | None", offers: "pl.DataFrame") -> FunderData | None:
    """:class:`FunderData` from the validated ``funders`` table (funders in its row order) and the
    offers' ``funded_by``; ``None`` without the table."""
    import polars as pl  # local: the arrays need no polars

    if funders is None:
        return None
    names = funders.get_column("funded_by").to_list()
    index = {name: k for k, name in enumerate(names)}
    funded_by = offers.get_column("funded_by").cast(pl.Utf8).str.strip_chars().to_list()
    of_offer = np.array([index.get(f, -1) if f is not None else -1 for f in funded_by],
                        dtype=np.int64)
    budget = funders.get_column("budget").fill_null(np.inf).to_numpy().astype(float)
    floor = funders.get_column("min_redemptions").fill_null(0.0).to_numpy().astype(float)
    return FunderData(of_offer=of_offer, budget=budget, min_redemptions=floor,
                      names=[str(n) for n in names])


def with_group_flights(funders: FunderData | None, plan: "FlightPlan | None", n_offers: int
                       ) -> FunderData | None:
    """``funders`` with the week shares of the group flights covering the week appended as
    shared budgets (``funders`` itself without any)."""
    if plan is None or plan.group_share.size == 0:
        return funders
    base = funders if funders is not None else FunderData(
        np.full(n_offers, -1, dtype=np.int64), np.zeros(0), np.zeros(0), [])
    grouped = plan.group_of >= 0
    if (base.of_offer[grouped] >= 0).any():  # validation rejects it; never price an offer twice
        raise ValueError("an offer is under a funder and a group flight")
    of_offer = np.where(grouped, base.n_funders + plan.group_of, base.of_offer)
    k = plan.group_share.size
    return FunderData(of_offer=of_offer, budget=np.append(base.budget, plan.group_share),
                      min_redemptions=np.append(base.min_redemptions, np.zeros(k)),
                      names=base.names + plan.group_names, n_flights=base.n_flights + k)
