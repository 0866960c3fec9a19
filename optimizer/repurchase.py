"""Repurchase propensity: the default model, built on what she does with the offer's own products.

For customer i, offer j and a week t, every feature reads rows of weeks before t only (point in
time; ``pair_features`` takes t per pair, so each training send sees its own week's past):

* pair (sparse: 0 unless she bought the offer's categories or redeemed it):
  ``product_weeks`` her share of shopping weeks with a purchase of j's own products
  (``offer_products``); ``category_weeks`` the same for j's categories; ``product_recency``
  ``0.5 ** ((t - last) / 4)`` of her last week buying j's products; ``due`` how due she is given
  her own inter-purchase time for them (``min(r, 1 / r)`` with ``r`` = weeks since her last
  purchase / her mean weeks between purchases; needs two purchase weeks); ``redeemed_offer``
  she redeemed j before.
* customer: ``activity`` ``log1p`` of her shopping weeks; ``response`` her redemption rate of
  earlier sends, shrunk to everyone's (log ratio, :data:`CUSTOMER_PRIOR_SENDS`);
  ``discount_share`` the share of her spend bought on a discount (coupon and price sensitivity).
* offer: ``offer_lift`` the offer's own past redemption rate, shrunk (:data:`OFFER_PRIOR_SENDS`);
  ``depth`` its discount over its categories' average line value.

Weights come from a logistic regression (L2-penalised maximum likelihood on standardised columns,
scipy L-BFGS; a logistic model because its score splits into customer + offer + sparse pair terms,
so scoring a million customers stays one sparse pass, and maximum likelihood makes it calibrated
on its training pairs) fitted on past sends labelled by whether she redeemed them
(:mod:`optimizer.scoring` picks the pairs and the fallbacks). Before the final fit the sends of
every fourth customer are held out: where the fitted model ranks them worse (AUC) than buy-again
(``product_weeks`` then ``category_weeks``) the model keeps only those two features, and the
manifest says so.

Scoring reuses the compiled affinity kernels unchanged: :func:`as_affinity` puts the sparse
pair term (scaled into [-1, 1]) in the model's ``product`` slot against an identity offer
incidence, the customer and offer terms in the propensity's linear parts, and zeroes every other
coefficient, so ``eta = customer[i] + offer[j] + scale * pair[i, j]`` exactly.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
from scipy import special

from .features import OfferCategories
from .propensity import FEATURES, Propensity
from .response import CUSTOMER_PRIOR_SENDS, OFFER_PRIOR_SENDS
from .schemas import normalize_category, normalize_category_name
from .validate import Inputs

PAIR = ("product_weeks", "category_weeks", "product_recency", "due", "redeemed_offer")
CUSTOMER = ("activity", "response", "discount_share")
OFFER = ("offer_lift", "depth")
NAMES = ("intercept", *PAIR, *CUSTOMER, *OFFER)
BUY_AGAIN = ("intercept", "product_weeks", "category_weeks")
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
        lo = np.searchsorted(self.keys, _key(entity, np.full(entity.shape, -2**20)))
        hi = np.searchsorted(self.keys, _key(entity, week))
        n = hi - lo
        if self.keys.size == 0:
            return n, np.full(n.shape, -1), np.full(n.shape, -1)
        weeks = (self.keys % _SHIFT) - 2**20
        first = np.where(n > 0, weeks[np.minimum(lo, max(self.keys.size - 1, 0))], -1)
        last = np.where(n > 0, weeks[np.maximum(hi - 1, 0)], -1)
        return n, first, last


@dataclass
class Sources:
    """The event timelines every feature reads (built once per run)."""

    n_offers: int
    shop: Timeline  # (c, week) distinct shopping weeks
    product: Timeline  # (c * M + o, week) distinct weeks with a purchase of o's products
    category: Timeline  # (c * M + o, week) the same for o's categories
    pair_index: pl.DataFrame  # c, o, week: the distinct (c, o) product/category weeks
    spend: tuple[np.ndarray, np.ndarray, np.ndarray]  # keys (c, week), her running sales, discounted
    sent: Timeline  # (c, week) first send of each (c, o)
    redeemed: Timeline  # (c, week) first redemption of each (c, o)
    offer_sent: Timeline  # (o, week)
    offer_redeemed: Timeline
    pair_redeemed: Timeline  # (c * M + o, week)
    depth: np.ndarray


def sources(inputs: Inputs, cats: OfferCategories, depth: np.ndarray, plain: np.ndarray,
            week: int, sensitive_categories: tuple[str, ...] = ()) -> Sources:
    """Read transactions, offer_products, history and redemptions of weeks before ``week``
    (sends and redemptions of the offers ``plain`` only: sensitive ones never feed a feature).

    Privacy by design: lines in ``sensitive_categories`` count only towards the offers that list
    their products or categories (sensitive offers themselves), never in her shopping weeks or
    spend, so they cannot move her scores for any other offer."""
    m = inputs.n_offers
    names = [normalize_category_name(c) for c in sensitive_categories]
    touchy = inputs.products.filter(normalize_category(pl.col("category")).is_in(names))
    tx = inputs.transactions.filter(pl.col("week") < week)
    lines = tx.select(pl.col("c").cast(pl.Int64), pl.col("p").cast(pl.Int64), "week").unique()
    ordinary = pl.col("p").is_in(touchy.get_column("p").cast(pl.Int64).to_list()).not_()
    shop = lines.filter(ordinary).select("c", "week").unique()
    op = (inputs.offer_products.select(pl.col("o").cast(pl.Int64), pl.col("p").cast(pl.Int64))
          if inputs.offer_products is not None else pl.DataFrame(schema={"o": pl.Int64,
                                                                          "p": pl.Int64}))
    by_product = lines.join(op, on="p").select("c", "o", "week").unique()
    product_category = inputs.products.select(pl.col("p").cast(pl.Int64),
                                              normalize_category(pl.col("category")))
    by_category = (lines.join(product_category, on="p").select("c", "category", "week").unique()
                   .join(cats.pairs.select(pl.col("o").cast(pl.Int64), "category"),
                         on="category").select("c", "o", "week").unique())

    def timeline(frame: pl.DataFrame, entity: pl.Expr) -> Timeline:
        return Timeline.of(frame.select(entity).to_series().to_numpy(),
                           frame.get_column("week").to_numpy())
    pair = pl.col("c") * m + pl.col("o")
    discount = pl.col("discount").fill_null(0.0) if "discount" in tx.columns else pl.lit(0.0)
    spend = (tx.filter(ordinary).group_by(pl.col("c").cast(pl.Int64), "week")
             .agg(pl.col("sales_value").sum().alias("s"),
                  pl.col("sales_value").filter(discount > 0).sum().alias("d"))
             .sort("c", "week"))
    # running sums restart with each customer: her sums never depend on anyone else's rows
    spend = spend.with_columns(pl.col("s").cum_sum().over("c"), pl.col("d").cum_sum().over("c"))
    keys = _key(spend.get_column("c").to_numpy(), spend.get_column("week").to_numpy())

    def firsts(table: pl.DataFrame | None) -> pl.DataFrame:
        if table is None:
            return pl.DataFrame(schema={"c": pl.Int64, "o": pl.Int64, "week": pl.Int64})
        rows = (table.filter(pl.col("week") < week)
                .select(pl.col("c").cast(pl.Int64), pl.col("o").cast(pl.Int64),
                        pl.col("week").cast(pl.Int64)))
        rows = rows.filter(pl.col("o").is_in(plain.tolist()))
        return rows.group_by("c", "o").agg(pl.col("week").min())
    red = firsts(inputs.redemptions)
    sent = pl.concat([firsts(inputs.history), red]).group_by("c", "o").agg(pl.col("week").min())
    return Sources(
        m, timeline(shop, pl.col("c")), timeline(by_product, pair), timeline(by_category, pair),
        pl.concat([by_product, by_category]).unique(["c", "o"]),
        (keys, spend.get_column("s").to_numpy(), spend.get_column("d").to_numpy()),
        timeline(sent, pl.col("c")), timeline(red, pl.col("c")), timeline(sent, pl.col("o")),
        timeline(red, pl.col("o")), timeline(red, pair), np.asarray(depth, float))


def _shrunk(red: np.ndarray, sent: np.ndarray, base: np.ndarray, prior: float) -> np.ndarray:
    ok = base > 0
    safe = np.where(ok, base, 1.0)
    return np.where(ok, np.log((red + prior * safe) / (sent + prior) / safe), 0.0)


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
    return {"activity": np.log1p(weeks),
            "response": _shrunk(red, sent, base, CUSTOMER_PRIOR_SENDS),
            "discount_share": np.where(total > 0, discounted / np.maximum(total, 1e-12), 0.0)}


def _base(s: Sources, t: np.ndarray) -> np.ndarray:
    """Everyone's redemption rate of sends before each week ``t``."""
    weeks_sent = np.sort(s.sent.keys % _SHIFT)
    weeks_red = np.sort(s.redeemed.keys % _SHIFT)
    k = np.asarray(t, np.int64) + 2**20
    n_sent = np.searchsorted(weeks_sent, k)
    return np.where(n_sent > 0, np.searchsorted(weeks_red, k) / np.maximum(n_sent, 1), 0.0)


