"""Critical prices, compiled (numba): the price update of the scale solver.

Each candidate leaves its customer's best response when its offer's price exceeds its *critical
price*; the use of a constraint is then a step function of its price, and the smallest price at
which the constraint is met can be read off the candidates sorted by critical price: the
synchronous coordinate step of Zhang et al., "Solving Billion-Scale Knapsack Problems" (WWW 2020).

A full sort of tens of millions of candidates per constraint kind would dominate the pass, so:

1. every ``_STRIDE``-th customer's candidates (a sample) place, per constraint, up to ``_WIDTH``
   bucket boundaries, dense around the sample's estimate of where the constraint is met (on
   shards, each shard places its own on its sample and the driver merges them: :mod:`.sketch`);
2. one pass tallies each bucket's weight, in ``_PARTS`` fixed ranges of customers run on the
   solver's threads; the parts' sums are added in part order, so the prices depend neither on
   the number of threads nor on the chunking;
3. one more pass collects the candidates of the bucket where each constraint is met (each part
   into its own stretch, in candidate order), and only those are sorted (on shards, a large
   bucket is first narrowed by finer tallies inside it: :mod:`.narrow`).

Any boundaries give the exact answer; good ones only make the collected bucket small.

Constraint kinds (``mode``): 0, each offer's budget price; 1, the global budget's price over the
candidates still in at their offer's price; 2, each offer's ``max_customers`` price at the
budget prices. The passes are compiled once per mode (small wrappers below) so that the mode is
a constant the compiler folds out of the candidate loop: a run-time mode made them twice as slow.
"""
from __future__ import annotations

# kernels compiled in from other modules, as of 300e1004d7c4
import math
from typing import Iterator, Sequence

import numba as nb
import numpy as np

from optimizer.solve.lagrangian._kernels import _JIT, Mapper, serial_map
from optimizer.solve.lagrangian._typed_lists import typed_list
from optimizer.solve.lagrangian.margins import dense, margin_at, no_choice
from optimizer.solve.lagrangian.sketch import STRIDE as _STRIDE
from optimizer.solve.lagrangian.sketch import WIDTH as _WIDTH
from optimizer.solve.lagrangian.sketch import bucket_of as _bucket_of
from optimizer.solve.lagrangian.sketch import sketch_of

_PARTS = 16
_EMPTY_F = np.zeros(0)
_EMPTY_2D = np.zeros((0, 0))


# inlined where called: as a call, passing its array arguments cost 40 % of the tally pass
@nb.njit(inline="always")
def _candidate(mode, o, c, m, target, count, own, glob, budget_price):  # pragma: no cover
    """(critical price, weight) of one candidate; weight 0 = does not count."""
    lifted = m + target[o]
    if not lifted > 0:
        return 0.0, 0.0
    if mode == 2:
        return lifted - (budget_price[o] + glob) * c, 1.0
    base = lifted - count[o]
    if c > 0:
        per_unit = base / c
    elif base > 0:
        per_unit = np.inf
    else:
        per_unit = -np.inf
    if mode == 1 and not per_unit > own[o]:
        return 0.0, 0.0
    return per_unit, c


@nb.njit(**_JIT)
def _sample_entries(mode, offers, costs, margins, values, chosen, compact, samp_block, samp_row,
                    target, count, own, glob, budget_price, capacity):  # pragma: no cover - compiled
    """(group, critical price, weight) of the sampled customers' counting candidates, in
    sample order."""
    single = mode == 1
    room = 0
    for q in range(samp_block.shape[0]):
        room += offers[samp_block[q]].shape[1]
    s_group = np.empty(room, dtype=np.int64)
    s_crit = np.empty(room)
    s_weight = np.empty(room)
    n_s = 0
    for q in range(samp_block.shape[0]):
        b, i = samp_block[q], samp_row[q]
        off, cst, mar = offers[b], costs[b], margins[b]
        val, cho, cmp = values[b], chosen[b], compact[b]
        for s in range(off.shape[1]):
            o = off[i, s]
            if o < 0:
                continue
            g = 0 if single else o
            if not math.isfinite(capacity[g]):
                continue
            crit, w = _candidate(mode, o, cst[i, s], margin_at(mar, val, cho, cmp, i, s),
                                 target, count, own, glob, budget_price)
            if crit > 0 and w > 0:
                s_group[n_s] = g
                s_crit[n_s] = crit
                s_weight[n_s] = w
                n_s += 1
    return s_group[:n_s], s_crit[:n_s], s_weight[:n_s]


