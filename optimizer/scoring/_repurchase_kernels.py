"""Compiled kernels of the repurchase model's sources (:mod:`optimizer.scoring.repurchase`).

``line_timelines`` turns the purchase lines, sorted by customer, into the sorted distinct keys
of three timelines in one pass (split into ranges of whole customers for threads): each customer's keys are sorted and deduplicated on their own
(keys are customer-major, so her keys sort before the next customer's), which gives the same
arrays as one global sort of all the keys, with far less memory traffic.
"""
from __future__ import annotations

# kernels compiled in from other modules, as of 08051e0a9bfe
import numba as nb
import numpy as np

from optimizer.core.parallel import in_order, run_ranges
from optimizer.scoring._feature_kernels import _segment_sum


@nb.njit(cache=True, nogil=True)
def _sort_distinct(keys, start, stop):  # pragma: no cover - compiled
    # sorts keys[start:stop] in place and moves its distinct values to the front; the new stop
    if stop - start > 1:
        keys[start:stop].sort()
    out = start
    for i in range(start, stop):
        if i == start or keys[i] != keys[out - 1]:
            keys[out] = keys[i]
            out += 1
    return out


@nb.njit(cache=True, nogil=True)
def _finish(keys, n):  # pragma: no cover - compiled
    # the first n keys, sorted and distinct; a global sort only when the customers were not
    # grouped (then the per-customer passes left them unsorted)
    for i in range(1, n):
        if keys[i] <= keys[i - 1]:
            out = np.unique(keys[:n])
            return out
    return keys[:n].copy()


def line_timelines(c: np.ndarray, k: np.ndarray, p: np.ndarray, week: np.ndarray,
                   sensitive: np.ndarray, before: int, n_k: int, n_offers: int,
                   indptr: np.ndarray, offers_of: np.ndarray, shift: int, week_offset: int,
                   threads: int = 1) -> tuple[np.ndarray, ...]:
    """Sorted distinct keys ``entity * shift + week + week_offset`` of the lines of weeks before
    ``before``: (c) over her non-sensitive lines, (c * n_k + k), and (c * n_offers + o) for
    every offer o listing the line's product (``indptr``/``offers_of``: CSR over products).

    ``threads`` ranges of whole customers are walked at once, each into its own stretch of the
    scratch arrays, and the stretches are then closed up in range order: each customer's keys
    are sorted on their own either way, so the keys are the same for any number of threads."""
    ranges = run_ranges(c, threads) or [(0, 0)]
    bounds = np.array([lo for lo, _ in ranges] + [ranges[-1][1]], np.int64)
    counts = [_product_count(p, week, before, indptr, lo, hi) for lo, hi in ranges]
    product_at = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    shop = np.empty(c.shape[0], np.int64)
    category = np.empty(c.shape[0], np.int64)
    product = np.empty(int(product_at[-1]), np.int64)

    def walk(r: int) -> np.ndarray:
        return _walk(c, k, p, week, sensitive, before, n_k, n_offers, indptr, offers_of, shift,
                     week_offset, bounds[r], bounds[r + 1], shop, category, product,
                     product_at[r])
    ends = np.array(list(in_order(walk, range(len(bounds) - 1), threads)), np.int64)
    starts = np.stack([bounds[:-1], bounds[:-1], product_at[:-1]], axis=1).astype(np.int64)
    return tuple(_finish(keys, _close_up(keys, starts[:, j], ends[:, j]))
                 for j, keys in enumerate((shop, category, product)))


@nb.njit(cache=True, nogil=True)
def _product_count(p, week, before, indptr, lo, hi):  # pragma: no cover - compiled
    n = 0
    for r in range(lo, hi):
        if week[r] < before:
            n += indptr[p[r] + 1] - indptr[p[r]]
    return n


@nb.njit(cache=True, nogil=True)
def _walk(c, k, p, week, sensitive, before, n_k, n_offers, indptr, offers_of, shift, week_offset,
          lo, hi, shop, category, product, product_at):  # pragma: no cover - compiled
    # the lines lo .. hi - 1 (whole customers): shop and category keys from lo, product keys from
    # product_at; where each stretch of distinct keys ends
    n_shop = lo
    n_cat = lo
    n_prod = product_at
    i = lo
    while i < hi:
        customer = np.int64(c[i])
        a, b, d = n_shop, n_cat, n_prod
        j = i
        while j < hi and c[j] == c[i]:
            if week[j] < before:
                wk = np.int64(week[j]) + week_offset
                if not sensitive[j]:
                    shop[n_shop] = customer * shift + wk
                    n_shop += 1
                category[n_cat] = (customer * n_k + np.int64(k[j])) * shift + wk
                n_cat += 1
                for q in range(indptr[p[j]], indptr[p[j] + 1]):
                    product[n_prod] = (customer * n_offers + np.int64(offers_of[q])) * shift + wk
                    n_prod += 1
            j += 1
        n_shop = _sort_distinct(shop, a, n_shop)
        n_cat = _sort_distinct(category, b, n_cat)
        n_prod = _sort_distinct(product, d, n_prod)
        i = j
    return np.array([n_shop, n_cat, n_prod], np.int64)


