"""Repurchase propensity: the default model, built on what she does with the offer's own products.

For customer i, offer j and a week t, every feature reads rows of weeks before t only (point in
time; ``pair_features`` takes t per pair, so each training send sees its own week's past):

* pair (sparse: 0 unless she bought the offer's categories or redeemed it):
  ``product_weeks`` her share of shopping weeks with a purchase of j's own products
  (``offer_products``); ``category_weeks`` the same for j's categories; ``product_recency``
  ``0.5 ** ((t - last) / 4)`` of her last week buying j's products; ``due`` how due she is given
  her own inter-purchase time for them (``min(r, 1 / r)`` with ``r`` = weeks since her last
  purchase / her mean weeks between purchases; needs two purchase weeks); ``redeemed_offer``
  she redeemed j before; ``product_log`` ``log1p`` of her weeks buying j's products;
  ``product_rarity`` ``-log`` of the share of customers who had bought j's products (where she
  did: a coupon for products few others buy says more about her than one for milk).
* customer: ``activity`` ``log1p`` of her shopping weeks; ``response`` her redemption rate of
  earlier sends, shrunk to everyone's (log ratio, :data:`CUSTOMER_PRIOR_SENDS`);
  ``discount_share`` the share of her spend bought on a discount (coupon and price sensitivity);
  ``redeemed_log`` ``log1p`` of the offers she redeemed before (her coupon habit: where an offer
  can reach only some customers, ``max_customers``, it decides who gets it).
* offer: ``offer_lift`` the offer's own past redemption rate, shrunk (:data:`OFFER_PRIOR_SENDS`);
  ``depth`` its discount over its categories' average line value.

Weights come from a logistic regression (L2-penalised maximum likelihood on standardised columns,
a projected L-BFGS, :func:`~optimizer.scoring.mle.minimize_bounded`; a logistic model because its
score splits into customer + offer + sparse pair terms, so scoring a million customers stays one
sparse pass, and maximum likelihood makes it calibrated
on its training pairs) fitted on past sends labelled by whether she redeemed them
(:mod:`optimizer.scoring.fit` picks the pairs; :mod:`optimizer.scoring.repurchase_fit` fits
them). Before the final fit the sends of every fourth customer are held out, and the richest
feature set of :data:`LADDER` that ranks them (AUC) at least as well as buy-again
(``product_weeks`` then ``category_weeks``) and every smaller set is kept, else buy-again's two
features; where the heuristic formula ranks them better still, the formula plans instead. The
manifest says which and why.

Scoring clips each pair feature to its range on the training sends (:meth:`Repurchase.clip`).

Offers of a running campaign (open, no send in history: their sends are what is planned) have no
learned weight for their redemptions so far, since the fit never sees an offer redeemed before
its send; when scoring, :func:`~optimizer.scoring.popularity.popularity_factor` multiplies her odds for such an offer, where she
bought its products, by its empirical-Bayes popularity (its buyers' redemptions so far against
the model's expectation, shrunk by a gamma prior fitted across these offers).

Scoring reuses the compiled affinity kernels unchanged: :func:`as_affinity` puts the sparse
product-level pair term (scaled into [-1, 1]) in the model's ``product`` slot against an identity
offer incidence, her ``(C, K)`` category week shares in the ``category`` slot (the kernels
multiply them by the offer incidence and cap the sum at 1, as ``category_weeks`` is defined), the
customer and offer terms in the propensity's linear parts, and zeroes every other coefficient, so
``eta = customer[i] + offer[j] + scale * pair[i, j] + b_cat * min(category[i, j], 1)`` exactly.
Nothing is materialised per customer x offer beyond the pairs where she bought the offer's own
products.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from optimizer.core import numerics as nx
from optimizer.core.numerics import group_running_sum
from optimizer.io.validate import Inputs
from optimizer.scoring._repurchase_kernels import (
    events_before,
    line_timelines,
    spend_keys,
    weekly_spend,
)
from optimizer.scoring.features import PurchaseLines
from optimizer.scoring.popularity import popularity_factor
from optimizer.scoring.propensity import FEATURES, Propensity
from optimizer.scoring.response import CUSTOMER_PRIOR_SENDS, OFFER_PRIOR_SENDS, first_weeks

PAIR = ("product_weeks", "category_weeks", "product_recency", "due", "redeemed_offer",
        "product_log", "product_rarity")
CUSTOMER = ("activity", "response", "discount_share", "redeemed_log")
OFFER = ("offer_lift", "depth")
NAMES = ("intercept", *PAIR, *CUSTOMER, *OFFER)
BUY_AGAIN = ("intercept", "product_weeks", "category_weeks")
# buy-again plus how much of the offer's products she buys, how few others do and how many
# offers she redeemed so far: few coefficients, so a hundred redemptions can learn them where
# the full model overfits
CORE = ("intercept", "product_weeks", "category_weeks", "product_log", "product_rarity",
        "redeemed_log")
LADDER: tuple[tuple[str, ...], ...] = (NAMES, CORE)  # richest first
LADDER_NAMES: dict[tuple[str, ...], str] = {NAMES: "full", CORE: "core"}
_PAIR_CHUNK = 2_000_000  # pairs whose feature columns are built at once when scoring
_SHIFT = 2**21  # weeks live in [-2**20, 2**20): keys (entity << 21) + week stay int64


def _key(entity: np.ndarray, week: np.ndarray) -> np.ndarray:
    return entity.astype(np.int64) * _SHIFT + (week.astype(np.int64) + 2**20)


@dataclass(frozen=True)
class Timeline:
    """Sorted keys of dated events: count and first/last week before a given week, vectorised."""

    keys: np.ndarray

    @staticmethod
    def of(entity: np.ndarray, week: np.ndarray) -> "Timeline":
        """Events (``entity``, ``week``), duplicates kept as given."""
        return Timeline(np.sort(_key(entity, week)))

    def before(self, entity: np.ndarray, week: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per query: events of ``entity`` in weeks before ``week``: count, first and last week
        (-1 when none)."""
        entity = np.asarray(entity)
        week = np.broadcast_to(np.asarray(week, np.int64), entity.shape)
        if entity.size > 1 and not bool(np.all(entity[1:] >= entity[:-1])):
            # queries in random order are answered in entity order and put back: each search
            # then starts from the previous answer, in cache
            order = np.argsort(entity, kind="stable")
            out = tuple(np.empty(entity.size, np.int64) for _ in range(3))
            for put, got in zip(out, events_before(self.keys, entity[order], week[order],
                                                   _SHIFT, 2**20)):
                put[order] = got
            return out
        return events_before(self.keys, entity, week, _SHIFT, 2**20)


