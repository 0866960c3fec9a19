"""Shards: fixed ranges of customers whose partial sums the scale method adds in shard order.

A shard is the customers ``[k S, (k + 1) S)`` for a fixed ``S`` (``solver.shard_customers``),
whatever the chunking, the thread count or the number of machines. Every sum over customers that
the price passes make (the offers' spend and counts, the dual function, the critical prices'
tallies, the funders' tallies) is made per shard, the shards' answers then added or joined in
shard order, and the critical prices' parts are cut at shard boundaries too. So a shard can live
on another machine (:mod:`optimizer.solve.backends`) and the plan stays the same bits: each
machine sums its own customers exactly as one process does. With one shard (every problem under
``S`` customers) the sums are those of one array over all customers, as before shards existed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from optimizer.model.problem import AssignmentProblem, CandidateBlock


def shard_ranges(n_customers: int, shard_customers: int) -> list[tuple[int, int]]:
    """The shards' ``(first, end)`` customer positions (one empty shard without customers)."""
    if shard_customers < 1:
        raise ValueError("shard_customers must be at least 1")
    if n_customers <= 0:
        return [(0, 0)]
    starts = range(0, n_customers, shard_customers)
    return [(lo, min(lo + shard_customers, n_customers)) for lo in starts]


def block_pieces(rows: Sequence[int], lo: int, hi: int) -> list[tuple[int, int, int]]:
    """The ``(block, first row, end row)`` pieces of blocks of ``rows`` customers each that hold
    the customers ``[lo, hi)`` (a loop over blocks, never customers)."""
    starts = np.r_[0, np.cumsum(np.asarray(rows, dtype=np.int64))]
    first = np.maximum(starts[:-1], lo)
    end = np.minimum(starts[1:], hi)
    keep = np.flatnonzero(first < end)
    return [(int(b), int(first[b] - starts[b]), int(end[b] - starts[b])) for b in keep]


def slice_block(block: CandidateBlock, first: int, end: int) -> CandidateBlock:
    """Rows ``[first, end)`` of ``block`` (views, same slots; the block itself when whole)."""
    if first == 0 and end == block.n_customers:
        return block
    return CandidateBlock(block.customers[first:end], block.offer[first:end],
                          block.value[first:end], block.cost[first:end],
                          block.p_redeem[first:end], block.cap[first:end])


def widened(block: CandidateBlock, width: int) -> CandidateBlock:
    """``block`` with empty slots added on the right up to ``width`` (a block built over part of
    a chunk may be narrower than the chunk's block, whose slots the plans' masks follow)."""
    extra = width - block.offer.shape[1]
    if extra < 0:
        raise ValueError(f"a block of {block.offer.shape[1]} slots cannot be widened to {width}")
    if extra == 0:
        return block

    def pad(a: np.ndarray, fill: float) -> np.ndarray:
        return np.pad(a, ((0, 0), (0, extra)), constant_values=fill)

    return CandidateBlock(block.customers, pad(block.offer, -1), pad(block.value, 0.0),
                          pad(block.cost, 0.0), pad(block.p_redeem, 0.0), block.cap)


def part_cuts(n_customers: int, parts: int, shard_customers: int) -> np.ndarray:
    """Boundaries of the critical prices' parts: ``parts`` equal ranges of all customers, cut
    again at every shard boundary (so no part spans two shards)."""
    cuts = np.arange(parts + 1, dtype=np.int64) * n_customers // parts
    if shard_customers < n_customers:
        cuts = np.r_[cuts, np.arange(0, n_customers, shard_customers, dtype=np.int64)]
    return np.unique(cuts)


def ordered_total(parts: Iterable[np.ndarray]) -> np.ndarray:
    """Per-shard arrays added in shard order (the first one copied, the others added to it)."""
    total = None
    for part in parts:
        total = np.array(part, dtype=np.float64) if total is None else total + part
    if total is None:
        raise ValueError("no shards")
    return total


def ordered_sum(parts: Iterable[float]) -> float:
    """Per-shard floats added in shard order, from zero."""
    total = 0.0
    for part in parts:
        total += float(part)
    return total


@dataclass
class ShardSpec:
    """What builds one shard: its customers ``[lo, hi)``, its critical-price parts' cuts (from
    ``lo``) and its pieces of the problem's blocks as (block index, first row, end row)."""

    lo: int
    hi: int
    cuts: np.ndarray
    pieces: list[tuple[int, int, int]]


