"""Compiled kernels of the repair and refill steps (numba): the chosen pairs, the refill pool and
the refill rounds.

Why compiled: at a million customers the pool holds millions of candidates, and gathering it with
numpy (a ``customers x depth`` slot table, ``nonzero``, a gather per column, a category-key table
built by ``unique``) cost more than the rounds themselves. Here each block is scanned once and its
pool comes out flat, already in the order the rounds need. See :mod:`.repair` for the method.
"""
from __future__ import annotations

# kernels compiled in from other modules, as of 2fa8521e9e69
import math

import numba as nb
import numpy as np

from optimizer.solve.lagrangian._kernels import _JIT, _fits, reduced_value


@nb.njit(**_JIT)
def _chosen_entries(chosen, offer, cost, value):  # pragma: no cover - compiled
    n, slots = chosen.shape
    m = 0
    for i in range(n):
        for s in range(slots):
            m += chosen[i, s]
    row = np.empty(m, dtype=np.int32)
    slot = np.empty(m, dtype=np.int32)
    e_offer = np.empty(m, dtype=np.int32)
    e_cost = np.empty(m)
    e_value = np.empty(m)
    j = 0
    for i in range(n):
        for s in range(slots):
            if chosen[i, s]:
                row[j], slot[j], e_offer[j] = i, s, offer[i, s]
                e_cost[j], e_value[j] = cost[i, s], value[i, s]
                j += 1
    return row, slot, e_offer, e_cost, e_value


