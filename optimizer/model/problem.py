"""The weekly assignment problem stated as data, apart from any algorithm that solves it.

Variables: one binary ``x[i, j]`` per candidate pair (customer i, offer j) that survived
eligibility. Objective: maximise ``sum value[i, j] * x[i, j]``. Constraints (labelled as in the
manifest):

- ``customer_cap``: ``sum_j x[i, j] <= cap[i]`` (the per-customer cap, lowered by the
  frequency window's history);
- ``category_cap``: for every customer and category k, ``sum_{j: k in cats(j)} x[i, j] <= Q``;
- ``budget``: for every offer, ``sum_i cost[i, j] x[i, j] <= budget[j]`` (budget already scaled);
- ``max_customers``: ``sum_i x[i, j] <= max_customers[j]``;
- ``global_budget``: ``sum cost[i, j] x[i, j] <= G``;
- ``offer_group``: for every customer and group g, ``sum_{j in g} x[i, j] <= limit[g]``
  (only with the optional ``offer_groups`` table, :mod:`optimizer.model.groups`);
- ``funder_budget``: for every funder f, ``sum_{i, j funded by f} cost[i, j] x[i, j] <= B_f``
  (only with the optional ``funders`` table, :mod:`optimizer.model.funders`);
- ``group_flight``: for every group flight covering the week, its offers' summed expected cost
  is at most its week share (a shared budget like a funder's, :mod:`optimizer.model.flights`);
- ``channel_consent``, ``channel_capacity``, ``contact_budget``: each pair goes out on one
  channel its customer consented to, within each channel's capacity and the contact budget
  (only with the optional ``channels`` tables, :mod:`optimizer.model.channels`; the objective
  then pays each pair's ``cost_per_contact``);
- ``min_customers`` is a target (met where the rules allow, shortfalls reported), not a constraint.

Candidates are held in blocks of consecutive customers, each a padded 2-D layout
(``customers x slots``; slot ``offer == -1`` is empty), so that every algorithm can work on a
chunk with vectorised numpy and memory grows with the chunk, not the population.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING

import numba as nb
import numpy as np

from optimizer.core.exact_sum import Exact, exact_rounded, exact_sum
from optimizer.model._plan_kernels import Mapper, chosen_values, plan_counts, plan_usage
from optimizer.model.reduced import reduced_values

if TYPE_CHECKING:
    import polars as pl

    from optimizer.model.channels import ChannelData
    from optimizer.model.funders import FunderData
    from optimizer.model.groups import GroupData
    from optimizer.model.layout import BlockLayout


@dataclass(frozen=True)
class OfferData:
    """Per-offer data, indexed by the offer index ``o`` (row order of the offers table).

    Attributes
    ----------
    discount: cost to the retailer of one redemption.
    budget: cap on expected spend after ``budget_scale``; ``inf`` = no cap.
    max_customers: cap on the number of customers; ``inf`` = no cap.
    min_customers: target number of customers (0 = none).
    categories: ``(n_offers, width)`` category indices of each offer, padded with -1; column 0 is
        the offer's primary category.
    category_names: the normalised category name of each category index.
    """

    discount: np.ndarray
    budget: np.ndarray
    max_customers: np.ndarray
    min_customers: np.ndarray
    categories: np.ndarray
    category_names: list[str]

    @property
    def n_offers(self) -> int:
        return int(self.discount.shape[0])

    @property
    def n_categories(self) -> int:
        return len(self.category_names)

    @property
    def multi_category(self) -> np.ndarray:
        """Whether each offer counts in more than one category."""
        if self.categories.shape[1] < 2:
            return np.zeros(self.n_offers, dtype=bool)
        return self.categories[:, 1] >= 0

    def multi_category_rows(self, offer: np.ndarray) -> np.ndarray:
        """Per row of a candidate layout ``offer`` (``(n, slots)`` offer indices, -1 in empty
        slots): whether any of its candidates counts in more than one category (the one test of
        the solver's exact responses; empty slots never count)."""
        return (self.multi_category[np.maximum(offer, 0)] & (offer >= 0)).any(axis=1)


@dataclass
class CandidateBlock:
    """Candidate pairs of a run of consecutive customers, in a padded 2-D layout.

    Attributes
    ----------
    customers: ``(n,)`` customer indices ``c``.
    offer: ``(n, slots)`` offer index of each candidate, -1 in empty slots.
    value: ``(n, slots)`` objective contribution (the output ``score``), 0 in empty slots.
    cost: ``(n, slots)`` expected cost ``p_redeem * discount``, 0 in empty slots.
    p_redeem: ``(n, slots)`` redemption probability.
    cap: ``(n,)`` how many offers each customer may still get this week.
    """

    customers: np.ndarray
    offer: np.ndarray
    value: np.ndarray
    cost: np.ndarray
    p_redeem: np.ndarray
    cap: np.ndarray

    @property
    def n_customers(self) -> int:
        return int(self.customers.shape[0])

    @property
    def n_pairs(self) -> int:
        return int((self.offer >= 0).sum())


@dataclass
class AssignmentProblem:
    """The whole problem: offers, candidate blocks and the scalar rules."""

    offers: OfferData
    blocks: list[CandidateBlock]
    max_per_category: int | None
    global_budget: float = float("inf")
    n_customers: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    # exclusive offers (optional ``offer_groups``): per customer, at most a group's limit
    groups: "GroupData | None" = None
    # budgets per funder (optional ``funders`` table over ``offers.funded_by``)
    funders: "FunderData | None" = None
    # channels and consent (optional ``channels`` tables): plans are ChannelPlans then
    channels: "ChannelData | None" = None
    # value of pairs fixed outside the blocks (rules.pin, optimizer/model/pins.py): the solvers'
    # gap tests count it in both the bound and the objective (0 otherwise)
    fixed_value: float = 0.0
    # the blocks' shapes when the Dask workers hold every pair and ``blocks`` is empty on the
    # driver (optimizer/model/layout.py)
    layout: "BlockLayout | None" = None

    @property
    def n_pairs(self) -> int:
        if self.layout is not None:
            return self.layout.n_pairs
        return sum(b.n_pairs for b in self.blocks)

    @cached_property
    def max_cap(self) -> int:
        """The largest per-customer cap of any customer (0 without customers)."""
        if self.layout is not None:
            return self.layout.max_cap
        return max((int(b.cap.max()) for b in self.blocks if b.n_customers), default=0)

    # --- evaluating a plan: ``chosen`` holds one boolean mask per block, shaped like its
    # ``offer``; every solver, test and benchmark judges plans with these

    def objective(self, chosen: list[np.ndarray], run: Mapper | None = None) -> float:
        """The plan's objective, ``sum value x`` (less its contact costs with channels): the
        exact sum of the chosen values correctly rounded once (:meth:`objective_exact`), so
        the same float however the plan is split (shards add their exact parts: any order)."""
        if not self.blocks or not chosen:
            return 0.0
        exact = self.objective_exact(chosen, run)
        # a value not finite: the float sum says inf or nan as before
        total = (exact_rounded(exact) if exact is not None else
                 float(chosen_values([b.value for b in self.blocks], chosen, run).sum()))
        if self.channels is None:
            return total
        from optimizer.model.channels import contact_cost
        return total - contact_cost(self.channels, chosen)

    def objective_exact(self, chosen: list[np.ndarray], run: Mapper | None = None
                        ) -> Exact | None:
        """The exact sum of the plan's chosen values (no contact costs), ``None`` when one is
        not finite: a shard's part of :meth:`objective`."""
        if not self.blocks or not chosen:
            return exact_sum(np.zeros(0))
        return exact_sum(chosen_values([b.value for b in self.blocks], chosen, run))

    def chosen_pairs(self, chosen: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The plan's (customer index, offer index) pairs, flat, block by block in row order."""
        cs, os_ = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
        for block, mask in zip(self.blocks, chosen):
            rows, slots = np.nonzero(mask)
            cs.append(block.customers[rows].astype(np.int64))
            os_.append(block.offer[rows, slots].astype(np.int64))
        return np.concatenate(cs), np.concatenate(os_)

    def usage(self, chosen: list[np.ndarray], run: Mapper | None = None) -> "Usage":
        """Expected spend and customers per offer of the plan (their sums: the global budget's
        use), summed in one chunk-independent order (``run``: a thread map for the blocks'
        walks, the same sums)."""
        n_offers = self.offers.n_offers
        if not self.blocks:
            return Usage(np.zeros(n_offers), np.zeros(n_offers, dtype=np.int64))
        used = plan_usage([b.offer for b in self.blocks], [b.cost for b in self.blocks], chosen,
                          n_offers, run)
        if used is not None:
            return Usage(*used)
        # a chosen empty slot: np.bincount refuses its offer -1
        offer = np.concatenate([b.offer[c] for b, c in zip(self.blocks, chosen)])
        cost = np.concatenate([b.cost[c] for b, c in zip(self.blocks, chosen)])
        return Usage(np.bincount(offer, weights=cost, minlength=n_offers),
                     np.bincount(offer, minlength=n_offers))

    def shortfall(self, chosen: list[np.ndarray], run: Mapper | None = None) -> int:
        """Customers missing from the ``min_customers`` targets, summed over offers (a target,
        not a rule: a plan with a shortfall is still feasible)."""
        targets = self.offers.min_customers
        if not (targets > 0).any():
            return 0
        counts = plan_counts([b.offer for b in self.blocks], chosen, self.offers.n_offers, run)
        if counts is None:  # an empty slot chosen: usage says so as np.bincount does
            counts = self.usage(chosen, run).customers
        return self.shortfall_of(counts)

    def shortfall_of(self, counts: np.ndarray) -> int:
        """:meth:`shortfall` of a plan that gives each offer ``counts`` customers."""
        return int(np.maximum(self.offers.min_customers - counts, 0).sum())

    def violations(self, chosen: list[np.ndarray], rtol: float = 0.0, atol: float = 0.0
                   ) -> dict[str, int]:
        """How many times the plan breaks each hard rule, by the manifest's constraint labels
        (``empty_slot``: a chosen slot without a candidate; ``offer_group``: customers over a
        group's limit; ``funder_budget``: funders over budget). Capacities (budgets, the global
        budget) are allowed ``rtol`` (relative) and ``atol`` (absolute) of rounding; counts are
        exact."""
        offers = self.offers
        out = dict.fromkeys(("empty_slot", "customer_cap", "category_cap", "budget",
                             "max_customers", "global_budget"), 0)
        for block, mask in zip(self.blocks, chosen):
            out["empty_slot"] += int((mask & (block.offer < 0)).sum())
            out["customer_cap"] += int((mask.sum(axis=1) > block.cap).sum())
            if self.max_per_category is not None and mask.any():
                rows, slots = np.nonzero(mask)
                cats = offers.categories[block.offer[rows, slots]]
                owner = np.repeat(rows, cats.shape[1])
                cats = cats.ravel()
                live = cats >= 0
                key = owner[live] * max(offers.n_categories, 1) + cats[live]
                if key.size:
                    out["category_cap"] += int((np.bincount(key) > self.max_per_category).sum())
        used = self.usage([m & (b.offer >= 0) for b, m in zip(self.blocks, chosen)])
        out["budget"] = int((used.spend > offers.budget * (1 + rtol) + atol).sum())
        out["max_customers"] = int((used.customers > offers.max_customers).sum())
        out["global_budget"] = int(used.total_spend > self.global_budget * (1 + rtol) + atol)
        # the campaign rules' labels appear only with their tables, so plans without them
        # report the same rules as before
        if self.groups is not None:
            from optimizer.model.groups import violating_rows
            out["offer_group"] = sum(int(violating_rows(self.groups, b.offer, m).sum())
                                     for b, m in zip(self.blocks, chosen))
        if self.funders is not None:  # shared budgets: the funders', then group flights'
            over = self.funders.per_funder(used.spend) > self.funders.budget * (1 + rtol) + atol
            listed = self.funders.n_listed
            if listed or not self.funders.n_flights:
                out["funder_budget"] = int(over[:listed].sum())
            if self.funders.n_flights:
                out["group_flight"] = int(over[listed:].sum())
        if self.channels is not None:
            from optimizer.model.channels import violations
            out.update(violations(self.channels, self.blocks, chosen, rtol, atol))
        return out

    def feasible(self, chosen: list[np.ndarray], rtol: float = 0.0, atol: float = 0.0) -> bool:
        """Whether the plan obeys every hard rule (:meth:`violations` all zero)."""
        return not any(self.violations(chosen, rtol, atol).values())


@dataclass(frozen=True)
class Usage:
    """What a plan uses of each offer: ``spend`` (expected cost) and ``customers``."""

    spend: np.ndarray
    customers: np.ndarray

    @property
    def total_spend(self) -> float:
        """The plan's expected spend over every offer (the global budget's use)."""
        return float(self.spend.sum())


class Status(StrEnum):
    """How a solve ended: the manifest's ``solver.status`` (these values, as strings).

    OPTIMAL: the gap is within ``solver.gap_tolerance`` (the exact solver: proven optimal).
    ITERATION_LIMIT: stopped at ``solver.max_iterations`` passes above the tolerance.
    TIME_LIMIT: stopped at ``solver.time_limit_s`` above the tolerance.
    STALLED: consecutive passes improved neither the bound nor the plan, above the tolerance.
    """

    OPTIMAL = "optimal"
    ITERATION_LIMIT = "iteration_limit"
    TIME_LIMIT = "time_limit"
    STALLED = "stalled"


def relative_gap(bound: float, objective: float) -> float:
    """The one gap: ``max(0, (bound - objective) / bound)``, 0 when the bound is not positive
    (the manifest's ``gap``, the solver's stopping test, the bound over all candidates)."""
    return max(0.0, (bound - objective) / bound) if bound > 0 else 0.0


@dataclass
class Prices:
    """Lagrange multipliers of the coupling constraints (the ``dual_prices`` of the manifest).

    budget: per offer, value lost per unit of expected cost (the shadow price of its budget).
    count: per offer, value lost per customer (the price of ``max_customers``).
    global_budget: value lost per unit of expected cost on every offer.
    target: per offer, a bonus that steers customers to offers short of ``min_customers``; it
        never enters the bound.
    funder: per funder, value lost per unit of expected cost on its offers (the price of its
        budget); ``funder_of``: each offer's funder index (-1: none). Both ``None`` without
        funders.
    channel: per channel, value lost per contact (the price of its capacity); contact: value
        lost per unit of contact cost (the price of ``rules.contact_budget``). ``None`` and 0
        without channels.
    """

    budget: np.ndarray
    count: np.ndarray
    global_budget: float = 0.0
    target: np.ndarray | None = None
    funder: np.ndarray | None = None
    funder_of: np.ndarray | None = None
    channel: np.ndarray | None = None
    contact: float = 0.0

    @classmethod
    def zeros(cls, n_offers: int) -> "Prices":
        return cls(np.zeros(n_offers), np.zeros(n_offers), 0.0, np.zeros(n_offers))

    @property
    def cost_price(self) -> np.ndarray:
        """Per offer, the price of a unit of its expected cost besides the global price: its
        budget's price plus its funder's (the ``budget`` array itself without funders)."""
        if self.funder is None or self.funder_of is None:
            return self.budget
        return self.budget + np.append(self.funder, 0.0)[self.funder_of]

    def towards(self, other: "Prices", share: float) -> "Prices":
        """``self + share * (other - self)`` on every constraint's price; the target bonus is
        ``other``'s (taken whole, not mixed)."""
        funder = None
        if other.funder is not None:
            mine = self.funder if self.funder is not None else np.zeros_like(other.funder)
            funder = mine + share * (other.funder - mine)
        channel = None
        if other.channel is not None:
            mine = self.channel if self.channel is not None else np.zeros_like(other.channel)
            channel = mine + share * (other.channel - mine)
        return Prices(self.budget + share * (other.budget - self.budget),
                      self.count + share * (other.count - self.count),
                      self.global_budget + share * (other.global_budget - self.global_budget),
                      other.target, funder, other.funder_of, channel,
                      self.contact + share * (other.contact - self.contact))

    def reduced_values(self, block: CandidateBlock, with_target: bool = True) -> np.ndarray:
        """``value - (budget price + funder price + global price) * cost - count price (+ target bonus)`` of
        every slot, ``-inf`` in empty ones (:func:`optimizer.model.reduced.reduced_values`)."""
        bonus = (self.target if with_target and self.target is not None
                 else np.zeros(self.budget.shape[0]))
        return reduced_values(block.value, block.cost, block.offer, self.cost_price, self.count,
                              self.global_budget, bonus)


@dataclass
class Solution:
    """What a solver returns: the chosen pairs of every block, and how good they are.

    status: a :class:`Status` value (held as its string, as the manifest writes it).
    bound: an upper bound on the best objective any plan obeying the hard rules could reach.
    """

    chosen: list[np.ndarray]
    objective: float
    bound: float
    status: str
    method: str
    iterations: int
    prices: Prices
    trace: list[dict[str, float | None]] = field(default_factory=list)
    # where the passes ran (the manifest's solver.backend): name, workers, shards, bytes per pass
    backend: dict = field(default_factory=lambda: {"name": "local", "workers": 1})
    # where the Dask workers held every pair: the problem of the plan's chosen pairs alone,
    # gathered from the shards, whose blocks ``chosen`` indexes (None: the problem solved)
    plan_problem: "AssignmentProblem | None" = None

    @property
    def gap(self) -> float:
        """:func:`relative_gap` of the bound and the objective."""
        return relative_gap(self.bound, self.objective)


def offer_data(offers: "pl.DataFrame", categories: np.ndarray, category_names: list[str],
               budget_scale: float) -> OfferData:
    """Per-offer arrays from the validated offers table (budgets scaled, missing caps infinite)."""
    import polars as pl  # local: the problem's data types need no polars

    def column(name: str, fill: float) -> np.ndarray:
        return offers.get_column(name).cast(pl.Float64).fill_null(fill).to_numpy().copy()

    return OfferData(
        discount=column("discount", 0.0),
        budget=_scaled(column("budget", np.inf), budget_scale),
        max_customers=column("max_customers", np.inf),
        min_customers=column("min_customers", 0.0).astype(np.int64),
        categories=categories,
        category_names=category_names,
    )


def _scaled(budget: np.ndarray, scale: float) -> np.ndarray:
    """Scale finite budgets; an uncapped offer stays uncapped even at scale 0."""
    finite = np.isfinite(budget)
    # inf x 0 would be NaN (and warn); only the finite budgets are multiplied
    return np.where(finite, np.where(finite, budget, 0.0) * scale, np.inf)


def block_from_pairs(customers: np.ndarray, row: np.ndarray, offer: np.ndarray,
                     p_redeem: np.ndarray, value: np.ndarray, discount: np.ndarray,
                     cap: np.ndarray) -> CandidateBlock:
    """Pack a chunk's candidate pairs, given flat and sorted by (``row``, ``offer``), into a block.

    ``row`` indexes ``customers``; the pairs are the ones to keep (already allowed by the rules
    and of positive value). Each customer's candidates fill her row left to right in offer order,
    so the layout, and every tie-break that follows it, is independent of the chunking. Offers are held as int32 (half the memory of
    the largest array of the problem; offer indices are far below 2**31).
    """
    n = customers.shape[0]
    counts = np.bincount(row, minlength=n)
    width = int(counts.max()) if n and row.size else 0
    packed_offer = np.full((n, width), -1, dtype=np.int32)
    packed_p, packed_value, packed_cost = (np.zeros((n, width)) for _ in range(3))
    _pack(row, offer, p_redeem, value, discount, (np.cumsum(counts) - counts),
          packed_offer, packed_p, packed_value, packed_cost)
    return CandidateBlock(customers=customers, offer=packed_offer, value=packed_value,
                          cost=packed_cost, p_redeem=packed_p, cap=cap.astype(np.int64))


@nb.njit(cache=True, nogil=True)
def _pack(row, offer, p_redeem, value, discount, first, packed_offer, packed_p, packed_value,
          packed_cost):  # pragma: no cover - compiled
    # one pass instead of five fancy-indexed scatters: 5.6 s -> well under 1 s at 43 M pairs
    for k in range(row.shape[0]):
        r = row[k]
        s = k - first[r]
        packed_offer[r, s] = offer[k]
        packed_p[r, s] = p_redeem[k]
        packed_value[r, s] = value[k]
        packed_cost[r, s] = p_redeem[k] * discount[offer[k]]