@nb.njit(inline="always")
def _tally(mode, offers, costs, margins, values, chosen, compact, seg_block, seg_lo, seg_hi,
           bounds, target, count, own, glob, budget_price, capacity, mass,
           tally):  # pragma: no cover - compiled
    single = mode == 1
    for sg in range(seg_block.shape[0]):
        b = seg_block[sg]
        off, cst, mar = offers[b], costs[b], margins[b]
        val, cho, cmp = values[b], chosen[b], compact[b]
        for i in range(seg_lo[sg], seg_hi[sg]):
            for s in range(off.shape[1]):
                o = off[i, s]
                if o < 0:
                    continue
                g = 0 if single else o
                if not math.isfinite(capacity[g]):
                    continue
                crit, w = _candidate(mode, o, cst[i, s], margin_at(mar, val, cho, cmp, i, s),
                                     target, count, own, glob, budget_price)
                if crit > 0 and w > 0:
                    bucket = _bucket_of(bounds, g, crit)
                    mass[g, bucket] += w
                    tally[g, bucket] += 1


@nb.njit(inline="always")
def _collect(mode, offers, costs, margins, values, chosen, compact, seg_block, seg_lo, seg_hi,
             crossing, bottom, top, target, count, own, glob, budget_price, fill, crits,
             weights):  # pragma: no cover - compiled
    single = mode == 1
    for sg in range(seg_block.shape[0]):
        b = seg_block[sg]
        off, cst, mar = offers[b], costs[b], margins[b]
        val, cho, cmp = values[b], chosen[b], compact[b]
        for i in range(seg_lo[sg], seg_hi[sg]):
            for s in range(off.shape[1]):
                o = off[i, s]
                if o < 0:
                    continue
                g = 0 if single else o
                if crossing[g] < 0:
                    continue
                crit, w = _candidate(mode, o, cst[i, s], margin_at(mar, val, cho, cmp, i, s),
                                     target, count, own, glob, budget_price)
                if crit > 0 and w > 0 and bottom[g] <= crit < top[g]:
                    crits[fill[g]] = crit
                    weights[fill[g]] = w
                    fill[g] += 1


# one compiled pass per mode (see the module docstring)
@nb.njit(**_JIT)
def _tally_budget(offers, costs, margins, values, chosen, compact, seg_block, seg_lo, seg_hi,
                  bounds, target, count, own, glob, budget_price, capacity, mass,
                  tally):  # pragma: no cover
    _tally(0, offers, costs, margins, values, chosen, compact, seg_block, seg_lo, seg_hi, bounds,
           target, count, own, glob, budget_price, capacity, mass, tally)


@nb.njit(**_JIT)
def _tally_global(offers, costs, margins, values, chosen, compact, seg_block, seg_lo, seg_hi,
                  bounds, target, count, own, glob, budget_price, capacity, mass,
                  tally):  # pragma: no cover
    _tally(1, offers, costs, margins, values, chosen, compact, seg_block, seg_lo, seg_hi, bounds,
           target, count, own, glob, budget_price, capacity, mass, tally)


@nb.njit(**_JIT)
def _tally_count(offers, costs, margins, values, chosen, compact, seg_block, seg_lo, seg_hi,
                 bounds, target, count, own, glob, budget_price, capacity, mass,
                 tally):  # pragma: no cover
    _tally(2, offers, costs, margins, values, chosen, compact, seg_block, seg_lo, seg_hi, bounds,
           target, count, own, glob, budget_price, capacity, mass, tally)


