"""Channel capacities and the contact budget in the scale method (:mod:`optimizer.model.channels`).

Priced by ``Prices.channel`` (per channel, value lost per contact) and ``Prices.contact`` (per
unit of contact cost), a pair (i, j) sent on channel c is worth ``reduced[i, j] - ((1 + contact)
* cost_per_contact[c] + channel[c])``. The charge depends on the customer only, so her best
response sends every pair on her cheapest consented channel: the relaxed subproblem is the
channel-free one on values less that per-customer charge (:func:`priced`), solved by the same
kernels, and the dual function gains ``channel . capacity + contact * contact_budget``
(:func:`capacity_term`); the bound stays an upper bound by weak duality.

Pairs of one consent pattern (the set of channels a customer consented to) differ only by their
value, so sending a set of pairs within the capacities and the contact budget is a small
transportation LP between patterns and channels (:func:`_transport_lp`; a pattern's pairs enter
it in runs by value). The plan assigns the repaired pairs' channels by it (:func:`assign`), and
its capacity and budget duals over the responses' pairs are the channels' and the contact
budget's critical prices (:func:`critical`): per-channel raises alone stall where customers
consented to several channels tie between them.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numba as nb
import numpy as np

from optimizer.model.channels import ChannelData, ChannelPlan, slot_dtype
from optimizer.model.problem import AssignmentProblem, CandidateBlock, Prices

_SEGMENTS = 64  # runs of a consent pattern's pairs by value, each one column of the plan's LP
_LP_RUNS = 20_000  # columns of runs in the plan's LP at most (fewer runs with many patterns)
_DENSE_PATTERNS = 16  # channels up to which consent patterns are indexed by a dense lookup


def priced_block(channels: ChannelData, block: CandidateBlock, prices: Prices,
                 out: np.ndarray | None = None) -> CandidateBlock:
    """``block`` with each customer's values less her cheapest consented channel's charge (no
    charge for customers without consent: their cap is 0, see ``channel_caps``); ``out``: a
    ``float64`` array shaped like ``block.value`` to hold them (else a new one)."""
    least = channels.least_charges(block.customers, prices.channel, prices.contact)
    if out is None:
        return replace(block, value=block.value - least[:, None])
    np.subtract(block.value, least[:, None], out=out)
    return replace(block, value=out)


def priced(problem: AssignmentProblem, prices: Prices,
           out: list[np.ndarray] | None = None) -> AssignmentProblem:
    """The channel-free problem on values less each customer's channel charge at ``prices``
    (``problem`` itself without channels); ``out``: per block, an array to hold its values
    (:func:`priced_buffers`; a pass's values then reuse the last pass's memory)."""
    channels = problem.channels
    if channels is None:
        return problem
    held = out if out is not None else [None] * len(problem.blocks)
    return replace(problem, blocks=[priced_block(channels, b, prices, o)
                                    for b, o in zip(problem.blocks, held)], channels=None)


def priced_buffers(problem: AssignmentProblem) -> list[np.ndarray] | None:
    """Per block an array for :func:`priced`'s values (``None`` without channels)."""
    if problem.channels is None:
        return None
    return [np.empty(b.value.shape) for b in problem.blocks]


class PricedViews:
    """:func:`priced` views of one problem whose values share one set of arrays, made when
    first needed: a view's values are overwritten by the next view's (the solve's plans each
    read theirs only while they are made)."""

    def __init__(self, problem: AssignmentProblem) -> None:
        self.problem = problem
        self.held: list[np.ndarray] | None = None

    def at(self, prices: Prices) -> AssignmentProblem:
        """The problem priced at ``prices`` (the problem itself without channels)."""
        if self.problem.channels is not None and self.held is None:
            self.held = priced_buffers(self.problem)
        return priced(self.problem, prices, self.held)


def capacity_term(problem: AssignmentProblem, prices: Prices) -> float:
    """``channel price . capacity + contact price * contact_budget`` (finite caps only)."""
    channels = problem.channels
    if channels is None or prices.channel is None:
        return 0.0
    finite = np.isfinite(channels.capacity)
    term = float((prices.channel[finite] * channels.capacity[finite]).sum())
    if np.isfinite(channels.contact_budget):
        term += prices.contact * channels.contact_budget
    return term


