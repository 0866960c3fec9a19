"""Channel capacities and the contact budget in the scale method (:mod:`optimizer.model.channels`).

Priced by ``Prices.channel`` (per channel, value lost per contact) and ``Prices.contact`` (per
unit of contact cost), a pair (i, j) sent on channel c is worth ``reduced[i, j] - ((1 + contact)
* cost_per_contact[c] + channel[c])``. The charge depends on the customer only, so her best
response sends every pair on her cheapest consented channel: the relaxed subproblem is the
channel-free one on values less that per-customer charge (:func:`priced`), solved by the same
kernels, and the dual function gains ``channel . capacity + contact * contact_budget``
(:func:`capacity_term`); the bound stays an upper bound by weak duality.

Prices move to each channel's critical price (the raise that leaves only ``capacity`` of its
contacts, each contact leaving when the raise passes its reduced value or its customer's switch
to her next channel) and the contact price to the raise that brings the responses' contact cost
within the budget (:func:`critical`). The plan assigns channels to the repaired pairs, each
customer's cheapest first, the most valuable pairs first where a capacity binds, and drops what
does not fit or costs more to contact than it is worth (:func:`assign`).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from optimizer.model.channels import ChannelData, ChannelPlan
from optimizer.model.problem import AssignmentProblem, CandidateBlock, Prices


def priced_block(channels: ChannelData, block: CandidateBlock, prices: Prices
                 ) -> CandidateBlock:
    """``block`` with each customer's values less her cheapest consented channel's charge (no
    charge for customers without consent: their cap is 0, see ``channel_caps``)."""
    charge, best = channels.charges(block.customers, prices.channel, prices.contact)
    rows = np.arange(block.n_customers)
    least = np.where(best >= 0, charge[rows, np.maximum(best, 0)], 0.0)
    return replace(block, value=block.value - least[:, None])


def priced(problem: AssignmentProblem, prices: Prices) -> AssignmentProblem:
    """The channel-free problem on values less each customer's channel charge at ``prices``
    (``problem`` itself without channels)."""
    channels = problem.channels
    if channels is None:
        return problem
    return replace(problem, blocks=[priced_block(channels, b, prices) for b in problem.blocks],
                   channels=None)


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


def admissible(problem: AssignmentProblem, prices: Prices) -> dict[str, object]:
    """The channel prices a bound may use (keywords of :class:`Prices`): non-negative, zero on
    uncapped channels and without a contact budget; none without channels."""
    channels = problem.channels
    if channels is None:
        return {"channel": None, "contact": 0.0}
    given = prices.channel
    if given is None or given.shape != (channels.n_channels,):
        given = np.zeros(channels.n_channels)
    channel = np.where(np.isfinite(channels.capacity), np.maximum(given, 0.0), 0.0)
    contact = max(prices.contact, 0.0) if np.isfinite(channels.contact_budget) else 0.0
    return {"channel": channel, "contact": contact}


def response_use(problem: AssignmentProblem, view: AssignmentProblem, prices: Prices,
                 chosen: list[np.ndarray]) -> dict[str, np.ndarray]:
    """What the critical prices read of the responses ``chosen`` (on ``view``, see
    :func:`priced`): per chosen pair its channel, the raise of that channel's price at which it
    leaves (its reduced value, or its customer's switch to her next channel) and its contact
    cost; per (customer with pairs, other consented channel) the cut of that channel's price
    at which her pairs would switch to it, and how many. Empty without channels."""
    channels = problem.channels
    if channels is None:
        return {}
    parts: dict[str, list[np.ndarray]] = {k: [np.zeros(0)] for k in (
        "ch_item", "ch_leave", "ch_reduced", "ch_join_channel", "ch_join_point", "ch_join_n")}
    for block, vblock, mask in zip(problem.blocks, view.blocks, chosen):
        n = mask.sum(axis=1)
        rows = np.flatnonzero(n)
        if rows.size == 0:
            continue
        charge, best = channels.charges(block.customers[rows], prices.channel, prices.contact)
        least = charge[np.arange(rows.size), best]
        ordered = np.sort(charge, axis=1)
        switch = (ordered[:, 1] - ordered[:, 0] if channels.n_channels > 1
                  else np.full(rows.size, np.inf))
        reduced = prices.reduced_values(vblock)[rows][mask[rows]]
        owner = np.repeat(np.arange(rows.size), n[rows])
        parts["ch_item"].append(best[owner].astype(float))
        parts["ch_reduced"].append(reduced)
        parts["ch_leave"].append(np.minimum(reduced, switch[owner]))
        gap = charge - least[:, None]
        other = np.isfinite(gap) & (np.arange(channels.n_channels)[None, :] != best[:, None])
        r, c = np.nonzero(other)
        parts["ch_join_channel"].append(c.astype(float))
        parts["ch_join_point"].append(gap[r, c])
        parts["ch_join_n"].append(n[rows][r].astype(float))
    return {k: np.concatenate(v) for k, v in parts.items()}


def critical(problem: AssignmentProblem, target: Prices, prices: Prices,
             use: dict[str, np.ndarray]) -> Prices:
    """``target`` (the other constraints' critical prices) with each channel's and the contact
    budget's critical price given the responses at ``prices`` (see the module docstring)."""
    channels = problem.channels
    if channels is None:
        return target
    current = admissible(problem, prices)
    price = np.array(current["channel"], dtype=float)
    item = use["ch_item"].astype(np.int64)
    for c in np.flatnonzero(np.isfinite(channels.capacity)):
        cap = int(channels.capacity[c])
        leave = np.sort(use["ch_leave"][item == c])[::-1]
        if leave.size > cap:
            price[c] += max(float(leave[cap]), 0.0)
        elif price[c] > 0:
            on = use["ch_join_channel"] == c
            order = np.argsort(use["ch_join_point"][on], kind="stable")
            points = use["ch_join_point"][on][order]
            over = np.flatnonzero(np.cumsum(use["ch_join_n"][on][order]) > cap - leave.size)
            price[c] = max(price[c] - float(points[over[0]]), 0.0) if over.size else 0.0
    contact = float(current["contact"])  # type: ignore[arg-type]
    budget = channels.contact_budget
    if np.isfinite(budget):
        cost = channels.cost[item]
        spend = float(cost.sum())
        if spend > budget:
            paid = cost > 0
            ratio = use["ch_reduced"][paid] / cost[paid]
            order = np.argsort(-ratio, kind="stable")
            over = np.flatnonzero(np.cumsum(cost[paid][order]) > budget)
            contact += max(float(ratio[order][over[0]]), 0.0) if over.size else 0.0
        elif contact > 0:
            contact *= spend / budget if budget > 0 else 0.0
    return replace(target, channel=price, contact=contact)


def assign(problem: AssignmentProblem, chosen: list[np.ndarray], prices: Prices
           ) -> list[np.ndarray]:
    """A :class:`ChannelPlan` of ``chosen``'s pairs that fits every channel rule (``chosen``
    itself without channels): each pair tries its customer's consented channels cheapest first
    at ``prices``; where more pairs ask a channel than its capacity left, the most valuable get
    it; a pair worth less than its contact cost, or left without a channel, is dropped; over the
    contact budget, the pairs of least value per contact cost are dropped."""
    channels = problem.channels
    if channels is None:
        return chosen
    where = [np.nonzero(mask) for mask in chosen]
    customer = np.concatenate([np.zeros(0, np.int64)] + [
        b.customers[r].astype(np.int64) for b, (r, _) in zip(problem.blocks, where)])
    value = np.concatenate([np.zeros(0)] + [
        b.value[r, s] for b, (r, s) in zip(problem.blocks, where)])
    charge, _ = channels.charges(customer, prices.channel, prices.contact)
    order = np.argsort(charge, axis=1, kind="stable")
    channel = np.full(customer.size, -1, dtype=np.int64)
    room = channels.capacity.astype(float).copy()
    pairs = np.arange(customer.size)
    for k in range(channels.n_channels):
        waiting = pairs[channel < 0]
        ask = order[waiting, k]
        ok = np.isfinite(charge[waiting, ask]) & (value[waiting] > channels.cost[ask])
        waiting, ask = waiting[ok], ask[ok]
        ranked = np.lexsort((waiting, -value[waiting], ask))
        waiting, ask = waiting[ranked], ask[ranked]
        first = np.searchsorted(ask, ask, side="left")
        got = np.arange(ask.size) - first < room[ask]
        channel[waiting[got]] = ask[got]
        room -= np.bincount(ask[got], minlength=channels.n_channels)
    _within_contact_budget(channels, channel, value)
    masks, channels_of, start = [], [], 0
    for mask, (rows, slots) in zip(chosen, where):
        stop = start + rows.size
        ch = channel[start:stop]
        keep = ch >= 0
        out = np.zeros_like(mask)
        out[rows[keep], slots[keep]] = True
        per_slot = np.full(mask.shape, -1, dtype=np.int64)
        per_slot[rows[keep], slots[keep]] = ch[keep]
        masks.append(out)
        channels_of.append(per_slot)
        start = stop
    return ChannelPlan(masks, channels_of)


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
