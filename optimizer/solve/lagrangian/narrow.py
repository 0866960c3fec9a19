"""A crossing bucket narrowed before it is collected (issue 21).

The critical prices and the funders' prices tally their candidates into at most 64 buckets per
group (offer, constraint or funder) from the sketches' boundaries (:mod:`.sketch`), then collect
every candidate of the bucket where each group's constraint is met, the *crossing* bucket, and
read the price off its sort (:mod:`.critical`). The sample places the boundaries; its error at
the crossing grows like the square root of the candidates above it, so the crossing buckets do
too. Here a crossing bucket of more than a limit of candidates over all shards
(:func:`split_limit`: 1,024, or 128 a shard if more) is not collected whole:

1. each shard keeps its own candidates of it (an *entry*: key, weight, group, in customer order;
   the call that collects the other groups' buckets keeps them: a stateful call) and sends up to
   :data:`POINTS` of their keys at evenly spaced ranks;
2. the driver places up to 63 finer boundaries inside the bucket where the shards' points,
   merged, split its candidates evenly (:func:`fine_bounds`), the shards tally their kept
   entries in them (O(groups x 64) bytes), and the finer bucket where the constraint is met is
   found from the weight above the coarse bucket (:func:`finer`);
3. while that one still holds more than the limit and fewer than before, again from the
   shards' points of it (at most :data:`ROUNDS` rounds); then only it is collected.

Each round divides the bucket by up to 64, so what crosses the network per group is bounded by
about the limit's candidates whatever the customers. The prices stay exact: any boundaries
give the price a plain sort gives, good ones only make the collected bucket small. The rounds
read only what the stateful call kept, so a rebuilt shard that replays it answers them alike.
"""
from __future__ import annotations

# kernels compiled in from other modules, as of 9be1c67c9f05
from typing import Any, Sequence

import numba as nb
import numpy as np

from optimizer.solve.lagrangian._kernels import _JIT
from optimizer.solve.lagrangian.sketch import WIDTH, flat_tallies

SPLIT = 1024  # a crossing bucket of more candidates (over all shards) is narrowed ...
PER_SHARD = 128  # ... or of more than this many per shard, if more (:func:`split_limit`)
POINTS = 63  # keys a shard sends per narrowed group: evenly spaced ranks of its kept entries
ROUNDS = 3  # at most this many finer tallies per group and price kind

Entries = tuple[np.ndarray, np.ndarray, np.ndarray]  # (key, weight, group), customer order


def no_entries() -> Entries:
    """No entries (float keys and weights, ``int64`` groups)."""
    return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64)


def split_limit(ex: Any) -> float:
    """The most candidates a crossing bucket may hold over all shards of ``ex`` (a
    :class:`.executor.ShardExecutor`) and be collected whole: its ``split_above`` if set, else
    the larger of :data:`SPLIT` and :data:`PER_SHARD` per shard. Narrowing a bucket costs about
    2 KB a shard (the points, the finer bounds and tallies) and two more calls; collecting costs
    24 bytes a candidate: below some 100 candidates a shard, collecting is cheaper."""
    if ex.split_above is not None:
        return float(ex.split_above)
    return float(max(SPLIT, PER_SHARD * len(ex.specs)))


# -- a shard's side: its kept entries ------------------------------------------------------------
def split_entries(entries: Entries, split: np.ndarray) -> tuple[Entries, Entries]:
    """(the entries of groups not ``split``, those of split groups), each in its order."""
    key, weight, group = entries
    kept = split[group] if group.size else np.zeros(0, dtype=bool)
    return ((key[~kept], weight[~kept], group[~kept]),
            (key[kept], weight[kept], group[kept]))