def shard_specs(problem: AssignmentProblem, shard_customers: int, parts: int
                ) -> list[ShardSpec]:
    """The shards of ``problem`` at ``shard_customers`` customers each (fixed ranges: the same
    for any number of workers); ``parts``: the critical prices' parts over all customers."""
    layout = problem.layout
    rows = layout.rows if layout is not None else [b.n_customers for b in problem.blocks]
    total = sum(rows)
    cuts = part_cuts(total, parts, shard_customers)
    specs = []
    for lo, hi in shard_ranges(total, shard_customers):
        inside = cuts[(cuts >= lo) & (cuts <= hi)]
        specs.append(ShardSpec(lo, hi, np.unique(np.r_[lo, inside, hi]) - lo,
                               block_pieces(rows, lo, hi)))
    return specs


def shard_problem(problem: AssignmentProblem, blocks: list[CandidateBlock], n_customers: int
                  ) -> AssignmentProblem:
    """``problem``'s offers and rules over one shard's ``blocks``; its ``max_cap`` stays the
    whole problem's (the greedy's and the refill's depths depend on it, not on the shard)."""
    part = AssignmentProblem(offers=problem.offers, blocks=blocks,
                             max_per_category=problem.max_per_category,
                             global_budget=problem.global_budget, n_customers=n_customers,
                             groups=problem.groups, funders=problem.funders,
                             channels=problem.channels)
    part.__dict__["max_cap"] = problem.max_cap  # a cached property, set to the whole's
    return part


def shard_args(problem: AssignmentProblem, spec: ShardSpec) -> tuple:
    """The arguments of :class:`.shard.Shard` for ``spec``: the shard's problem (its pieces
    sliced from the blocks, as views), the pieces' block indices, ``lo`` and the cuts."""
    blocks = [slice_block(problem.blocks[b], f, e) for b, f, e in spec.pieces]
    return (shard_problem(problem, blocks, spec.hi - spec.lo), [b for b, _, _ in spec.pieces],
            spec.lo, spec.cuts)


def source_args(problem: AssignmentProblem, spec: ShardSpec) -> tuple:
    """The arguments of :class:`.built_shard.BuiltShard` for ``spec`` bar the inputs: the problem
    without blocks (offers, rules, the whole's ``max_cap``), the pieces' block indices, ``lo``,
    the cuts, each piece's customers ``(first, end)`` and each piece's slots (its block's; from
    the problem's layout where the driver holds no blocks; ``None`` while that layout waits for
    the shards' reports)."""
    head = shard_problem(problem, [], spec.hi - spec.lo)
    layout = problem.layout
    widths: list[int] | None
    if layout is not None:
        bounds = [(layout.bounds[b][0] + f, layout.bounds[b][0] + e) for b, f, e in spec.pieces]
        # a pending layout's widths are the shards' to report (:mod:`.built_shard`)
        widths = [layout.widths[b] for b, _, _ in spec.pieces] if layout.complete else None
    else:
        bounds = [(int(problem.blocks[b].customers[f]),
                   int(problem.blocks[b].customers[e - 1]) + 1) for b, f, e in spec.pieces]
        widths = [int(problem.blocks[b].offer.shape[1]) for b, _, _ in spec.pieces]
    return head, [b for b, _, _ in spec.pieces], spec.lo, spec.cuts, bounds, widths


def piece_pairs(problem: AssignmentProblem, spec: ShardSpec) -> int:
    """The candidate pairs of ``spec``'s pieces of the problem's blocks (or its layout's)."""
    if problem.layout is not None:
        return sum(problem.layout.piece_pairs(b, f, e) for b, f, e in spec.pieces)
    return sum(int(np.count_nonzero(problem.blocks[b].offer[f:e] >= 0))
               for b, f, e in spec.pieces)


def joined(problem: AssignmentProblem, specs: Sequence[ShardSpec],
           per_shard: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """Per-piece masks of every shard (``per_shard``, in shard order) as one mask per block of
    ``problem`` (the pieces of a block joined in row order)."""
    pieces: list[list[np.ndarray]] = [[] for _ in problem.blocks]
    for spec, masks in zip(specs, per_shard):
        for (b, _, _), mask in zip(spec.pieces, masks):
            pieces[b].append(mask)
    return [p[0] if len(p) == 1 else
            (np.concatenate(p) if p else np.zeros(block.offer.shape, dtype=bool))
            for p, block in zip(pieces, problem.blocks)]


Packed = tuple[np.ndarray, tuple[int, ...]]  # a mask's packed bits and its shape (:func:`packed`)


def packed(masks: Iterable[np.ndarray]) -> list[Packed]:
    """Each boolean mask as one bit a slot (``np.packbits`` of the mask flat, in row order: the
    bytes a shard sends for it) with its shape, to make it again (:func:`unpacked`)."""
    return [(np.packbits(mask, axis=None), mask.shape) for mask in masks]


def unpacked(bits: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The boolean mask of ``shape`` whose packed bits are ``bits`` (:func:`packed`), new."""
    return np.unpackbits(bits, count=math.prod(shape)).reshape(shape).view(bool)