def chosen_entries(chosen: np.ndarray, offer: np.ndarray, cost: np.ndarray, value: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row, slot, offer, cost and value of every chosen slot of a block, row-major."""
    return _chosen_entries(chosen, offer, cost, value)


@nb.njit(**_JIT)
def _best_single(group, value, weight, limit):  # pragma: no cover - compiled
    best = np.full(limit.shape[0], -1, dtype=np.int64)
    for i in range(group.shape[0]):
        g = group[i]
        if weight[i] <= limit[g] and (
                best[g] < 0 or value[i] > value[best[g]]):
            best[g] = i
    return best


def best_single(group: np.ndarray, value: np.ndarray, weight: np.ndarray,
                limit: np.ndarray) -> np.ndarray:
    """Per group, the index of its most valuable candidate whose weight fits ``limit`` alone
    (the capacity's :func:`~optimizer.solve.lagrangian.repair.fit_limit`; the first of equals),
    -1 when none fits."""
    return _best_single(group, value, weight, limit)


@nb.njit(inline="always")  # a call passing arrays per candidate is costly
def _key_of(keys, first, n_keys, cat):  # pragma: no cover - compiled
    """Index of ``cat`` among ``keys[first:n_keys]`` (this customer's categories), or -1."""
    for k in range(first, n_keys):
        if keys[k] == cat:
            return k
    return -1


@nb.njit(**_JIT)
def _pool_entries(offer, value, cost, chosen, cap, budget_price, count_price, glob, bonus,
                  open_offer, fits, categories, per_category, depth):  # pragma: no cover
    n, slots = offer.shape
    width = categories.shape[1] if per_category >= 0 else 0
    max_cap = 0
    open_rows = 0  # customers with a free slot: only they enter the pool
    for i in range(n):
        max_cap = max(max_cap, cap[i])
        count = 0
        for s in range(slots):
            count += chosen[i, s]
        open_rows += count < cap[i]
    # the caller keeps views of these arrays until it has gathered every block's: sized for
    # the customers who can enter, not for every customer of the block
    room = open_rows * min(depth, slots)
    # int32: row, slot, owner and offer are far below 2**31, and the pool holds up to depth
    # entries of every customer with a free slot (tens of millions at ten million customers)
    e_row = np.empty(room, dtype=np.int32)
    e_slot = np.empty(room, dtype=np.int32)
    e_owner = np.empty(room, dtype=np.int32)
    e_offer = np.empty(room, dtype=np.int32)
    e_cost = np.empty(room)
    e_prio = np.empty(room)
    e_key = np.full((room, width), -1, dtype=np.int64)
    owner_left = np.empty(open_rows, dtype=np.int64)
    key_room = open_rows * (min(depth, slots) + min(max_cap, slots)) * width
    key_cat = np.empty(key_room, dtype=np.int64)
    key_count = np.empty(key_room, dtype=np.int64)
    held = np.empty(slots * width + 1, dtype=np.int64)
    top = np.empty(depth, dtype=np.int64)
    best_prio = np.empty(depth)
    m_total = 0
    n_owner = 0
    n_keys = 0
    for i in range(n):
        count = 0
        n_held = 0
        for s in range(slots):
            if chosen[i, s]:
                count += 1
                for w in range(width):
                    if categories[offer[i, s], w] >= 0:
                        held[n_held] = categories[offer[i, s], w]
                        n_held += 1
        if count >= cap[i]:
            continue
        m = 0
        for s in range(slots):
            o = offer[i, s]
            if (o < 0 or chosen[i, s] or not value[i, s] > 0 or not open_offer[o]
                    or cost[i, s] > fits[o] + 1e-12):
                continue
            p = reduced_value(value[i, s], cost[i, s], o, budget_price, count_price, glob,
                              bonus[o])
            if not math.isfinite(p):
                continue
            if width and not _fits(o, categories, per_category, held, n_held):
                continue
            if m == depth and not p > best_prio[depth - 1]:
                continue  # slots come in offer order: an equal priority later loses the tie
            t = min(m, depth - 1)
            while t > 0 and p > best_prio[t - 1]:
                best_prio[t] = best_prio[t - 1]
                top[t] = top[t - 1]
                t -= 1
            best_prio[t] = p
            top[t] = s
            m = min(m + 1, depth)
        if m == 0:
            continue
        owner_left[n_owner] = cap[i] - count
        first_key = n_keys
        # the categories she holds, each counted once per chosen offer in it
        for h in range(n_held):
            k = _key_of(key_cat, first_key, n_keys, held[h])
            if k < 0:
                k = n_keys
                key_cat[k], key_count[k] = held[h], 0
                n_keys += 1
            key_count[k] += 1
        for t in range(m):
            s = top[t]
            j = m_total + t
            o = offer[i, s]
            e_row[j], e_slot[j], e_owner[j], e_offer[j] = i, s, n_owner, o
            e_cost[j], e_prio[j] = cost[i, s], best_prio[t]
            for w in range(width):
                cat = categories[o, w]
                if cat < 0:
                    continue
                k = _key_of(key_cat, first_key, n_keys, cat)
                if k < 0:
                    k = n_keys
                    key_cat[k], key_count[k] = cat, 0
                    n_keys += 1
                e_key[j, w] = k
        m_total += m
        n_owner += 1
    # views, not copies: the caller concatenates every block's entries at once, and a copy here
    # would touch as much fresh memory again (slow on VMs)
    return (e_row[:m_total], e_slot[:m_total], e_owner[:m_total], e_offer[:m_total],
            e_cost[:m_total], e_prio[:m_total], e_key[:m_total], owner_left[:n_owner],
            key_count[:n_keys])


def pool_entries(offer: np.ndarray, value: np.ndarray, cost: np.ndarray, chosen: np.ndarray,
                 cap: np.ndarray, budget_price: np.ndarray, count_price: np.ndarray,
                 global_price: float, bonus: np.ndarray, open_offer: np.ndarray,
                 fits: np.ndarray, categories: np.ndarray, per_category: int | None, depth: int
                 ) -> tuple[np.ndarray, ...]:
    """A block's refill pool, flat: each customer with a free slot, her best ``depth`` candidates.

    Candidates are ranked by their priority, the reduced value ``value - (budget_price +
    global_price) * cost - count_price + bonus`` (computed here: no per-block array of it).
    A candidate qualifies when it is not chosen, has a positive value and a finite priority, its
    offer is open, its cost fits ``fits[offer]``, and (with ``per_category``) every one of its
    categories is below the cap given her chosen offers. Entries come customer by customer, each
    customer's best priority first (ties: lower slot). Returns ``(row, slot, owner, offer, cost,
    priority, cat_key, owner_left, key_count)``: ``owner`` numbers the block's pool customers
    0.., ``owner_left`` is each one's free slots; ``cat_key[j, w]`` indexes ``key_count`` (how
    many chosen offers of that customer fall in entry ``j``'s ``w``-th category), -1 where the
    offer has no such category; without ``per_category`` it has no columns.
    """
    return _pool_entries(offer, value, cost, chosen, cap.astype(np.int64, copy=False),
                         budget_price, count_price, float(global_price), bonus, open_offer, fits,
                         categories.astype(np.int64, copy=False),
                         -1 if per_category is None else int(per_category), depth)


@nb.njit(inline="always")
def _left_fits(o, c, budget_left, count_left, global_left):  # pragma: no cover - compiled
    """Whether a pair of offer ``o`` and cost ``c`` fits what is left: the refill's one test
    (its rounds, the shards' proposals and the driver's grants read it)."""
    return count_left[o] >= 1 and c <= budget_left[o] + 1e-12 and c <= global_left + 1e-12


@nb.njit(inline="always")
def _live(j, offer, cost, cat_key, cat_count, budget_left, count_left, global_left,
          per_category):  # pragma: no cover - compiled
    """Whether pool entry ``j`` may be proposed: it fits what is left and its owner's
    category caps."""
    if not _left_fits(offer[j], cost[j], budget_left, count_left, global_left):
        return False
    if per_category >= 0:
        for w in range(cat_key.shape[1]):
            key = cat_key[j, w]
            if key >= 0 and cat_count[key] >= per_category:
                return False
    return True


@nb.njit(**_JIT)
def _refill_rounds(start, offer, cost, priority, cat_key, cat_count, slots_left, budget_left,
                   count_left, global_left, per_category, rounds, taken):  # pragma: no cover
    n_owner = slots_left.shape[0]
    at = start[:-1].copy()  # each customer's next entry; entries passed over never come back
    proposals = np.empty(n_owner, dtype=np.int64)
    proposer = np.empty(n_owner, dtype=np.int64)  # each proposal's owner
    for _ in range(rounds):
        m = 0
        for c in range(n_owner):
            if slots_left[c] <= 0:
                continue
            j = at[c]
            while j < start[c + 1]:
                if _live(j, offer, cost, cat_key, cat_count, budget_left, count_left,
                         global_left, per_category):
                    break
                j += 1  # dead for good: capacities only shrink, category counts only grow
            at[c] = j
            if j < start[c + 1]:
                proposals[m] = j
                proposer[m] = c
                m += 1
        if m == 0:
            break
        accepted = 0
        # every customer's best live entry, best priority first (ties: customer order)
        for q in np.argsort(-priority[proposals[:m]], kind="mergesort"):
            j = proposals[q]
            c = proposer[q]
            o = offer[j]
            at[c] = j + 1
            if _left_fits(o, cost[j], budget_left, count_left, global_left):
                taken[j] = True
                slots_left[c] -= 1
                for w in range(cat_key.shape[1]):
                    if cat_key[j, w] >= 0:
                        cat_count[cat_key[j, w]] += 1
                budget_left[o] -= cost[j]
                count_left[o] -= 1
                global_left -= cost[j]
                accepted += 1
        if accepted == 0 or global_left <= 0:
            break
    return global_left


def refill_rounds(start: np.ndarray, offer: np.ndarray, cost: np.ndarray, priority: np.ndarray,
                  cat_key: np.ndarray, cat_count: np.ndarray, slots_left: np.ndarray,
                  budget_left: np.ndarray, count_left: np.ndarray, global_left: float,
                  per_category: int | None, rounds: int) -> np.ndarray:
    """Rounds of proposals over a refill pool; returns which pool entries were taken.

    The pool is sorted by customer (``start``: each one's first entry, then the end), each
    customer's entries best first. Each round every customer with a free slot proposes her
    best entry that still fits (her category caps through ``cat_key``/``cat_count``, the
    offer's ``count_left`` and ``budget_left``, the ``global_left`` budget); proposals are
    granted best priority first while they still fit. ``slots_left``, ``cat_count``,
    ``budget_left`` and ``count_left`` are updated in place.
    """
    taken = np.zeros(offer.shape[0], dtype=bool)
    # the pool's columns as they are (int32 or int64: a copy in int64 would double them)
    _refill_rounds(start.astype(np.int64, copy=False), offer, cost, priority, cat_key,
                   cat_count, slots_left, budget_left, count_left, float(global_left),
                   -1 if per_category is None else int(per_category), rounds, taken)
    return taken




@nb.njit(**_JIT)
def _proposals(start, offer, cost, cat_key, cat_count, taken, slots_left, budget_left,
               count_left, global_left, per_category):  # pragma: no cover - compiled
    out = np.empty(slots_left.shape[0], dtype=np.int64)
    m = 0
    for c in range(slots_left.shape[0]):
        if slots_left[c] <= 0:
            continue
        for j in range(start[c], start[c + 1]):
            if not taken[j] and _live(j, offer, cost, cat_key, cat_count, budget_left,
                                      count_left, global_left, per_category):
                out[m] = j
                m += 1
                break
    return out[:m]


def proposals(start: np.ndarray, offer: np.ndarray, cost: np.ndarray, cat_key: np.ndarray,
              cat_count: np.ndarray, taken: np.ndarray, slots_left: np.ndarray,
              budget_left: np.ndarray, count_left: np.ndarray, global_left: float,
              per_category: int | None) -> np.ndarray:
    """A round's proposals of a pool (``start``: each owner's first entry, then the end): per
    owner with a free slot, her first entry not ``taken`` that is live at what is left (the
    entries :func:`refill_rounds` passed over before the round are exactly the taken ones and
    dead ones, which stay dead: capacities only shrink, category counts only grow)."""
    return _proposals(start.astype(np.int64, copy=False), offer, cost, cat_key, cat_count,
                      taken, slots_left, budget_left, count_left, float(global_left),
                      -1 if per_category is None else int(per_category))


@nb.njit(**_JIT)
def _taken_entries(start, customer, slot, granted, slot_bits, taken, used):  # pragma: no cover
    mask = (1 << slot_bits) - 1
    for g in range(granted.shape[0]):
        c = granted[g] >> slot_bits
        o = np.searchsorted(customer, c)
        if o == customer.shape[0] or customer[o] != c:
            continue  # no entry of this pool (an earlier plan's grants on an empty pool)
        s = granted[g] & mask
        for j in range(start[o], start[o + 1]):
            if slot[j] == s:
                if not taken[j]:
                    taken[j] = True
                    used[o] += 1
                break


def taken_entries(start: np.ndarray, customer: np.ndarray, slot: np.ndarray,
                  granted: np.ndarray, slot_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The entries of a pool (``start``: each owner's first entry, then the end; ``customer``:
    each owner's, ascending; ``slot``: each entry's) at the positions ``granted`` (``customer
    << slot_bits | slot``; those of no entry are passed over), and how many each owner has.
    What ``np.isin`` of the entries' positions would find, without a position per entry or
    the sort of them all."""
    taken = np.zeros(slot.shape[0], dtype=bool)
    used = np.zeros(customer.shape[0], dtype=np.int64)
    _taken_entries(start.astype(np.int64, copy=False), customer.astype(np.int64, copy=False),
                   slot, granted.astype(np.int64, copy=False), slot_bits, taken, used)
    return taken, used


@nb.njit(**_JIT)
def _fitting(offer, cost, budget_left, count_left, global_left):  # pragma: no cover
    out = np.empty(offer.shape[0], dtype=np.bool_)
    for j in range(offer.shape[0]):
        out[j] = _left_fits(offer[j], cost[j], budget_left, count_left, global_left)
    return out


def fitting(offer: np.ndarray, cost: np.ndarray, budget_left: np.ndarray,
            count_left: np.ndarray, global_left: float) -> np.ndarray:
    """Which pairs fit what is left (the refill's test, pair by pair)."""
    return _fitting(offer.astype(np.int64, copy=False), cost, budget_left, count_left,
                    float(global_left))


@nb.njit(**_JIT)
def _grant(offer, cost, budget_left, count_left, global_left, granted):  # pragma: no cover
    for j in range(offer.shape[0]):
        o = offer[j]
        if _left_fits(o, cost[j], budget_left, count_left, global_left):
            granted[j] = True
            budget_left[o] -= cost[j]
            count_left[o] -= 1
            global_left -= cost[j]
    return global_left


def grant(offer: np.ndarray, cost: np.ndarray, budget_left: np.ndarray, count_left: np.ndarray,
          global_left: float) -> tuple[np.ndarray, float]:
    """Proposals granted in their order while they fit what is left, as :func:`refill_rounds`
    grants them (the same subtractions in the same order: the same bits); ``budget_left`` and
    ``count_left`` are updated in place. Returns which were granted and the global budget left."""
    granted = np.zeros(offer.shape[0], dtype=bool)
    left = _grant(offer.astype(np.int64, copy=False), cost, budget_left, count_left,
                  float(global_left), granted)
    return granted, float(left)