def offer_features(s: Sources, o: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
    """``OFFER`` features of offers ``o`` as of weeks ``t``."""
    sent, _, _ = s.offer_sent.before(o, t)
    red, _, _ = s.offer_redeemed.before(o, t)
    return {"offer_lift": _shrunk(red, sent, _base(s, t), OFFER_PRIOR_SENDS),
            "depth": s.depth[o]}


def pair_features(s: Sources, c: np.ndarray, o: np.ndarray, t: np.ndarray
                  ) -> dict[str, np.ndarray]:
    """``PAIR`` features of pairs (``c``, ``o``) as of weeks ``t``."""
    pair = c.astype(np.int64) * s.n_offers + o
    weeks, _, _ = s.shop.before(c, t)
    n_p, first, last = s.product.before(pair, t)
    n_k, _, _ = s.category.before(pair, t)
    red, _, _ = s.pair_redeemed.before(pair, t)
    shops = np.maximum(weeks, 1)
    since = np.maximum(t - last, 1)
    interval = np.where(n_p >= 2, (last - first) / np.maximum(n_p - 1, 1), 0.0)
    ratio = since / np.maximum(interval, 1.0)
    return {"product_weeks": n_p / shops, "category_weeks": n_k / shops,
            "product_recency": np.where(n_p > 0, 0.5 ** ((t - last) / 4.0), 0.0),
            "due": np.where(n_p >= 2, np.minimum(ratio, 1.0 / ratio), 0.0),
            "redeemed_offer": (red > 0).astype(float)}


def design(s: Sources, c: np.ndarray, o: np.ndarray, t: np.ndarray,
           names: tuple[str, ...] = NAMES) -> np.ndarray:
    """``(n, len(names))`` feature matrix of pairs (``c``, ``o``) as of weeks ``t``."""
    cols = {"intercept": np.ones(c.size), **pair_features(s, c, o, t),
            **customer_features(s, c, t), **offer_features(s, o, t)}
    return np.column_stack([cols[n] for n in names]).astype(float)


def logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-3) -> tuple[np.ndarray, bool]:
    """L2-penalised logistic regression on standardised columns (column 0 = intercept, not
    penalised); returns the coefficients on the original scale and whether it converged."""
    from scipy import optimize
    mean, scale = X.mean(axis=0), X.std(axis=0)
    mean[0], scale[0] = 0.0, 1.0
    constant = scale <= 1e-12
    constant[0] = False
    scale = np.where(constant, 1.0, scale)
    Z = (X - mean) / scale
    Z[:, constant] = 0.0
    n = max(y.size, 1)
    penalty = np.full(X.shape[1], l2)
    penalty[0] = 0.0

    def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = Z @ beta
        nll = float(np.sum(np.logaddexp(0.0, eta) - y * eta)) / n
        return nll + float(penalty @ beta**2), Z.T @ (special.expit(eta) - y) / n + 2 * penalty * beta
    rate = min(max(float(y.mean()), 1e-6), 1 - 1e-6)
    start = np.zeros(X.shape[1])
    start[0] = np.log(rate / (1 - rate))
    result = optimize.minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    beta = result.x / scale
    beta[0] = result.x[0] - float(np.sum(result.x[1:] * mean[1:] / scale[1:]))
    return beta, bool(result.success) and bool(np.all(np.isfinite(beta)))