def ceiling(problem: AssignmentProblem, view: AssignmentProblem, prices: Prices,
            chosen: list[np.ndarray]) -> float:
    """An upper bound on the objective of any channel assignment of ``chosen``'s pairs (what
    :func:`assign` can make of them): weak duality of its transportation LP at the channel prices
    ``prices`` (``view``: the problem priced at them, :func:`priced`) gives each pair its value
    less its customer's cheapest channel charge where that is positive, plus
    :func:`capacity_term` (a customer without consent, whom no plan holds, has no charge: her
    pairs, if any, only raise it). ``inf`` when the prices are not admissible."""
    channels = problem.channels
    if channels is None:
        return problem.objective(chosen)
    fit = admissible(problem, prices)
    if (prices.channel is None or fit.channel is None or fit.contact != prices.contact
            or not np.array_equal(fit.channel, prices.channel)):
        return float("inf")
    total = 0.0
    for vblock, mask in zip(view.blocks, chosen):
        total += _positive_sum(vblock.value, mask)
    return total + capacity_term(problem, prices)


@nb.njit(cache=True, nogil=True)
def _positive_sum(value, mask):  # pragma: no cover - compiled
    total = 0.0
    n, slots = mask.shape
    for i in range(n):
        for s in range(slots):
            if mask[i, s] and value[i, s] > 0.0:
                total += value[i, s]
    return total


def admissible(problem: AssignmentProblem, prices: Prices) -> Prices:
    """``prices`` with the channel prices a bound may use: non-negative, zero on uncapped
    channels and without a contact budget; none without channels."""
    channels = problem.channels
    if channels is None:
        return replace(prices, channel=None, contact=0.0)
    given = prices.channel
    if given is None or given.shape != (channels.n_channels,):
        given = np.zeros(channels.n_channels)
    channel = np.where(np.isfinite(channels.capacity), np.maximum(given, 0.0), 0.0)
    contact = max(prices.contact, 0.0) if np.isfinite(channels.contact_budget) else 0.0
    return replace(prices, channel=channel, contact=contact)


def response_use(problem: AssignmentProblem, view: AssignmentProblem, prices: Prices,
                 chosen: list[np.ndarray]) -> dict[str, np.ndarray]:
    """What the channels' critical prices read of the responses ``chosen`` (made on ``view``,
    see :func:`priced`): per chosen pair its customer (``ch_customer``) and its reduced value
    before the channel charge (``ch_worth``). Empty without channels."""
    channels = problem.channels
    if channels is None:
        return {}
    customers, worth = [np.zeros(0, dtype=np.int64)], [np.zeros(0)]
    cost_price, count = prices.cost_price, prices.count
    bonus = prices.target if prices.target is not None else np.zeros(count.shape[0])
    for block, vblock, mask in zip(problem.blocks, view.blocks, chosen):
        rows, slots = np.nonzero(mask)
        if rows.size == 0:
            continue
        # the chosen pairs' reduced values (the formula of optimizer.model.reduced, on them
        # only); the view's values are the block's less each customer's charge: add it back
        o = vblock.offer[rows, slots]
        reduced = (vblock.value[rows, slots] - (cost_price[o] + prices.global_budget)
                   * vblock.cost[rows, slots] - count[o]) + bonus[o]
        customers.append(block.customers[rows].astype(np.int64))
        worth.append(reduced + (block.value[rows, 0] - vblock.value[rows, 0]))
    return {"ch_customer": np.concatenate(customers).astype(np.int64),
            "ch_worth": np.concatenate(worth)}


def critical(problem: AssignmentProblem, target: Prices, use: dict[str, np.ndarray]
             ) -> Prices:
    """``target`` (the other constraints' critical prices) with the channels' and the contact
    budget's critical prices: the duals of the capacity and contact-budget rows of the
    transportation LP (:func:`assign`) over the responses' pairs at their reduced values, the
    prices at which those pairs, each on its cheapest channel, would fit (zero when nothing is
    worth sending)."""
    channels = problem.channels
    if channels is None:
        return target
    price, contact = np.zeros(channels.n_channels), 0.0
    customer = use["ch_customer"]
    lp = _transport_lp(channels, customer, use["ch_worth"])
    if lp is not None:
        dual = -np.asarray(lp.result.ineqlin.marginals, dtype=float)
        price[lp.capacity_rows] = np.maximum(dual[:lp.capacity_rows.size], 0.0)
        if lp.budget_row:
            contact = max(float(dual[-1]), 0.0)
    return replace(target, channel=price, contact=contact)


