"""Compiled helpers of :class:`~optimizer.model.problem.AssignmentProblem`'s plan evaluation.

The solver judges a plan several times a pass (the constraints' use of the best responses, the
plan's shortfall and objective). Gathering the chosen entries of every block with boolean
indexing and concatenating them copied each chosen value twice and walked every mask in
Python-level numpy calls; these kernels walk the masks once, in the same order. They add in
exactly the order ``np.bincount`` over the concatenated chosen entries does (block by block, row
by row, slot by slot), so the sums are the same to the last bit.

Given the solve's thread map (``run``), the walks over the masks, which are most of the work
(a million customers' 50 slots each, for a few million chosen entries), run on its threads
block by block; only the additions, in the same order, stay on the calling thread.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numba as nb
import numpy as np

# a thread map (the solve's ``ThreadMap``, ``serial_map``): ``fn`` over ``items``, in order
Mapper = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]
_BATCH = 16  # blocks whose chosen entries are gathered at a time (their copies held at once)

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
def _chosen_offers(offer: np.ndarray, cost: np.ndarray, mask: np.ndarray
                   ) -> tuple[bool, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """The chosen entries' offer and cost, row-major; False (and nothing) on an empty slot
    chosen."""
    rows, slots = offer.shape
    m = 0
    for i in range(rows):
        for s in range(slots):
            if mask[i, s]:
                if offer[i, s] < 0:
                    return False, np.zeros(0, dtype=np.int64), np.zeros(0)
                m += 1
    e_offer = np.empty(m, dtype=np.int64)
    e_cost = np.empty(m)
    j = 0
    for i in range(rows):
        for s in range(slots):
            if mask[i, s]:
                e_offer[j] = offer[i, s]
                e_cost[j] = cost[i, s]
                j += 1
    return True, e_offer, e_cost


@nb.njit(**_JIT)
def _add_entries(e_offer: np.ndarray, e_cost: np.ndarray, spend: np.ndarray,
                 count: np.ndarray) -> None:  # pragma: no cover - compiled
    """Add gathered entries' cost and count to their offers, in their order."""
    for j in range(e_offer.shape[0]):
        o = e_offer[j]
        spend[o] += e_cost[j]
        count[o] += 1


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
               n_offers: int, run: Mapper | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Per offer, the chosen entries' summed cost and their count, added in the order of
    ``np.bincount`` over the concatenated chosen entries; None when a chosen slot is empty
    (offer -1), which the caller reports as ``np.bincount`` does, or when ``chosen`` is not one
    boolean mask shaped like each block. ``run``: a thread map that gathers each block's chosen
    entries (a few blocks at a time), added here in block order: the same sums."""
    if not _masks_fit(offers, chosen):
        return None
    spend = np.zeros(n_offers)
    count = np.zeros(n_offers, dtype=np.int64)
    if run is None:
        for offer, cost, mask in zip(offers, costs, chosen):
            if offer.size and not _add_usage(offer, cost, np.ascontiguousarray(mask), spend,
                                             count):
                return None
        return spend, count

    def gather(b: int) -> tuple[bool, np.ndarray, np.ndarray]:
        return _chosen_offers(offers[b], costs[b], np.ascontiguousarray(chosen[b]))
    for lo in range(0, len(offers), _BATCH):
        for ok, e_offer, e_cost in run(gather, range(lo, min(lo + _BATCH, len(offers)))):
            if not ok:
                return None
            _add_entries(e_offer, e_cost, spend, count)
    return spend, count


@nb.njit(**_JIT)
def _count_chosen(offer: np.ndarray, mask: np.ndarray,
                  count: np.ndarray) -> bool:  # pragma: no cover - compiled
    """Add the chosen entries' count to their offers; False on an empty slot chosen."""
    rows, slots = offer.shape
    for i in range(rows):
        for s in range(slots):
            if mask[i, s]:
                o = offer[i, s]
                if o < 0:
                    return False
                count[o] += 1
    return True


def plan_counts(offers: list[np.ndarray], chosen: list[np.ndarray], n_offers: int,
                run: Mapper | None = None) -> np.ndarray | None:
    """Per offer, how many customers the plan gives it (:func:`plan_usage`'s count without the
    spend: no entries gathered, each block counted on its own and the counts added, whole
    numbers, so in any order); None where :func:`plan_usage` gives None."""
    if not _masks_fit(offers, chosen):
        return None

    def count(b: int) -> tuple[bool, np.ndarray]:
        out = np.zeros(n_offers, dtype=np.int64)
        ok = (not offers[b].size
              or _count_chosen(offers[b], np.ascontiguousarray(chosen[b]), out))
        return ok, out
    total = np.zeros(n_offers, dtype=np.int64)
    for ok, part in (run or _serial)(count, range(len(offers))):
        if not ok:
            return None
        total += part
    return total


def chosen_values(values: list[np.ndarray], chosen: list[np.ndarray],
                  run: Mapper | None = None) -> np.ndarray:
    """The chosen entries of every block, concatenated in block, row and slot order (what
    ``np.concatenate([v[m] for v, m in zip(values, chosen)])`` gives, without the copies);
    ``run``: a thread map that fills the blocks' stretches of the result."""
    if not _masks_fit(values, chosen) or len({v.dtype for v in values}) > 1:
        return np.concatenate([v[m] for v, m in zip(values, chosen)])
    sizes = [int(np.count_nonzero(m)) for m in chosen]
    starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).tolist()
    out = np.empty(starts[-1], dtype=values[0].dtype if values else np.float64)

    def fill(b: int) -> None:
        if values[b].size:
            _gather(values[b], np.ascontiguousarray(chosen[b]), out, starts[b])
    (run or _serial)(fill, range(len(values)))
    return out


def _serial(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    return [fn(item) for item in items]


def _masks_fit(arrays: list[np.ndarray], chosen: list[np.ndarray]) -> bool:
    """Whether each mask is boolean and shaped like its 2-D block array (what the kernels
    walk); anything else takes numpy's indexing."""
    return all(m.dtype == np.bool_ and m.shape == a.shape and a.ndim == 2
               for a, m in zip(arrays, chosen))
