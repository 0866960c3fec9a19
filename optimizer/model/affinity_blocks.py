"""Candidate blocks scored by the built-in affinity model: each customer's best few allowed
offers (and her pinned pairs), with what she left out for the bound over all candidates
(:mod:`optimizer.solve.lagrangian.truncation`)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from optimizer.core.config import Scenario
from optimizer.core.parallel import chunks, in_order, thread_count
from optimizer.io.validate import Inputs
from optimizer.model.eligibility import EligibilityRules
from optimizer.model.problem import CandidateBlock, OfferData, block_from_pairs
from optimizer.scoring.affinity import AffinityModel

# categories whose largest dropped value each customer keeps for the bound over all candidates
DROPPED_CATEGORIES = 8



@dataclass
class Dropped:
    """What each customer of a block left out of her kept candidates (see
    :func:`optimizer.solve.lagrangian.bounds.virtual_totals`)."""

    top_value: np.ndarray
    top_category: np.ndarray
    residual: np.ndarray


def affinity_blocks(model: AffinityModel, inputs: Inputs, scenario: Scenario,
                    rules: EligibilityRules, caps: np.ndarray, offers: OfferData,
                    per_category: int | None, bounds: list[tuple[int, int]] | None = None,
                    pinned: np.ndarray | None = None
                    ) -> tuple[list[CandidateBlock], list[Dropped]]:
    """Candidate blocks scored by the built-in affinity model, best few per customer kept, and
    per block what its customers dropped (for the bound over all candidates).

    Chunks are scored on ``solver.threads`` threads by the compiled kernel
    (:meth:`AffinityModel.select`), at most that many at a time; each chunk's block depends on
    its customers only, so the blocks are the same for any thread count. ``pinned``: sorted pair
    keys ``c * n_offers + o`` (``rules.pin``) kept besides the best few when the rules allow them
    and their value is positive (the dropped values still count them: the bound over all
    candidates stays valid)."""
    keep = scenario.affinity.candidates_per_customer
    primary = offers.categories[:, 0]
    top = (min(DROPPED_CATEGORIES, offers.n_categories)
           if per_category is not None and scenario.affinity.bound_all_candidates else 0)
    n_offers = inputs.n_offers
    model.kernel_arrays(np.zeros(0, dtype=np.int64))  # shared arrays built before the threads

    def chunk(part: tuple[int, int]) -> tuple[CandidateBlock, Dropped, dict[str, int]]:
        start, stop = part
        customers = np.arange(start, stop, dtype=np.int64)
        offer = np.broadcast_to(np.arange(n_offers, dtype=np.int64), (stop - start, n_offers))
        # the chunk's own audit (rules.allowed adds to it), added to the run's in chunk order
        own = replace(rules, audit={name: 0 for name in rules.audit})
        allowed = own.allowed(customers, offer)
        kept = model.select(customers, allowed, keep, primary, top)
        row, off, p, value = with_pins(model, kept, customers, allowed, pinned, n_offers,
                                        primary)
        del allowed
        block = block_from_pairs(customers, row, off, p, value, offers.discount,
                                 caps[start:stop])
        return block, Dropped(kept.top_value, kept.top_category.astype(np.int32),
                              kept.residual), own.audit
    if bounds is None:
        bounds = chunks(inputs.n_customers, scenario.solver.chunk_size)
    blocks, dropped = [], []
    for block, drop, audit in in_order(chunk, bounds, thread_count(scenario.solver.threads)):
        blocks.append(block)
        dropped.append(drop)
        for name, count in audit.items():
            rules.audit[name] += count
    return blocks, dropped


def with_pins(model: AffinityModel, kept: Any, customers: np.ndarray, allowed: np.ndarray,
               pinned: np.ndarray | None, n_offers: int, primary: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The chunk's kept pairs (row, offer, p_redeem, value) with its allowed pinned pairs that
    the best few left out added, scored by the same kernel, in (row, offer) order."""
    pairs = (kept.row, kept.offer, kept.p_redeem, kept.value)
    if pinned is None or not pinned.size or not customers.size:
        return pairs
    n = max(n_offers, 1)
    lo = np.searchsorted(pinned, int(customers[0]) * n)
    hi = np.searchsorted(pinned, (int(customers[-1]) + 1) * n)
    keys = pinned[lo:hi]
    row, off = keys // n - int(customers[0]), keys % n
    have = np.zeros(allowed.shape, dtype=bool)
    have[kept.row, kept.offer] = True
    extra = allowed[row, off] & ~have[row, off]
    if not extra.any():
        return pairs
    rows = np.unique(row[extra])
    mask = np.zeros((rows.size, n_offers), dtype=bool)
    mask[np.searchsorted(rows, row[extra]), off[extra]] = True
    more = model.select(customers[rows], mask, None, primary, 0)
    merged = [np.concatenate([a, b]) for a, b in zip(
        pairs, (rows[more.row], more.offer, more.p_redeem, more.value))]
    order = np.argsort(merged[0] * n + merged[1], kind="stable")  # one key a pair: (row, offer)
    return merged[0][order], merged[1][order], merged[2][order], merged[3][order]


__all__ = ["DROPPED_CATEGORIES", "Dropped", "affinity_blocks", "with_pins"]
