"""A shard that builds its own blocks on a Dask worker (:class:`BuiltShard`), what it reports of
them, and the layout the driver makes of the reports where it reads none of the ``scores``
table's rows (:func:`optimizer.io.memory.shards_report_layout`).

Each shard builds its pieces of the chunks' blocks from its own rows (checking them and counting
the rules' audit as the driver's build does: :func:`optimizer.model.build.source_blocks`), each
piece as wide as its own widest customer, and reports each piece's width and pairs per row and
its audit (:class:`BuildReport`). A block's slots are its widest customer's pairs, so its width
is the largest of its pieces' (a block spanning shards has two pieces, or more):
:func:`merged_layout` joins the reports, in shard order, into the blocks'
:class:`~optimizer.model.layout.BlockLayout`, exactly the one the driver's own pass over the
table kept, and each shard then widens its pieces to their blocks' widths
(:func:`solving_blocks`), as a shard sent the widths at its start does.

Where the reports show no more pairs than the polish's reach (the rules kept few of the rows),
the driver builds the blocks itself after all (:func:`driver_blocks`), as the local run holds
them, so the polish runs as there.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import polars as pl

from optimizer.core.allocator import release_freed_memory
from optimizer.model.build import ScoresSource, WorkerInputs, source_blocks
from optimizer.model.chosen import (
    PlanPairs,
    built_cost,
    chosen_block,
    require_same_cost,
    reread_by_stretch,
)
from optimizer.model.layout import BlockLayout, without_p_redeem
from optimizer.model.problem import AssignmentProblem, CandidateBlock
from optimizer.solve.lagrangian.shard import Shard
from optimizer.solve.lagrangian.shards import ShardSpec, shard_problem, widened


@dataclass(frozen=True)
class BuildReport:
    """What a shard built: each piece's slots as built (its widest customer's pairs), each
    piece's pairs per row (``int32``), the rules' audit of its rows and how many it read."""

    widths: list[int]
    row_pairs: list[np.ndarray]
    audit: dict[str, int]
    rows: int = 0

    @property
    def n_pairs(self) -> int:
        """The shard's candidate pairs."""
        return int(sum(int(r.sum(dtype=np.int64)) for r in self.row_pairs))


def built_pieces(source: ScoresSource, customers: pl.DataFrame, caps: np.ndarray,
                 bounds: list[tuple[int, int]]) -> tuple[list[CandidateBlock], BuildReport]:
    """A shard's pieces ``bounds`` built from its rows, each as wide as its widest customer,
    without ``p_redeem`` (the passes never read it: a zero view, 8 bytes a pair less, let go
    at once, not once every shard of the worker has reported), and their :class:`BuildReport`."""
    blocks, audit, rows = source_blocks(source, customers, caps, bounds)
    blocks = [without_p_redeem(b) for b in blocks]
    return blocks, BuildReport([int(b.offer.shape[1]) for b in blocks],
                               [(b.offer >= 0).sum(axis=1, dtype=np.int32) for b in blocks],
                               audit, rows)


def solving_blocks(blocks: list[CandidateBlock], widths: Sequence[int]) -> list[CandidateBlock]:
    """The pieces as a shard solves them: widened to their blocks' ``widths``, ``p_redeem``
    a zero view still."""
    return [b if b.offer.shape[1] == width else without_p_redeem(widened(b, width))
            for b, width in zip(blocks, widths)]


def merged_layout(layout: BlockLayout, specs: Sequence[ShardSpec],
                  reports: Sequence[BuildReport]) -> BlockLayout:
    """The :class:`BlockLayout` of ``layout``'s blocks (a pending one: bounds and caps) from
    the shards' ``reports`` (in shard order, of the pieces of ``specs``): each block's width the
    largest of its pieces', its pairs per row its pieces' joined in row order."""
    widths = [0] * len(layout.bounds)
    pieces: list[list[np.ndarray]] = [[] for _ in layout.bounds]
    for spec, report in zip(specs, reports):
        for (b, _, _), width, rows in zip(spec.pieces, report.widths, report.row_pairs):
            widths[b] = max(widths[b], width)
            pieces[b].append(rows)
    row_pairs = [p[0] if len(p) == 1 else np.concatenate(p) if p else np.zeros(0, np.int32)
                 for p in pieces]
    return BlockLayout(layout.bounds, widths, row_pairs, layout.max_cap)


def piece_widths(layout: BlockLayout, spec: ShardSpec) -> list[int]:
    """The widths of ``spec``'s pieces: their blocks' (a complete layout's)."""
    return [layout.widths[b] for b, _, _ in spec.pieces]