@dataclass
class Sources:
    """The event timelines every feature reads (built once per run)."""

    n_offers: int
    shop: Timeline  # (c, week) distinct shopping weeks
    product: Timeline  # (c * M + o, week) distinct weeks with a purchase of o's products
    category: Timeline  # (c * K + k, week) distinct weeks with a purchase in category k
    offer_categories: sp.csr_matrix  # (M, K) the offers' categories (the model's own index)
    # keys (c, week), her running sales and discounted sales
    spend: tuple[np.ndarray, np.ndarray, np.ndarray]
    sent: Timeline  # (c, week) first send of each (c, o)
    redeemed: Timeline  # (c, week) first redemption of each (c, o)
    offer_sent: Timeline  # (o, week)
    offer_redeemed: Timeline
    pair_redeemed: Timeline  # (c * M + o, week)
    depth: np.ndarray
    # (first week, (M, weeks + 1) running counts): customers who bought o's products before a week
    buyers: tuple[int, np.ndarray]
    n_customers: int
    # (M,) offers' start and end weeks (offers.start_week, end_week; -1 where missing, and the
    # start -1 for the offers outside ``plain``: their sends and redemptions are not read)
    window: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    # running counts of events per week, by timeline name (filled by ``_events_before``)
    weekly: dict[str, tuple[int, np.ndarray]] = field(default_factory=dict)


