"""Compiled helpers of :class:`~optimizer.model.problem.AssignmentProblem`'s plan evaluation.

The solver judges a plan several times a pass (the constraints' use of the best responses, the
plan's shortfall and objective). Gathering the chosen entries of every block with boolean
indexing and concatenating them copied each chosen value twice and walked every mask in
Python-level numpy calls; these kernels walk the masks once, in the same order. They add in
exactly the order ``np.bincount`` over the concatenated chosen entries does (block by block, row
by row, slot by slot), so the sums are the same to the last bit.
"""
from __future__ import annotations

import numba as nb
import numpy as np

_JIT = {"cache": True, "nogil": True}


@nb.njit(**_JIT)
def _add_usage(offer: np.ndarray, cost: np.ndarray, mask: np.ndarray, spend: np.ndarray,
               count: np.ndarray) -> bool:  # pragma: no cover - compiled
    """Add the chosen entries' cost and count to their offers; False on an empty slot chosen."""
    rows, slots = offer.shape
    for i in range(rows):
        for s in range(slots):
            if mask[i, s]:
                o = offer[i, s]
                if o < 0:
                    return False
                spend[o] += cost[i, s]
                count[o] += 1
    return True


@nb.njit(**_JIT)
def _gather(values: np.ndarray, mask: np.ndarray, out: np.ndarray, at: int
            ) -> int:  # pragma: no cover - compiled
    """Copy the chosen entries of ``values`` (row-major) into ``out`` from ``at``; the next
    free position."""
    rows, slots = values.shape
    for i in range(rows):
        for s in range(slots):
            if mask[i, s]:
                out[at] = values[i, s]
                at += 1
    return at


def plan_usage(offers: list[np.ndarray], costs: list[np.ndarray], chosen: list[np.ndarray],
               n_offers: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Per offer, the chosen entries' summed cost and their count, added in the order of
    ``np.bincount`` over the concatenated chosen entries; None when a chosen slot is empty
    (offer -1), which the caller reports as ``np.bincount`` does, or when ``chosen`` is not one
    boolean mask shaped like each block."""
    if not _masks_fit(offers, chosen):
        return None
    spend = np.zeros(n_offers)
    count = np.zeros(n_offers, dtype=np.int64)
    for offer, cost, mask in zip(offers, costs, chosen):
        if offer.size and not _add_usage(offer, cost, np.ascontiguousarray(mask), spend, count):
            return None
    return spend, count


def chosen_values(values: list[np.ndarray], chosen: list[np.ndarray]) -> np.ndarray:
    """The chosen entries of every block, concatenated in block, row and slot order (what
    ``np.concatenate([v[m] for v, m in zip(values, chosen)])`` gives, without the copies)."""
    if not _masks_fit(values, chosen) or len({v.dtype for v in values}) > 1:
        return np.concatenate([v[m] for v, m in zip(values, chosen)])
    total = sum(int(np.count_nonzero(m)) for m in chosen)
    out = np.empty(total, dtype=values[0].dtype if values else np.float64)
    at = 0
    for value, mask in zip(values, chosen):
        if value.size:
            at = _gather(value, np.ascontiguousarray(mask), out, at)
    return out


def _masks_fit(arrays: list[np.ndarray], chosen: list[np.ndarray]) -> bool:
    """Whether each mask is boolean and shaped like its 2-D block array (what the kernels
    walk); anything else takes numpy's indexing."""
    return all(m.dtype == np.bool_ and m.shape == a.shape and a.ndim == 2
               for a, m in zip(arrays, chosen))
