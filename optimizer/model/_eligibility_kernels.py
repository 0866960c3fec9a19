"""The rules over a chunk whose customers are offered every offer (the affinity path's chunks).

:meth:`optimizer.model.eligibility.EligibilityRules.allowed` walks every cell against the sorted
pair keys, which at 500 offers is 25 M cells per 50,000-customer chunk. When each row holds
every offer in order, the offer-level rules are the same row for every customer, and the pair
rules (exclusions, opt-ins, cooldowns) touch only the few cells their keys name: each row is
the offer-level row, changed at those cells. Same mask and the same audit counts as the
cell-by-cell walk.
"""
from __future__ import annotations

import numba as nb
import numpy as np


def every_offer_in_order(customers: np.ndarray, offer: np.ndarray, n_offers: int) -> bool:
    """Whether each row of ``offer`` is ``0 .. n_offers - 1`` and the customers increase (the
    layout :func:`dense_cells` takes)."""
    if offer.ndim != 2 or offer.shape[1] != n_offers or offer.shape[0] != customers.shape[0]:
        return False
    if offer.shape[0] == 0 or not np.array_equal(offer[0], np.arange(n_offers)):
        return False
    if offer.strides[0] != 0 and not (offer == offer[0]).all():
        return False
    return bool(np.all(customers[1:] > customers[:-1]))


@nb.njit(cache=True, nogil=True)
def _skip_below(keys, j, key):  # pragma: no cover - compiled
    while j < keys.shape[0] and keys[j] < key:
        j += 1
    return j


@nb.njit(cache=True, nogil=True)
def dense_cells(customers, n_offers, active, forbidden_for_all, needs_opt_in,
                excluded_category, excluded, opted_in, cooldown, out,
                counts):  # pragma: no cover - compiled
    """``out[i, o]``: whether offer ``o`` is allowed to customer ``customers[i]``; ``counts``
    as :func:`optimizer.model.eligibility._allowed_cells` adds them (each reason on its own,
    then removed, then considered). Keys are sorted and unique, customers increasing."""
    m = n_offers
    static_ok = np.empty(m, dtype=np.bool_)
    window_n = sensitive_n = category_n = 0
    for o in range(m):
        window = not active[o]
        sensitive = forbidden_for_all[o] or needs_opt_in[o]
        window_n += window
        sensitive_n += sensitive
        category_n += excluded_category[o]
        static_ok[o] = not (window or sensitive or excluded_category[o])
    n_exclude = n_sensitive = n_cooldown = n_blocked = 0
    j_excluded = j_opted = j_cooldown = 0
    for i in range(customers.shape[0]):
        base = customers[i] * m
        end = base + m
        for o in range(m):
            out[i, o] = static_ok[o]
        # opt-ins first: they lift the sensitive rule only; the pair rules below still apply
        opted = 0
        j_opted = _skip_below(opted_in, j_opted, base)
        while j_opted < opted_in.shape[0] and opted_in[j_opted] < end:
            o = opted_in[j_opted] - base
            if needs_opt_in[o] and not forbidden_for_all[o]:
                opted += 1
                if active[o] and not excluded_category[o]:
                    out[i, o] = True
            j_opted += 1
        n_sensitive += sensitive_n - opted
        j_excluded = _skip_below(excluded, j_excluded, base)
        while j_excluded < excluded.shape[0] and excluded[j_excluded] < end:
            out[i, excluded[j_excluded] - base] = False
            n_exclude += 1
            j_excluded += 1
        j_cooldown = _skip_below(cooldown, j_cooldown, base)
        while j_cooldown < cooldown.shape[0] and cooldown[j_cooldown] < end:
            out[i, cooldown[j_cooldown] - base] = False
            n_cooldown += 1
            j_cooldown += 1
        kept = 0
        for o in range(m):
            kept += out[i, o]
        n_blocked += m - kept
    rows = customers.shape[0]
    counts[0] += window_n * rows
    counts[1] += n_exclude
    counts[2] += n_sensitive
    counts[3] += n_cooldown
    counts[4] += category_n * rows
    counts[5] += n_blocked
    counts[6] += m * rows