def _within(entries: Entries, rows: np.ndarray, lo: np.ndarray, hi: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which entries belong to group ``rows[r]`` with a key in ``[lo[r], hi[r])``, and that
    ``r`` of each: (mask, row of every entry (-1: none), keys)."""
    key, _, group = entries
    if not group.size or not rows.size:
        return np.zeros(group.size, dtype=bool), np.full(group.size, -1), key
    row_of = np.full(max(int(group.max()), int(rows.max())) + 1, -1, dtype=np.int64)
    row_of[rows] = np.arange(rows.size)
    row = row_of[group]
    at = np.maximum(row, 0)
    inside = (row >= 0) & (lo[at] <= key) & (key < hi[at])
    return inside, row, key


def points(entries: Entries, rows: np.ndarray, lo: np.ndarray, hi: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """Per row ``r``: the number of entries of group ``rows[r]`` in ``[lo[r], hi[r])`` and up to
    :data:`POINTS` of their keys, descending, at evenly spaced ranks (all of them when they are
    that few; NaN padded): ``(counts, keys (rows, POINTS))``."""
    inside, row, key = _within(entries, rows, lo, hi)
    row, key = row[inside], key[inside]
    order = np.lexsort((-key, row))
    counts = np.bincount(row, minlength=rows.size).astype(np.int64)
    starts = np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64)
    j = np.arange(POINTS)
    rank = np.where(counts[:, None] > POINTS, (j + 1) * counts[:, None] // (POINTS + 1), j)
    valid = rank < counts[:, None]
    keys = np.full((rows.size, POINTS), np.nan)
    keys[valid] = key[order][(starts[:, None] + rank)[valid]]
    return counts, keys


def tallies(entries: Entries, rows: np.ndarray, lo: np.ndarray, hi: np.ndarray,
            bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(weight, count) of the entries of group ``rows[r]`` in ``[lo[r], hi[r])`` per bucket of
    ``bounds[r]``: shape ``(rows, WIDTH)``."""
    inside, row, key = _within(entries, rows, lo, hi)
    return flat_tallies(row[inside], key[inside], entries[1][inside], bounds)


def collect(entries: Entries, rows: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> Entries:
    """The entries of group ``rows[r]`` in ``[lo[r], hi[r])``, in their order."""
    inside = _within(entries, rows, lo, hi)[0]
    return entries[0][inside], entries[1][inside], entries[2][inside]


# -- the driver's side ---------------------------------------------------------------------------
@nb.njit(**_JIT)
def fine_bounds(counts, keys, lo, hi):  # pragma: no cover - compiled
    """Each row's finer boundaries (descending, -inf padded to ``WIDTH``, at most ``WIDTH - 1``
    as :func:`.sketch.bucket_of` reads) strictly inside ``(lo, hi)``, where the shards' points
    (``counts[k, r]`` entries, ``keys[k, r]`` their points) merged split the entries evenly:
    a shard's point stands for ``count / (POINTS + 1)`` entries (1 when it sent them all)."""
    n_shards, n_rows, n_points = keys.shape
    bounds = np.full((n_rows, WIDTH), -np.inf)
    n_bounds = np.zeros(n_rows, dtype=np.int64)
    for r in range(n_rows):
        key = np.empty(n_shards * n_points)
        weight = np.empty(n_shards * n_points)
        n = 0
        for k in range(n_shards):
            share = counts[k, r] / (n_points + 1) if counts[k, r] > n_points else 1.0
            for j in range(n_points):
                p = keys[k, r, j]
                if lo[r] < p < hi[r]:
                    key[n] = p
                    weight[n] = share
                    n += 1
        order = np.argsort(-key[:n], kind="mergesort")
        step = weight[:n].sum() / WIDTH
        aim, used, b = step, 0.0, 0
        if not step > 0:
            continue
        for j in order:
            used += weight[j]
            if used >= aim and b < WIDTH - 1 and (b == 0 or key[j] < bounds[r, b - 1]):
                bounds[r, b] = key[j]
                b += 1
                while aim <= used:
                    aim += step
        n_bounds[r] = b
    return bounds, n_bounds


@nb.njit(**_JIT)
def finer(mass, tally, n_bounds, bounds, capacity, above, lo, hi):  # pragma: no cover - compiled
    """Per row, the finer bucket where the weight from the top, ``above`` (all above the coarse
    bucket) then the finer buckets', first exceeds ``capacity``: (weight above it, its size, its
    range ``[lo, hi)``). Rounding that keeps the sum under takes the last non-empty bucket, as
    :func:`.critical._crossing` does."""
    n_rows = capacity.shape[0]
    new_above, size = above.copy(), np.zeros(n_rows, dtype=np.int64)
    new_lo, new_hi = lo.copy(), hi.copy()
    for r in range(n_rows):
        used, cross, last = above[r], -1, 0
        for b in range(n_bounds[r] + 1):
            if tally[r, b] > 0:
                last = b
            if used + mass[r, b] > capacity[r]:
                cross = b
                break
            used += mass[r, b]
        if cross < 0:
            cross = last
            used -= mass[r, cross]
        new_above[r], size[r] = used, tally[r, cross]
        if cross > 0:
            new_hi[r] = bounds[r, cross - 1]
        if cross < n_bounds[r]:
            new_lo[r] = bounds[r, cross]
    return new_above, size, new_lo, new_hi


def narrowed(ex: Any, rows: np.ndarray, first: Sequence[tuple[np.ndarray, np.ndarray]],
             found: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
             capacity: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rounds of the module docstring for the groups ``rows`` on the shards of ``ex`` (a
    :class:`.executor.ShardExecutor`): ``first``, each shard's points of them; ``found``, their
    coarse (weight above, size, bottom, top); ``limit``: :func:`split_limit`. Returns each
    row's (weight above, bottom, top)."""
    above, size, lo, hi = (a.copy() for a in found)
    at = np.arange(rows.size)
    for round_ in range(ROUNDS):
        shard_points = first if round_ == 0 else ex.all("kept_points", rows[at], lo[at], hi[at])
        bounds, n_bounds = fine_bounds(np.stack([p[0] for p in shard_points]),
                                       np.stack([p[1] for p in shard_points]), lo[at], hi[at])
        mass, tally = np.zeros(bounds.shape), np.zeros(bounds.shape, dtype=np.int64)
        for part_mass, part_tally in ex.all("kept_tallies", rows[at], lo[at], hi[at], bounds):
            mass += part_mass  # in shard order (:func:`.critical.tally_total`)
            tally += part_tally
        new = finer(mass, tally, n_bounds, bounds, capacity[at], above[at], lo[at], hi[at])
        shrank = new[1] < size[at]
        above[at], size[at], lo[at], hi[at] = new
        at = at[shrank & (new[1] > limit)]
        if not at.size:
            break
    return above, lo, hi


def bucket_prices(ex: Any, call: str, args: tuple,
                  found: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                  capacity: np.ndarray) -> np.ndarray:
    """Each group's price from its crossing bucket (``found``: :func:`.critical._crossing`'s
    crossing, weight above, size, bottom, top): ``call(*args, bucket, split)`` on every shard
    returns its entries of the buckets not split and keeps those of the split ones (sending
    their points), which are narrowed (:func:`narrowed`) and collected (``kept_collect``); the
    entries, joined in shard order, are sorted per group (:func:`.critical._read_prices`)."""
    from optimizer.solve.lagrangian.critical import _read_prices

    crossing, fits_above, size, bottom, top = found
    limit = split_limit(ex)
    split = (crossing >= 0) & (size > limit)
    answers = ex.all(call, *args, (crossing, bottom, top), split)
    parts = [a[0] for a in answers]
    rows = np.flatnonzero(split)
    fits_above = fits_above.copy()
    if rows.size:
        coarse = (fits_above[rows], size[rows], bottom[rows], top[rows])
        above, lo, hi = narrowed(ex, rows, [a[1] for a in answers], coarse, capacity[rows],
                                 limit)
        fits_above[rows] = above
        parts += ex.all("kept_collect", rows, lo, hi)
    key, weight, group = (np.concatenate(p) for p in zip(*parts))
    order = np.argsort(group, kind="stable")  # each group's entries in shard order
    start = np.r_[0, np.cumsum(np.bincount(group, minlength=capacity.shape[0]))]
    return _read_prices(key[order], weight[order], start, crossing, fits_above, capacity)
