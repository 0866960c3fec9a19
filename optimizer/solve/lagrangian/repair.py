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
from typing import TypeVar

import numpy as np

from optimizer.core.numerics import group_running_sum
from optimizer.model.problem import AssignmentProblem, CandidateBlock, Prices
from optimizer.solve.lagrangian import _refill_kernels as refill_kernels
from optimizer.solve.lagrangian._kernels import Mapper, serial_map

Capacity = TypeVar("Capacity", np.ndarray, float)

_REFILL_ROUNDS = 8


@dataclass
class ChosenPairs:
    """Chosen pairs of all blocks, flattened (block by block, row-major)."""

    block: np.ndarray
    row: np.ndarray
    slot: np.ndarray
    offer: np.ndarray
    cost: np.ndarray
    value: np.ndarray


def flatten(problem: AssignmentProblem, chosen: list[np.ndarray],
            run: Mapper = serial_map) -> ChosenPairs:
    """The chosen pairs of the blocks' masks ``chosen``, flat (block by block, row-major)."""
    # int32 indices, each column gathered on its own: the first pass's best responses choose up
    # to every customer's cap, and holding them twice in int64 put the first pass of the 10 M
    # benchmark at 12.2 GB (11.7 GB without); the blocks' walks on ``run``'s threads
    def part(b: int) -> list:
        block = problem.blocks[b]
        row, slot, offer, cost, value = refill_kernels.chosen_entries(chosen[b], block.offer,
                                                                      block.cost, block.value)
        return [np.full(row.size, b, dtype=np.int32), row, slot, offer, cost, value]
    parts = run(part, range(min(len(problem.blocks), len(chosen))))
    if not parts:
        empty = np.zeros(0)
        index = empty.astype(np.int32)
        return ChosenPairs(index, index, index, index, empty, empty)
    return ChosenPairs(*(_gathered(parts, k) for k in range(6)))


def _gathered(parts: list[list], k: int, dtype: type | None = None) -> np.ndarray:
    """Column ``k`` of every block's part, concatenated (as ``dtype``, values that fit it: no
    copy in the parts' type first); the parts' copies are let go at once, so the columns are
    held about once, not twice."""
    out = np.concatenate([p[k] for p in parts], dtype=dtype)
    for p in parts:
        p[k] = None
    return out


def _drop(chosen: list[np.ndarray], flat: ChosenPairs, drop: np.ndarray) -> ChosenPairs:
    """Unchoose the entries ``drop`` (indices into ``flat``); ``flat`` without them, compacted
    in place one column at a time (a copy of every column at once doubled the repair's peak)."""
    if drop.size == 0:
        return flat
    blocks = flat.block[drop]
    for b in np.unique(blocks):
        sel = drop[blocks == b]
        chosen[b][flat.row[sel], flat.slot[sel]] = False
    keep = np.ones(flat.offer.size, dtype=bool)
    keep[drop] = False
    for name in ("block", "row", "slot", "offer", "cost", "value"):
        setattr(flat, name, getattr(flat, name)[keep])
    return flat


def fit_limit(capacity: Capacity) -> Capacity:
    """The running weight a capacity admits: a relative and an absolute hair above it, so that
    a sum of floats that equals the capacity in exact arithmetic is not cut for its rounding.
    Every cut and single-pair fit of the repair, on the driver or on the shards, uses this one
    limit; the quicker "is anything over?" tests before a cut compare with ``capacity x (1 +
    1e-12)`` alone, which at worst starts a cut that then keeps every pair."""
    return capacity * (1 + 1e-12) + 1e-12


def _keep_prefix(group: np.ndarray, priority: np.ndarray, weight: np.ndarray,
                 capacity: np.ndarray) -> np.ndarray:
    """Within each group, keep candidates best-first while their running weight fits the capacity."""
    order = np.lexsort((-priority, group))
    g = group[order]
    # a running sum per group, from zero: exact to each group's own scale whatever the others'
    used = group_running_sum(g, weight[order].astype(np.float64))
    keep = np.empty(group.shape[0], dtype=bool)
    keep[order] = used <= fit_limit(capacity)[g]
    return keep


