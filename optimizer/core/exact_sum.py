"""Exact sums of floats, in any order and split any way: integer limbs.

A float64 ``x`` is ``M * 2**q`` exactly (``M`` an integer under ``2**53``); cut at multiples of
32 bits, it is three integers under ``2**32`` at the limbs ``floor(q / 32)`` to ``+2``. A sum of
floats is then the limb-wise ``int64`` sum of theirs: no rounding, so the sum does not depend on
the order of the terms, nor on how they were split (shards, buckets) before being added. The
repair on shards (:mod:`optimizer.solve.lagrangian.repair_shards`) adds its budgets' running
weights this way so the plan is the same whatever the shards.

An :data:`Exact` is ``(first, limbs)``: row ``i`` is ``sum_k limbs[i, k] * 2**(32 (first + k))``.
Each limb holds a sum of at most ``2**31`` terms of magnitude under ``2**32`` (no overflow).
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

Exact = tuple[int, np.ndarray]

_LOW = np.uint64(0xFFFFFFFF)
_TWO53 = 9007199254740992.0  # 2**53


@nb.njit(cache=True, nogil=True)
def _limb_of(v):  # pragma: no cover - compiled
    """``|v| = big * 2**(32 limb + shift)`` (``big`` under ``2**53``, ``shift`` in 0..31)."""
    m, e = math.frexp(abs(v))
    q = e - 53
    limb = q // 32  # floor
    return np.uint64(m * _TWO53), limb, np.uint64(q - 32 * limb)


@nb.njit(cache=True, nogil=True)
def _tally(group, x, n_rows):  # pragma: no cover - compiled
    lowest, highest = 1 << 40, -(1 << 40)
    for i in range(x.shape[0]):
        if x[i] != 0.0:
            _, limb, _ = _limb_of(x[i])
            lowest, highest = min(lowest, limb), max(highest, limb)
    if lowest > highest:
        return 0, np.zeros((n_rows, 1), dtype=np.int64)
    out = np.zeros((n_rows, highest - lowest + 3), dtype=np.int64)
    for i in range(x.shape[0]):
        if x[i] == 0.0:
            continue
        big, limb, shift = _limb_of(x[i])
        moved = big << shift  # bits from 64 on are lost: the third chunk reads them from big
        sign = -1 if x[i] < 0 else 1
        row, k = group[i], limb - lowest
        out[row, k] += sign * np.int64(moved & _LOW)
        out[row, k + 1] += sign * np.int64((moved >> np.uint64(32)) & _LOW)
        out[row, k + 2] += sign * np.int64((big >> np.uint64(32)) >> (np.uint64(32) - shift))
    return lowest, out


def exact_tally(group: np.ndarray, x: np.ndarray, n_rows: int) -> Exact:
    """Per row ``g`` of ``n_rows``, the exact sum of ``x[group == g]`` (finite floats)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    group = np.ascontiguousarray(group, dtype=np.int64)
    if not np.isfinite(x).all():
        raise ValueError("exact sums take finite floats only")
    if group.shape != x.shape:
        raise ValueError(f"exact sums: {group.shape[0]:,} groups for {x.shape[0]:,} floats")
    if group.size and (group.min() < 0 or group.max() >= n_rows):  # the kernel checks no index
        raise ValueError(f"exact sums: groups {group.min()} to {group.max()} for {n_rows} rows")
    first, limbs = _tally(group, x, n_rows)
    return int(first), limbs


def exact_each(x: np.ndarray) -> Exact:
    """Each float of ``x`` as its own row."""
    x = np.asarray(x, dtype=np.float64)
    return exact_tally(np.arange(x.shape[0]), x, x.shape[0])


def aligned(a: Exact, first: int, width: int) -> np.ndarray:
    """``a``'s limbs at limbs ``first .. first + width`` (which must hold them)."""
    f, limbs = a
    out = np.zeros((limbs.shape[0], width), dtype=np.int64)
    out[:, f - first:f - first + limbs.shape[1]] = limbs
    return out


def common(*items: Exact) -> tuple[int, int]:
    """The ``(first, width)`` that holds every one of ``items``."""
    first = min(f for f, _ in items)
    end = max(f + limbs.shape[1] for f, limbs in items)
    return first, end - first


