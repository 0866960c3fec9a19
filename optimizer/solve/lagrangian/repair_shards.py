"""The plan's repair (:func:`.repair.repair`) from per-shard partial results: no pair gathered.

The repair keeps, per offer, the chosen pairs best first while their running weight fits the
offer's cap (``max_customers``: value first, weight 1; the budget: value per unit of cost,
weight the cost, or the single most valuable pair that fits alone when it is worth more), then
the same over all offers for the global budget. Each of these cuts is a threshold per group: the
first pair, in the order (priority descending, customer, slot), at which the running weight
passes the limit, and every pair from it on is dropped. On shards:

1. each shard sends its chosen weight per group (:meth:`.shard.Shard.repair_totals`); the groups
   over their limit are cut;
2. each shard places up to 63 points on its own priorities in the group's open interval, the
   driver merges them into bucket edges, each shard tallies its weight per bucket and the driver
   adds the tallies and finds the bucket where the running weight passes the limit; a bucket of
   more than ``_COLLECT`` pairs is split again the same way;
3. the shards send that bucket's pairs (priority, weight, position), the driver orders them and
   cuts exactly; the cut is sent back with every later call (``applied``: each call is a function
   of the shard's plan and the cuts so far, so a rebuilt shard that replays ``repair_start`` is
   where the lost one was).

Every weight is added exactly (:mod:`optimizer.core.exact_sum`): the running weight at a pair
is the exact sum of the weights before it, whatever the shards, the buckets and their order, so
1, 2 or N workers (and the local executor, which makes the same calls) keep the same pairs. The
driver's :func:`.repair.repair` adds the running weights in floats; the two differ only where a
running weight ties the limit within a rounding.

Not here (the driver's :func:`.repair.repair` runs instead, :func:`applies` says when): funders'
budgets and channels (the channels price the values the cuts rank).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from optimizer.core.exact_sum import (
    Exact,
    aligned,
    common,
    exact_each,
    exact_float,
    exact_sign,
    exact_sub,
    exact_tally,
    exact_total,
)
from optimizer.model.problem import AssignmentProblem
from optimizer.solve.lagrangian import _refill_kernels as refill_kernels
from optimizer.solve.lagrangian.repair import fit_limit, flatten

if TYPE_CHECKING:  # the executor imports this module
    from optimizer.solve.lagrangian.executor import ShardExecutor

COUNT, BUDGET, GLOBAL = 0, 1, 2  # the cuts, in their order
_EDGES = 63  # bucket edges a group and round (64 buckets)
_COLLECT = 4096  # a crossing bucket of more pairs (all shards) is split again
_ROUNDS = 8
_SLOT_BITS = 24  # a pair's position: (customer << _SLOT_BITS) | slot

# one cut: (kind, rows: the groups it cuts, per row the first dropped pair's priority and
# position, per row the single pair kept instead of the prefix or -1)
Cut = tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def applies(problem: AssignmentProblem, asked: bool = True) -> bool:
    """Whether the repair of ``problem`` (and the refill after it, :mod:`.refill_shards`) runs
    on the shards: asked for (``solver.repair = "shards"``), no funder budgets (their cut ranks
    pairs per funder) and no channels (the values the cuts rank are priced per pass)."""
    return asked and problem.funders is None and problem.channels is None


def where(problem: AssignmentProblem, asked: bool = True) -> str:
    """Where the plans' repair of ``problem`` runs, for the manifest (``asked``: ``solver.repair
    = "shards"``)."""
    if applies(problem, asked):
        return "shards"
    why = [w for w, has in (("solver.repair = driver", not asked),
                            ("funder budgets", problem.funders is not None),
                            ("channels", problem.channels is not None)) if has]
    return "driver (" + " and ".join(why) + ")"


# -- the shard's side ---------------------------------------------------------------------------
@dataclass
class Entries:
    """A shard's chosen pairs, flat in customer order: piece, row in the piece, slot, offer,
    cost, value and position ``(customer << _SLOT_BITS) | slot`` (customer: the whole
    problem's index)."""

    piece: np.ndarray
    row: np.ndarray
    slot: np.ndarray
    offer: np.ndarray
    cost: np.ndarray
    value: np.ndarray
    pos: np.ndarray


def entries_of(problem: AssignmentProblem, plan: Sequence[np.ndarray], lo: int) -> Entries:
    """The chosen pairs of ``plan`` (one mask per block of the shard's ``problem``; the shard's
    first customer is ``lo`` of the whole problem)."""
    flat = flatten(problem, list(plan))  # as the driver's repair flattens its plan
    sizes = [block.n_customers for block in problem.blocks]
    # each block's first customer, of the whole problem
    first = lo + np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    pos = ((first[flat.block] + flat.row) << _SLOT_BITS) | flat.slot.astype(np.int64)
    return Entries(flat.block, flat.row, flat.slot, flat.offer.astype(np.int64), flat.cost,
                   flat.value, pos)


def keys(e: Entries, kind: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group, priority and weight of each pair for the cut ``kind``."""
    ratio = e.value / np.maximum(e.cost, 1e-300)
    if kind == COUNT:
        return e.offer, e.value, np.ones(e.offer.shape[0])
    if kind == BUDGET:
        return e.offer, ratio, e.cost
    return np.zeros(e.offer.shape[0], dtype=np.int64), ratio, e.cost


def kept_after(e: Entries, applied: Sequence[Cut], n_offers: int) -> np.ndarray:
    """Which pairs remain after the cuts ``applied``, in order."""
    kept = np.ones(e.offer.shape[0], dtype=bool)
    for kind, rows, top, top_pos, single in applied:
        group, priority, _ = keys(e, kind)
        r = _row_of(group, rows, n_offers)
        inside = kept & (r >= 0)
        ri = np.maximum(r, 0)
        before = (priority > top[ri]) | ((priority == top[ri]) & (e.pos < top_pos[ri]))
        alone = single[ri]
        stays = np.where(alone >= 0, e.pos == alone, before)
        kept &= ~inside | stays
    return kept


def cuts_key(applied: Sequence[Cut]) -> bytes:
    """``applied`` as bytes (equal bytes: the same cuts; each cut led by its kind and size)."""
    return b"".join(np.array([kind, rows.shape[0]], dtype=np.int64).tobytes()
                    + b"".join(np.ascontiguousarray(a, dtype=np.float64 if k == 1 else np.int64)
                               .tobytes() for k, a in enumerate((rows, top, top_pos, single)))
                    for kind, rows, top, top_pos, single in applied)


def _row_of(group: np.ndarray, rows: np.ndarray, n_offers: int) -> np.ndarray:
    """Each pair's index in ``rows`` (-1: its group is not cut)."""
    index = np.full(max(n_offers, 1), -1, dtype=np.int64)
    index[rows] = np.arange(rows.shape[0])
    return index[group]


def in_rows(e: Entries, kept: np.ndarray, kind: int, rows: np.ndarray, lo: np.ndarray,
            hi: np.ndarray, n_offers: int) -> tuple[np.ndarray, ...]:
    """The kept pairs of the groups ``rows`` whose priority is in their row's ``[lo, hi)`` (``hi``
    infinite: no top): their row, priority, weight and index, in order."""
    group, priority, weight = keys(e, kind)
    r = _row_of(group, rows, n_offers)
    ri = np.maximum(r, 0)
    sel = kept & (r >= 0) & (priority >= lo[ri]) & ((priority < hi[ri]) | np.isinf(hi[ri]))
    idx = np.flatnonzero(sel)
    return r[idx], priority[idx], weight[idx], idx


def points(row: np.ndarray, priority: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``_EDGES`` priorities per row at evenly spaced ranks (highest first): the number
    per row and the points, row by row."""
    order = np.lexsort((-priority, row))
    counts = np.bincount(row, minlength=n_rows)
    start = np.r_[0, np.cumsum(counts)[:-1]]
    j = np.arange(1, _EDGES + 1)
    ranks = start[:, None] + (counts[:, None] * j[None, :]) // (_EDGES + 1)
    valid = (counts[:, None] > 0) & (ranks < (start + counts)[:, None])
    picked = priority[order][ranks[valid]] if order.size else np.zeros(0)
    return valid.sum(axis=1).astype(np.int64), picked


def bucket_of(row: np.ndarray, priority: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each pair's bucket among its row's ``edges`` (descending, ``-inf`` padded): the number of
    edges above its priority."""
    out = np.zeros(row.shape[0], dtype=np.int64)
    for k in range(edges.shape[1]):  # a loop over the 63 edges, never pairs
        out += priority < edges[row, k]
    return out


def tallies(row: np.ndarray, priority: np.ndarray, weight: np.ndarray, edges: np.ndarray
            ) -> tuple[np.ndarray, Exact]:
    """Count and exact weight per row and bucket (row-major, ``_EDGES + 1`` buckets a row)."""
    n = edges.shape[0] * (_EDGES + 1)
    cell = row * (_EDGES + 1) + bucket_of(row, priority, edges)
    return np.bincount(cell, minlength=n).astype(np.int64), exact_tally(cell, weight, n)


def best_single(row: np.ndarray, value: np.ndarray, weight: np.ndarray, pos: np.ndarray,
                limit: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row the most valuable pair whose weight fits ``limit`` alone (the first in customer
    order of equals): its value (``-inf``: none) and position (-1). The driver's kernel picks
    it (:func:`._refill_kernels.best_single`): pairs come in customer order (``pos`` ascending),
    so its first of equals is the first in customer order."""
    best = refill_kernels.best_single(row, value, weight, limit)
    has = best >= 0
    best_v, best_p = np.full(n_rows, -np.inf), np.full(n_rows, -1, dtype=np.int64)
    best_v[has], best_p[has] = value[best[has]], pos[best[has]]
    return best_v, best_p


# -- the driver's side --------------------------------------------------------------------------
@dataclass
class Repaired:
    """What the sharded repair leaves: spend and customers per offer and the total spend of the
    pairs kept (the refill's budgets left), each read from exact sums."""

    spend: np.ndarray
    count: np.ndarray
    total: float
    applied: list[Cut]  # the cuts made (the refill on shards drops what they drop)


def sharded_repair(ex: ShardExecutor, problem: AssignmentProblem,
                   chosen: list[np.ndarray] | None) -> Repaired:
    """Repair the plan the shards of ``ex`` hold (their last ``plan_rows``, which are
    ``chosen``): the cuts found from their tallies, the pairs dropped from ``chosen`` too
    (``None``: the plan stays on the shards, which drop them themselves: none is sent)."""
    offers = problem.offers
    n = offers.n_offers
    ex.all("repair_start")
    applied: list[Cut] = []
    for kind, capacity in ((COUNT, offers.max_customers.astype(float)), (BUDGET, offers.budget),
                           (GLOBAL, np.array([problem.global_budget]))):
        cut = _cut(ex, kind, capacity, applied, n)
        if cut is not None:
            applied.append(cut)
    found = ex.all("repair_done", applied, chosen is not None)
    masks = chosen if chosen is not None else []
    for spec, (piece, row, slot, _, _) in zip(ex.specs, found if masks else []):
        for k, (b, f, _e) in enumerate(spec.pieces):
            sel = piece == k
            masks[b][f + row[sel], slot[sel]] = False
    spend = exact_total([f[3] for f in found])
    count = np.sum([f[4] for f in found], axis=0)
    whole = (spend[0], spend[1].sum(axis=0, keepdims=True))
    return Repaired(exact_float(spend), count.astype(np.int64), float(exact_float(whole)[0]),
                    applied)


def _cut(ex: ShardExecutor, kind: int, capacity: np.ndarray, applied: list[Cut], n: int
         ) -> Cut | None:
    """The cut ``kind`` of the groups over ``capacity`` after ``applied``; ``None``: none is."""
    limit = fit_limit(capacity)
    totals = ex.all("repair_totals", applied, kind)
    total = exact_total([t for t in totals])
    finite = np.isfinite(limit)
    over = exact_sign(exact_sub(total, exact_each(np.where(finite, limit, 0.0)))) > 0
    rows = np.flatnonzero(over & finite)
    if not rows.size:
        return None
    lim = exact_each(limit[rows])
    lo, hi = np.full(rows.size, -np.inf), np.full(rows.size, np.inf)
    before: Exact = (0, np.zeros((rows.size, 1), dtype=np.int64))
    size = np.full(rows.size, np.iinfo(np.int64).max)
    for _ in range(_ROUNDS):
        active = size > _COLLECT
        if not active.any():
            break
        size, lo, hi, before = _narrow(ex, kind, applied, rows, lo, hi, before, lim, size,
                                       active)
    top, top_pos = _exact_cut(ex, kind, applied, rows, lo, hi, before, lim)
    single = np.full(rows.size, -1, dtype=np.int64)
    if kind == COUNT:
        return kind, rows, top, top_pos, single
    best = ex.all("repair_best", applied, kind, rows, limit[rows])
    best_v, best_p = best[0]
    for v, p in best[1:]:  # shard order: a later shard's equal is later in customer order
        better = v > best_v
        best_v, best_p = np.where(better, v, best_v), np.where(better, p, best_p)
    cut: Cut = (kind, rows, top, top_pos, single)
    kept_value = exact_float(exact_total(ex.all("repair_values", [*applied, cut], kind, rows)))
    switch = (best_p >= 0) & (best_v > kept_value * (1 + 1e-12))
    return kind, rows, top, top_pos, np.where(switch, best_p, -1)


def _narrow(ex: ShardExecutor, kind: int, applied: list[Cut], rows: np.ndarray,
            lo: np.ndarray, hi: np.ndarray, before: Exact, lim: Exact, size: np.ndarray,
            active: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, Exact]:
    """One round: bucket edges for the ``active`` rows from the shards' points, their tallies
    added, each row's interval narrowed to the bucket where its running weight passes ``lim``
    (``before``: the exact weight of the pairs above the interval)."""
    found = ex.all("repair_points", applied, kind, rows, lo, hi)
    edges = np.full((rows.size, _EDGES), -np.inf)
    for r in np.flatnonzero(active):  # a loop over the groups cut, never pairs
        pts = np.concatenate([_row_points(f, int(r)) for f in found])
        pts = np.unique(pts[(pts > lo[r]) & (pts < hi[r])])[::-1]
        if pts.size > _EDGES:
            pts = pts[(np.arange(1, _EDGES + 1) * pts.size) // (_EDGES + 1)]
        edges[r, :pts.size] = pts
    parts = ex.all("repair_tallies", applied, kind, rows, lo, hi, edges)
    counts = np.sum([p[0] for p in parts], axis=0).reshape(rows.size, _EDGES + 1)
    cells = exact_total([p[1] for p in parts])
    first, width = common(cells, before, lim)
    width += 2
    per = aligned(cells, first, width).reshape(rows.size, _EDGES + 1, width)
    running = np.cumsum(per, axis=1) + aligned(before, first, width)[:, None, :]
    passes = exact_sign((first, (running - aligned(lim, first, width)[:, None, :]).reshape(
        -1, width))).reshape(rows.size, _EDGES + 1) > 0
    passes[:, -1] = True  # the interval holds the crossing: its last bucket at the latest
    j = np.argmax(passes, axis=1)
    idx = np.arange(rows.size)
    top_edges = np.c_[hi, edges]
    low_edges = np.c_[edges, lo]
    new_before = np.where(j[:, None] > 0, running[idx, np.maximum(j - 1, 0)],
                          aligned(before, first, width))
    new_size = counts[idx, j]
    narrowed = active & (new_size < size)  # a bucket of equal priorities cannot be split
    keep_hi = np.where(narrowed, top_edges[idx, j], hi)
    keep_lo = np.where(narrowed, np.maximum(low_edges[idx, j], lo), lo)
    new_before = np.where(narrowed[:, None], new_before, aligned(before, first, width))
    return (np.where(narrowed, new_size, np.where(active, 0, size)), keep_lo, keep_hi,
            (first, new_before))


def _row_points(found: tuple[np.ndarray, np.ndarray], r: int) -> np.ndarray:
    """Row ``r``'s points of one shard's :func:`points` answer."""
    counts, pts = found
    start = int(counts[:r].sum())
    return pts[start:start + int(counts[r])]


def _exact_cut(ex: ShardExecutor, kind: int, applied: list[Cut], rows: np.ndarray,
               lo: np.ndarray, hi: np.ndarray, before: Exact, lim: Exact
               ) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of each row's interval gathered from the shards, ordered (priority
    descending, then position) and their running weight added exactly to ``before``: the first
    pair whose running weight passes ``lim`` (its priority and position) is each row's cut."""
    found = ex.all("repair_collect", applied, kind, rows, lo, hi)
    row, priority, weight, pos = (np.concatenate([f[k] for f in found]) for k in range(4))
    top, top_pos = np.full(rows.size, -np.inf), np.full(rows.size, -1, dtype=np.int64)
    if row.size == 0:  # no pair in any interval: nothing passes, every pair stays
        return top, top_pos
    order = np.lexsort((pos, -priority, row))
    row, priority, weight, pos = row[order], priority[order], weight[order], pos[order]
    each = exact_each(weight)
    first, width = common(each, before, lim)
    width += 2
    running = np.cumsum(aligned(each, first, width), axis=0)
    counts = np.bincount(row, minlength=rows.size)
    start = np.r_[0, np.cumsum(counts)[:-1]]
    prior = np.where((start > 0)[:, None], running[np.maximum(start - 1, 0)], 0)
    running = running - prior[row] + aligned(before, first, width)[row]
    passes = exact_sign((first, running - aligned(lim, first, width)[row])) > 0
    hit = np.flatnonzero(passes)  # a row without one keeps every pair (``-inf``)
    if hit.size:
        firsts = hit[np.r_[True, row[hit][1:] != row[hit][:-1]]]
        top[row[firsts]], top_pos[row[firsts]] = priority[firsts], pos[firsts]
    return top, top_pos
