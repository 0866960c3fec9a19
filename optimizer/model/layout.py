"""What the driver keeps of the candidate blocks when the Dask workers hold the pairs.

On the ``scores`` path with ``solver.backend = "dask"`` and ``solver.repair = "shards"``
(:func:`optimizer.io.memory.workers_hold_pairs` says when), every candidate pair lives on the
workers (each shard builds its own blocks from the table, repairs, refills and keeps its plan
there) and the driver needs none of them: it streams the table once
through the same build, chunk by chunk, checking every row as the run always does, counting the
rules' audit and each block's pairs, and lets each block go (:func:`held_blocks`). What it keeps
is the blocks' :class:`BlockLayout`: which customers each block holds, its slots and each
customer's pair count, from which the shards are cut and checked exactly as from the blocks
themselves. A problem small enough for the polish to run keeps its blocks instead (the polish
re-solves a core of the pairs on the driver), so the plan is the one the local run makes.

A table of more rows than the polish's reach is not read by the driver at all
(:func:`optimizer.io.memory.shards_report_layout`): its layout starts :func:`pending` (the
blocks' customers and caps, which need no row) and the shards, checking and auditing their own
rows as they build them, report the rest (:mod:`optimizer.solve.lagrangian.built_shard`); where
they report no more pairs than that reach, the driver then builds the blocks after all
(:func:`~optimizer.solve.lagrangian.built_shard.driver_blocks`) and drops the layout.

A local run on the same path (:func:`~optimizer.io.memory.pairs_read_again` is ``"driver"``)
keeps its blocks but lets their ``p_redeem`` go past the polish's reach (:func:`p_redeem_let_go`):
its plan's chosen pairs read theirs again from the table, as the workers' do
(:func:`optimizer.model.chosen.read_plan_again`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

import numpy as np

from optimizer.model.problem import CandidateBlock


@dataclass(frozen=True)
class BlockLayout:
    """The candidate blocks' shapes without their pairs.

    ``bounds``: each block's customers ``[first, end)`` (every customer of a chunk is a row of
    its block); ``widths``: each block's slots; ``row_pairs``: each block's pairs per row
    (``int32``); ``max_cap``: the largest per-customer cap of any row (the problem's
    :attr:`~optimizer.model.problem.AssignmentProblem.max_cap`). A :func:`pending` layout has
    no widths nor pairs yet (:attr:`complete` is false) until the shards report them."""

    bounds: list[tuple[int, int]]
    widths: list[int]
    row_pairs: list[np.ndarray]
    max_cap: int

    @property
    def complete(self) -> bool:
        """Whether the blocks' widths and pairs are known (a :func:`pending` layout's are not)."""
        return len(self.widths) == len(self.bounds)

    @property
    def rows(self) -> list[int]:
        """Each block's customers."""
        return [end - first for first, end in self.bounds]

    @property
    def n_pairs(self) -> int:
        """Every block's candidate pairs."""
        return int(sum(int(r.sum(dtype=np.int64)) for r in self.row_pairs))

    def piece_pairs(self, block: int, first: int, end: int) -> int:
        """The pairs of rows ``[first, end)`` of ``block``."""
        return int(self.row_pairs[block][first:end].sum(dtype=np.int64))


def pending(bounds: list[tuple[int, int]], caps: np.ndarray) -> BlockLayout:
    """The layout of blocks over ``bounds`` (every customer of a chunk is a row of its block,
    whose cap is the customer's, ``caps``) before the shards report their widths and pairs."""
    return BlockLayout(list(bounds), [], [], int(caps.max()) if caps.size else 0)


def held_blocks(blocks: Iterable[CandidateBlock], hold_up_to: int
                ) -> tuple[list[CandidateBlock], BlockLayout | None]:
    """The blocks of ``blocks`` (consumed in order) while they hold at most ``hold_up_to``
    pairs in all; past that the driver lets every block go and keeps their
    :class:`BlockLayout` only: ``([], layout)``. Else ``(blocks, None)``."""
    kept: list[CandidateBlock] | None = []
    bounds: list[tuple[int, int]] = []
    widths: list[int] = []
    row_pairs: list[np.ndarray] = []
    total, max_cap = 0, 0
    for block in blocks:
        counts = (block.offer >= 0).sum(axis=1, dtype=np.int32)
        first = int(block.customers[0]) if block.n_customers else (bounds[-1][1] if bounds else 0)
        bounds.append((first, first + block.n_customers))
        widths.append(int(block.offer.shape[1]))
        row_pairs.append(counts)
        total += int(counts.sum(dtype=np.int64))
        if block.n_customers:
            max_cap = max(max_cap, int(block.cap.max()))
        if kept is not None:
            kept.append(block)
            if total > hold_up_to:
                kept = None  # the pairs now go: the workers hold them
    if kept is not None:
        return kept, None
    return [], BlockLayout(bounds, widths, row_pairs, max_cap)


def without_p_redeem(block: CandidateBlock) -> CandidateBlock:
    """``block`` whose ``p_redeem`` is a zero view of its shape (no memory: 8 bytes a slot
    less). The passes, plans, repair and refill never read it (a pair's cost already holds
    ``p_redeem`` x its discount); a plan's outputs do, once it is read again for the plan's
    chosen pairs (:func:`optimizer.model.chosen.reread_p_redeem`)."""
    return replace(block, p_redeem=np.broadcast_to(np.float64(0.0), block.offer.shape))


def p_redeem_let_go(blocks: Iterable[CandidateBlock], hold_up_to: int
                    ) -> tuple[list[CandidateBlock], bool]:
    """The blocks of ``blocks`` (consumed in order) and whether they let their ``p_redeem`` go
    (:func:`without_p_redeem`): once they hold more than ``hold_up_to`` pairs in all (the
    polish's reach: the polish copies ``p_redeem`` into the core it re-solves, and runs on no
    larger problem), every block does, those kept so far too."""
    kept: list[CandidateBlock] = []
    total, gone = 0, False
    for block in blocks:
        if not gone:
            total += block.n_pairs
            if total > hold_up_to:
                gone = True
                kept = [without_p_redeem(b) for b in kept]
        kept.append(without_p_redeem(block) if gone else block)
    return kept, gone


__all__ = ["BlockLayout", "held_blocks", "p_redeem_let_go", "pending", "without_p_redeem"]