def _keep_best(priority: np.ndarray, weight: np.ndarray, capacity: float) -> np.ndarray:
    """:func:`_keep_prefix` for one group, ordering only the tail that can spill over.

    Candidates above a threshold priority fit whatever follows them, so a selection
    (``np.partition``) finds a threshold whose tail holds the overshoot and only that tail is
    sorted: the same candidates as a full sort (the global cut of a million-customer plan sorts a
    few thousand pairs instead of millions).
    """
    n = priority.shape[0]
    total = float(weight.sum())
    limit = fit_limit(capacity)
    if n == 0 or total <= limit:
        return np.ones(n, dtype=bool)
    excess = total - capacity
    share = min(1.0, 2.0 * excess / total + 1e-3)
    while True:
        k = min(n - 1, int(share * n))
        threshold = np.partition(priority, k)[k]
        tail = priority <= threshold  # ties with the threshold are all ordered
        if share >= 1.0 or float(weight[tail].sum()) >= excess:
            break
        share = min(1.0, share * 4.0)
    keep = ~tail
    idx = np.flatnonzero(tail)
    order = idx[np.argsort(-priority[idx], kind="stable")]
    used = float(weight[keep].sum()) + np.cumsum(weight[order])
    keep[order] = used <= limit
    return keep


def _or_best_single(group: np.ndarray, value: np.ndarray, weight: np.ndarray,
                    capacity: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Per group, the kept prefix or the single most valuable candidate that fits alone, whichever
    is worth more: the classic guard that makes the greedy knapsack a 1/2-approximation (a prefix
    by value per cost can leave out one large, valuable candidate)."""
    n_groups = capacity.shape[0]
    kept_value = np.bincount(group[keep], weights=value[keep], minlength=n_groups)
    best_idx = refill_kernels.best_single(group, value, weight, fit_limit(capacity))
    has = best_idx >= 0
    best_value = np.where(has, value[np.maximum(best_idx, 0)], -np.inf)
    switch = best_value > kept_value * (1 + 1e-12)
    if not switch.any():
        return keep
    out = keep & ~switch[group]
    out[best_idx[switch]] = True
    return out


def repair(problem: AssignmentProblem, chosen: list[np.ndarray],
           run: Mapper = serial_map) -> ChosenPairs:
    """Make ``chosen`` obey every offer's budget and ``max_customers``, every funder's budget and
    the global budget;
    returns the chosen pairs that remain (for :func:`refill`). ``run``: a thread map for the
    blocks' walks (the same pairs).

    Only the pairs of offers over a cap are ranked (cuts are per offer, so the others keep
    theirs): at a million customers that is a sort of a fraction of the plan, not all of it.
    """
    offers = problem.offers
    flat = flatten(problem, chosen, run)
    if flat.offer.size == 0:
        return flat
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
    if problem.funders is not None:  # budgets per funder (optimizer/solve/lagrangian/funders.py)
        from optimizer.solve.lagrangian.funders import keep_within

        kept = keep_within(problem, flat.offer.astype(np.int64), flat.value, flat.cost)
        if kept is not None:
            flat = _drop(chosen, flat, np.flatnonzero(~kept))
    if flat.cost.sum() > problem.global_budget * (1 + 1e-12):
        one_group = np.zeros(flat.offer.size, dtype=np.int8)
        capacity = np.array([problem.global_budget])
        ratio = flat.value / np.maximum(flat.cost, 1e-300)
        keep = _keep_best(ratio, flat.cost, problem.global_budget)
        keep = _or_best_single(one_group, flat.value, flat.cost, capacity, keep)
        flat = _drop(chosen, flat, np.flatnonzero(~keep))
    return flat


@dataclass
class _Pool:
    """The candidates refill may still add, flat, customer by customer, each best first.

    starts: where each block's entries begin (and, last, the total); start: where each owner's
    entries begin (the pool's customers, numbered 0..; and, last, the total); row: each
    owner's row in her block; slots_left: free slots per owner; cat_key: ``(k, width)`` index
    into ``cat_count`` (the owner's chosen offers in that category) of each entry's categories,
    -1 where the offer has no such category column. Held as small as is exact (the pool is
    what a Dask worker adds at its peak): an entry's owner and row are its owner's, held per
    owner; offer, row, slots_left and cat_count int32, slot int16 when the blocks' slots fit,
    cat_key int32 when the keys' count fits; the rounds' kernels read them as they are.
    """

    starts: np.ndarray
    start: np.ndarray
    row: np.ndarray
    slot: np.ndarray
    offer: np.ndarray
    cost: np.ndarray
    priority: np.ndarray
    cat_key: np.ndarray
    slots_left: np.ndarray
    cat_count: np.ndarray


def _pool(problem: AssignmentProblem, chosen: list[np.ndarray], prices: Prices,
          open_offer: np.ndarray, fits: np.ndarray, map_blocks: Mapper) -> _Pool | None:
    """Each customer with a free slot and her best few candidates that could still be added."""
    offers = problem.offers
    # enough to survive a few rejections per customer; a row holds ``slots`` offers, so a cap
    # past them takes no more (a cap of 2**31 sized the kernel's buffers at 16 GB each)
    slots = max((b.offer.shape[1] for b in problem.blocks), default=0)
    depth = min(max(problem.max_cap, 1), slots) + 4
    bonus = prices.target if prices.target is not None else np.zeros(offers.n_offers)

    def scan(item: tuple[CandidateBlock, np.ndarray]) -> tuple[np.ndarray, ...]:
        block, mask = item
        return refill_kernels.pool_entries(block.offer, block.value, block.cost, mask, block.cap,
                                           prices.cost_price, prices.count,
                                           prices.global_budget,
                                           bonus, open_offer, fits, offers.categories,
                                           problem.max_per_category, depth)
    parts = [list(part) for part in map_blocks(scan, list(zip(problem.blocks, chosen)))]
    sizes = np.array([p[0].size for p in parts], dtype=np.int64)
    if not parts or sizes.sum() == 0:
        return None
    starts = np.r_[0, np.cumsum(sizes)]
    # category keys numbered over the whole pool, not per block
    key_base = np.cumsum([0] + [p[8].size for p in parts])
    for b, p in enumerate(parts):  # per owner, not per entry: her row and first entry
        first = np.searchsorted(p[2], np.arange(p[7].size))
        p[0], p[2] = p[0][first], first + starts[b]
        # her free slots as int32 below: no more than her row's (a cap past them is no cap;
        # 2**31 and over wrapped negative and refilled nothing)
        p[7] = np.minimum(p[7], slots)
    # one column at a time: the pool and a whole copy of it are never held together
    slot_type = np.int16 if slots <= 1 << 15 else np.int32
    row, slot, start, offer, cost, priority = (_gathered(parts, k, t) for k, t in enumerate(
        (None, slot_type, None, None, None, None)))
    return _Pool(starts, np.append(start, starts[-1]), row, slot, offer, cost, priority,
                 _keys(parts, starts, key_base), _gathered(parts, 7, np.int32),
                 _gathered(parts, 8, np.int32))


def _keys(parts: list[list], starts: np.ndarray, key_base: np.ndarray) -> np.ndarray:
    """Every block's category keys (column 6 of its part), numbered over the whole pool: int32
    when the keys' count fits (the same keys), written block by block into the one array."""
    out = np.empty((int(starts[-1]), parts[0][6].shape[1]),
                   dtype=np.int32 if key_base[-1] <= np.iinfo(np.int32).max else np.int64)
    for b, p in enumerate(parts):
        out[starts[b]:starts[b + 1]] = np.where(p[6] >= 0, p[6] + key_base[b], -1)
        p[6] = None
    return out


def open_offers(budget_left: np.ndarray, count_left: np.ndarray) -> np.ndarray:
    """The offers the refill may still add to: a customer and some budget left."""
    return (count_left >= 1) & (budget_left > 0)


def refill(problem: AssignmentProblem, chosen: list[np.ndarray], prices: Prices,
           kept: ChosenPairs | None = None, map_blocks: Mapper | None = None,
           spent: tuple[np.ndarray, np.ndarray, float] | None = None) -> None:
    """Give free slots and leftover budget back to customers, best candidates first.

    Candidates are ranked by their reduced values at ``prices`` (target bonus included), higher
    first; only candidates of positive value are ever added. ``kept``: the
    chosen pairs as :func:`repair` returned them (gathered here when not given); ``map_blocks``
    maps a function over the blocks, e.g. on a thread pool, results in order. The candidates
    that could be added are gathered once into a pool (each customer's best few); every round
    then works on the pool alone. ``spent``: instead of ``kept``, the kept pairs' spend and
    customers per offer and their total spend (the repair on shards',
    :mod:`.repair_shards`).
    """
    offers = problem.offers
    if spent is None:
        flat = kept if kept is not None else flatten(problem, chosen)
        spent = (np.bincount(flat.offer, weights=flat.cost, minlength=offers.n_offers),
                 np.bincount(flat.offer, minlength=offers.n_offers), float(flat.cost.sum()))
    budget_left = offers.budget - spent[0]
    count_left = offers.max_customers - spent[1]
    global_left = problem.global_budget - spent[2]
    open_offer = open_offers(budget_left, count_left)
    if global_left <= 0 or not open_offer.any():
        return
    pool = _pool(problem, chosen, prices, open_offer, np.minimum(budget_left, global_left),
                 map_blocks or serial_map)
    if pool is None:
        return
    taken = refill_kernels.refill_rounds(pool.start, pool.offer, pool.cost, pool.priority,
                                         pool.cat_key, pool.cat_count, pool.slots_left,
                                         budget_left, count_left.astype(float), global_left,
                                         problem.max_per_category, _REFILL_ROUNDS)
    for b, mask in enumerate(chosen):
        sel = np.flatnonzero(taken[pool.starts[b]:pool.starts[b + 1]]) + pool.starts[b]
        if sel.size:
            mask[pool.row[np.searchsorted(pool.start, sel, side="right") - 1],
                 pool.slot[sel]] = True