@nb.njit(cache=True, nogil=True)
def _close_up(keys, starts, ends):  # pragma: no cover - compiled
    # moves the stretches keys[starts[r]:ends[r]] back to back from 0; how many keys in all
    n = 0
    for r in range(starts.shape[0]):
        for i in range(starts[r], ends[r]):
            keys[n] = keys[i]
            n += 1
    return n


@nb.njit(cache=True, nogil=True)
def spend_keys(c, week, rows, shift, week_offset):  # pragma: no cover - compiled
    """Keys ``c * shift + week + week_offset`` of the lines ``rows`` (one pass, no temporaries)."""
    out = np.empty(rows.shape[0], np.int64)
    for i in range(rows.shape[0]):
        r = rows[i]
        out[i] = np.int64(c[r]) * shift + (np.int64(week[r]) + week_offset)
    return out


@nb.njit(cache=True, nogil=True)
def weekly_spend(c, week, sales, discounted, sensitive, before, shift,
                 week_offset):  # pragma: no cover - compiled
    """Keys ``c * shift + week + week_offset`` of her weeks with non-sensitive lines before
    ``before``, and her running sales and discounted sales over them (restarting with each
    customer); ``ok`` False when the keys do not come in order (then nothing is summed). Each
    week's sum is the one ``np.add.reduceat`` gives over its lines, and the running sums add in
    the same order as :func:`optimizer.core.numerics.group_running_sum`, bit for bit."""
    n_keys = 0
    previous = np.int64(-1)
    longest = run = 0
    for i in range(c.shape[0]):
        if week[i] >= before or sensitive[i]:
            continue
        key = np.int64(c[i]) * shift + (np.int64(week[i]) + week_offset)
        if n_keys and key < previous:
            return False, np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
        if n_keys == 0 or key != previous:
            n_keys += 1
            run = 0
        run += 1
        longest = max(longest, run)
        previous = key
    keys = np.empty(n_keys, np.int64)
    total = np.empty(n_keys)
    discount = np.empty(n_keys)
    values = np.empty(max(longest, 1))
    discounts = np.empty(max(longest, 1))
    at = -1
    run = 0
    customer = np.int64(-1)
    same = False  # the week at ``at`` follows a week of the same customer
    for i in range(c.shape[0]):
        if week[i] >= before or sensitive[i]:
            continue
        key = np.int64(c[i]) * shift + (np.int64(week[i]) + week_offset)
        if at < 0 or key != keys[at]:
            if at >= 0:
                _close_week(total, discount, values, discounts, at, run, same)
            same = at >= 0 and np.int64(c[i]) == customer
            customer = np.int64(c[i])
            at += 1
            keys[at] = key
            run = 0
        values[run] = sales[i]
        discounts[run] = sales[i] if discounted[i] else 0.0
        run += 1
    if at >= 0:
        _close_week(total, discount, values, discounts, at, run, same)
    return True, keys, total, discount


@nb.njit(cache=True, nogil=True)
def _close_week(total, discount, values, discounts, at, run,
                same):  # pragma: no cover - compiled
    # the week's two sums as np.add.reduceat makes them (the first line plus the pairwise sum of
    # the rest; a week has few lines, so the pairwise sum is mostly its short loop, inline),
    # added to her running sums (which restart from zero with each customer)
    if run <= 8:
        rest = 0.0
        rest_discount = 0.0
        for j in range(1, run):
            rest += values[j]
            rest_discount += discounts[j]
        week_total = values[0] + rest
        week_discount = discounts[0] + rest_discount
    else:
        week_total = _segment_sum(values, 0, run)
        week_discount = _segment_sum(discounts, 0, run)
    total[at] = (total[at - 1] if same else 0.0) + week_total
    discount[at] = (discount[at - 1] if same else 0.0) + week_discount


@nb.njit(cache=True, nogil=True)
def _lower(keys, target, lo):  # pragma: no cover - compiled
    # numpy's searchsorted(keys, target, "left") given keys[lo - 1] < target (or lo == 0):
    # gallops from lo, so queries in order cost about the distance between their answers
    n = keys.shape[0]
    step = 1
    hi = lo
    while hi < n and keys[hi] < target:
        lo = hi + 1
        hi = lo + step
        step *= 2
    hi = min(hi, n)
    while lo < hi:
        mid = (lo + hi) // 2
        if keys[mid] < target:
            lo = mid + 1
        else:
            hi = mid
    return lo


@nb.njit(cache=True, nogil=True)
def events_before(keys, entity, week, shift, week_offset):  # pragma: no cover - compiled
    """Per query: how many of the sorted ``keys`` (``entity * shift + week + week_offset``) are
    the query entity's in weeks before the query week, and the first and last such week (-1 when
    none); queries sorted by entity are answered in one sweep."""
    n = entity.shape[0]
    count = np.empty(n, np.int64)
    first = np.empty(n, np.int64)
    last = np.empty(n, np.int64)
    lo = 0
    previous = np.int64(-1)
    for i in range(n):
        low_key = np.int64(entity[i]) * shift
        lo = _lower(keys, low_key, lo if low_key >= previous else 0)
        hi = _lower(keys, low_key + np.int64(week[i]) + week_offset, lo)
        previous = low_key
        count[i] = hi - lo
        first[i] = keys[lo] % shift - week_offset if hi > lo else -1
        last[i] = keys[hi - 1] % shift - week_offset if hi > lo else -1
    return count, first, last
