"""The plan's refill (:func:`.repair.refill`) on the shards: no pool gathered on the driver.

The refill runs up to 8 rounds over a pool (each customer with a free slot, her best few
candidates): every customer proposes her best entry still live (it fits her category caps, the
offer's ``count_left`` and ``budget_left`` and the global budget left, at the round's start), and
the proposals are granted in one order (priority descending, then customer) while they still fit
what is left, each grant subtracted from the offer's budget and the global budget in that order
(:func:`._refill_kernels.refill_rounds`). On shards:

1. each shard builds the pool of its customers from its plan less the pairs the repair dropped
   (``refill_start``): a customer's pool, slots and category counts are hers alone;
2. each round, each shard forms its customers' proposals at what is left at the round's start
   (``refill_round``) and sends the first ones in the grant order that still fit what is left;
3. the driver merges them and grants them in order exactly as the kernel does, up to the
   earliest last proposal of the shards that had more; then it asks for the next ones that
   still fit what is left now (``refill_collect``), and so on. What is left only shrinks (costs
   are >= 0), so a proposal that does not fit it when asked would be refused at its turn: past
   the first refusals (a budget run out) only the proposals that can still fit are sent.

Why the same bits as the driver's refill: the kernel's budgets left are floats, each grant's cost
subtracted in the grant order, and its tests read them; the driver makes the same subtractions in
the same order, so it needs every granted proposal's cost in order (the granted pairs go into
its plan, or back to their shard where the plan stays there: :func:`.planning.plan_on_shards`).
A proposal passed over by the kernel (refused, or dead when
proposing) is dead at every later round too, so a shard needs only the pairs granted so far
(each call carries its own) to form a round's proposals: a shard rebuilt mid-refill replays
``repair_start``, ``refill_start`` and the last ``refill_round`` and answers as the lost one
(``refill_done`` lets the pool go).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from optimizer.model.problem import AssignmentProblem, Prices
from optimizer.solve.lagrangian import _refill_kernels as refill_kernels
from optimizer.solve.lagrangian._kernels import Mapper
from optimizer.solve.lagrangian.repair import _REFILL_ROUNDS, _pool, open_offers

if TYPE_CHECKING:  # the executor imports the shard, which imports this module
    from optimizer.solve.lagrangian.executor import ShardExecutor

_log = logging.getLogger(__name__)
_SLOT_BITS = 24  # a pair's position: (customer << _SLOT_BITS) | slot
_BATCH = 256  # proposals a shard sends first in a round; doubled while all are granted

# a shard's answer: its proposals in the grant order (priority, customer, offer, cost,
# position) and whether it holds more that fit
Batch = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]
Left = tuple[np.ndarray, np.ndarray, float]  # budget_left, count_left (floats), global_left
# the offers whose budget or customers left changed since a base (:class:`KeptLeft`): their
# indices (``None``: every offer, when that is no larger) and their new budget and count left
Changes = tuple[np.ndarray | None, np.ndarray, np.ndarray]


# -- the shard's side ---------------------------------------------------------------------------
@dataclass
class ShardPool:
    """A shard's refill pool (:func:`.repair._pool` over its pieces, its columns as that
    keeps them: offer int32, slot int16 or int32, cat_key int32 where the keys fit), each
    owner's customer (the whole problem's index, ascending) and first entry, its free slots
    and category counts before the refill, and the last round's proposals in the grant order
    with their customers. An entry's customer and position (``customer << _SLOT_BITS |
    slot``) are its owner's, derived where read: held per entry, they and the owners doubled
    the pool a worker holds at its peak."""

    offer: np.ndarray
    cost: np.ndarray
    priority: np.ndarray
    cat_key: np.ndarray
    slot: np.ndarray
    customer: np.ndarray
    start: np.ndarray
    slots: np.ndarray
    cat_count: np.ndarray
    proposed: np.ndarray
    proposed_customer: np.ndarray


class KeptLeft:
    """What is left as a shard keeps it, so that each call sends only the offers whose values
    changed: ``refill_start``'s (sent whole) and the last ``refill_round``'s. A round's call
    sends the changes since the start, a ``refill_collect`` those since its round's call: both
    bases are replayed on a rebuilt shard (``refill_start`` and the last ``refill_round`` are
    stateful), so it reads the same left as the lost one."""

    def __init__(self, n_offers: int) -> None:
        self.start = self.round = (np.zeros(n_offers), np.zeros(n_offers))

    def started(self, left: Left) -> None:
        """Keep ``refill_start``'s left (copies: a local caller's arrays change in place)."""
        self.start = self.round = (left[0].copy(), left[1].copy())

    def at_round(self, changes: Changes, global_left: float) -> Left:
        """The round's left from the changes since the start, kept for its collects."""
        self.round = _patched(self.start, changes)
        return (*self.round, global_left)

    def at_collect(self, changes: Changes, global_left: float) -> Left:
        """A collect's left from the changes since its round's call."""
        return (*_patched(self.round, changes), global_left)