def assign(problem: AssignmentProblem, chosen: list[np.ndarray]) -> list[np.ndarray]:
    """A :class:`ChannelPlan` of ``chosen``'s pairs that fits every channel rule (``chosen``
    itself without channels).

    A pair's worth on a channel is its value less the channel's cost per contact, the same for
    every pair of one consent pattern (the set of channels its customer consented to) but for
    the value. So the best assignment is a transportation problem between consent patterns and
    channels (:func:`_transport`, a small LP: how many of each pattern's pairs, its most valuable
    first, go on each channel within the capacities and the contact budget). Room the rounding
    leaves is then filled (dropped pairs, and pairs on a dearer channel, by what they gain), and
    over the contact budget the pairs of least value per contact cost are dropped."""
    channels = problem.channels
    if channels is None:
        return chosen
    where = [np.nonzero(mask) for mask in chosen]
    customer = np.concatenate([np.zeros(0, np.int64)] + [
        b.customers[r].astype(np.int64) for b, (r, _) in zip(problem.blocks, where)])
    value = np.concatenate([np.zeros(0)] + [
        b.value[r, s] for b, (r, s) in zip(problem.blocks, where)])
    consent = channels.consent[customer]
    worth = np.where(consent, value[:, None] - channels.cost[None, :], -np.inf)
    channel = _transport(channels, customer, value)
    _fill(channels, worth, channel)
    _within_contact_budget(channels, channel, value)
    masks, channels_of, start = [], [], 0
    for mask, (rows, slots) in zip(chosen, where):
        stop = start + rows.size
        ch = channel[start:stop]
        keep = ch >= 0
        out = np.zeros_like(mask)
        out[rows[keep], slots[keep]] = True
        per_slot: np.ndarray = np.full(mask.shape, -1, dtype=slot_dtype(channels.n_channels))
        per_slot[rows[keep], slots[keep]] = ch[keep]
        masks.append(out)
        channels_of.append(per_slot)
        start = stop
    return ChannelPlan(masks, channels_of)


@dataclass
class _Transport:
    """The transportation LP of a set of pairs (see :func:`assign`) and its solution: per consent
    pattern its pairs worth sending (``members``, in pair order) and their values sorted, most
    valuable first (``ranked``), the (pattern, channel) columns ``link_g``, ``link_c``, the LP's
    result and how its rows map to channels (``capacity_rows``; the contact budget's row last
    when ``budget_row``)."""

    members: list[np.ndarray]
    ranked: list[np.ndarray]
    link_g: np.ndarray
    link_c: np.ndarray
    n_seg: int
    result: Any
    capacity_rows: np.ndarray
    budget_row: bool


