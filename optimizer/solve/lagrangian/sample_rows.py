"""The start's sample of customers (:func:`.start.sample_lp`), drawn where the customers are.

The sample is one seeded stream of doubles over every customer row of the problem in order, a
row picked when its double is below the sample's share. The driver draws it over its blocks; a
shard (:meth:`.shard.Shard.sample`) over its pieces of them, from the stream advanced past the
rows before its first: numpy's PCG64 makes each double of ``Generator.random`` from one 64-bit
output (its top 53 bits), so ``bit_generator.advance(lo)`` leaves the stream where the driver's
stands after ``lo`` rows, and the shards' picks, joined in shard order
(:func:`joined_sample`), are the driver's, bit for bit (tests/test_sample_shards.py).
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from optimizer.model.problem import CandidateBlock
from optimizer.solve.lagrangian.shards import ShardSpec

# a shard's answer: per piece with a picked row, (piece index, the picked rows' customers,
# offer, value, cost, cap); the LP reads no ``p_redeem`` (worker-built shards keep none)
Piece = tuple[int, tuple[np.ndarray, ...]]


def drawn_rows(sizes: Sequence[int], lo: int, share: float, seed: int) -> Iterator[np.ndarray]:
    """The picked rows of each of consecutive pieces of ``sizes`` rows, the first at row ``lo``
    of the whole problem: its doubles of the ``seed`` stream below ``share`` (a loop over
    pieces, never customers)."""
    bits = np.random.PCG64(seed)  # ``np.random.default_rng(seed)``'s generator
    bits.advance(lo)  # one 64-bit output per double, none buffered
    rng = np.random.Generator(bits)
    for n in sizes:
        yield np.flatnonzero(rng.random(n) < share)


def picked_blocks(blocks: Sequence[CandidateBlock], share: float | None, seed: int
                  ) -> list[CandidateBlock]:
    """The driver's sample of its ``blocks`` (all of them when ``share`` is ``None``): each
    block's picked rows, blocks with none left out."""
    if share is None:
        return list(blocks)
    picked = []
    for block, rows in zip(blocks, drawn_rows([b.n_customers for b in blocks], 0, share, seed)):
        if rows.size:
            picked.append(CandidateBlock(block.customers[rows], block.offer[rows],
                                         block.value[rows], block.cost[rows],
                                         block.p_redeem[rows], block.cap[rows]))
    return picked


def shard_sample(blocks: Sequence[CandidateBlock], lo: int, share: float | None, seed: int
                 ) -> list[Piece]:
    """A shard's part of the sample: its pieces ``blocks`` (the first at row ``lo``) with their
    picked rows (every row when ``share`` is ``None``), pieces with none left out."""
    arrays = [(b.customers, b.offer, b.value, b.cost, b.cap) for b in blocks]
    if share is None:
        return [(k, a) for k, a in enumerate(arrays) if a[0].shape[0]]
    rows = drawn_rows([b.n_customers for b in blocks], lo, share, seed)
    return [(k, tuple(x[r] for x in a)) for k, (a, r) in enumerate(zip(arrays, rows))
            if r.size]


def joined_sample(specs: Sequence[ShardSpec], found: Sequence[Sequence[Piece]]
                  ) -> list[CandidateBlock]:
    """The shards' parts of the sample (``found``, in shard order) as the driver's picked
    blocks: the pieces of one block cut at a shard's edge joined in row order. Their
    ``p_redeem`` is a zero view (the LP does not read it)."""
    parts: dict[int, list[tuple[np.ndarray, ...]]] = {}
    for spec, pieces in zip(specs, found):
        for k, arrays in pieces:
            parts.setdefault(spec.pieces[k][0], []).append(arrays)
    picked = []
    for b in sorted(parts):  # a loop over blocks
        customers, offer, value, cost, cap = (
            p[0] if len(p) == 1 else np.concatenate(p) for p in zip(*parts[b]))
        picked.append(CandidateBlock(customers, offer, value, cost,
                                     np.broadcast_to(np.float64(0.0), offer.shape), cap))
    return picked
