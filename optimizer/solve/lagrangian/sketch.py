"""The critical prices' bucket boundaries from per-shard sketches: what a shard sends the driver
to place them does not grow with its customers (issue 21).

The boundaries (:mod:`.critical`, step 1) come from a sample, every ``STRIDE``-th customer's
candidates. A shard does not send its sample: it places boundaries on it itself
(:func:`sketch_of`, the rule the driver once ran over the whole sample, with the shard's
capacity scaled by its share of the customers, so dense around where the shard's estimate of
the constraint is met) and sends those points, each with its rank in the shard's sample of its
group and the sample weight ranked before it: at most ``2 x 31`` points per group, whatever the
shard's size. The driver merges the shards' points (:func:`merged_bounds`): when a group's
points number at most ``WIDTH`` they are all boundaries; otherwise each point's rank and weight
in the whole sample are estimated (its own shard's exactly, the others' interpolated between
their points), the whole sample's crossing found on them and the points nearest to the ranks the
one-sample rule would pick (``OFFSETS`` either side of the crossing) kept.

With one shard the merge keeps that shard's points as they are: the boundaries of the whole
sample, the bits of a solve before sketches. With more, the boundaries differ from the whole
sample's, never the prices: any boundaries give the exact answer, good ones only make the
collected bucket small.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from optimizer.core.numerics import power
from optimizer.solve.lagrangian._kernels import _JIT

STRIDE = 61  # every STRIDE-th customer is sampled
# 1.5 ** k by the C library's pow (numpy's power loop rounds by CPU: tests/test_cpu_rounding.py)
OFFSETS = np.unique(np.round(power(1.5, np.arange(34.0))).astype(np.int64))[:31]
WIDTH = 64  # boundaries per group, padded with -inf: a fixed-depth branch-free search


@nb.njit(inline="always")
def bucket_of(bounds, g, crit):  # pragma: no cover - compiled
    """How many of row ``g`` of ``bounds`` (descending, -inf padded to 64) exceed ``crit``;
    bucket 0 is the top one. Six steps without branches: the comparisons are unpredictable."""
    b = 0
    for half in (32, 16, 8, 4, 2, 1):
        b += half * (bounds[g, b + half - 1] > crit)
    return b


@nb.njit(**_JIT)
def flat_tallies(group, crit, weight, bounds):  # pragma: no cover - compiled
    """(weight, count) per group and bucket of flat entries (group, critical price, weight)."""
    mass = np.zeros(bounds.shape)
    counts = np.zeros(bounds.shape, dtype=np.int64)
    for j in range(group.shape[0]):
        b = bucket_of(bounds, group[j], crit[j])
        mass[group[j], b] += weight[j]
        counts[group[j], b] += 1
    return mass, counts


@nb.njit(**_JIT)
def _by_group(s_group, s_crit, n_groups):  # pragma: no cover - compiled
    """Group starts and the sample's order: by group, then critical price descending, ties in
    sample order (a counting sort by group and one small sort per group: two sorts of the whole
    sample cost 0.2 s a pass at 1 M)."""
    n_s = s_group.shape[0]
    group_start = np.zeros(n_groups + 1, dtype=np.int64)
    for j in range(n_s):
        group_start[s_group[j] + 1] += 1
    group_start = np.cumsum(group_start)
    order = np.empty(n_s, dtype=np.int64)
    fill = group_start[:-1].copy()
    for j in range(n_s):
        order[fill[s_group[j]]] = j
        fill[s_group[j]] += 1
    for g in range(n_groups):
        lo, hi = group_start[g], group_start[g + 1]
        if hi - lo > 1:
            members = order[lo:hi]
            order[lo:hi] = members[np.argsort(-s_crit[members], kind="mergesort")]
    return group_start, order


@nb.njit(**_JIT)
def sketch_of(s_group, s_crit, s_weight, capacity):  # pragma: no cover - compiled
    """Each group's bucket boundaries from a sample's candidates (``_sample_entries``):
    (bounds, their number, each one's rank in its group's sorted sample, the sample weight ranked
    before it, each group's sample entries, their weight)."""
    n_groups = capacity.shape[0]
    group_start, order = _by_group(s_group, s_crit, n_groups)
    n_off = OFFSETS.shape[0]
    bounds = np.full((n_groups, WIDTH), -np.inf)
    n_bounds = np.zeros(n_groups, dtype=np.int64)
    rank = np.zeros((n_groups, WIDTH), dtype=np.int64)
    before = np.zeros((n_groups, WIDTH))
    members = group_start[1:] - group_start[:-1]
    total = np.zeros(n_groups)
    for g in range(n_groups):
        at, n = group_start[g], members[g]
        if n == 0:
            continue
        cross = n - 1
        used = 0.0
        for j in range(n):
            used += s_weight[order[at + j]] * STRIDE
            if used > capacity[g]:
                cross = j
                break
        positions = np.empty(2 * n_off, dtype=np.int64)
        for d in range(n_off):
            positions[2 * d] = min(max(cross - OFFSETS[d] - 1, 0), n - 1)
            positions[2 * d + 1] = min(cross + OFFSETS[d], n - 1)
        positions = np.unique(positions)
        ahead = 0.0
        k = 0
        for j in range(n):
            if k < positions.shape[0] and positions[k] == j:
                bounds[g, k] = s_crit[order[at + j]]
                rank[g, k] = j
                before[g, k] = ahead
                k += 1
            ahead += s_weight[order[at + j]]
        n_bounds[g] = positions.shape[0]
        total[g] = ahead
    return bounds, n_bounds, rank, before, members, total


@nb.njit(inline="always")
def _point_share(crit, rank, before, s, n, i, p, members, total):  # pragma: no cover - compiled
    """(rank, weight before) of price ``p`` in one shard's group from its ``n`` points from
    ``s`` on, the first ``i`` of them above any price asked before (prices are asked in
    descending order), and the new ``i``: its own points exactly, between two points linearly,
    past its last point everything if that point was the group's last entry, else clamped to
    its first or last."""
    while i < n and crit[s + i] > p:
        i += 1
    if i == n:
        if rank[s + n - 1] == members - 1:
            return float(members), float(total), i
        return float(rank[s + n - 1]), float(before[s + n - 1]), i
    if i == 0 or crit[s + i] == p:
        return float(rank[s + i]), float(before[s + i]), i
    t = (crit[s + i - 1] - p) / (crit[s + i - 1] - crit[s + i])
    r0, b0 = float(rank[s + i - 1]), float(before[s + i - 1])
    return (r0 + t * (float(rank[s + i]) - r0), b0 + t * (float(before[s + i]) - b0), i)


@nb.njit(**_JIT)
def _picked(union, g_rank, g_before, limit, n_all):  # pragma: no cover - compiled
    """Which of a group's merged points (price descending, with their estimated rank and weight
    before them in the whole sample) are kept: those nearest to the ranks ``OFFSETS`` either
    side of the estimated crossing (the rank whose weight first exceeds ``limit``)."""
    n = union.shape[0]
    u = 0
    while u < n and not g_before[u] > limit:
        u += 1
    if u == n:
        cross = n_all - 1.0
    elif u == 0:
        cross = max(g_rank[0] - 1.0, 0.0)
    else:
        t = (limit - g_before[u - 1]) / (g_before[u] - g_before[u - 1])
        cross = g_rank[u - 1] + t * (g_rank[u] - g_rank[u - 1]) - 1.0
    keep = np.zeros(n, dtype=np.bool_)
    for d in range(OFFSETS.shape[0]):
        for aim in (cross - OFFSETS[d] - 1.0, cross + OFFSETS[d]):
            target = min(max(aim, 0.0), n_all - 1.0)
            j = np.searchsorted(g_rank, target)
            if j == n or (j > 0 and target - g_rank[j - 1] <= g_rank[j] - target):
                j -= 1
            keep[j] = True
    return keep


@nb.njit(**_JIT)
def merged_bounds(counts, crit, rank, before, members, total,
                  capacity):  # pragma: no cover - compiled
    """Each group's boundaries from the shards' points (module docstring): ``counts[k, g]``
    points of shard ``k``'s group ``g``, flat in ``crit``, ``rank`` and ``before`` shard by
    shard, group by group; ``members``, ``total``: each shard's group's sample entries and
    weight. Returns (bounds, their number) as :func:`sketch_of` does."""
    n_shards, n_groups = counts.shape
    starts = np.zeros(n_shards * n_groups + 1, dtype=np.int64)
    starts[1:] = np.cumsum(counts.ravel())
    bounds = np.full((n_groups, WIDTH), -np.inf)
    n_bounds = np.zeros(n_groups, dtype=np.int64)
    for g in range(n_groups):
        union = np.empty(counts[:, g].sum())
        at = 0
        for k in range(n_shards):
            s = starts[k * n_groups + g]
            union[at:at + counts[k, g]] = crit[s:s + counts[k, g]]
            at += counts[k, g]
        union = union[np.argsort(-union, kind="mergesort")]
        if union.shape[0] < WIDTH:  # bucket_of reads at most WIDTH - 1 of them
            bounds[g, :union.shape[0]] = union
            n_bounds[g] = union.shape[0]
            continue
        g_rank = np.zeros(union.shape[0])
        g_before = np.zeros(union.shape[0])
        for k in range(n_shards):
            s, n = starts[k * n_groups + g], counts[k, g]
            if n == 0:
                continue
            i = 0
            for u in range(union.shape[0]):
                r, b, i = _point_share(crit, rank, before, s, n, i, union[u], members[k, g],
                                       total[k, g])
                g_rank[u] += r
                g_before[u] += b
        keep = _picked(union, g_rank, g_before, capacity[g] / STRIDE, members[:, g].sum())
        kept = union[keep]
        bounds[g, :kept.shape[0]] = kept
        n_bounds[g] = kept.shape[0]
    return bounds, n_bounds
