"""Compiled scoring of customers against every offer, keeping each customer's best few.

:meth:`~optimizer.scoring.affinity.AffinityModel.score` builds dense ``(customers, offers)`` arrays: the
three affinity products, four history arrays, ``p_redeem`` and the value, and then the candidate
selection adds as many again (about 2 GB of fresh memory per chunk of 50,000 x 500 offers, and
page faults cost dearly). :func:`score_select` computes the same numbers one customer at a time in
a compiled kernel: her sparse rows times the offer incidences into seven offer-long accumulators
(in cache), ``p_redeem`` and the value of her allowed offers, the ``keep`` best of them, and, for
the bound over all candidates, the largest value among the ones she did not keep (see
:func:`virtual_totals`). Same sums in the same order as ``score`` and
``tests.oracles.block_from_candidates`` (the numpy oracle), so the kept pairs are byte-identical; the kernel
releases the GIL, so chunks run on a thread pool.

What each customer dropped (per primary category, the largest value among her live candidates not
kept) feeds the bound over all candidates, :mod:`optimizer.solve.lagrangian.bounds`.

Where one residual stands for every dropped candidate (``top`` 0), only her ``keep + 1`` largest
values matter, so the propensity's ``exp`` is skipped for a candidate whose value is surely below
the ``keep + 1``-th largest met so far (:func:`_value_ceiling`, a bound without ``exp``): the
candidates left out could be neither kept nor the largest dropped one, and the others are scored
exactly as before, so the kept pairs and the residual are the same bits.
"""
from __future__ import annotations

# kernels compiled in from other modules, as of e94f78e8434d
import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from optimizer.scoring.propensity import pair_eta

_JIT = {"cache": True, "nogil": True}


@dataclass
class Selection:
    """A chunk's kept candidates, flat in (row, offer) order, and what its rows dropped.

    row: index into the chunk's rows; offer, p_redeem, value: per kept pair.
    top_value, top_category: ``(n, top)`` per row the largest value among the live candidates
    not kept in each of the ``top`` categories where that is largest (0 / -1 when fewer);
    residual: ``(n,)`` the largest value among the other dropped candidates (0 when none).
    """

    row: np.ndarray
    offer: np.ndarray
    p_redeem: np.ndarray
    value: np.ndarray
    top_value: np.ndarray
    top_category: np.ndarray
    residual: np.ndarray


@nb.njit(nogil=True)
def _accumulate(i, a_ptr, a_idx, a_val, b_ptr, b_idx, b_val, acc):  # pragma: no cover
    # row i of A @ B into acc, in scipy's order (A's entries in storage order, B's row in turn)
    for q in range(a_ptr[i], a_ptr[i + 1]):
        k = a_idx[q]
        v = a_val[q]
        for r in range(b_ptr[k], b_ptr[k + 1]):
            acc[b_idx[r]] += v * b_val[r]


@nb.njit(nogil=True)
def _clear(i, a_ptr, a_idx, b_ptr, b_idx, acc):  # pragma: no cover
    for q in range(a_ptr[i], a_ptr[i + 1]):
        k = a_idx[q]
        for r in range(b_ptr[k], b_ptr[k + 1]):
            acc[b_idx[r]] = 0.0


@nb.njit(nogil=True)
def _scatter(i, ptr, idx, val, acc):  # pragma: no cover
    for q in range(ptr[i], ptr[i + 1]):
        acc[idx[q]] += val[q]


@nb.njit(nogil=True)
def _unscatter(i, ptr, idx, acc):  # pragma: no cover
    for q in range(ptr[i], ptr[i + 1]):
        acc[idx[q]] = 0.0


@nb.njit(nogil=True)
def _nth(a, n, k):  # pragma: no cover - compiled
    """Reorder ``a[:n]`` in place so that ``a[k]`` is its k-th smallest (0-based), with nothing
    larger before it and nothing smaller after it (quickselect, median-of-three pivots)."""
    lo, hi = 0, n - 1
    while hi > lo:
        mid = (lo + hi) // 2
        if a[mid] < a[lo]:
            a[mid], a[lo] = a[lo], a[mid]
        if a[hi] < a[lo]:
            a[hi], a[lo] = a[lo], a[hi]
        if a[hi] < a[mid]:
            a[hi], a[mid] = a[mid], a[hi]
        pivot = a[mid]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return


_P_CLIP = 1e-9  # the formula's p_redeem is clipped to [_P_CLIP, 1 - _P_CLIP] before its logit


