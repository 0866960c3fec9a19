"""Numeric conventions shared by every stage: when a dual price counts as positive, sums
that restart with each group, dot products summed in a fixed order, and the transcendental
functions of the fits and scores (:func:`exp`, :func:`log`, :func:`log1p`, :func:`expm1`,
:func:`logaddexp`, :func:`power`) computed the same way on every CPU.

One definition each, so the manifest, the report, compare, sweep and explain agree.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np
import polars as pl

# a dual price above this is positive: below it, the price is the solver's rounding noise
BINDING_PRICE = 1e-9


def binding(shadow_price: np.ndarray) -> np.ndarray:
    """Which budgets are binding: the one definition that the manifest, the report, compare,
    sweep and explain share. A budget binds when its shadow price (the dual price of that
    budget: objective value of one more unit of it) is positive, i.e. more budget would raise
    the objective. How full the budget is does not decide it."""
    return np.asarray(shadow_price, dtype=float) > BINDING_PRICE


@nb.njit(cache=True, nogil=True)
def _group_running_sum(group, weight):  # pragma: no cover - compiled
    used = np.empty(weight.shape[0])
    total = 0.0
    for i in range(weight.shape[0]):
        if i == 0 or group[i] != group[i - 1]:
            total = 0.0
        total += weight[i]
        used[i] = total
    return used


def group_running_sum(group: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The running sum of ``weight`` restarted at every change of ``group`` (rows sorted by group).

    Each group's sum starts from zero: one running sum over all groups loses the small groups'
    precision after a group of huge weights (one offer costing 1e14 a redemption let the offers
    after it overspend their budgets by whole units), and a customer's running spend must never
    depend on another customer's rows. Used by the repair's budget cut and the repurchase model."""
    return _group_running_sum(group, weight)


def group_sums(frame: pl.DataFrame, by: list[str], sums: dict[str, pl.Expr]) -> pl.DataFrame:
    """Per group of the ``by`` columns (groups ordered by their keys, nulls last), each of the
    ``sums`` expressions summed over the group's rows (nulls count as nothing, as polars' sum).

    Polars' ``group_by`` adds floats in an order that follows its threads' timing
    (pola-rs/polars#25163: the same frame's sums differ in the last digit between two calls,
    with or without ``maintain_order``), and a plan or an output built on such a sum would not be
    the same bytes every run. Here the rows are put in a stable order by group and each group
    is added by numpy (``np.add.reduceat``) over that order: the same bits every time, given
    ``frame`` in the same row order (a join feeding it keeps an order: ``maintain_order``)."""
    picked = frame.select(*by, **{name: expr.fill_null(0) for name, expr in sums.items()})
    picked = picked.sort(by, maintain_order=True, nulls_last=True)
    if picked.height == 0:
        return picked
    run = picked.select(pl.struct(by).rle_id()).to_series().to_numpy()
    starts = np.flatnonzero(np.concatenate([[True], run[1:] != run[:-1]]))
    out = picked.select(by)[starts]
    return out.with_columns(**{name: pl.Series(name, np.add.reduceat(
        picked.get_column(name).to_numpy(), starts), dtype=picked.schema[name])
        for name in sums})


def fixed_dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a @ b`` of two vectors summed in numpy's own fixed order, never BLAS's: OpenBLAS splits
    a long dot product over its threads, so its rounding, a fit it steers and the plan would
    follow ``OPENBLAS_NUM_THREADS``, the number of cores and the CPU's kernel (docs/contract.md,
    "Same inputs, same bytes")."""
    return float(np.einsum("i,i->", a, b))


def fixed_matvec(matrix: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``matrix @ b`` in a fixed order (as :func:`fixed_dot`)."""
    return np.einsum("ij,j->i", matrix, b)


def fixed_tdot(matrix: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``matrix.T @ r`` in a fixed order (as :func:`fixed_dot`)."""
    return np.einsum("ij,i->j", matrix, r)


# numpy picks its exp, log, log1p, expm1, power, ... loops by CPU (AVX-512, AVX2, baseline:
# NPY_DISABLE_CPU_FEATURES), and they round differently in the last bit: a fit, the scores and
# so the plan followed the machine. These kernels call the C library's scalar functions, one
# element at a time (numba lowers ``math.exp`` to libm's ``exp``; no vector maths library is
# linked, so LLVM does not swap in SIMD variants), whatever numpy's dispatch: one
# implementation each, used everywhere on the plan's path (docs/guarantees.md).
_UFUNC = {"cache": True}


@nb.vectorize(["float64(float64)"], **_UFUNC)
def exp(x):  # pragma: no cover - compiled
    """``e ** x``, the C library's ``exp`` (not numpy's CPU-dependent loop)."""
    return math.exp(x)


@nb.vectorize(["float64(float64)"], **_UFUNC)
def log(x):  # pragma: no cover - compiled
    """Natural logarithm, the C library's ``log``: NaN below 0, ``-inf`` at 0, as numpy's."""
    if x < 0.0:
        return math.nan
    if x == 0.0:
        return -math.inf
    return math.log(x)


@nb.vectorize(["float64(float64)"], **_UFUNC)
def log1p(x):  # pragma: no cover - compiled
    """``log(1 + x)`` exactly near 0, the C library's ``log1p``."""
    if x < -1.0:
        return math.nan
    if x == -1.0:
        return -math.inf
    return math.log1p(x)


@nb.vectorize(["float64(float64)"], **_UFUNC)
def expm1(x):  # pragma: no cover - compiled
    """``exp(x) - 1`` exactly near 0, the C library's ``expm1``."""
    return math.expm1(x)


@nb.vectorize(["float64(float64, float64)"], **_UFUNC)
def logaddexp(x, y):  # pragma: no cover - compiled
    """``log(exp(x) + exp(y))`` without overflow: the larger plus ``log1p(exp(-|x - y|))``
    (numpy's formula, on the C library's functions)."""
    if x == y:  # also both infinite of one sign: the difference would be NaN
        return x + math.log(2.0)
    d = x - y
    if d > 0.0:
        return x + math.log1p(math.exp(-d))
    if d <= 0.0:
        return y + math.log1p(math.exp(d))
    return d  # NaN


@nb.vectorize(["float64(float64, float64)"], **_UFUNC)
def power(x, y):  # pragma: no cover - compiled
    """``x ** y``, the C library's ``pow`` (numpy's ``**`` on arrays is CPU-dependent)."""
    return x ** y
