"""The simulated world: ``demo-data``'s customers, with their true behaviour kept.

The world starts from the folder ``offeropt demo-data`` writes (26 weeks of purchases, six weeks
of campaign history) and recovers the latent traits the generator drew for it (the same seed
sequence, :mod:`optimizer.apps.synthetic`): each customer's weekly rate of purchase lines, her
category preferences, favourite brands and value. To these it adds what the demo data never
needed, drawn from the same seed:

* **Purchases.** In week ``t`` customer ``i`` buys in category ``k`` when ``U[t, i, k] < q_ik``,
  ``q_ik = 1 - exp(-rate_i x pref_ik)``; the purchase is worth ``spend_ik = price_k x
  value_i x (1 + rate_i x pref_ik)``.
* **Offers (the true, heterogeneous uplift).** An offer acts on its primary category. A send moves
  her to buy with probability ``m = persuade_i x r/(1+r) x strength_j x exp(-fatigue_i /
  fatigue_scale)`` (``r``: her preference for the category relative to the average,
  ``strength_j``: the discount relative to the category's price); several sends in a category
  combine as ``1 - prod(1 - m)``. With sends, she buys when ``U < q + (1 - q) m``: a customer who
  buys anyway (``U < q``) is not moved, and redeems the send only when ``V[t, i, j] < aware_i``
  (she uses a coupon for what she buys anyway: the discount is paid for nothing); a customer who
  is moved redeems it.
* **Engagement.** A customer who redeemed recently buys more: her purchase rate is multiplied by
  ``1 + engagement_lift x engaged_i`` (``engaged``: 1 in the week after a redemption, decaying
  by 0.75 a week), the issue's premise that a customer who gets offers she uses buys more.
* **Retention.** A customer leaves for good in week ``t`` when ``W[t, i] < h_i``, ``h_i =
  hazard_i x exp(-engaged_i x engagement_effect) x exp(fatigue_i x fatigue_effect)``: a redemption
  in the last weeks (``engaged``, decaying) keeps her, offers she ignores (``fatigue``, unredeemed
  sends decaying by ``fatigue_decay`` a week) push her away.

``U``, ``V`` and ``W`` are drawn from ``SeedSequence([seed, 7, week])``, the same for every
strategy and for the world without offers (common random numbers), so a strategy's incremental
sales are the difference of two worlds that differ only by its sends. All of a week is computed
with numpy over (customers x categories) and (sends), never a loop over customers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from optimizer.apps import synthetic as syn
from optimizer.core import numerics as nx

MARGIN_RATE = 0.25  # gross margin on sales, as `offeropt measure` assumes by default
WEEKLY_DISCOUNT = 0.995  # customer equity: a week's margin a year ahead is worth ~0.77 today
HISTORY_WEEKS = 26


@dataclass(frozen=True)
class Truth:
    """What the world knows and the optimizer never sees (one array per customer or offer)."""

    rate: np.ndarray  # (N,) purchase lines per week
    pref: np.ndarray  # (N, C) category preferences, rows sum to 1
    fav_group: np.ndarray  # (N, C) her favourite brand group per category
    value: np.ndarray  # (N,) spend multiplier
    persuade: np.ndarray  # (N,) how far an offer moves her
    aware: np.ndarray  # (N,) chance she redeems an offer for what she buys anyway
    hazard: np.ndarray  # (N,) weekly chance of leaving, before engagement and fatigue
    offer_cat: np.ndarray  # (M,) the offer's primary category
    offer_discount: np.ndarray  # (M,)
    offer_strength: np.ndarray  # (M,)
    offer_product: np.ndarray  # (M,) product index of the line a redemption is booked on
    price: np.ndarray  # (C,) category price level
    prod_id: np.ndarray  # (P,) product ids by index
    group_start: np.ndarray
    group_size: np.ndarray
    fatigue_scale: float = 6.0
    fatigue_decay: float = 0.7
    fatigue_effect: float = 0.06
    engagement_effect: float = 0.8
    engagement_lift: float = 0.15
    seed: int = 0

    @property
    def n_customers(self) -> int:
        return int(self.rate.shape[0])

    def spend(self) -> np.ndarray:
        """(N, C) the value of a purchase in each category."""
        return self.price[None, :] * self.value[:, None] * (1.0 + self.rate[:, None] * self.pref)

    def buy_chance(self, engaged: np.ndarray | None = None) -> np.ndarray:
        """(N, C) the weekly chance of a purchase in each category without offers, at her
        engagement (none: not engaged)."""
        rate = self.rate if engaged is None else self.rate * (1.0 + self.engagement_lift * engaged)
        return -nx.expm1(-rate[:, None] * self.pref)

    def equity(self, alive: np.ndarray, hazard: np.ndarray) -> float:
        """Customer equity: the alive customers' expected margin over their remaining lifetime,
        discounted weekly (the sum of their true lifetime values)."""
        weekly = MARGIN_RATE * (self.buy_chance() * self.spend()).sum(axis=1)
        life = 1.0 / (1.0 - (1.0 - hazard) * WEEKLY_DISCOUNT)
        return float((weekly * life)[alive].sum())


@dataclass
class State:
    """One trajectory of the world: who is still a customer, and her engagement and fatigue."""

    alive: np.ndarray
    engaged: np.ndarray
    fatigue: np.ndarray
    sent_total: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def start(cls, n: int) -> "State":
        return cls(np.ones(n, bool), np.zeros(n), np.zeros(n), np.zeros(n))

    def hazard(self, truth: Truth) -> np.ndarray:
        return np.minimum(truth.hazard * nx.exp(-self.engaged * truth.engagement_effect
                                                + self.fatigue * truth.fatigue_effect), 1.0)


@dataclass
class WeekOutcome:
    """A week of one trajectory: its purchase lines and redemptions, and its totals."""

    lines: pl.DataFrame  # customer index, product index, category, sales_value, discount
    redemptions: pl.DataFrame  # customer index, offer index
    sales: float
    redemptions_count: int
    cost: float
    retained: int
    equity: float
    fatigue: float
    n_customers: int  # customers in the world


def _offer_products(offers: syn._Offers, cat: syn._Catalog) -> np.ndarray:
    """A product of each offer in its primary category: its first listed one, else the
    category's best-selling product of its first brand group."""
    first = np.full(offers.M, -1, np.int64)
    if offers.op_offer.size:
        in_primary = cat.prod_cat[offers.op_prod] == offers.primary[offers.op_offer]
        o, p = offers.op_offer[in_primary], offers.op_prod[in_primary]
        order = np.lexsort((p, o))
        o, p = o[order], p[order]
        head = np.r_[True, o[1:] != o[:-1]] if o.size else np.zeros(0, bool)
        first[o[head]] = p[head]
    group_of_cat = np.searchsorted(cat.group_cat, np.arange(cat.C))
    fallback = cat.group_start[group_of_cat[offers.primary]]
    return np.where(first >= 0, first, fallback)