@nb.njit(inline="always")
def formula_logit(p):  # pragma: no cover - compiled
    """``log(q / (1 - q))`` of a formula ``p_redeem`` clipped to ``[1e-9, 1 - 1e-9]``: the one
    feature of the formula's Platt calibration (:func:`platt`)."""
    q = min(max(p, _P_CLIP), 1.0 - _P_CLIP)
    return math.log(q / (1.0 - q))


@nb.njit(inline="always")
def platt(p, a, b):  # pragma: no cover - compiled
    """The heuristic formula's ``p_redeem`` calibrated by Platt scaling (Platt 1999, a logistic
    on the score): ``1 / (1 + exp(-(a + b * logit(p))))``; the one definition of both compiled
    scorers and :meth:`~optimizer.scoring.affinity.AffinityModel.p_redeem`."""
    return 1.0 / (1.0 + math.exp(-(a + b * formula_logit(p))))


@nb.njit(cache=True, nogil=True)
def formula_logits(p):  # pragma: no cover - compiled
    """:func:`formula_logit` of each ``p`` (1-D): the calibration's feature, for its fit."""
    out = np.empty(p.shape[0])
    for i in range(p.shape[0]):
        out[i] = formula_logit(p[i])
    return out


@nb.njit(cache=True, nogil=True)
def platt_array(p, a, b):  # pragma: no cover - compiled
    """:func:`platt` of each ``p`` (1-D), as the compiled scorers compute it."""
    out = np.empty(p.shape[0])
    for i in range(p.shape[0]):
        out[i] = platt(p[i], a, b)
    return out


@nb.njit(inline="always")
def propensity_p(eta, rate):  # pragma: no cover - compiled
    """The propensity's ``p_redeem`` of a linear predictor ``eta``: ``rate`` times the logistic
    (the value is this times the offer's worth and her CLV factor, in that order)."""
    return rate * (1.0 / (1.0 + math.exp(-eta)))


@nb.njit(inline="always")
def _value_ceiling(eta, rate, worth, clv):  # pragma: no cover - compiled
    """An upper bound of ``propensity_p(eta, rate) * worth * clv`` as :func:`_score_row` computes
    it, without ``exp``: for ``x = -eta >= 0``, ``exp(x)`` is at least its Taylor polynomial of
    degree 6 (every term is positive), so the logistic is at most ``1 / (1 + poly(x))``; for
    ``x < 0`` at most 1. The relative allowance ``1e-9`` covers both computations' rounding
    (a few units in the 16th digit); NaN never bounds anything."""
    x = -eta
    s = 1.0
    if x >= 0.0:
        s = 1.0 / (2.0 + x * (1.0 + x / 2.0 * (1.0 + x / 3.0 * (
            1.0 + x / 4.0 * (1.0 + x / 5.0 * (1.0 + x / 6.0))))))
    return rate * s * worth * clv * (1.0 + 1e-9)


@nb.njit(inline="always")
def _heap_offer(heap, filled, v):  # pragma: no cover - compiled
    """Offer ``v`` to the min-heap ``heap`` of the largest values so far (``filled`` of its
    ``heap.shape[0]`` places used); returns how many are used after."""
    k = heap.shape[0]
    if filled < k:  # sift up
        at = filled
        while at > 0:
            up = (at - 1) // 2
            if heap[up] <= v:
                break
            heap[at] = heap[up]
            at = up
        heap[at] = v
        return filled + 1
    if not v > heap[0]:
        return filled
    at = 0  # sift down from the root
    while True:
        child = 2 * at + 1
        if child >= k:
            break
        if child + 1 < k and heap[child + 1] < heap[child]:
            child += 1
        if heap[child] >= v:
            break
        heap[at] = heap[child]
        at = child
    heap[at] = v
    return filled


@nb.njit(nogil=True)
def _score_scratch(m):  # pragma: no cover - compiled
    """The scratch arrays :func:`_score_row` reuses from row to row over ``m`` offers (one set
    per call): ``acc`` (its zeros), ``vals``, ``ps_buf`` and ``offs``."""
    return np.zeros((7, m)), np.empty(m), np.empty(m), np.empty(m, dtype=np.int64)