def auc(score: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN without both classes."""
    from scipy.stats import rankdata
    pos = y > 0
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass
class Repurchase:
    """A fitted repurchase model: coefficients by name, and what the manifest records."""

    names: tuple[str, ...]
    coef: np.ndarray
    rate: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)

    def parts(self, s: Sources, n_customers: int, week: int
              ) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix]:
        """Customer term ``(C,)`` (intercept included), offer term ``(M,)`` and the sparse pair
        term ``(C, M)`` of ``eta`` as of ``week``."""
        beta = dict(zip(self.names, self.coef))
        c_all = np.arange(n_customers, dtype=np.int64)
        t_c = np.full(n_customers, week, np.int64)
        cust = customer_features(s, c_all, t_c)
        customer = beta["intercept"] + sum((beta[k] * cust[k] for k in CUSTOMER if k in beta),
                                           np.zeros(n_customers))
        o_all = np.arange(s.n_offers, dtype=np.int64)
        off = offer_features(s, o_all, np.full(s.n_offers, week, np.int64))
        offer = sum((beta[k] * off[k] for k in OFFER if k in beta), np.zeros(s.n_offers))
        support = s.pair_index.filter(pl.col("week") < week).select("c", "o").unique()
        red = s.pair_redeemed.keys
        if red.size:
            pairs = red // _SHIFT
            extra = pl.DataFrame({"c": pairs // s.n_offers, "o": pairs % s.n_offers})
            support = pl.concat([support, extra]).unique()
        support = support.sort("c", "o")
        c, o = support.get_column("c").to_numpy(), support.get_column("o").to_numpy()
        feats = pair_features(s, c, o, np.full(c.size, week, np.int64))
        value = sum((beta[k] * feats[k] for k in PAIR if k in beta), np.zeros(c.size))
        pair = sp.csr_matrix((value, (c, o)), shape=(n_customers, s.n_offers))
        pair.eliminate_zeros()
        return customer, offer, pair

    def describe(self) -> dict[str, Any]:
        """For the manifest."""
        return {"model": "repurchase", "rate": self.rate,
                "coefficients": dict(zip(self.names, np.round(self.coef, 6).tolist())),
                **self.info}


class RepurchasePropensity(Propensity):
    """A :class:`~optimizer.propensity.Propensity` whose linear parts are the repurchase
    model's customer and offer terms (read from ``customer["repurchase"]``, and ``offer``)."""

    def __init__(self, scale: float, offer: np.ndarray, rate: float, described: dict[str, Any]):
        super().__init__(rate=rate, target=described.get("target", "redemption"))
        coef = np.zeros(len(FEATURES))
        coef[FEATURES.index("product")] = scale
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
    """Turn a fitted :class:`~optimizer.affinity.AffinityModel` into the repurchase scorer (the
    module docstring's last paragraph); returns it."""
    customer, offer, pair = fitted.parts(s, n_customers, week)
    scale = float(np.abs(pair.data).max(initial=0.0)) or 1.0
    pair = (pair / scale).tocsr()
    pair.sort_indices()
    model.features_ = dataclasses.replace(model.features_, product_share=pair)
    model.offer_products_ = sp.identity(s.n_offers, format="csr")
    model.customer_ = {**model.customer_, "repurchase": customer}
    model.propensity_ = RepurchasePropensity(scale, offer, fitted.rate, fitted.describe())
    model.history_ = None
    model.__dict__.pop("_kernel_shared", None)
    return model


def _split(c: np.ndarray, y: np.ndarray, min_positives: int) -> np.ndarray | str:
    """Mask of the validation pairs: the sends of every fourth customer (a split by customer, as
    the plan ranks offers for customers it has not learned from; the features are point in time
    either way), when both parts keep enough redemptions; else the reason there is none."""
    late = c % 4 == 0
    if y[late].sum() < 10 or y[~late].sum() < min_positives:
        return (f"too few redemptions to hold out ({int(y[late].sum())} held out, "
                f"{int(y[~late].sum())} to fit)")
    return late


def fit_repurchase(s: Sources, c: np.ndarray, o: np.ndarray, t: np.ndarray, y: np.ndarray,
                   min_positives: int, rate: float, target: str) -> Repurchase | str:
    """Fit on pairs (``c``, ``o``) with features as of weeks ``t`` and labels ``y``; hold out the
    latest weeks first and fall back to buy-again's two features where the full model ranks them
    worse. Returns the model, or why it cannot be fitted."""
    if y.sum() < min_positives or y.sum() == y.size:
        return f"{target}: {int(y.sum())} positives of {y.size} pairs (needs {min_positives})"
    X = design(s, c, o, t)
    info: dict[str, Any] = {"target": target, "pairs": int(y.size), "positives": int(y.sum())}
    names = NAMES
    late = _split(c, y, min_positives) if target == "redemption" else "purchase proxy: not checked"
    if isinstance(late, str):
        info["validation"] = {"skipped": late}
    else:
        beta, ok = logistic(X[~late], y[~late])
        simple = [NAMES.index(n) for n in BUY_AGAIN[1:]]
        baseline = X[late][:, simple[0]] + 0.01 * X[late][:, simple[1]]
        fitted_auc = auc(X[late] @ beta, y[late]) if ok else float("nan")
        baseline_auc = auc(baseline, y[late])
        info["validation"] = {"customers": "every fourth", "pairs": int(late.sum()),
                              "positives": int(y[late].sum()), "auc_fitted": fitted_auc,
                              "auc_buy_again": baseline_auc}
        if not fitted_auc >= baseline_auc:
            names = BUY_AGAIN
            info["fallback"] = (f"the full model ranked the held-out sends worse than buy-again "
                                f"(AUC {fitted_auc:.3f} < {baseline_auc:.3f}): buy-again's "
                                "features only")
    cols = [NAMES.index(n) for n in names]
    beta, ok = logistic(X[:, cols], y)
    if not ok:
        return f"{target}: the logistic fit did not converge"
    info["calibration"] = {"mean_predicted": float(rate * special.expit(X[:, cols] @ beta).mean()),
                           "observed_rate": float(rate * y.mean())}
    return Repurchase(names, beta, rate, info)


def proxy_pairs(s: Sources, n_customers: int, plain: np.ndarray, start: int, week: int,
                n_pairs: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sampled customer x offer pairs as of ``start``, labelled by a purchase of the offer's
    products in weeks ``start .. week - 1`` (the proxy where there are no redemptions)."""
    n = int(min(n_pairs, n_customers * plain.size))
    c = np.sort(rng.integers(0, n_customers, n))
    o = plain[rng.integers(0, plain.size, n)]
    pair = c * s.n_offers + o
    after, _, _ = s.product.before(pair, np.full(n, week, np.int64))
    before, _, _ = s.product.before(pair, np.full(n, start, np.int64))
    return c, o, np.full(n, start, np.int64), (after > before).astype(float)