def exact_add(a: Exact, b: Exact) -> Exact:
    """``a + b`` row by row."""
    first, width = common(a, b)
    return first, aligned(a, first, width) + aligned(b, first, width)


def exact_sub(a: Exact, b: Exact) -> Exact:
    """``a - b`` row by row."""
    first, width = common(a, b)
    return first, aligned(a, first, width) - aligned(b, first, width)


def exact_total(parts: list[Exact]) -> Exact:
    """Row-wise sum of ``parts`` (in their order; the sum is exact, so any order is the same)."""
    total = parts[0]
    for part in parts[1:]:
        total = exact_add(total, part)
    return total


def normalized(limbs: np.ndarray) -> np.ndarray:
    """The same values with every limb but the last in ``[0, 2**32)`` (two limbs added on top
    for the carries; the last limb carries the sign): one form per value."""
    out = np.concatenate([limbs, np.zeros((limbs.shape[0], 2), dtype=np.int64)], axis=1)
    for k in range(out.shape[1] - 1):
        carry = out[:, k] >> 32
        out[:, k] -= carry << 32
        out[:, k + 1] += carry
    return out


def exact_sign(a: Exact) -> np.ndarray:
    """-1, 0 or 1 per row: the sign of its exact value."""
    limbs = normalized(a[1])
    top = limbs[:, -1]
    return np.where(top < 0, -1, np.where(limbs.any(axis=1), 1, 0)).astype(np.int8)


def exact_float(a: Exact) -> np.ndarray:
    """A float per row, read from the one normalized form of its magnitude (top limb first),
    its sign put back: a function of the exact value alone, so the same however its terms were
    added. (A negative value's own normalized form carries its sign in a top limb of -1 above
    the widest row, ``2**(32 (first + width + 1))``: read as a float, that overflowed to
    ``-inf`` beside values from about 1e279 on, and the row came back NaN.)"""
    negative = exact_sign(a) < 0
    first, limbs = a[0], normalized(np.where(negative[:, None], -a[1], a[1]))
    out = np.zeros(limbs.shape[0])
    for k in range(limbs.shape[1] - 1, -1, -1):
        out = out + np.ldexp(limbs[:, k].astype(np.float64), 32 * (first + k))
    return np.where(negative, -out, out)


# every finite float's limbs lie in limbs -36 (``2**-1074``'s) to 32 (the largest's, plus two):
# a sum of any finite floats fits one fixed row of limbs, filled in one pass
_FIXED_FIRST = -36
_FIXED_WIDTH = 70


@nb.njit(cache=True, nogil=True)
def _fixed_total(x, out):  # pragma: no cover - compiled
    """Add every float of ``x`` into ``out``'s fixed limbs; False on a float not finite."""
    for i in range(x.shape[0]):
        v = x[i]
        if v == 0.0:
            continue
        if not np.isfinite(v):
            return False
        big, limb, shift = _limb_of(v)
        moved = big << shift
        sign = -1 if v < 0 else 1
        k = limb - _FIXED_FIRST
        out[k] += sign * np.int64(moved & _LOW)
        out[k + 1] += sign * np.int64((moved >> np.uint64(32)) & _LOW)
        out[k + 2] += sign * np.int64((big >> np.uint64(32)) >> (np.uint64(32) - shift))
    return True


def exact_sum(x: np.ndarray) -> Exact | None:
    """The exact sum of ``x`` as one row (``None`` when a float is not finite)."""
    out = np.zeros(_FIXED_WIDTH, dtype=np.int64)
    if not _fixed_total(np.ascontiguousarray(x, dtype=np.float64), out):
        return None
    return _FIXED_FIRST, out[None, :]


def exact_rounded(a: Exact) -> float:
    """Row 0 of ``a`` correctly rounded to a float (its normalized limbs are exact floats, which
    ``math.fsum`` adds with one rounding): a function of the exact value alone."""
    row = a[1][:1]
    sign = -1.0 if exact_sign((a[0], row))[0] < 0 else 1.0  # the magnitude's form: no top -1
    limbs = normalized(-row if sign < 0 else row)[0]
    try:
        return sign * math.fsum(math.ldexp(float(v), 32 * (a[0] + k))
                                for k, v in enumerate(limbs) if v)
    except OverflowError:  # past the largest float, as a float sum overflows
        return sign * math.inf