@nb.njit(**_JIT)
def _collect_budget(offers, costs, margins, values, chosen, compact, seg_block, seg_lo, seg_hi,
                    crossing, bottom, top, target, count, own, glob, budget_price, fill, crits,
                    weights):  # pragma: no cover
    _collect(0, offers, costs, margins, values, chosen, compact, seg_block, seg_lo, seg_hi,
             crossing, bottom, top, target, count, own, glob, budget_price, fill, crits, weights)


@nb.njit(**_JIT)
def _collect_global(offers, costs, margins, values, chosen, compact, seg_block, seg_lo, seg_hi,
                    crossing, bottom, top, target, count, own, glob, budget_price, fill, crits,
                    weights):  # pragma: no cover
    _collect(1, offers, costs, margins, values, chosen, compact, seg_block, seg_lo, seg_hi,
             crossing, bottom, top, target, count, own, glob, budget_price, fill, crits, weights)


@nb.njit(**_JIT)
def _collect_count(offers, costs, margins, values, chosen, compact, seg_block, seg_lo, seg_hi,
                   crossing, bottom, top, target, count, own, glob, budget_price, fill, crits,
                   weights):  # pragma: no cover
    _collect(2, offers, costs, margins, values, chosen, compact, seg_block, seg_lo, seg_hi,
             crossing, bottom, top, target, count, own, glob, budget_price, fill, crits, weights)


_TALLY = (_tally_budget, _tally_global, _tally_count)
_COLLECT = (_collect_budget, _collect_global, _collect_count)


@nb.njit(**_JIT)
def _crossing(mass, tally, n_bounds, bounds, capacity):  # pragma: no cover - compiled
    """Per group over its capacity: the bucket where the weight above first exceeds it, the
    weight above that bucket, the bucket's size and its price range ``[bottom, top)``."""
    n_groups = capacity.shape[0]
    crossing = np.full(n_groups, -1, dtype=np.int64)
    fits_above = np.zeros(n_groups)
    size = np.zeros(n_groups, dtype=np.int64)
    top = np.full(n_groups, np.inf)
    bottom = np.full(n_groups, -np.inf)
    for g in range(n_groups):
        if not mass[g].sum() > capacity[g]:
            continue
        above = 0.0
        for bucket in range(n_bounds[g] + 1):
            if above + mass[g, bucket] > capacity[g]:
                crossing[g] = bucket
                break
            above += mass[g, bucket]
        if crossing[g] < 0:  # rounding: over in total, not bucket by bucket; sort the last
            crossing[g] = n_bounds[g]
            above -= mass[g, n_bounds[g]]
        fits_above[g] = above
        size[g] = tally[g, crossing[g]]
        if crossing[g] > 0:
            top[g] = bounds[g, crossing[g] - 1]
        bottom[g] = bounds[g, crossing[g]]
    return crossing, fits_above, size, bottom, top


@nb.njit(**_JIT)
def _read_prices(crits, weights, start, crossing, fits_above,
                 capacity):  # pragma: no cover - compiled
    """Each group's price: the critical price at which its collected bucket spills over."""
    price = np.zeros(capacity.shape[0])
    for g in range(capacity.shape[0]):
        if crossing[g] < 0:
            continue
        in_bucket = crits[start[g]:start[g + 1]]
        used = fits_above[g]
        for j in np.argsort(-in_bucket, kind="mergesort"):
            used += weights[start[g] + j]
            if used > capacity[g] * (1 + 1e-12):
                price[g] = in_bucket[j]
                break
    return price