def _product_offers(inputs: Inputs, n_products: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr over products, offer indices) of ``offer_products``."""
    if inputs.offer_products is None or inputs.offer_products.height == 0:
        return np.zeros(n_products + 1, np.int64), np.zeros(0, np.int64)
    p = inputs.offer_products.get_column("p").to_numpy().astype(np.int64)
    o = inputs.offer_products.get_column("o").to_numpy().astype(np.int64)
    order = np.lexsort((o, p))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(p, minlength=n_products))])
    return indptr, o[order]


def sources(inputs: Inputs, lines: PurchaseLines, offer_categories: sp.csr_matrix,
            depth: np.ndarray, plain: np.ndarray, week: int, threads: int = 1,
            sent_first: pl.DataFrame | None = None) -> Sources:
    """Read the purchase ``lines`` (:func:`optimizer.scoring.features.purchase_lines`), offer_products,
    history and redemptions of weeks before ``week`` (sends and redemptions of the offers
    ``plain`` only: sensitive ones never feed a feature). ``offer_categories``: ``(K, M)``
    incidence over ``lines.categories`` (the affinity model's ``offer_categories_``).

    Privacy by design: lines in the sensitive categories (``lines.sensitive``) count only towards
    the offers that list their products or categories (sensitive offers themselves), never in her
    shopping weeks or spend, so they cannot move her scores for any other offer. Built from sorted
    keys (:mod:`optimizer.scoring._repurchase_kernels`), never a customer x offer table, on
    ``threads`` threads (the same sources for any number). ``sent_first``: the history's
    :func:`~optimizer.scoring.response.first_weeks` before ``week``, when the caller has it."""
    m = inputs.n_offers
    n_k = max(len(lines.categories), 1)
    indptr, offers_of = _product_offers(inputs, inputs.products.height)
    shop, category, product = (Timeline(keys) for keys in line_timelines(
        lines.c, lines.k, lines.p, lines.week, lines.sensitive, week, n_k, m, indptr, offers_of,
        _SHIFT, 2**20, threads))
    spend = _running_spend(lines, week)

    def timeline(frame: pl.DataFrame, entity: pl.Expr) -> Timeline:
        return Timeline.of(frame.select(entity).to_series().to_numpy(),
                           frame.get_column("week").to_numpy())
    pair = pl.col("c") * m + pl.col("o")
    red = first_weeks(inputs.redemptions, plain, week)
    if sent_first is None:
        sent_first = first_weeks(inputs.history, plain, week)
    sent = pl.concat([sent_first, red]).group_by("c", "o").agg(pl.col("week").min())
    return Sources(
        m, shop, product, category, sp.csr_matrix(offer_categories.T, shape=(m, n_k)), spend,
        timeline(sent, pl.col("c")), timeline(red, pl.col("c")), timeline(sent, pl.col("o")),
        timeline(red, pl.col("o")), timeline(red, pair), np.asarray(depth, float),
        _first_buyers(product, m), inputs.n_customers,
        _window(inputs, plain))


def _window(inputs: Inputs, plain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The offers' (start, end) weeks for the popularity factor, -1 where missing; the start
    -1 for the offers outside ``plain`` (sensitive ones), whose sends the sources leave out, so
    that they never look like a running campaign's."""
    start, end = (inputs.offers.get_column(k).fill_null(-1).to_numpy().astype(np.int64)
                  for k in ("start_week", "end_week"))
    outside = np.ones(start.size, bool)
    outside[np.asarray(plain, np.int64)] = False
    return np.where(outside, -1, start), end


def _running_spend(lines: PurchaseLines, week: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keys (c, week) of her shopping weeks before ``week`` (ordinary lines) and her running
    sales and discounted sales over them. Its own function so that its per-line temporaries are
    gone before the timelines that follow are built (they made the fit's memory peak)."""
    ordered, keys, running, discounted_running = weekly_spend(
        lines.c, lines.week, lines.sales, lines.discounted, lines.sensitive, week, _SHIFT, 2**20)
    if ordered:  # one pass over the lines, no per-line temporaries
        return keys, running, discounted_running
    del keys, running, discounted_running
    rows = np.flatnonzero((lines.week < week) & ~lines.sensitive)
    spend_key = spend_keys(lines.c, lines.week, rows, _SHIFT, 2**20)
    sales = lines.sales[rows]
    discounted = lines.discounted[rows]
    del rows
    if spend_key.size and not bool(np.all(spend_key[1:] >= spend_key[:-1])):
        # lines come by customer and day, so weeks are usually in order already: then the
        # stable sort would change nothing
        order = np.argsort(spend_key, kind="stable")
        spend_key, sales, discounted = spend_key[order], sales[order], discounted[order]
        del order
    if not spend_key.size:  # no ordinary purchase before the week
        return spend_key, np.zeros(0), np.zeros(0)
    cuts = np.flatnonzero(np.concatenate([[True], spend_key[1:] != spend_key[:-1]]))
    keys = spend_key[cuts]
    del spend_key
    entity = keys // _SHIFT
    # sums that restart with each entity: her running spend never depends on anyone else's rows
    weekly_sales = np.add.reduceat(sales, cuts)
    sales = np.where(discounted, sales, 0.0)  # now the discounted lines' sales
    del discounted
    weekly_discounted = np.add.reduceat(sales, cuts)
    del sales
    return (keys, group_running_sum(entity, weekly_sales),
            group_running_sum(entity, weekly_discounted))


def _first_buyers(product: Timeline, n_offers: int) -> tuple[int, np.ndarray]:
    """Per offer and week, how many customers had bought its products in earlier weeks: the
    first week of each (customer, offer) timeline, counted per (offer, week) and summed along the
    weeks (one bincount: no sort of the pairs)."""
    entity = product.keys // _SHIFT
    if entity.size == 0:
        return 0, np.zeros((n_offers, 1), np.int64)
    first = np.flatnonzero(np.concatenate([[True], entity[1:] != entity[:-1]]))
    week = product.keys[first] % _SHIFT - 2**20
    low = int(week.min())
    span = int(week.max()) - low + 1
    counts = np.bincount((entity[first] % n_offers) * span + (week - low),
                         minlength=n_offers * span).reshape(n_offers, span)
    return low, np.concatenate([np.zeros((n_offers, 1), np.int64),
                                np.cumsum(counts, axis=1)], axis=1)


def _shrunk(red: np.ndarray, sent: np.ndarray, base: np.ndarray, prior: float) -> np.ndarray:
    ok = base > 0
    safe = np.where(ok, base, 1.0)
    return np.where(ok, nx.log((red + prior * safe) / (sent + prior) / safe), 0.0)


def customer_features(s: Sources, c: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
    """``CUSTOMER`` features of customers ``c`` as of weeks ``t``."""
    weeks, _, _ = s.shop.before(c, t)
    sent, _, _ = s.sent.before(c, t)
    red, _, _ = s.redeemed.before(c, t)
    base = _base(s, t)
    keys, sales, disc = s.spend
    lo = np.searchsorted(keys, _key(c, np.full(c.shape, -2**20)))
    hi = np.searchsorted(keys, _key(c, t))
    some = hi > lo
    at = np.maximum(hi - 1, 0)
    total = np.where(some, sales[at] if sales.size else 0.0, 0.0)
    discounted = np.where(some, disc[at] if disc.size else 0.0, 0.0)
    return {"activity": nx.log1p(weeks),
            "response": _shrunk(red, sent, base, CUSTOMER_PRIOR_SENDS),
            "discount_share": np.where(total > 0, discounted / np.maximum(total, 1e-12), 0.0),
            "redeemed_log": nx.log1p(red)}


def _base(s: Sources, t: np.ndarray) -> np.ndarray:
    """Everyone's redemption rate of sends before each week ``t``."""
    n_sent = _events_before(s, "sent", t)
    return np.where(n_sent > 0, _events_before(s, "redeemed", t) / np.maximum(n_sent, 1), 0.0)


def _events_before(s: Sources, name: str, t: np.ndarray) -> np.ndarray:
    """How many events of the timeline ``name`` fall in weeks before each ``t``: a running count
    per week, built once per :class:`Sources` (the counts a sort and search of every event's
    week would give, without sorting them for each call)."""
    if name not in s.weekly:
        weeks = getattr(s, name).keys % _SHIFT
        first = int(weeks.min(initial=0))
        s.weekly[name] = (first, np.concatenate([[0], np.cumsum(np.bincount(weeks - first))]))
    first, running = s.weekly[name]
    at = np.clip(np.asarray(t, np.int64) + 2**20 - first, 0, running.size - 1)
    return running[at]


def offer_features(s: Sources, o: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
    """``OFFER`` features of offers ``o`` as of weeks ``t``."""
    sent, _, _ = s.offer_sent.before(o, t)
    red, _, _ = s.offer_redeemed.before(o, t)
    return {"offer_lift": _shrunk(red, sent, _base(s, t), OFFER_PRIOR_SENDS),
            "depth": s.depth[o]}


def pair_features(s: Sources, c: np.ndarray, o: np.ndarray, t: np.ndarray,
                  with_category: bool = True) -> dict[str, np.ndarray]:
    """``PAIR`` features of pairs (``c``, ``o``) as of weeks ``t`` (``category_weeks`` 0
    unless ``with_category``)."""
    pair = c.astype(np.int64) * s.n_offers + o
    weeks, _, _ = s.shop.before(c, t)
    n_p, first, last = s.product.before(pair, t)
    red, _, _ = s.pair_redeemed.before(pair, t)
    shops = np.maximum(weeks, 1)
    since = np.maximum(t - last, 1)
    interval = np.where(n_p >= 2, (last - first) / np.maximum(n_p - 1, 1), 0.0)
    ratio = since / np.maximum(interval, 1.0)
    category = category_weeks(s, c, o, t, shops) if with_category else np.zeros(c.size)
    low, running = s.buyers
    buyers = running[o, np.clip(t - low, 0, running.shape[1] - 1)]
    rarity = -nx.log((buyers + 1.0) / (s.n_customers + 1.0))
    return {"product_weeks": n_p / shops, "category_weeks": category,
            "product_log": nx.log1p(n_p),
            "product_rarity": np.where(n_p > 0, rarity, 0.0),
            "product_recency": np.where(n_p > 0, nx.power(0.5, (t - last) / 4.0), 0.0),
            "due": np.where(n_p >= 2, np.minimum(ratio, 1.0 / ratio), 0.0),
            "redeemed_offer": (red > 0).astype(float)}


def category_weeks(s: Sources, c: np.ndarray, o: np.ndarray, t: np.ndarray,
                   shops: np.ndarray) -> np.ndarray:
    """Her share of shopping weeks with a purchase in each of the offer's categories, summed over
    them and capped at 1 (what the compiled kernels compute from :func:`category_matrix`)."""
    inc = s.offer_categories
    counts = np.diff(inc.indptr)[o]
    pair = np.repeat(np.arange(c.size), counts)
    offset = np.arange(pair.size) - np.repeat(np.cumsum(counts) - counts, counts)
    k = inc.indices[np.repeat(inc.indptr[o], counts) + offset].astype(np.int64)
    n_k, _, _ = s.category.before(c[pair].astype(np.int64) * inc.shape[1] + k, t[pair])
    total = np.bincount(pair, weights=n_k / shops[pair], minlength=c.size)
    return np.minimum(total, 1.0)


def _as_of(timeline: Timeline, week: int) -> tuple[np.ndarray, np.ndarray]:
    """Entities with events before ``week`` and how many each has."""
    keep = (timeline.keys % _SHIFT) < week + 2**20
    entity = timeline.keys[keep] // _SHIFT  # sorted: the keys are
    if entity.size == 0:
        return entity, entity
    starts = np.flatnonzero(np.concatenate([[True], entity[1:] != entity[:-1]]))
    return entity[starts], np.diff(np.concatenate([starts, [entity.size]]))


def design(s: Sources, c: np.ndarray, o: np.ndarray, t: np.ndarray,
           names: tuple[str, ...] = NAMES) -> np.ndarray:
    """``(n, len(names))`` feature matrix of pairs (``c``, ``o``) as of weeks ``t``."""
    cols = {"intercept": np.ones(c.size), **pair_features(s, c, o, t),
            **customer_features(s, c, t), **offer_features(s, o, t)}
    return np.column_stack([cols[n] for n in names]).astype(float)


@dataclass
class Repurchase:
    """A fitted repurchase model: coefficients by name, and what the manifest records."""

    names: tuple[str, ...]
    coef: np.ndarray
    rate: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)
    # per feature name, the (low, high) range of its values on the training sends: scoring
    # clips each feature to it (:meth:`clip`); empty: no clipping
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)

    def clip(self, feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Clip each feature of ``feats`` to its range on the training sends, in place (no copy
        of a chunk's columns), and return ``feats``. A no-op on the training sends; beyond them
        a linear model's weights say nothing, so a pair further out than any of them (her weeks
        buying any of a department coupon's thousands of products) scores as the furthest did.
        The manifest records the ranges (``propensity.clipped_to``)."""
        for k, v in feats.items():
            if k in self.bounds:
                np.clip(v, *self.bounds[k], out=v)
        return feats

    def parts(self, s: Sources, n_customers: int, week: int
              ) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix, sp.csr_matrix, float]:
        """Customer term ``(C,)`` (intercept included), offer term ``(M,)``, the sparse
        product-level pair term ``(C, M)``, her ``(C, K)`` category week shares and their
        coefficient, as of ``week``: ``eta = customer + offer + pair + coef x min(share @
        offer_categories, 1)``."""
        beta = dict(zip(self.names, self.coef))
        c_all = np.arange(n_customers, dtype=np.int64)
        t_c = np.full(n_customers, week, np.int64)
        cust = customer_features(s, c_all, t_c)
        customer = beta["intercept"] + sum((beta[k] * cust[k] for k in CUSTOMER if k in beta),
                                           np.zeros(n_customers))
        o_all = np.arange(s.n_offers, dtype=np.int64)
        off = offer_features(s, o_all, np.full(s.n_offers, week, np.int64))
        offer = sum((beta[k] * off[k] for k in OFFER if k in beta), np.zeros(s.n_offers))
        # the product-level terms: pairs where she bought the offer's products or redeemed it
        bought = _as_of(s.product, week)[0]
        redeemed = _as_of(s.pair_redeemed, week)[0]
        at = np.minimum(np.searchsorted(bought, redeemed), max(bought.size - 1, 0))
        extra = redeemed[bought[at] != redeemed] if bought.size else redeemed
        support = np.concatenate([bought, extra])
        c, o = support // s.n_offers, support % s.n_offers
        value = np.empty(c.size)
        # in chunks of pairs: every feature is the pair's own, so chunks give the same bits, and
        # only one chunk's feature columns are held at a time (the run's memory peak otherwise)
        for lo in range(0, c.size, _PAIR_CHUNK):
            hi = min(lo + _PAIR_CHUNK, c.size)
            feats = self.clip(pair_features(s, c[lo:hi], o[lo:hi],
                                            np.full(hi - lo, week, np.int64),
                                            with_category=False))
            value[lo:hi] = sum((beta[k] * feats[k] for k in PAIR
                                if k in beta and k != "category_weeks"), np.zeros(hi - lo))
        # a running campaign's offers: her odds times the offer's popularity so far, where she
        # bought its products (empirical Bayes, optimizer/scoring/popularity.py)
        bump = popularity_factor(s, c, o, (customer, offer, value), week, self.info)
        if bump is not None:
            value = value + bump
        pair = sp.csr_matrix((value, (c, o)), shape=(n_customers, s.n_offers))
        pair.eliminate_zeros()
        # the category term: (C, K) shares, multiplied by the offer incidence in the kernels
        entity, n = _as_of(s.category, week)
        k_count = s.offer_categories.shape[1]
        ck_c = entity // k_count
        shops = np.maximum(s.shop.before(ck_c, np.full(ck_c.size, week, np.int64))[0], 1)
        share = sp.csr_matrix((n / shops, (ck_c, entity % k_count)),
                              shape=(n_customers, k_count))
        return customer, offer, pair, share, float(beta.get("category_weeks", 0.0))

    def describe(self) -> dict[str, Any]:
        """For the manifest."""
        return {"model": "repurchase", "rate": self.rate,
                "coefficients": dict(zip(self.names, np.round(self.coef, 6).tolist())),
                "clipped_to": {k: [round(lo, 6), round(hi, 6)]
                               for k, (lo, hi) in self.bounds.items()},
                **self.info}


class RepurchasePropensity(Propensity):
    """A :class:`~optimizer.scoring.propensity.Propensity` whose linear parts are the repurchase
    model's customer and offer terms (read from ``customer["repurchase"]``, and ``offer``)."""

    def __init__(self, scale: float, category: float, offer: np.ndarray, rate: float,
                 described: dict[str, Any]):
        super().__init__(rate=rate, target=described.get("target", "redemption"))
        coef = np.zeros(len(FEATURES))
        coef[FEATURES.index("product")] = scale
        coef[FEATURES.index("category")] = category
        self.coef_ = coef
        self.converged_ = True
        self.offer_term = np.asarray(offer, float)
        self.described = described

    def linear_parts(self, customer: dict[str, np.ndarray], depth: np.ndarray,
                     history: dict[str, np.ndarray] | None, n: int, m: int
                     ) -> tuple[np.ndarray, np.ndarray]:
        """The repurchase model's customer and offer terms of the rows."""
        return (np.asarray(customer["repurchase"], float).ravel().copy(), self.offer_term.copy())

    def describe(self) -> dict[str, Any]:
        """The repurchase model's description."""
        return self.described


def as_affinity(model: Any, fitted: Repurchase, s: Sources, n_customers: int, week: int) -> Any:
    """Turn a fitted :class:`~optimizer.scoring.affinity.AffinityModel` into the repurchase scorer (the
    module docstring's last paragraph); returns it."""
    customer, offer, pair, share, category = fitted.parts(s, n_customers, week)
    scale = float(np.abs(pair.data).max(initial=0.0)) or 1.0
    pair = (pair / scale).tocsr()
    pair.sort_indices()
    share.sort_indices()
    model.features_ = dataclasses.replace(model.features_, product_share=pair,
                                          category_share=share)
    model.offer_products_ = sp.identity(s.n_offers, format="csr")
    model.customer_ = {**model.customer_, "repurchase": customer}
    model.propensity_ = RepurchasePropensity(scale, category, offer, fitted.rate,
                                             fitted.describe())
    model.history_ = None
    model.__dict__.pop("_kernel_shared", None)
    return model
