"""Pinned lists: ``rules.pin`` (docs/contract.md, "Stable lists").

**Which pairs are pinned.** Last week's lists (:mod:`optimizer.model.stability`: ``history``'s
week before, or ``--previous-run``) give the pairs; a pair is *pinned* when its offer's flight
covers this week (``flight_start_week <= week <= flight_end_week``: the offer's own flight, else
its group flight, ``offers.flight_id``), or, for an offer without a flight, when its eligibility
window does (``start_week .. end_week``, a missing bound open).

**Released pins.** A pinned pair must be in this week's plan unless a rule forbids it:

1. a per-pair rule (eligibility window, exclusion, sensitive policy, cooldown, excluded
   category, a rule on customers' columns): the reason is the first of those that forbids it;
   ``not_a_candidate`` when none does but the pair is not among the week's candidates (not listed
   in ``scores``, of value <= 0, or left out by ``solver.scores_per_customer``; the affinity path
   keeps allowed pins beyond its best few, :func:`optimizer.model.affinity_blocks.affinity_blocks`);
2. then, in one deterministic pass over the remaining pins, best value first (ties: customer
   index, then offer index), a pin is kept when it fits, with the pins kept before it, under the
   customer's cap (``customer_cap``), ``max_offers_per_category`` (``category_cap``), its offer
   groups (``offer_group``), its offer's budget (``budget``) and ``max_customers``
   (``max_customers``), its funder's budget (``funder_budget``) or its group flight's week
   share (``group_flight``: the same shared-budget test, named for what it is) and the global
   budget (``global_budget``); otherwise it is released under the first rule it breaks.
   With the ``channels`` tables a kept pin must also go out (:mod:`optimizer.model.channels`):
   a customer who consented to no channel has her pins released first (``no_channel_consent``,
   as her cap is 0); past every other rule, the pin takes her cheapest consented channel
   (``cost_per_contact``, ties: the lower channel index, as the solver's channel charge picks)
   with room beside the pins kept before it (``channel_capacity`` when none has room), and its
   contact cost must fit ``rules.contact_budget`` beside theirs (``contact_budget``). A pin's
   contact cost counts where the solve counts contact costs: the contact budget and the
   objective (not the offers', funders' or global budgets, which hold expected redemption cost).

So pins never make a week infeasible: a budget cut below last week's pins releases the pins it
cannot pay for, least valuable first, and says so.

**The solve with pins.** Kept pins are fixed: they leave the candidate blocks (their slots are
emptied for the solve), their customers' caps drop by their count, the budgets, ``max_customers``,
funder budgets and the global budget by what they use (with channels, each channel's capacity by
the pins it carries and ``rules.contact_budget`` by their contact cost), and a customer's
candidates in a category (or offer group) her pins already fill are emptied too. What remains is
the rest of the week's problem; any solver plans it (its gap tests count the pins' value on both
sides, the problem's ``fixed_value``, so it stops at the whole plan's tolerance), and
:func:`restore` puts the blocks back and the pins into the plan (with channels, each on the
channel the pass gave it; the pins' value is then net of their contact cost).
A category (group) that her pins fill only partly (``max_offers_per_category`` >= 2) keeps its
full limit in the solve, a relaxation, and :func:`restore` drops the weakest non-pinned offers that
overfill it. The bound of the remaining problem plus the pins' value bounds every plan keeping the
pins (on their channels; the remaining problem is the pinned one, or a relaxation of it).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import numba as nb
import numpy as np
import polars as pl

from optimizer.core.numerics import fixed_dot
from optimizer.model.channels import ChannelPlan, plan_channels, slot_dtype
from optimizer.model.eligibility import EligibilityRules
from optimizer.model.problem import AssignmentProblem, Solution
from optimizer.model.stability import Previous, on_previous

log = logging.getLogger(__name__)

# the capacity rules of the pass, in the order they are tried (a pin's reason is the first
# broken); ``group_flight`` is tried with ``funder_budget`` (an offer is under one shared budget,
# a listed funder's or a group flight's week share) and named for which it is;
# ``no_channel_consent`` is tried first (it is why her cap is 0), the other channel rules last
CAPACITY_REASONS = ("customer_cap", "category_cap", "offer_group", "budget", "max_customers",
                    "funder_budget", "global_budget", "group_flight", "no_channel_consent",
                    "channel_capacity", "contact_budget")

NOT_A_CANDIDATE = "not_a_candidate"


@dataclass
class PinPlan:
    """The pins of the week: ``pinned`` pairs (last week's, offer in flight), the kept ones as a
    mask per block, ``released`` counts by reason, with channels each kept pin's channel index per
    block (-1 elsewhere; ``None`` without channels), and what :func:`apply` saved to restore."""

    pinned: int
    masks: list[np.ndarray]
    released: dict[str, int]
    channel: list[np.ndarray] | None = None
    value: float = 0.0
    _saved: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def kept(self) -> int:
        """Pins the plan keeps (before any measurement control is withheld)."""
        return int(sum(int(m.sum()) for m in self.masks))


def in_flight(offers: pl.DataFrame, week: int, flights: pl.DataFrame | None = None
              ) -> np.ndarray:
    """Per offer (index ``o``), whether its flight covers ``week``: its own flight (the offer's
    flight columns) when it has one, else its group flight (``offers.flight_id``, a row of the
    ``flights`` table), else its eligibility window."""
    def covers(start: str, end: str) -> pl.Expr:
        return (pl.col(start).is_null() | (pl.col(start) <= week)) & (
            pl.col(end).is_null() | (pl.col(end) >= week))

    expr = covers("start_week", "end_week")
    if flights is not None and "flight_id" in offers.columns:
        offers = offers.join(flights.select("flight_id", group_start="flight_start_week",
                                            group_end="flight_end_week"),
                             on="flight_id", how="left", maintain_order="left")
        expr = (pl.when(pl.col("group_start").is_not_null())
                .then(covers("group_start", "group_end")).otherwise(expr))
    if "flight_start_week" in offers.columns:
        expr = (pl.when(pl.col("flight_start_week").is_not_null())
                .then(covers("flight_start_week", "flight_end_week")).otherwise(expr))
    return offers.sort("o").select(expr.fill_null(False)).to_series().to_numpy().astype(bool)


def plan_pins(problem: AssignmentProblem, previous: Previous, flight: np.ndarray,
              rules: EligibilityRules, warn: bool = True) -> PinPlan:
    """The week's pins (module docstring): last week's pairs whose offer is in ``flight``, those a
    rule forbids or that are no candidate released, the rest kept or released by the capacity
    pass. ``warn``: say when the cooldown releases pins (once a run: not again when the
    candidates are built again)."""
    n = max(previous.n_offers, 1)
    keys = previous.keys[flight[previous.keys % n]] if previous.keys.size else previous.keys
    found = [on_previous(b.customers, b.offer, keys, n) for b in problem.blocks]
    c_all, o_all, cost, value = _flat(problem, found)
    released = _rule_reasons(keys, np.sort(c_all * n + o_all), n, rules)
    order = np.lexsort((o_all, c_all, -value))
    reason, picked = _capacity_pass(problem, c_all[order], o_all[order], cost[order])
    code, via = np.empty_like(reason), np.empty_like(picked)
    code[order], via[order] = reason, picked
    masks: list[np.ndarray] = []
    channel: list[np.ndarray] = []
    start = 0
    for block, hit in zip(problem.blocks, found):
        rows, slots = np.nonzero(hit)
        mask = np.zeros(hit.shape, dtype=bool)
        ok = code[start:start + rows.size] < 0
        mask[rows[ok], slots[ok]] = True
        masks.append(mask)
        if problem.channels is not None:
            ch: np.ndarray = np.full(hit.shape, -1, dtype=slot_dtype(problem.channels.n_channels))
            ch[rows[ok], slots[ok]] = via[start:start + rows.size][ok]
            channel.append(ch)
        start += rows.size
    for k, name in enumerate(CAPACITY_REASONS):
        if (code == k).any():
            released[name] = int((code == k).sum())
    if released.get("cooldown") and warn:
        # a pinned offer goes out again every week of its flight, which any cooldown forbids:
        # said where a planner sees it, since the manifest's count alone is easy to miss
        log.warning("rules.pin: %d of %d pins released by rules.cooldown_weeks (a pin is sent "
                    "again each week; set cooldown_weeks = 0 to keep pins)",
                    released["cooldown"], keys.size)
    return PinPlan(int(keys.size), masks, released,
                   channel if problem.channels is not None else None)


def _flat(problem: AssignmentProblem, masks: list[np.ndarray]
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(customer, offer, cost, value) of the masked slots, block by block in row order."""
    parts: list[list[np.ndarray]] = [[np.zeros(0, np.int64)], [np.zeros(0, np.int64)],
                                     [np.zeros(0)], [np.zeros(0)]]
    for block, mask in zip(problem.blocks, masks):
        rows, slots = np.nonzero(mask)
        parts[0].append(block.customers[rows].astype(np.int64))
        parts[1].append(block.offer[rows, slots].astype(np.int64))
        parts[2].append(block.cost[rows, slots])
        parts[3].append(block.value[rows, slots])
    c, o, cost, value = (np.concatenate(p) for p in parts)
    return c, o, cost, value


def _rule_reasons(keys: np.ndarray, found: np.ndarray, n: int, rules: EligibilityRules
                  ) -> dict[str, int]:
    """Released pins that are no candidate, by the first per-pair rule forbidding each."""
    missing = np.setdiff1d(keys, found, assume_unique=True)
    out: dict[str, int] = {}
    if missing.size == 0:
        return out
    c, o = missing // n, missing % n
    left = np.ones(missing.size, dtype=bool)
    for name, mask in rules.reasons(c, o[:, None]).items():
        hit = mask[:, 0] & left
        if hit.any():
            out[name] = int(hit.sum())
        left &= ~hit
    if left.any():
        out[NOT_A_CANDIDATE] = int(left.sum())
    return out


def _capacity_pass(problem: AssignmentProblem, c: np.ndarray, o: np.ndarray, cost: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Per pin (in the given order), -1 when kept, else the index of the first capacity rule of
    :data:`CAPACITY_REASONS` it breaks given the pins kept before it; and each kept pin's channel
    index (-1 without channels)."""
    offers = problem.offers
    caps = np.zeros(max(problem.n_customers, 1), dtype=np.int64)
    for block in problem.blocks:
        caps[block.customers] = block.cap
    groups = problem.groups
    members = (groups.members if groups is not None
               else np.full((offers.n_offers, 1), -1, dtype=np.int64))
    limit = groups.limit if groups is not None else np.zeros(0, dtype=np.int64)
    funders = problem.funders
    funder_of = (funders.of_offer if funders is not None
                 else np.full(offers.n_offers, -1, dtype=np.int64))
    funder_budget = funders.budget if funders is not None else np.zeros(0)
    per_category = -1 if problem.max_per_category is None else int(problem.max_per_category)
    ch = problem.channels
    channels = ((ch.consent, ch.capacity.astype(np.float64), ch.cost.astype(np.float64),
                 float(ch.contact_budget)) if ch is not None
                else (np.ones((1, 0), dtype=bool), np.zeros(0), np.zeros(0), np.inf))
    return _pass(c, o, cost, caps, offers.categories.astype(np.int64), per_category,
                 members.astype(np.int64), limit.astype(np.int64), offers.budget,
                 offers.max_customers, funder_of.astype(np.int64),
                 funder_budget.astype(np.float64),
                 funders.n_listed if funders is not None else 0, float(problem.global_budget),
                 max(offers.n_categories, 1), max(int(limit.shape[0]), 1), ch is not None,
                 *channels)


@nb.njit(cache=True)
def _channel_for(consent_row, used, capacity, cost):  # pragma: no cover - compiled
    # her cheapest consented channel with room (ties: the lower index); -1: none consented,
    # -2: none with room
    best, seen = -1, False
    for k in range(capacity.shape[0]):
        if not consent_row[k]:
            continue
        seen = True
        if used[k] + 1 <= capacity[k] and (best < 0 or cost[k] < cost[best]):
            best = k
    return best if best >= 0 or not seen else -2


@nb.njit(cache=True)
def _pass(c, o, cost, caps, categories, per_category, members, limit, budget, max_customers,
          funder_of, funder_budget, n_listed, global_budget, n_categories, n_groups,
          with_channels, consent, capacity, contact_cost, contact_budget
          ):  # pragma: no cover - compiled
    out = np.full(c.shape[0], -1, dtype=np.int64)
    via = np.full(c.shape[0], -1, dtype=np.int64)
    carried = np.zeros(capacity.shape[0])
    contacts = 0.0
    taken = np.zeros(caps.shape[0], dtype=np.int64)
    cat_used = dict()
    cat_used[np.int64(-1)] = np.int64(0)
    group_used = dict()
    group_used[np.int64(-1)] = np.int64(0)
    spent = np.zeros(budget.shape[0])
    count = np.zeros(budget.shape[0])
    funder_spent = np.zeros(funder_budget.shape[0])
    total = 0.0
    for k in range(c.shape[0]):
        i, j, x = c[k], o[k], cost[k]
        reason = -1
        if with_channels and not consent[i].any():
            reason = 8
        if reason < 0 and taken[i] + 1 > caps[i]:
            reason = 0
        if reason < 0 and per_category >= 0:
            for q in range(categories.shape[1]):
                cat = categories[j, q]
                if cat >= 0 and cat_used.get(i * n_categories + cat, 0) + 1 > per_category:
                    reason = 1
        if reason < 0:
            for q in range(members.shape[1]):
                g = members[j, q]
                if g >= 0 and group_used.get(i * n_groups + g, 0) + 1 > limit[g]:
                    reason = 2
        if reason < 0 and spent[j] + x > budget[j]:
            reason = 3
        if reason < 0 and count[j] + 1 > max_customers[j]:
            reason = 4
        f = funder_of[j]
        if reason < 0 and f >= 0 and funder_spent[f] + x > funder_budget[f]:
            reason = 5 if f < n_listed else 7  # a listed funder's, else a group flight's
        if reason < 0 and total + x > global_budget:
            reason = 6
        if reason < 0 and with_channels:
            via[k] = _channel_for(consent[i], carried, capacity, contact_cost)
            if via[k] < 0:
                reason = 9
            elif contacts + contact_cost[via[k]] > contact_budget:
                reason = 10
        out[k] = reason
        if reason >= 0:
            via[k] = -1
            continue
        if with_channels:
            carried[via[k]] += 1
            contacts += contact_cost[via[k]]
        taken[i] += 1
        for q in range(categories.shape[1]):
            cat = categories[j, q]
            if cat >= 0:
                key = i * n_categories + cat
                cat_used[key] = cat_used.get(key, 0) + 1
        for q in range(members.shape[1]):
            g = members[j, q]
            if g >= 0:
                key = i * n_groups + g
                group_used[key] = group_used.get(key, 0) + 1
        spent[j] += x
        count[j] += 1
        if f >= 0:
            funder_spent[f] += x
        total += x
    return out, via


def apply(problem: AssignmentProblem, plan: PinPlan) -> None:
    """Fix the kept pins (module docstring): the problem becomes the rest of the week's problem,
    in place; :func:`restore` undoes it."""
    if not plan.kept:
        return
    c, o, cost, value = _flat(problem, plan.masks)
    plan.value = float(value.sum())
    offers = problem.offers
    spend = np.bincount(o, weights=cost, minlength=offers.n_offers)
    count = np.bincount(o, minlength=offers.n_offers)
    plan._saved.update(offers=offers, funders=problem.funders, channels=problem.channels,
                       global_budget=problem.global_budget, blocks={})
    if problem.channels is not None and plan.channel is not None:
        channels = problem.channels
        carried = np.bincount(np.concatenate([ch[ch >= 0] for ch in plan.channel]).astype(
            np.int64), minlength=channels.n_channels)
        contacts = fixed_dot(carried.astype(float), channels.cost)
        plan.value -= contacts  # the objective pays each contact
        problem.channels = replace(
            channels, capacity=np.maximum(channels.capacity - carried, 0.0),
            contact_budget=max(channels.contact_budget - contacts, 0.0))
    problem.offers = replace(
        offers, budget=np.maximum(offers.budget - spend, 0.0),
        max_customers=np.maximum(offers.max_customers - count, 0.0),
        min_customers=np.maximum(offers.min_customers - count, 0))
    if problem.funders is not None:
        problem.funders = replace(problem.funders, budget=np.maximum(
            problem.funders.budget - problem.funders.per_funder(spend), 0.0))
    problem.global_budget = max(problem.global_budget - float(spend.sum()), 0.0)
    problem.fixed_value = plan.value  # the solver's gap test counts the pins' value
    per_category = (None if problem.max_per_category is None
                    else np.full(max(offers.n_categories, 1), problem.max_per_category))
    full_cats = _full(c, offers.categories[o], per_category, max(offers.n_categories, 1))
    groups = problem.groups
    full_groups = (_full(c, groups.members[o], groups.limit, max(groups.n_groups, 1))
                   if groups is not None else np.zeros(0, np.int64))
    for index, (block, mask) in enumerate(zip(problem.blocks, plan.masks)):
        rows = mask.any(axis=1)
        if not rows.any():
            continue
        drop = mask | _in_full(block, full_cats, offers.categories, max(offers.n_categories, 1))
        if groups is not None:
            drop |= _in_full(block, full_groups, groups.members, max(groups.n_groups, 1))
        at = np.nonzero(drop)
        # emptied in place (a copy of every block would double the problem's memory); the
        # emptied slots' entries are kept to put back
        plan._saved["blocks"][index] = (at, block.offer[at], block.value[at], block.cost[at],
                                        block.p_redeem[at], block.cap)
        block.offer[at], block.value[at], block.cost[at], block.p_redeem[at] = -1, 0.0, 0.0, 0.0
        block.cap = block.cap - mask.sum(axis=1)
    problem.__dict__.pop("max_cap", None)


def _full(c: np.ndarray, of_pin: np.ndarray, limit: np.ndarray | None, width: int
          ) -> np.ndarray:
    """The sorted keys ``customer * width + k`` of the categories (groups) ``k`` that the pins
    fill: ``of_pin`` holds each pin's categories (groups), padded with -1, ``limit`` each one's
    limit (None: no limit)."""
    if limit is None or not c.size:
        return np.zeros(0, np.int64)
    owner = np.repeat(c, of_pin.shape[1])
    k = of_pin.ravel().astype(np.int64)
    live = k >= 0
    keys, counts = np.unique(owner[live] * width + k[live], return_counts=True)
    return keys[counts >= limit[keys % width]]


def _in_full(block: Any, keys: np.ndarray, table: np.ndarray, width: int) -> np.ndarray:
    """Mask of the block's candidates with a category (group) among the filled ``keys``."""
    out = np.zeros(block.offer.shape, dtype=bool)
    if not keys.size:
        return out
    present = block.offer >= 0
    of = table[np.maximum(block.offer, 0)]  # (n, slots, width)
    key = block.customers.astype(np.int64)[:, None, None] * width + of
    at = np.minimum(np.searchsorted(keys, key), keys.size - 1)
    return present & ((keys[at] == key) & (of >= 0)).any(axis=2)


def restore(problem: AssignmentProblem, plan: PinPlan, solution: Solution) -> Solution:
    """Undo :func:`apply` and put the kept pins into ``solution``'s plan (in place): the pins'
    value added to its objective and bound, the weakest non-pinned offers that overfill a category
    or group her pins fill in part dropped. Returns ``solution``."""
    if not plan._saved:
        return solution
    problem.offers = plan._saved["offers"]
    problem.funders = plan._saved["funders"]
    problem.channels = plan._saved["channels"]
    problem.global_budget = plan._saved["global_budget"]
    problem.fixed_value = 0.0
    for index, (at, offer, value, cost, p_redeem, cap) in plan._saved["blocks"].items():
        block = problem.blocks[index]
        block.offer[at], block.value[at], block.cost[at], block.p_redeem[at] = (
            offer, value, cost, p_redeem)
        block.cap = cap
    plan._saved.clear()
    problem.__dict__.pop("max_cap", None)
    chosen = [m | p for m, p in zip(solution.chosen, plan.masks)]
    offers, groups = problem.offers, problem.groups
    per_category = -1 if problem.max_per_category is None else int(problem.max_per_category)
    members = (groups.members if groups is not None
               else np.full((offers.n_offers, 1), -1, dtype=np.int64)).astype(np.int64)
    limit = (groups.limit if groups is not None else np.zeros(1, np.int64)).astype(np.int64)
    for block, mask, pins in zip(problem.blocks, chosen, plan.masks):
        rows = np.flatnonzero(pins.any(axis=1))
        if rows.size:
            _overfull(rows, block.offer.astype(np.int64), block.value, mask, pins,
                      offers.categories.astype(np.int64), per_category, members, limit,
                      max(offers.n_categories, 1), max(int(limit.shape[0]), 1))
    solution.chosen = _with_channels(problem, plan, solution.chosen, chosen)
    solution.objective = problem.objective(solution.chosen)
    solution.bound = solution.bound + plan.value
    for entry in solution.trace:
        for name in ("bound", "objective", "best_bound", "best_objective"):
            seen = entry.get(name)
            if isinstance(seen, float):
                entry[name] = seen + plan.value
    return solution


def _with_channels(problem: AssignmentProblem, plan: PinPlan, solved: list[np.ndarray],
                   chosen: list[np.ndarray]) -> list[np.ndarray]:
    """``chosen`` (the plan with the pins) with each pair's channel: the pins' from the pass, the
    others' from the ``solved`` plan; ``chosen`` as it is without channels."""
    if problem.channels is None or plan.channel is None:
        return chosen
    solved_channel = plan_channels(solved) or [np.full(m.shape, -1, dtype=ch.dtype)
                                               for m, ch in zip(chosen, plan.channel)]
    return ChannelPlan(chosen, [np.where(m, np.where(pin >= 0, pin, ch), -1).astype(pin.dtype)
                                for m, pin, ch in zip(chosen, plan.channel, solved_channel)])


@nb.njit(cache=True)
def _overfull(rows, offer, value, mask, pins, categories, per_category, members, limit,
              n_categories, n_groups):  # pragma: no cover - compiled
    # per customer with pins: her pins first, then her other chosen offers best value first,
    # each kept while her categories and groups have room
    cat_used = np.zeros(n_categories, dtype=np.int64)
    group_used = np.zeros(n_groups, dtype=np.int64)
    for i in rows:
        order = np.argsort(-value[i], kind="mergesort")
        for phase in range(2):
            for s in order:
                if not mask[i, s] or offer[i, s] < 0 or pins[i, s] != (phase == 0):
                    continue
                j = offer[i, s]
                fits = True
                if phase == 1:
                    for q in range(categories.shape[1]):
                        k = categories[j, q]
                        if k >= 0 and per_category >= 0 and cat_used[k] + 1 > per_category:
                            fits = False
                    for q in range(members.shape[1]):
                        g = members[j, q]
                        if g >= 0 and group_used[g] + 1 > limit[g]:
                            fits = False
                if not fits:
                    mask[i, s] = False
                    continue
                for q in range(categories.shape[1]):
                    if categories[j, q] >= 0:
                        cat_used[categories[j, q]] += 1
                for q in range(members.shape[1]):
                    if members[j, q] >= 0:
                        group_used[members[j, q]] += 1
        for q in range(n_categories):
            cat_used[q] = 0
        for q in range(n_groups):
            group_used[q] = 0


def record(plan: PinPlan, chosen: list[np.ndarray]) -> dict[str, Any]:
    """The manifest's ``stability.pins``: ``pinned`` pairs, ``kept`` (in the plan as sent),
    ``released`` by reason and ``withheld_as_controls`` (kept pins the measurement's controls
    withheld, :mod:`optimizer.model.holdout`)."""
    sent = int(sum(int((m & p).sum()) for m, p in zip(chosen, plan.masks)))
    return {"pinned": plan.pinned, "kept": sent,
            "released": dict(sorted(plan.released.items())),
            "withheld_as_controls": plan.kept - sent}
