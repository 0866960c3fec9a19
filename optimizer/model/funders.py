"""Funders: budgets per funder over the offers they fund (``offers.funded_by``, the optional
``funders`` table: funded_by, budget, min_redemptions).

The constraint, per funder ``f`` with a budget: ``sum_{i, j: funded_by(j) = f} cost[i, j] x[i, j]
<= budget[f]`` (expected cost, as every budget). It couples customers like an offer's budget, so
the scale method prices it (:mod:`optimizer.solve.lagrangian.funders`). ``min_redemptions`` (the
funder's minimum commitment, in expected redemptions ``sum p_redeem x``) is a target, not a
constraint: like ``min_customers``, no plan may be refused for missing it, and a hard floor would
make the bound's weak duality depend on the plan meeting it; the run reports each funder's
expected redemptions and shortfall instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import polars as pl


@dataclass(frozen=True)
class FunderData:
    """of_offer: ``(n_offers,)`` funder index of each offer (-1: none listed in ``funders``);
    budget: ``(n_funders,)`` cap on expected spend (``inf``: none); min_redemptions:
    ``(n_funders,)`` target of expected redemptions (0: none); names: each ``funded_by``."""

    of_offer: np.ndarray
    budget: np.ndarray
    min_redemptions: np.ndarray
    names: list[str]

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
