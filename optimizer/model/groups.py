"""Exclusive offers: groups of offers of which a customer may get at most ``max_per_customer``.

The optional ``offer_groups`` table (docs/contract.md) lists ``group_id, offer_id,
max_per_customer``; the limit repeats on every row of its group (validation refuses rows of one
group that disagree). An offer may sit in several groups; every one of its groups counts it.
The constraint, per customer ``i`` and group ``g``: ``sum_{j in g} x[i, j] <= max_per_customer[g]``.
It is a per-customer rule, so it lives in each customer's subproblem, never in the prices.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numba as nb
import numpy as np

if TYPE_CHECKING:
    import polars as pl


@dataclass(frozen=True)
class GroupData:
    """The offer groups as arrays.

    members: ``(n_offers, width)`` group indices of each offer, padded with -1 (an offer in no
        group has a row of -1).
    limit: ``(n_groups,)`` how many offers of each group one customer may get.
    names: each group's ``group_id``.
    """

    members: np.ndarray
    limit: np.ndarray
    names: list[str]

    @property
    def n_groups(self) -> int:
        return int(self.limit.shape[0])

    @property
    def first(self) -> np.ndarray:
        """Each offer's first group (-1: none); counting each offer in this group only is a
        relaxation of the rule (fewer constraints)."""
        return self.members[:, 0].copy()


def group_data(offer_groups: "pl.DataFrame | None", n_offers: int) -> GroupData | None:
    """:class:`GroupData` from the validated ``offer_groups`` rows (``group_id``, ``o``,
    ``max_per_customer``); ``None`` without the table. Groups are numbered in order of their
    first row, offers' groups listed in that order, so the layout follows the table."""
    import polars as pl  # local: the arrays need no polars

    if offer_groups is None:
        return None
    frame = offer_groups.with_row_index("__row")
    firsts = (frame.group_by("group_id").agg(pl.col("__row").min(),
                                             pl.col("max_per_customer").first())
              .sort("__row"))
    names = firsts.get_column("group_id").to_list()
    index = {name: k for k, name in enumerate(names)}
    limit = firsts.get_column("max_per_customer").to_numpy().astype(np.int64)
    group = np.array([index[g] for g in frame.get_column("group_id").to_list()], dtype=np.int64)
    offer = frame.get_column("o").to_numpy().astype(np.int64)
    counts = np.bincount(offer, minlength=n_offers)
    width = max(1, int(counts.max()) if counts.size else 1)
    members = np.full((n_offers, width), -1, dtype=np.int64)
    order = np.lexsort((group, offer))  # each offer's groups in group order
    offer, group = offer[order], group[order]
    slot = np.arange(offer.size) - (np.cumsum(counts) - counts)[offer]
    members[offer, slot] = group
    return GroupData(members=members, limit=limit, names=[str(n) for n in names])


def violating_rows(group: GroupData, offer: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Per row of a block, whether its chosen offers break a group's limit."""
    return _violating(offer, chosen, group.members, group.limit)


@nb.njit(cache=True, nogil=True)
def _violating(offer, chosen, members, limit):  # pragma: no cover - compiled
    n, slots = offer.shape
    out = np.zeros(n, dtype=np.bool_)
    held = np.zeros(limit.shape[0], dtype=np.int64)
    for i in range(n):
        for s in range(slots):
            if chosen[i, s] and offer[i, s] >= 0:
                for w in range(members.shape[1]):
                    g = members[offer[i, s], w]
                    if g >= 0:
                        held[g] += 1
                        if held[g] > limit[g]:
                            out[i] = True
        for s in range(slots):  # reset only what this row touched
            if chosen[i, s] and offer[i, s] >= 0:
                for w in range(members.shape[1]):
                    g = members[offer[i, s], w]
                    if g >= 0:
                        held[g] = 0
    return out


def group_usage(group: GroupData, customer: np.ndarray, offer: np.ndarray
                ) -> dict[str, np.ndarray]:
    """Per group, over the plan's pairs (``customer``, ``offer`` index arrays): assignments,
    customers holding any of its offers, and customers holding exactly its limit."""
    pair_groups = group.members[offer]  # (pairs, width)
    rows, cols = np.nonzero(pair_groups >= 0)
    g = pair_groups[rows, cols]
    cust = customer[rows].astype(np.int64)
    assignments = np.bincount(g, minlength=group.n_groups)
    if g.size == 0:
        zero = np.zeros(group.n_groups, dtype=np.int64)
        return {"assignments": assignments, "customers": zero, "at_limit": zero}
    key = g * (int(cust.max()) + 1) + cust
    keys, per_key = np.unique(key, return_counts=True)
    key_group = keys // (int(cust.max()) + 1)
    customers = np.bincount(key_group, minlength=group.n_groups)
    at_limit = np.bincount(key_group, weights=(per_key >= group.limit[key_group]),
                           minlength=group.n_groups).astype(np.int64)
    return {"assignments": assignments, "customers": customers, "at_limit": at_limit}
