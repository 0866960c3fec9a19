"""From a best response to a feasible plan: cut what overshoots the coupling caps, then refill.

Customers' best responses under near-optimal prices overshoot a budget by at most a few candidates
(those whose critical price equals the offer's price). `repair` drops, per offer and then overall,
the candidates that return least per unit of the constraint, and `refill` offers the freed budget
and free slots back to customers in rounds, each round vectorised: every customer proposes her best
candidate that still fits her own caps, and each offer accepts proposals best first while its
budget, its ``max_customers`` and the global budget allow.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..problem import AssignmentProblem, CandidateBlock

_REFILL_ROUNDS = 8


@dataclass
class _Flat:
    """Chosen pairs of all blocks, flattened."""

    block: np.ndarray
    row: np.ndarray
    slot: np.ndarray
    offer: np.ndarray
    cost: np.ndarray
    value: np.ndarray


def _flatten(problem: AssignmentProblem, chosen: list[np.ndarray]) -> _Flat:
    parts = []
    for b, (block, mask) in enumerate(zip(problem.blocks, chosen)):
        row, slot = np.nonzero(mask)
        parts.append((np.full(row.size, b), row, slot, block.offer[row, slot],
                      block.cost[row, slot], block.value[row, slot]))
    if not parts:
        empty = np.zeros(0)
        return _Flat(empty.astype(int), empty.astype(int), empty.astype(int), empty.astype(int),
                     empty, empty)
    cols = [np.concatenate(c) for c in zip(*parts)]
    return _Flat(*cols)


def _drop(chosen: list[np.ndarray], flat: _Flat, drop: np.ndarray) -> None:
    for b in np.unique(flat.block[drop]):
        sel = drop & (flat.block == b)
        chosen[b][flat.row[sel], flat.slot[sel]] = False


def _keep_prefix(group: np.ndarray, priority: np.ndarray, weight: np.ndarray,
                 capacity: np.ndarray) -> np.ndarray:
    """Within each group, keep candidates best-first while their running weight fits the capacity."""
    order = np.lexsort((-priority, group))
    g, w = group[order], weight[order]
    cum = np.cumsum(w)
    starts = np.searchsorted(g, np.arange(capacity.shape[0]), side="left")
    before = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
    used = cum - before[g]
    keep = np.empty(group.shape[0], dtype=bool)
    keep[order] = used <= capacity[g] * (1 + 1e-12) + 1e-12
    return keep


def _or_best_single(group: np.ndarray, value: np.ndarray, weight: np.ndarray,
                    capacity: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Per group, the kept prefix or the single most valuable candidate that fits alone, whichever
    is worth more: the classic guard that makes the greedy knapsack a 1/2-approximation (a prefix
    by value per cost can leave out one large, valuable candidate)."""
    n_groups = capacity.shape[0]
    kept_value = np.bincount(group[keep], weights=value[keep], minlength=n_groups)
    fits = weight <= capacity[group] * (1 + 1e-12) + 1e-12
    order = np.lexsort((-np.where(fits, value, -np.inf), group))
    first = np.searchsorted(group[order], np.arange(n_groups), side="left")
    best_idx = order[np.minimum(first, group.size - 1)]
    has = (first < group.size) & (group[best_idx] == np.arange(n_groups))
    best_value = np.where(has & fits[best_idx], value[best_idx], -np.inf)
    switch = best_value > kept_value * (1 + 1e-12)
    if not switch.any():
        return keep
    out = keep & ~switch[group]
    out[best_idx[switch]] = True
    return out


def repair(problem: AssignmentProblem, chosen: list[np.ndarray]) -> None:
    """Make ``chosen`` obey every offer's budget and ``max_customers`` and the global budget."""
    offers = problem.offers
    flat = _flatten(problem, chosen)
    if flat.offer.size == 0:
        return
    ratio = flat.value / np.maximum(flat.cost, 1e-300)
    n_offers = offers.n_offers
    counts = np.bincount(flat.offer, minlength=n_offers)
    if (counts > offers.max_customers).any():
        keep = _keep_prefix(flat.offer, flat.value, np.ones_like(flat.cost), offers.max_customers)
        _drop(chosen, flat, ~keep)
        flat = _flatten(problem, chosen)
        ratio = flat.value / np.maximum(flat.cost, 1e-300)
    spend = np.bincount(flat.offer, weights=flat.cost, minlength=n_offers)
    if (spend > offers.budget * (1 + 1e-12)).any():
        keep = _keep_prefix(flat.offer, ratio, flat.cost, offers.budget)
        keep = _or_best_single(flat.offer, flat.value, flat.cost, offers.budget, keep)
        _drop(chosen, flat, ~keep)
        flat = _flatten(problem, chosen)
        ratio = flat.value / np.maximum(flat.cost, 1e-300)
    if flat.cost.sum() > problem.global_budget * (1 + 1e-12):
        one_group = np.zeros(flat.offer.size, dtype=np.int64)
        capacity = np.array([problem.global_budget])
        keep = _keep_prefix(one_group, ratio, flat.cost, capacity)
        keep = _or_best_single(one_group, flat.value, flat.cost, capacity, keep)
        _drop(chosen, flat, ~keep)