def added_audits(audit: dict[str, int], reports: Sequence[BuildReport]) -> None:
    """The shards' audits added into ``audit`` (the run's), in shard order."""
    for report in reports:
        for name, count in report.audit.items():
            audit[name] = audit.get(name, 0) + count


def driver_blocks(source: WorkerInputs, bounds: list[tuple[int, int]], stretch: int
                  ) -> list[CandidateBlock]:
    """The whole blocks of ``bounds`` (the driver's chunks) built on the driver from the
    ``scores`` table as the workers built them (:func:`~optimizer.model.build.source_blocks`,
    ``p_redeem`` kept), a stretch of whole chunks of at most ``stretch`` customers (or one
    chunk) read at a time, about a shard's rows. Their audit is not counted (the shards'
    reports already were: :func:`added_audits`)."""
    blocks: list[CandidateBlock] = []
    group: list[tuple[int, int]] = []
    for bound in [*bounds, None]:
        if group and (bound is None or bound[1] - group[0][0] > stretch):
            lo, hi = group[0][0], group[-1][1]
            built, _, _ = source_blocks(source.source, source.customers.slice(lo, hi - lo),
                                        source.caps[lo:hi], group)
            blocks += built
            group = []
            release_freed_memory()  # the stretch's rows, freed, handed back for the next
        if bound is not None:
            group.append(bound)
    return blocks


class BuiltShard(Shard):
    """A shard that builds its own candidate blocks where it lives (a Dask worker) from its
    customers' rows of the ``scores`` table at ``source.path``, checked and built by the driver's
    code (:func:`built_pieces`) in the driver's chunks (``bounds``), each piece
    widened to its block's slots (``widths``; ``None`` where the driver read no row: the shard
    answers :meth:`layout_report`, then :meth:`widen` readies it for the solve).

    ``head``: the problem without blocks (:func:`.shards.source_args`); ``customers``, ``caps``:
    the shard's stretch of the customers table (IDs and ``c``) and of the caps; ``keys``: the
    rules' pair keys of those customers (:meth:`~optimizer.model.build.WorkerInputs.shared`)."""

    def __init__(self, head: AssignmentProblem, block_ids: list[int], lo: int, cuts: np.ndarray,
                 bounds: list[tuple[int, int]], widths: list[int] | None, source: ScoresSource,
                 customers: pl.DataFrame, caps: np.ndarray,
                 keys: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
        if keys is not None:
            source = replace(source, rules=source.rules.with_pair_keys(keys))
        built, self._report = built_pieces(source, customers, caps, bounds)
        self._built: list[CandidateBlock] | None = built
        release_freed_memory()  # the build's rows, freed, are handed back for the next shard
        self._head = (head, block_ids, lo, cuts)
        self._rows = (source, customers)  # where the best plan's p_redeem is read again
        if widths is not None:
            self.widen(widths)

    def layout_report(self) -> BuildReport:
        """Each piece's width and pairs per row as built, and the audit of the shard's rows."""
        return self._report

    def widen(self, widths: list[int]) -> None:
        """The pieces widened to their blocks' ``widths`` (once: a call again does nothing)."""
        if self._built is None:
            return
        head, block_ids, lo, cuts = self._head
        blocks, self._built = solving_blocks(self._built, widths), None
        release_freed_memory()  # the narrower pieces, freed, are handed back for the solve
        super().__init__(shard_problem(head, blocks, head.n_customers), block_ids, lo, cuts)

    def ready(self) -> int:
        """The shard's number of candidate pairs (widened or not)."""
        return self._report.n_pairs

    def plan_best_pairs(self) -> PlanPairs:
        """The best plan's chosen pairs, their p_redeem read again from the scores table (one
        that gives another cost than the build's is refused, as the local run refuses it)."""
        source, customers = self._rows
        pairs = super().plan_best_pairs()
        parts = reread_by_stretch(pairs, source, customers)  # a stretch's rows held at a time
        again = replace(pairs, p_redeem=np.concatenate([np.zeros(0)]
                                                       + [p.p_redeem for p in parts]))
        block = chosen_block(again, self.problem.offers.discount)
        require_same_cost(built_cost(self.problem, self.plan_best()), block.cost[block.offer >= 0],
                          again, customers, source.offers)
        return again


__all__ = ["BuildReport", "BuiltShard", "added_audits", "built_pieces", "driver_blocks",
           "merged_layout", "piece_widths", "solving_blocks"]