@nb.njit(**_JIT)
def _targeted(offers, costs, margins, values, chosen, compact, seg_block, seg_lo, seg_hi,
              targeted, budget_price, glob, count_price):  # pragma: no cover - compiled
    """Offer and margin at the given prices of every candidate of a ``targeted`` offer in one
    part's segments, customer by customer (the order of numpy's boolean-mask gather)."""
    n = 0
    for sg in range(seg_block.shape[0]):
        block = offers[seg_block[sg]]
        for i in range(seg_lo[sg], seg_hi[sg]):
            for k in range(block.shape[1]):
                o = block[i, k]
                if o >= 0 and targeted[o]:
                    n += 1
    offer = np.empty(n, dtype=np.int64)
    margin = np.empty(n)
    n = 0
    for sg in range(seg_block.shape[0]):
        b = seg_block[sg]
        block, cost, marg = offers[b], costs[b], margins[b]
        val, cho, cmp = values[b], chosen[b], compact[b]
        for i in range(seg_lo[sg], seg_hi[sg]):
            for k in range(block.shape[1]):
                o = block[i, k]
                if o >= 0 and targeted[o]:
                    offer[n] = o
                    margin[n] = (margin_at(marg, val, cho, cmp, i, k)
                                 - (budget_price[o] + glob) * cost[i, k] - count_price[o])
                    n += 1
    return offer, margin


def _layout(rows: np.ndarray, cuts: np.ndarray | None = None, first_sampled: int = 0
            ) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
    """Parts and sample of the passes over blocks of ``rows`` customers each.

    Part ``p`` is the customers ``[cuts[p], cuts[p + 1])`` (default: ``[p N / P, (p + 1) N /
    P)`` of all ``N``), as one segment ``(block, first row, end row)`` per block it spans. The
    sample is every ``_STRIDE``-th customer from ``first_sampled``, as ``(block, row)``.
    """
    starts = np.r_[0, np.cumsum(rows)].astype(np.int64)
    total = int(starts[-1])
    if cuts is None:
        cuts = np.arange(_PARTS + 1, dtype=np.int64) * total // _PARTS
    parts = []
    for part in range(len(cuts) - 1):  # a loop over parts and blocks, never over customers
        lo = np.maximum(cuts[part], starts[:-1])
        hi = np.minimum(cuts[part + 1], starts[1:])
        spans = np.flatnonzero(lo < hi)
        parts.append((spans.astype(np.int64), lo[spans] - starts[spans],
                      hi[spans] - starts[spans]))
    sampled = np.arange(first_sampled, total, _STRIDE, dtype=np.int64)
    samp_block = (np.searchsorted(starts, sampled, side="right") - 1).astype(np.int64)
    return parts, samp_block, sampled - starts[samp_block]