def _room(block: CandidateBlock, mask: np.ndarray, categories: np.ndarray,
          per_category: int | None) -> np.ndarray:
    """Which unchosen candidates each customer could still add under her own caps."""
    count = mask.sum(axis=1)
    room = (~mask) & (block.offer >= 0) & (count < block.cap)[:, None]
    if per_category is None or not room.any():
        return room
    rows = np.flatnonzero(room.any(axis=1))
    room[rows] = _category_room(block.offer[rows], mask[rows], room[rows], count[rows],
                                categories, per_category)
    return room


def _category_room(offer: np.ndarray, mask: np.ndarray, room: np.ndarray, count: np.ndarray,
                   categories: np.ndarray, per_category: int) -> np.ndarray:
    """``room`` narrowed to candidates whose every category is below the per-category cap."""
    cats = np.where((offer >= 0)[:, :, None], categories[np.maximum(offer, 0)], -1)
    width = cats.shape[2]
    # compare against the chosen columns only, so the comparison stays small
    max_take = int(count.max()) if count.size else 0
    if max_take:
        take_order = np.argsort(~mask, axis=1, kind="stable")[:, :max_take]
        held_cats = np.take_along_axis(cats, take_order[:, :, None], axis=1)
        held_cats = np.where(np.take_along_axis(mask, take_order, axis=1)[:, :, None], held_cats, -2)
        held_cats = held_cats.reshape(mask.shape[0], -1)
        for w in range(width):
            cat = cats[:, :, w]
            in_cat = (held_cats[:, None, :] == cat[:, :, None]).sum(axis=2)
            room &= (cat < 0) | (in_cat < per_category)
    return room


def refill(problem: AssignmentProblem, chosen: list[np.ndarray],
           priorities: list[np.ndarray]) -> None:
    """Give free slots and leftover budget back to customers, best candidates first.

    ``priorities[b]`` ranks block ``b``'s candidates (higher first), for example reduced values
    under the final prices; only candidates of positive value are ever added.
    """
    offers = problem.offers
    for _ in range(_REFILL_ROUNDS):
        flat = _flatten(problem, chosen)
        spend = np.bincount(flat.offer, weights=flat.cost, minlength=offers.n_offers)
        counts = np.bincount(flat.offer, minlength=offers.n_offers)
        budget_left = offers.budget - spend
        count_left = offers.max_customers - counts
        global_left = problem.global_budget - flat.cost.sum()
        proposals = []
        open_offer = (count_left >= 1) & (budget_left > 0)
        if global_left <= 0 or not open_offer.any():
            return
        for b, (block, mask, prio) in enumerate(zip(problem.blocks, chosen, priorities)):
            # only customers with a free slot and an unchosen candidate of an open offer matter
            offer = np.maximum(block.offer, 0)
            rows = np.flatnonzero((mask.sum(axis=1) < block.cap)
                                  & ((block.offer >= 0) & open_offer[offer] & ~mask).any(axis=1))
            if rows.size == 0:
                continue
            sub = CandidateBlock(block.customers[rows], block.offer[rows], block.value[rows],
                                 block.cost[rows], block.p_redeem[rows], block.cap[rows])
            room = _room(sub, mask[rows], offers.categories, problem.max_per_category)
            sub_offer = offer[rows]
            room &= (sub.value > 0) & open_offer[sub_offer] & np.isfinite(prio[rows])
            room &= sub.cost <= np.minimum(budget_left[sub_offer], global_left) + 1e-12
            keep = np.flatnonzero(room.any(axis=1))
            if keep.size == 0:
                continue
            masked = np.where(room[keep], prio[rows[keep]], -np.inf)
            slot = masked.argmax(axis=1)
            picked = rows[keep]
            proposals.append((np.full(keep.size, b), picked, slot, block.offer[picked, slot],
                              block.cost[picked, slot], masked[np.arange(keep.size), slot]))
        if not proposals:
            return
        pb, prow, pslot, poff, pcost, pprio = (np.concatenate(c) for c in zip(*proposals))
        accept = _keep_prefix(poff, pprio, pcost, np.maximum(budget_left, 0))
        accept &= _keep_prefix(poff, pprio, np.ones_like(pcost), np.maximum(count_left, 0))
        idx = np.flatnonzero(accept)
        within_global = _keep_prefix(np.zeros(idx.size, dtype=np.int64), pprio[idx], pcost[idx],
                                     np.array([max(global_left, 0.0)]))
        idx = idx[within_global]
        if idx.size == 0:
            return
        for b in np.unique(pb[idx]):
            sel = idx[pb[idx] == b]
            chosen[b][prow[sel], pslot[sel]] = True
