"""From a best response to a feasible plan: cut what overshoots the coupling caps, then refill.

Customers' best responses under near-optimal prices overshoot a budget by at most a few candidates
(those whose critical price equals the offer's price). `repair` drops, per offer and then overall,
the candidates that return least per unit of the constraint, and `refill` offers the freed budget
and free slots back to customers in rounds (a compiled kernel): every customer proposes her best
candidate that still fits her own caps, and proposals are granted best first while the offer's
budget, its ``max_customers`` and the global budget allow.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..problem import AssignmentProblem
from . import kernels

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


def _drop(chosen: list[np.ndarray], flat: _Flat, drop: np.ndarray) -> _Flat:
    """Unchoose the entries ``drop`` (indices into ``flat``); the flat list without them."""
    if drop.size == 0:
        return flat
    blocks = flat.block[drop]
    for b in np.unique(blocks):
        sel = drop[blocks == b]
        chosen[b][flat.row[sel], flat.slot[sel]] = False
    keep = np.ones(flat.offer.size, dtype=bool)
    keep[drop] = False
    return _Flat(flat.block[keep], flat.row[keep], flat.slot[keep], flat.offer[keep],
                 flat.cost[keep], flat.value[keep])


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
    """Make ``chosen`` obey every offer's budget and ``max_customers`` and the global budget.

    Only the pairs of offers over a cap are ranked (cuts are per offer, so the others keep
    theirs): at a million customers that is a sort of a fraction of the plan, not all of it.
    """
    offers = problem.offers
    flat = _flatten(problem, chosen)
    if flat.offer.size == 0:
        return
    n_offers = offers.n_offers
    over = np.bincount(flat.offer, minlength=n_offers) > offers.max_customers
    if over.any():
        sub = np.flatnonzero(over[flat.offer])
        keep = _keep_prefix(flat.offer[sub], flat.value[sub], np.ones(sub.size),
                            offers.max_customers)
        flat = _drop(chosen, flat, sub[~keep])
    spend = np.bincount(flat.offer, weights=flat.cost, minlength=n_offers)
    over = spend > offers.budget * (1 + 1e-12)
    if over.any():
        sub = np.flatnonzero(over[flat.offer])
        offer, value, cost = flat.offer[sub], flat.value[sub], flat.cost[sub]
        keep = _keep_prefix(offer, value / np.maximum(cost, 1e-300), cost, offers.budget)
        keep = _or_best_single(offer, value, cost, offers.budget, keep)
        flat = _drop(chosen, flat, sub[~keep])
    if flat.cost.sum() > problem.global_budget * (1 + 1e-12):
        one_group = np.zeros(flat.offer.size, dtype=np.int64)
        capacity = np.array([problem.global_budget])
        ratio = flat.value / np.maximum(flat.cost, 1e-300)
        keep = _keep_prefix(one_group, ratio, flat.cost, capacity)
        keep = _or_best_single(one_group, flat.value, flat.cost, capacity, keep)
        _drop(chosen, flat, np.flatnonzero(~keep))


@dataclass
class _Pool:
    """The candidates refill may still add, flattened and sorted by (customer, priority best first).

    cat_key: ``(k, width)`` index into ``cat_count`` of each entry's (customer, category), -1
    where the offer has no such category column.
    """

    block: np.ndarray
    row: np.ndarray
    slot: np.ndarray
    customer: np.ndarray
    offer: np.ndarray
    cost: np.ndarray
    priority: np.ndarray
    slots_left: np.ndarray  # per entry's customer position in `customers`
    owner: np.ndarray  # index into slots_left of each entry
    cat_key: np.ndarray
    cat_count: np.ndarray


def _pool(problem: AssignmentProblem, chosen: list[np.ndarray], priorities: list[np.ndarray],
          open_offer: np.ndarray, fits: np.ndarray) -> _Pool | None:
    """Each customer with a free slot and her best few candidates that could still be added."""
    offers = problem.offers
    per_category = problem.max_per_category
    depth = 2 * max(problem.max_cap, 1) + 4  # enough to survive a few rejections per customer
    parts, scanned = [], []  # pool columns per block; (rows with a free slot, block) scanned
    for b, (block, mask, prio) in enumerate(zip(problem.blocks, chosen, priorities)):
        top = kernels.pool_slots(block.offer, block.value, block.cost, prio, mask, block.cap,
                                 open_offer, fits, offers.categories, per_category, depth)
        r_idx, t_idx = np.nonzero(top >= 0)  # rows in customer order, each best first
        if r_idx.size == 0:
            continue
        slot = top[r_idx, t_idx]
        count = mask.sum(axis=1)
        parts.append((np.full(r_idx.size, b), r_idx, slot, block.customers[r_idx],
                      block.offer[r_idx, slot], block.cost[r_idx, slot], prio[r_idx, slot],
                      (block.cap - count)[r_idx]))
        scanned.append((np.unique(r_idx), b))
    if not parts:
        return None
    cols = [np.concatenate(column) for column in zip(*parts)]
    if cols[0].size == 0:
        return None
    block_id, row, slot, customer, offer, cost, priority, left = cols
    new_owner = np.r_[True, customer[1:] != customer[:-1]]
    owner = np.cumsum(new_owner) - 1
    slots_left = left[new_owner]
    width = offers.categories.shape[1] if per_category is not None else 0
    cat_key = np.full((offer.size, width), -1, dtype=np.int64)
    cat_count = np.zeros(0, dtype=np.int64)
    if per_category is not None:
        n_cat = max(offers.n_categories, 1)
        entry_cats = offers.categories[offer]
        keys = np.where(entry_cats >= 0, owner[:, None] * n_cat + entry_cats, -1)
        table = np.unique(keys[keys >= 0])
        cat_key = np.where(keys >= 0, np.searchsorted(table, np.maximum(keys, 0)), -1)
        # categories the pool's customers already hold in the plan
        members = customer[new_owner]
        cat_count = np.zeros(table.size, dtype=np.int64)
        for rows, b in scanned:
            block = problem.blocks[b]
            r_idx, s_idx = np.nonzero(chosen[b][rows])
            pos = np.minimum(np.searchsorted(members, block.customers[rows[r_idx]]),
                             members.size - 1)
            inside = members[pos] == block.customers[rows[r_idx]]
            cats = offers.categories[block.offer[rows[r_idx], s_idx]][inside]
            hkeys = np.where(cats >= 0, pos[inside][:, None] * n_cat + cats, -1).ravel()
            hkeys = hkeys[hkeys >= 0]
            at = np.minimum(np.searchsorted(table, hkeys), max(table.size - 1, 0))
            found = table[at] == hkeys if table.size else np.zeros(hkeys.size, dtype=bool)
            cat_count += np.bincount(at[found], minlength=table.size)
    return _Pool(block_id, row, slot, customer, offer, cost, priority, slots_left, owner,
                 cat_key, cat_count)


def refill(problem: AssignmentProblem, chosen: list[np.ndarray],
           priorities: list[np.ndarray]) -> None:
    """Give free slots and leftover budget back to customers, best candidates first.

    ``priorities[b]`` ranks block ``b``'s candidates (higher first), for example reduced values
    under the final prices; only candidates of positive value are ever added. The candidates that
    could be added are gathered once into a pool (each customer's best few); every round then
    works on the pool alone.
    """
    offers = problem.offers
    flat = _flatten(problem, chosen)
    budget_left = offers.budget - np.bincount(flat.offer, weights=flat.cost,
                                              minlength=offers.n_offers)
    count_left = offers.max_customers - np.bincount(flat.offer, minlength=offers.n_offers)
    global_left = problem.global_budget - flat.cost.sum()
    open_offer = (count_left >= 1) & (budget_left > 0)
    if global_left <= 0 or not open_offer.any():
        return
    pool = _pool(problem, chosen, priorities, open_offer, np.minimum(budget_left, global_left))
    if pool is None:
        return
    taken = kernels.refill_rounds(pool.owner, pool.offer, pool.cost, pool.priority,
                                  pool.cat_key, pool.cat_count, pool.slots_left.copy(),
                                  budget_left, count_left.astype(float), global_left,
                                  problem.max_per_category, _REFILL_ROUNDS)
    for b in np.unique(pool.block[taken]):
        sel = taken & (pool.block == b)
        chosen[b][pool.row[sel], pool.slot[sel]] = True