def _pattern_index(code: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The consent patterns present in ``code`` (ascending) and each entry's index among them."""
    if k <= _DENSE_PATTERNS:  # a lookup over every possible pattern: no sort of the codes
        patterns = np.flatnonzero(np.bincount(code, minlength=1 << k))
        index = np.zeros(1 << k, dtype=np.int64)
        index[patterns] = np.arange(patterns.size)
        return patterns, index[code]
    patterns, of = np.unique(code, return_inverse=True)
    return patterns, of.astype(np.int64)


def _transport_lp(channels: ChannelData, customer: np.ndarray, value: np.ndarray
                  ) -> _Transport | None:
    """The LP of :func:`assign` over pairs of ``value`` and ``customer``: columns are each
    consent pattern's runs of pairs by value (at most ``_SEGMENTS``, each at its mean value) and
    one per (pattern, consented channel); rows tie a pattern's runs to its channels, then each
    capacity and the contact budget. ``None`` when no pair is worth sending or the LP fails."""
    from scipy.optimize import linprog  # local: only runs with channels load it

    k = channels.n_channels
    code = channels.patterns[customer]
    present, of = _pattern_index(code, k)  # a pair is worth sending above its cheapest channel
    consented = ((present[:, None] >> np.arange(k)[None, :]) & 1).astype(bool)
    cheapest = np.where(consented, channels.cost[None, :], np.inf).min(axis=1, initial=np.inf)
    live = np.flatnonzero(value > cheapest[of])
    if live.size == 0:
        return None
    patterns, of = _pattern_index(code[live], k)
    # each pattern's pairs in pair order (a stable sort of small integers), then its values
    # sorted: the runs need the values by rank, not which pair holds which rank
    order = np.argsort(of.astype(np.int16) if patterns.size < 1 << 15 else of, kind="stable")
    edges = np.concatenate([[0], np.cumsum(np.bincount(of, minlength=patterns.size))])
    members = [live[order[edges[g]:edges[g + 1]]] for g in range(patterns.size)]
    ranked = [np.sort(value[m])[::-1] for m in members]
    runs = max(1, min(_SEGMENTS, _LP_RUNS // patterns.size))
    seg_g, seg_len, seg_val = [], [], []
    for g in range(patterns.size):  # patterns, not pairs: at most 2 ** channels
        for piece in np.array_split(ranked[g], runs):
            if piece.size:
                seg_g.append(g)
                seg_len.append(piece.size)
                seg_val.append(float(piece.mean()))
    link_g, link_c = np.nonzero((patterns[:, None] >> np.arange(k)[None, :]) & 1)
    n_seg, n_link = len(seg_g), link_g.size
    equal = np.zeros((patterns.size, n_seg + n_link))
    equal[np.array(seg_g), np.arange(n_seg)] = 1.0
    equal[link_g, n_seg + np.arange(n_link)] = -1.0
    capacity_rows = np.flatnonzero(np.isfinite(channels.capacity))
    rows = np.zeros((capacity_rows.size, n_seg + n_link))
    for r, c in enumerate(capacity_rows):
        rows[r, n_seg + np.flatnonzero(link_c == c)] = 1.0
    bounds = list(channels.capacity[capacity_rows].astype(float))
    budget_row = bool(np.isfinite(channels.contact_budget))
    if budget_row:
        rows = np.vstack([rows, np.concatenate([np.zeros(n_seg), channels.cost[link_c]])])
        bounds.append(channels.contact_budget)
    result = linprog(np.concatenate([-np.array(seg_val), channels.cost[link_c]]),
                     A_ub=rows if bounds else None, b_ub=np.array(bounds) if bounds else None,
                     A_eq=equal, b_eq=np.zeros(patterns.size),
                     bounds=[(0, float(x)) for x in seg_len] + [(0, None)] * n_link,
                     method="highs")
    if result.status != 0:
        return None
    return _Transport(members, ranked, link_g, link_c, n_seg, result, capacity_rows,
                      budget_row)


def _transport(channels: ChannelData, customer: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Each pair's channel (-1: not sent): per consent pattern, the LP's whole number of pairs on
    each channel (rounded down), the pattern's most valuable pairs first (ties: the first pair
    first); all -1 without an LP plan (then :func:`_fill` assigns greedily)."""
    channel = np.full(customer.shape[0], -1, dtype=np.int64)
    lp = _transport_lp(channels, customer, value)
    if lp is None:
        return channel
    sent = np.floor(lp.result.x[lp.n_seg:] + 1e-9).astype(np.int64)
    for g, (members, ranked) in enumerate(zip(lp.members, lp.ranked)):
        values = value[members]
        at, taken = 0, np.zeros(members.size, dtype=bool)
        links = np.flatnonzero(lp.link_g == g)
        # the objective is the same either way: the most valuable pairs go on the cheapest
        for j in links[np.argsort(channels.cost[lp.link_c[links]], kind="stable")]:
            take = int(min(sent[j], members.size - at))
            if take <= 0:
                continue
            top = _top(values, ranked, at + take)
            channel[members[top & ~taken]] = lp.link_c[j]
            taken, at = top, at + take
    return channel


def _top(values: np.ndarray, ranked: np.ndarray, count: int) -> np.ndarray:
    """Mask of the ``count`` most valuable of ``values`` (``ranked``: them sorted, most valuable
    first), ties to the first: a selection, no sort of the pairs."""
    if count >= values.size:
        return np.ones(values.size, dtype=bool)
    cut = ranked[count - 1]
    top = values > cut
    tied = np.flatnonzero(values == cut)[: count - int(top.sum())]
    top[tied] = True
    return top


def _fill(channels: ChannelData, worth: np.ndarray, channel: np.ndarray) -> None:
    """Spare room, channel by channel from the cheapest: the dropped pairs worth more than its
    contact cost there, and pairs on a dearer channel (saving the difference), most gain first."""
    rows = np.arange(channel.size)
    for c in np.argsort(channels.cost, kind="stable"):
        used = int((channel == c).sum())
        room = channels.capacity[c] - used
        if room <= 0:
            continue
        now = np.where(channel >= 0, worth[rows, np.maximum(channel, 0)], 0.0)
        gain = worth[:, c] - now
        moving = np.flatnonzero((channel != c) & np.isfinite(worth[:, c]) & (gain > 0))
        if moving.size == 0:
            continue
        order = np.lexsort((moving, -gain[moving]))
        take = moving[order[: int(min(room, moving.size))]]
        channel[take] = c


def _within_contact_budget(channels: ChannelData, channel: np.ndarray, value: np.ndarray
                           ) -> None:
    """Unassign (``channel`` -1) the pairs of least value per contact cost until the contact
    cost fits ``rules.contact_budget``."""
    budget = channels.contact_budget
    sent = np.flatnonzero(channel >= 0)
    cost = channels.cost[channel[sent]]
    spend = float(cost.sum())
    if not np.isfinite(budget) or spend <= budget:
        return
    paid = cost > 0
    sent, cost = sent[paid], cost[paid]
    order = np.argsort((value[sent] - cost) / cost, kind="stable")
    cut = np.flatnonzero(spend - np.cumsum(cost[order]) <= budget)
    drop = order[: cut[0] + 1] if cut.size else order
    channel[sent[drop]] = -1