def _patched(base: tuple[np.ndarray, np.ndarray], changes: Changes
             ) -> tuple[np.ndarray, np.ndarray]:
    at, budget, count = changes
    if at is None:
        return budget, count
    out = (base[0].copy(), base[1].copy())
    out[0][at], out[1][at] = budget, count
    return out


def changes_since(base: tuple[np.ndarray, np.ndarray], left: Left) -> Changes:
    """The offers whose budget or count ``left`` differs from ``base`` (bit for bit), as sent:
    every offer when indices would cost more than the arrays."""
    at = np.flatnonzero((left[0] != base[0]) | (left[1] != base[1]))
    if 5 * at.shape[0] >= 4 * base[0].shape[0]:  # 20 bytes an offer changed against 16
        return None, left[0].copy(), left[1].copy()
    return at.astype(np.int32), left[0][at], left[1][at]


def empty_pool() -> ShardPool:
    """A pool without entries (a shard none of whose customers can take more)."""
    index = np.zeros(0, dtype=np.int64)
    small = np.zeros(0, dtype=np.int32)
    return ShardPool(small, np.zeros(0), np.zeros(0), np.zeros((0, 0), dtype=np.int32),
                     small, index, np.zeros(1, dtype=np.int64), small, small, index, index)


def shard_pool(problem: AssignmentProblem, masks: list[np.ndarray], prices: Prices,
               left: Left, lo: int, run: Mapper) -> ShardPool:
    """The pool of the shard whose plan is ``masks`` (its first customer ``lo`` of the whole)."""
    budget_left, count_left, global_left = left
    pool = _pool(problem, masks, prices, open_offers(budget_left, count_left),
                 np.minimum(budget_left, global_left), run)
    if pool is None:
        return empty_pool()
    # each owner's customer: her row in her piece, whose first entry is at or before hers
    piece = np.searchsorted(pool.starts, pool.start[:-1], side="right") - 1
    firsts = np.cumsum([0] + [b.n_customers for b in problem.blocks])
    customer = lo + firsts[piece] + pool.row.astype(np.int64)
    index = np.zeros(0, dtype=np.int64)
    return ShardPool(pool.offer, pool.cost, pool.priority, pool.cat_key, pool.slot, customer,
                     pool.start, pool.slots_left, pool.cat_count, index, index)


def propose(p: ShardPool, granted: np.ndarray, left: Left, per_category: int | None) -> int:
    """Form the round's proposals at ``left`` after the grants ``granted`` (positions, every
    round's so far): kept in ``p``, in the grant order; returns how many."""
    taken, used = refill_kernels.taken_entries(p.start, p.customer, p.slot, granted,
                                               _SLOT_BITS)
    slots = p.slots - used
    keys = p.cat_key[taken]
    counts = p.cat_count + np.bincount(keys[keys >= 0], minlength=p.cat_count.shape[0])
    j = refill_kernels.proposals(p.start, p.offer, p.cost, p.cat_key, counts, taken, slots,
                                 left[0], left[1], left[2], per_category)
    customer = p.customer[np.searchsorted(p.start, j, side="right") - 1]
    order = np.lexsort((customer, -p.priority[j]))
    p.proposed, p.proposed_customer = j[order], customer[order]
    return int(j.shape[0])


def batch(p: ShardPool, after: tuple[float, int] | None, left: Left, limit: int) -> Batch:
    """The first ``limit`` proposals past ``after`` (priority, customer) in the grant order that
    fit ``left``, and whether more do."""
    j, cust = p.proposed, p.proposed_customer
    if after is not None:
        prio = p.priority[j]
        later = (prio < after[0]) | ((prio == after[0]) & (cust > after[1]))
        j, cust = j[later], cust[later]
    fit = refill_kernels.fitting(p.offer[j], p.cost[j], left[0], left[1], left[2])
    j, cust = j[fit], cust[fit]
    more = j.shape[0] > limit
    j, cust = j[:limit], cust[:limit]
    # the driver's values and types as before the pool kept them smaller
    return (p.priority[j], cust, p.offer[j].astype(np.int64), p.cost[j],
            (cust << _SLOT_BITS) | p.slot[j], bool(more))


# -- the driver's side --------------------------------------------------------------------------
@dataclass
class _Round:
    """A round's grants on the driver: what is left, each shard's grants so far, the figures."""

    left: Left
    granted: list[list[np.ndarray]]
    start: tuple[np.ndarray, np.ndarray]  # what the shards keep (:class:`KeptLeft`)
    round: tuple[np.ndarray, np.ndarray]
    sent: int = 0
    calls: int = 0