def build_truth(seed: int, customers: int, offers: int, planning_week: int = 40
                ) -> tuple[Truth, syn._Offers]:
    """Recover the latent traits ``write_demo_data(seed, customers, offers)`` drew (its seed
    sequence, chunk by chunk) and draw the world's own traits from ``SeedSequence([seed, 7])``."""
    root = np.random.SeedSequence(int(seed))
    ss_static, ss_sample, ss_chunks = root.spawn(3)
    rng = np.random.default_rng(ss_static)
    cat = syn._Catalog(rng, max(2000, 10 * offers))
    n_sample = min(customers, 20_000)
    sample = syn._customer_latents(np.random.default_rng(ss_sample), n_sample, cat, HISTORY_WEEKS)
    buyers = (-nx.expm1(-sample["mean_lines"][:, None] * sample["pref"])).mean(axis=0) * customers
    off = syn._Offers(rng, offers, customers, cat, buyers, planning_week)
    parts: list[dict] = []
    n_chunks = -(-customers // syn.CHUNK_CUSTOMERS)
    for c, ss in enumerate(ss_chunks.spawn(n_chunks)):  # a few chunks, never a customer loop
        lo, hi = c * syn.CHUNK_CUSTOMERS, min(customers, (c + 1) * syn.CHUNK_CUSTOMERS)
        parts.append(syn._customer_latents(np.random.default_rng(ss.spawn(5)[0]), hi - lo, cat,
                                           HISTORY_WEEKS))
    lat = {k: np.concatenate([p[k] for p in parts]) for k in ("mean_lines", "pref", "fav_group",
                                                             "value_factor")}
    own = np.random.default_rng(np.random.SeedSequence([int(seed), 7]))
    n = customers
    price = np.array([c[2] for c in syn.CATEGORIES])
    truth = Truth(
        rate=lat["mean_lines"] / HISTORY_WEEKS, pref=lat["pref"], fav_group=lat["fav_group"],
        value=lat["value_factor"], persuade=own.beta(1.2, 3.0, n), aware=own.beta(2.0, 5.0, n),
        hazard=own.uniform(0.002, 0.03, n), offer_cat=off.primary.astype(np.int64),
        offer_discount=off.discount.astype(float),
        offer_strength=np.minimum(1.0, 1.5 * off.discount / price[off.primary]),
        offer_product=_offer_products(off, cat), price=price, prod_id=cat.prod_id,
        group_start=cat.group_start, group_size=cat.group_size, seed=int(seed))
    return truth, off


def week_draws(truth: Truth, week: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """The week's common random numbers: ``U`` (N, C) for purchases, ``W`` (N,) for churn, and a
    generator for the per-send ``V`` (drawn as an (N, M) matrix, float32, on demand)."""
    rng = np.random.default_rng(np.random.SeedSequence([truth.seed, 7, int(week)]))
    u = rng.random(truth.pref.shape)
    w = rng.random(truth.n_customers)
    return u, w, rng


def step(truth: Truth, state: State, week: int, sends_c: np.ndarray, sends_o: np.ndarray,
         draws: tuple[np.ndarray, np.ndarray, np.ndarray]) -> WeekOutcome:
    """Advance ``state`` by one week with the sends ``(sends_c, sends_o)`` (customer and offer
    indexes) and return the week's lines and totals; ``draws`` = ``(U, W, V)`` of the week."""
    u, w, v = draws
    n = truth.n_customers
    alive = state.alive
    q = truth.buy_chance(state.engaged)
    spend = truth.spend()
    live = alive[sends_c]
    sc, so = sends_c[live], sends_o[live]
    k = truth.offer_cat[so]
    C = truth.pref.shape[1]
    r = truth.pref[sc, k] * C
    m = (truth.persuade[sc] * r / (1.0 + r) * truth.offer_strength[so]
         * nx.exp(-state.fatigue[sc] / truth.fatigue_scale))
    # several sends in one category: the chance none of them moves her is the product
    not_moved = np.ones((n, C))
    np.multiply.at(not_moved, (sc, k), 1.0 - m)
    threshold = q + (1.0 - q) * (1.0 - not_moved)
    buy = (u < threshold) & alive[:, None]
    anyway = u < q
    redeemed = buy[sc, k] & (~anyway[sc, k] | (v[sc, so] < truth.aware[sc]))
    rc, ro = sc[redeemed], so[redeemed]
    bc, bk = np.nonzero(buy)
    # the line of a redeemed category carries the offer's product and its discount
    line_disc = np.zeros((n, C))
    np.add.at(line_disc, (rc, truth.offer_cat[ro]), truth.offer_discount[ro])
    offer_prod = np.full((n, C), -1, np.int64)
    offer_prod[rc, truth.offer_cat[ro]] = truth.offer_product[ro]
    g = truth.fav_group[bc, bk]
    own = truth.group_start[g] + ((u[bc, bk] * 7919.0) % 1.0 * truth.group_size[g]).astype(np.int64)
    prod = np.where(offer_prod[bc, bk] >= 0, offer_prod[bc, bk], own)
    sales = spend[bc, bk]
    day = ((u[bc, bk] * 104729.0) % 1.0 * 7).astype(np.int64)  # the weekday, from the same draw
    lines = pl.DataFrame({"c": bc.astype(np.int64), "p": prod, "day": day,
                          "sales_value": np.round(sales, 2),
                          "discount": np.round(line_disc[bc, bk], 2)})
    # engagement, fatigue and churn, in that order (this week's response sets next week's odds)
    red_any = np.bincount(rc, minlength=n) > 0
    unredeemed = np.bincount(sc, minlength=n) - np.bincount(rc, minlength=n)
    state.engaged = np.where(red_any, 1.0, state.engaged * 0.75)
    state.fatigue = state.fatigue * truth.fatigue_decay + unredeemed
    state.sent_total = state.sent_total + np.bincount(sc, minlength=n)
    hazard = state.hazard(truth)
    state.alive = alive & ~(w < hazard)
    cost = float(truth.offer_discount[ro].sum())
    return WeekOutcome(
        lines=lines, redemptions=pl.DataFrame({"c": rc.astype(np.int64),
                                               "o": ro.astype(np.int64)}),
        sales=float(np.round(sales, 2).sum()), redemptions_count=int(rc.size), cost=cost,
        retained=int(state.alive.sum()), equity=truth.equity(state.alive, hazard),
        fatigue=float(state.fatigue[state.alive].mean()) if state.alive.any() else 0.0,
        n_customers=n)


def send_draws(rng: np.random.Generator, truth: Truth, n_offers: int) -> np.ndarray:
    """``V`` (N, M) float32: the per-send draws of the week (after ``U`` and ``W``)."""
    return rng.random((truth.n_customers, n_offers), dtype=np.float32)