@nb.njit(nogil=True)
def _score_row(r, i, cs, oc, bs, ob, ps, op, redeemed, sent, cat_redeemed, cat_sent, offer_cats,
               has_history, heuristic, coef, rate, customer_part, offer_part, ds, depth, weights,
               shape, sensitivity, worth, clv, allowed, acc, vals, ps_buf, offs, floor
               ):  # pragma: no cover - compiled
    """Row ``r`` (customer ``i``): ``p_redeem`` and value of her allowed offers of positive
    value into ``vals``, ``ps_buf``, ``offs`` (in offer order); returns how many. ``acc``:
    ``(7, n_offers)`` zeros, left as found.

    ``floor``: empty, or a buffer of ``k`` values: then only candidates that can be among her
    ``k`` largest values are written (all of them are, with their exact values): once ``k``
    values are in, a propensity candidate whose value is surely below the ``k``-th largest so
    far (:func:`_value_ceiling`, no ``exp``) is left out (it can be neither kept nor the largest
    dropped one when ``k`` is one more than the kept)."""
    m = worth.shape[0]
    cat, brand, prod, red, snt = acc[0], acc[1], acc[2], acc[3], acc[4]
    c_red, c_snt = acc[5], acc[6]
    _accumulate(i, cs[0], cs[1], cs[2], oc[0], oc[1], oc[2], cat)
    _accumulate(i, bs[0], bs[1], bs[2], ob[0], ob[1], ob[2], brand)
    _accumulate(i, ps[0], ps[1], ps[2], op[0], op[1], op[2], prod)
    if has_history:
        _scatter(i, redeemed[0], redeemed[1], redeemed[2], red)
        _scatter(i, sent[0], sent[1], sent[2], snt)
        _accumulate(i, cat_redeemed[0], cat_redeemed[1], cat_redeemed[2], offer_cats[0],
                    offer_cats[1], offer_cats[2], c_red)
        _accumulate(i, cat_sent[0], cat_sent[1], cat_sent[2], offer_cats[0],
                    offer_cats[1], offer_cats[2], c_snt)
    live = 0
    k = floor.shape[0]
    filled = 0  # values in the min-heap ``floor`` (its k largest so far)
    for j in range(m):
        if not allowed[r, j]:
            continue
        if heuristic:
            # AffinityModel.p_redeem's formula, in numpy's order of operations
            a = cat[j] * weights[0] + brand[j] * weights[1] + prod[j] * weights[2]
            p = (shape[0] + (shape[1] - shape[0]) * a / (a + shape[2])) * sensitivity[r]
            p = min(max(p, 0.0), 1.0)
            if shape.shape[0] > 3:  # calibrated (AffinityModel.platt_): shape[3:] = a, b
                p = platt(p, shape[3], shape[4])
        else:
            # the propensity's one linear predictor (Propensity.predict_block's too)
            eta = pair_eta(customer_part[r] + offer_part[j], coef, cat[j], brand[j], prod[j],
                           depth[j] * ds[r], has_history, red[j], snt[j], c_red[j], c_snt[j])
            if filled == k > 0 and _value_ceiling(eta, rate, worth[j], clv[r]) < floor[0]:
                continue
            p = propensity_p(eta, rate)
        v = p * worth[j] * clv[r]
        if v > 0:
            vals[live] = v
            ps_buf[live] = p
            offs[live] = j
            live += 1
            if k > 0:
                filled = _heap_offer(floor, filled, v)
    _clear(i, cs[0], cs[1], oc[0], oc[1], cat)
    _clear(i, bs[0], bs[1], ob[0], ob[1], brand)
    _clear(i, ps[0], ps[1], op[0], op[1], prod)
    if has_history:
        _unscatter(i, redeemed[0], redeemed[1], red)
        _unscatter(i, sent[0], sent[1], snt)
        _clear(i, cat_redeemed[0], cat_redeemed[1], offer_cats[0], offer_cats[1], c_red)
        _clear(i, cat_sent[0], cat_sent[1], offer_cats[0], offer_cats[1], c_snt)
    return live