def sharded_refill(ex: ShardExecutor, problem: AssignmentProblem,
                   chosen: list[np.ndarray] | None, prices: Prices, applied: Sequence,
                   spent: tuple[np.ndarray, np.ndarray, float]) -> list[np.ndarray]:
    """:func:`.repair.refill` of the plan the shards of ``ex`` hold, repaired by the cuts
    ``applied`` (:func:`.repair_shards.sharded_repair`, whose kept spend, count and total are
    ``spent``): the same pairs as the driver's refill, set in ``chosen`` (``None``: the plan
    stays on the shards). Returns each shard's granted pairs (positions, grant order)."""
    offers = problem.offers
    budget_left = offers.budget - spent[0]
    count_left = offers.max_customers - spent[1]
    global_left = problem.global_budget - spent[2]
    if global_left <= 0 or not open_offers(budget_left, count_left).any():
        return [_joined([]) for _ in ex.specs]
    start = (budget_left.copy(), count_left.astype(float))
    state = _Round((budget_left, count_left.astype(float), float(global_left)),
                   [[] for _ in ex.specs], start, start)
    # a copy: the replay keeps the arguments, and the grants change ``state.left`` in place
    sizes = ex.all("refill_start", list(applied), prices, (*start, float(global_left)))
    figures = []
    for _ in range(_REFILL_ROUNDS):
        changes = changes_since(state.start, state.left)
        state.round = (state.left[0].copy(), state.left[1].copy())
        found = ex.map("refill_round", [(_joined(g), changes, state.left[2], _BATCH)
                                        for g in state.granted])
        offered = sum(f[0] for f in found)
        if offered == 0:
            break
        accepted = _grant_round(ex, state, [f[1] for f in found])
        figures.append((offered, state.sent, accepted, state.calls))
        if accepted == 0 or state.left[2] <= 0:
            break
    ex.all("refill_done")  # the pools let go: held until the next plan, they add to the peak
    _log.info("refill on shards: pool %d; per round (proposals, sent, granted, calls) %s",
              sum(sizes), figures)
    granted = [_joined(g) for g in state.granted]
    if chosen is not None:
        set_pairs(problem, chosen, _joined(granted))
    return granted


def _grant_round(ex: ShardExecutor, state: _Round, batches: list[Batch]) -> int:
    """Grant a round's proposals in order, asking the shards for the next ones that still fit
    until none holds more; returns how many were granted."""
    accepted, limit = 0, _BATCH
    state.sent = state.calls = 0
    while True:
        prio, cust, offer, cost, pos = (np.concatenate([b[k] for b in batches])
                                        for k in range(5))
        shard = np.repeat(np.arange(len(batches)), [b[0].shape[0] for b in batches])
        state.sent += prio.shape[0]
        order = np.lexsort((cust, -prio))
        upto = prio.shape[0]
        ends = [(-b[0][-1], b[1][-1]) for b in batches if b[5]]
        if ends:  # past the earliest last proposal of a shard with more, the order is unknown
            end = min(ends)
            key_p, key_c = -prio[order], cust[order]
            upto = int(np.sum((key_p < end[0]) | ((key_p == end[0]) & (key_c <= end[1]))))
        order = order[:upto]
        budget_left, count_left, global_left = state.left
        granted, global_left = refill_kernels.grant(offer[order], cost[order], budget_left,
                                                    count_left, global_left)
        state.left = (budget_left, count_left, global_left)
        for k in np.unique(shard[order][granted]):
            state.granted[k].append(pos[order][granted & (shard[order] == k)])
        accepted += int(granted.sum())
        if not ends:
            return accepted
        if granted.all():
            limit *= 2  # nothing refused yet: larger steps
        after = (float(-end[0]), int(end[1]))
        batches = ex.all("refill_collect", after, changes_since(state.round, state.left),
                         state.left[2], limit)
        state.calls += 1


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def set_pairs(problem: AssignmentProblem, chosen: list[np.ndarray], pos: np.ndarray,
              lo: int = 0) -> None:
    """Set the pairs at positions ``pos`` in ``chosen``, the masks of ``problem``'s blocks,
    whose first customer is ``lo`` of the whole problem (the driver's, or a shard's)."""
    customer, slot = (pos >> _SLOT_BITS) - lo, pos & ((1 << _SLOT_BITS) - 1)
    firsts = np.cumsum([0] + [b.n_customers for b in problem.blocks])
    block = np.searchsorted(firsts, customer, side="right") - 1
    for b in np.unique(block):  # a loop over blocks, never pairs
        sel = block == b
        chosen[b][customer[sel] - firsts[b], slot[sel]] = True