class Candidates:
    """The blocks' candidates as the compiled passes read them (typed lists of 2-D arrays).

    Built once per solve: ``offers`` and ``costs`` (per block, ``(n, slots)``, -1 offers in
    empty slots) never change, and ``margins`` (per block, value minus the reduced value the
    candidate must beat, as :func:`.kernels.respond` writes them) are read where they lie, so
    every pass's new margins, written into the same arrays, are seen without a copy. Given the
    blocks' ``values``, the margins are compact (:mod:`.margins`: each customer's two limits),
    made where read from the values and the responses :meth:`responded` was given.
    """

    def __init__(self, offers: Sequence[np.ndarray], costs: Sequence[np.ndarray],
                 margins: Sequence[np.ndarray], cuts: np.ndarray | None = None,
                 first_sampled: int = 0, values: Sequence[np.ndarray] | None = None) -> None:
        for m in margins:
            if m.dtype != np.float64 or not m.flags.c_contiguous:
                raise ValueError("margins must be C-contiguous float64 arrays (read in place)")
        self.offers = typed_list([np.ascontiguousarray(o, dtype=np.int32) for o in offers],
                                  np.int32)
        self.costs = typed_list([np.ascontiguousarray(c, dtype=np.float64) for c in costs],
                                 np.float64)
        self.margins = typed_list(list(margins), np.float64)
        # ``values`` given: the margins are compact, each made from its value and the last
        # responses (:meth:`responded`; :mod:`.margins`)
        self.compact = np.full(len(margins), values is not None)
        self.values = typed_list([np.ascontiguousarray(v, dtype=np.float64) for v in values]
                                 if values is not None else [_EMPTY_2D] * len(margins),
                                 np.float64)
        self.chosen = typed_list([no_choice()] * len(margins), np.bool_)
        # cuts: the parts' boundaries (:func:`.shards.part_cuts`), first_sampled: the first
        # sampled customer, both in these blocks' customer positions
        self.parts, self.samp_block, self.samp_row = _layout(
            np.array([o.shape[0] for o in offers], dtype=np.int64), cuts, first_sampled)

    def responded(self, chosen: Sequence[np.ndarray]) -> None:
        """The responses the compact margins were just written with (read with them)."""
        if self.compact.any():
            self.chosen = typed_list(list(chosen), np.bool_)

    def dense_margins(self) -> Iterator[np.ndarray]:
        """Every block's margins one per slot (:func:`.margins.dense`), made one block at a
        time as the caller reads them."""
        for m, v, c, k in zip(self.margins, self.values, self.chosen, self.compact):
            yield dense(m, v, c, bool(k))

    def prices(self, mode: int, prices: tuple[np.ndarray, np.ndarray, np.ndarray, float,
                                              np.ndarray],
               capacity: np.ndarray, map_parts: Mapper) -> np.ndarray:
        """One constraint kind's critical prices; ``prices`` = (target, count, own, glob,
        budget_price), the candidates' reduced-value terms this kind holds fixed."""
        bounds, n_bounds = self.bounds(mode, prices, capacity)
        n_groups = capacity.shape[0]
        tallies = self.tallies(mode, prices, bounds, capacity, map_parts)
        mass, counts = tally_total(tallies, (n_groups, _WIDTH))
        found = _crossing(mass, counts, n_bounds, bounds, capacity)
        if not (found[0] >= 0).any():
            return np.zeros(n_groups)
        return self.read_prices(mode, prices, found, tallies, capacity, map_parts)

    def read_prices(self, mode: int, prices: tuple, found: tuple, tallies: list,
                    capacity: np.ndarray, map_parts: Mapper) -> np.ndarray:
        """Each group's price from its crossing bucket (``found``: :func:`_crossing`'s answer;
        ``tallies``: the parts' tallies): the bucket's candidates collected and sorted (a
        subclass may narrow the bucket first: :mod:`.narrow`)."""
        crossing, fits_above, size, bottom, top = found
        n_groups = capacity.shape[0]
        start = np.r_[0, np.cumsum(size)]
        # each part fills its own stretch of every group's range, in candidate order
        in_bucket = np.stack([c[np.arange(n_groups), np.maximum(crossing, 0)]
                              for _, c in tallies]) * (crossing >= 0)
        fills = start[:-1] + np.cumsum(in_bucket, axis=0) - in_bucket
        crits, weights = self.collect(mode, prices, (crossing, bottom, top), fills,
                                      int(start[-1]), map_parts)
        return _read_prices(crits, weights, start, crossing, fits_above, capacity)

    def bounds(self, mode: int, prices: tuple, capacity: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """Each group's bucket boundaries (descending, -inf padded) and their number, placed on
        the sample (a subclass may merge its shards' sketches: :mod:`.sketch`)."""
        return self.sketch(mode, prices, capacity)[:2]

    @property
    def lists(self) -> tuple:
        """What the compiled passes read: offers, costs, margins, values, responses, and
        whether each block's margins are compact."""
        return (self.offers, self.costs, self.margins, self.values, self.chosen, self.compact)

    def sketch(self, mode: int, prices: tuple, capacity: np.ndarray) -> tuple:
        """The sample's boundaries with their ranks and weights (:func:`.sketch.sketch_of`)."""
        return sketch_of(*_sample_entries(mode, *self.lists, self.samp_block, self.samp_row,
                                          *prices, capacity), capacity)

    def tallies(self, mode: int, prices: tuple, bounds: np.ndarray, capacity: np.ndarray,
                map_parts: Mapper) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each part's (weight, count) per group and bucket, in part order (a subclass may
        answer with fewer, larger parts: each entry fills its own stretch in :meth:`collect`)."""
        lists = self.lists
        n_groups = capacity.shape[0]

        def tally(part: tuple[np.ndarray, np.ndarray, np.ndarray]
                  ) -> tuple[np.ndarray, np.ndarray]:
            mass = np.zeros((n_groups, _WIDTH))
            counts = np.zeros((n_groups, _WIDTH), dtype=np.int64)
            _TALLY[mode](*lists, *part, bounds, *prices, capacity, mass, counts)
            return mass, counts

        return map_parts(tally, self.parts)

    def collect(self, mode: int, prices: tuple, bucket: tuple[np.ndarray, np.ndarray, np.ndarray],
                fills: np.ndarray, size: int, map_parts: Mapper) -> tuple[np.ndarray, np.ndarray]:
        """The crossing buckets' (critical price, weight), part ``p`` written from ``fills[p]``
        on (``bucket``: each group's crossing bucket and its price range ``[bottom, top)``)."""
        lists = self.lists
        crits, weights = np.empty(size), np.empty(size)

        def collect(item: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray]) -> None:
            part, fill = item
            _COLLECT[mode](*lists, *part, *bucket, *prices, fill.copy(), crits, weights)

        map_parts(collect, list(zip(self.parts, fills)))
        return crits, weights

    def targeted(self, targeted: np.ndarray, budget_price: np.ndarray, glob: float,
                 count_price: np.ndarray, map_parts: Mapper = serial_map
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Offer and margin net of the given prices of every candidate of a ``targeted`` offer
        (the only candidates whose negative margins a ``min_customers`` bonus may lift), in
        customer order whatever ``map_parts`` runs the parts on."""
        lists = self.lists
        found = map_parts(lambda part: _targeted(*lists, *part, targeted, budget_price,
                                                 float(glob), count_price), self.parts)
        return (np.concatenate([f[0] for f in found]),
                np.concatenate([f[1] for f in found]))


def tally_total(tallies: Sequence[tuple[np.ndarray, np.ndarray]], shape: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray]:
    """The (weight, count) tallies added in order from zero: the same sums on any thread count,
    and a shard held elsewhere adds its own parts the same way before sending one total."""
    mass, counts = np.zeros(shape), np.zeros(shape, dtype=np.int64)
    for part_mass, part_counts in tallies:
        mass += part_mass
        counts += part_counts
    return mass, counts


def critical_prices(candidates: Candidates, target: np.ndarray, count_price: np.ndarray,
                    budget: np.ndarray, max_customers: np.ndarray, global_budget: float,
                    map_parts: Mapper | None = None) -> tuple[np.ndarray, float, np.ndarray]:
    """Budget, global and ``max_customers`` prices at which each constraint is just met.

    The offers' budget prices are set first, the global price over the candidates they keep,
    then the count prices at those budget prices (see the module docstring).

    Parameters
    ----------
    candidates: every candidate's offer, cost and current margin (:class:`Candidates`).
    target: the target bonus per offer; count_price: the current count prices.
    budget, max_customers, global_budget: the capacities (``inf``: none).
    map_parts: maps a function over the parts, e.g. on a thread pool, results in order
        (default: one after the other).
    """
    run = map_parts or serial_map
    own = np.zeros(budget.shape[0])
    if np.isfinite(budget).any():
        own = candidates.prices(0, (target, count_price, _EMPTY_F, 0.0, _EMPTY_F), budget, run)
    glob = 0.0
    if np.isfinite(global_budget):
        glob = float(candidates.prices(1, (target, count_price, own, 0.0, _EMPTY_F),
                                       np.array([float(global_budget)]), run)[0])
    budget_price = np.maximum(own - glob, 0.0)
    count = np.zeros(max_customers.shape[0])
    if np.isfinite(max_customers).any():
        count = candidates.prices(2, (target, count_price, _EMPTY_F, glob, budget_price),
                                  max_customers, run)
    return budget_price, glob, count