@nb.njit(**_JIT)
def _score_select(rows, cs, oc, bs, ob, ps, op, redeemed, sent, cat_redeemed, cat_sent, offer_cats,
                  has_history, heuristic, coef, rate, customer_part, offer_part, ds, depth,
                  weights, shape, sensitivity, worth, clv, allowed, keep, primary, n_categories,
                  top, counts, out_offer, out_p, out_value, top_value, top_category,
                  residual):  # pragma: no cover - compiled
    """See :func:`score_select`. Sparse matrices come as (indptr, indices, data) tuples."""
    n = rows.shape[0]
    m = worth.shape[0]
    acc, vals, ps_buf, offs = _score_scratch(m)
    neg = np.empty(m)
    best = np.zeros(n_categories + 1)  # per primary category (last: none), largest dropped
    touched = np.empty(n_categories + 1, dtype=np.int64)
    # with one residual for every dropped candidate (top == 0), only her keep + 1 largest values
    # matter: the kept ones and the largest dropped one (the kernel's floor)
    floor = np.empty(keep + 1 if keep >= 0 and top == 0 else 0)
    at = 0
    for r in range(n):
        live = _score_row(r, rows[r], cs, oc, bs, ob, ps, op, redeemed, sent, cat_redeemed,
                          cat_sent, offer_cats, has_history, heuristic, coef, rate,
                          customer_part, offer_part, ds, depth, weights, shape, sensitivity,
                          worth, clv, allowed, acc, vals, ps_buf, offs, floor)
        for t in range(top):
            top_value[r, t] = 0.0
            top_category[r, t] = -1
        residual[r] = 0.0
        if keep < 0 or live <= keep:
            for q in range(live):
                out_offer[at] = offs[q]
                out_p[at] = ps_buf[q]
                out_value[at] = vals[q]
                at += 1
            counts[r] = live
            continue
        # the keep-th largest value; above it all are kept, at it the lowest offers first
        # (block_from_candidates' rule)
        for q in range(live):
            neg[q] = -vals[q]
        _nth(neg, live, keep)
        kth = -neg[0]
        for q in range(1, keep):
            kth = min(kth, -neg[q])
        above = 0
        for q in range(live):
            if vals[q] > kth:
                above += 1
        room = keep - above
        n_touched = 0
        for q in range(live):
            v = vals[q]
            if v > kth or (v == kth and room > 0):
                if not v > kth:
                    room -= 1
                out_offer[at] = offs[q]
                out_p[at] = ps_buf[q]
                out_value[at] = v
                at += 1
                continue
            # dropped: remember the largest per primary category (top == 0: all in one)
            k = primary[offs[q]] if top > 0 else -1
            if k < 0:
                k = n_categories
            if best[k] == 0.0:
                touched[n_touched] = k
                n_touched += 1
            if v > best[k]:
                best[k] = v
        counts[r] = keep
        for t in range(top):
            pick = -1
            for u in range(n_touched):
                k = touched[u]
                if k < n_categories and best[k] > 0.0 and (pick < 0 or best[k] > best[pick]):
                    pick = k
            if pick < 0:
                break
            top_value[r, t] = best[pick]
            top_category[r, t] = pick
            best[pick] = 0.0
        rest = 0.0
        for u in range(n_touched):
            rest = max(rest, best[touched[u]])
            best[touched[u]] = 0.0
        residual[r] = rest


def csr_arrays(matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, indices, data) of a CSR matrix for the kernel, without copying what it can
    take as is (indices of either integer width; data as float64)."""
    return (matrix.indptr, matrix.indices, np.asarray(matrix.data, dtype=np.float64))


def score_select(arrays: dict, rows: np.ndarray, allowed: np.ndarray, keep: int | None,
                 primary: np.ndarray, top: int) -> Selection:
    """Score customers ``rows`` against every offer and keep each one's ``keep`` best allowed
    candidates of positive value (``None``: all of them).

    ``arrays``: :meth:`~optimizer.scoring.affinity.AffinityModel.kernel_arrays` for these rows;
    ``allowed``: ``(len(rows), n_offers)`` mask of the rules; ``primary``: ``(n_offers,)`` the
    category each offer counts in for the relaxed bound (-1: none); ``top``: categories whose
    largest dropped value is kept per row (0: one residual for all).
    """
    n = rows.shape[0]
    m = arrays["worth"].shape[0]
    width = m if keep is None else min(keep, m)
    counts = np.zeros(n, dtype=np.int64)
    out_offer = np.empty(n * width, dtype=np.int64)
    out_p = np.empty(n * width)
    out_value = np.empty(n * width)
    top_value = np.zeros((n, top))
    top_category = np.full((n, top), -1, dtype=np.int64)
    residual = np.zeros(n)
    n_categories = int(primary.max(initial=-1)) + 1
    _score_select(np.asarray(rows, dtype=np.int64), *arrays["csr"], arrays["has_history"],
                  arrays["heuristic"], arrays["coef"], arrays["rate"], arrays["customer_part"],
                  arrays["offer_part"], arrays["ds"], arrays["depth"], arrays["weights"],
                  arrays["shape"], arrays["sensitivity"], arrays["worth"], arrays["clv"],
                  np.ascontiguousarray(allowed, dtype=np.bool_), -1 if keep is None else int(keep),
                  np.asarray(primary, dtype=np.int64), n_categories, int(top), counts, out_offer,
                  out_p, out_value, top_value, top_category, residual)
    total = int(counts.sum())
    return Selection(np.repeat(np.arange(n, dtype=np.int64), counts), out_offer[:total].copy(),
                     out_p[:total].copy(), out_value[:total].copy(), top_value, top_category,
                     residual)
