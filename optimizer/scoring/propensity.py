"""Redemption propensity: a logistic regression on a handful of customer x offer features.

For customer i and offer j, ``p_redeem[i, j] = rate * sigmoid(beta . x[i, j])`` with the features
``x`` (``FEATURES``, all built without loops from :class:`~optimizer.scoring.features.CustomerFeatures` and
the offer incidence matrices, see :func:`design`):

* ``category``: her recency-decayed spend share in j's categories (summed, capped at 1), and its
  log ``log(category + 0.01)`` (diminishing returns);
* ``brand``: her share of j's brand; ``product``: her summed share of j's listed products;
* ``discount_share``: her share of spend bought on discount (price sensitivity); ``depth``: j's
  discount over the average gross line value of its categories; ``depth x discount_share``;
* ``recency``: the decay weight of her last purchase; ``visits``: ``log1p`` of her decayed count
  of purchase days; ``tenure``: years since her first purchase;
* response history as of the week the offer is (or was) sent (:mod:`optimizer.scoring.response`):
  ``response`` her shrunk redemption rate of earlier offers and ``offer_lift`` the offer's own
  (target-encoded), both as log ratios to everyone's rate; ``redeemed_offer`` / ``sent_offer``:
  she redeemed / was sent this offer before; ``category_redeemed`` / ``category_sent``: ``log1p``
  of her earlier redemptions / sends of offers in j's categories.

The coefficients ``beta`` are fitted by maximum likelihood (L2-penalised, on standardised columns,
a projected L-BFGS with the analytic gradient, :func:`~optimizer.scoring.mle.minimize_bounded`) on
offers sent in the weeks before the planning week and whether they were redeemed (``target =
"redemption"``, ``rate = 1``), or, without redemptions, on sampled pairs labelled by whether she
bought any of the offer's categories in those weeks (``target = "category purchase"``; ``rate`` =
``affinity.proxy_redemption_rate`` turns that calibrated purchase probability into a redemption
probability). A logistic regression fitted by
maximum likelihood is calibrated on its training data (the mean prediction equals the observed
rate); ``offeropt backtest`` measures calibration on held-out weeks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numba as nb
import numpy as np
from scipy import special

from optimizer.core import numerics as nx
from optimizer.core.numerics import fixed_matvec
from optimizer.scoring.mle import logistic_regression

FEATURES = ("intercept", "category", "log_category", "brand", "product", "discount_share",
            "depth", "depth_x_discount_share", "recency", "visits", "tenure", "response",
            "offer_lift", "redeemed_offer", "sent_offer", "category_redeemed", "category_sent")
# what each feature varies with: the customer, the offer, or the pair (fixes the order of sums)
KIND = ("offer", "pair", "pair", "pair", "pair", "customer", "offer", "pair", "customer",
        "customer", "customer", "customer", "offer", "pair", "pair", "pair", "pair")
HISTORY = ("response", "offer_lift", "redeemed_offer", "sent_offer", "category_redeemed",
           "category_sent")
# the pair features, which the compiled scorers add pair by pair (customer and offer terms are
# summed beforehand on their own shapes: Propensity.linear_parts)
PAIR_FEATURES = tuple(name for name, kind in zip(FEATURES, KIND) if kind == "pair")
# each pair feature's coefficient index, taken from FEATURES (compile-time constants for numba)
_CATEGORY, _LOG_CATEGORY, _BRAND, _PRODUCT, _DEPTH_X_DS, _REDEEMED, _SENT, _CAT_REDEEMED, \
    _CAT_SENT = (FEATURES.index(name) for name in (
        "category", "log_category", "brand", "product", "depth_x_discount_share",
        "redeemed_offer", "sent_offer", "category_redeemed", "category_sent"))
# the pair features pair_eta adds, in this order (tests/test_propensity.py: every pair feature)
KERNEL_PAIR_FEATURES = ("category", "log_category", "brand", "product", "depth_x_discount_share",
                        "redeemed_offer", "sent_offer", "category_redeemed", "category_sent")


def design(category: np.ndarray, brand: np.ndarray, product: np.ndarray,
           customer: dict[str, np.ndarray], depth: np.ndarray,
           history: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
    """The feature columns in ``FEATURES`` order, broadcast together.

    ``category``, ``brand``, ``product``: pair arrays (``(n,)`` pairs or ``(n, m)`` blocks);
    ``customer``: per-customer arrays (``discount_share``, ``recency``, ``visits``,
    ``tenure_weeks``) shaped to broadcast against them; ``depth``: the offers' depth, likewise;
    ``history``: the point-in-time response features (:mod:`optimizer.scoring.response`, keys
    ``HISTORY``; ``None``: no history, all 0).
    """
    cat = np.minimum(category, 1.0)
    ds = customer["discount_share"]
    h = history or {}
    zero = np.zeros(1)
    return [np.ones(1), cat, nx.log(cat + 0.01), np.minimum(brand, 1.0), np.minimum(product, 1.0),
            ds, depth, depth * ds, customer["recency"], nx.log1p(customer["visits"]),
            customer["tenure_weeks"] / 52.0, h.get("response", zero), h.get("offer_lift", zero),
            h.get("redeemed_offer", zero), h.get("sent_offer", zero),
            nx.log1p(h.get("category_redeemed", zero)), nx.log1p(h.get("category_sent", zero))]


@dataclass
class Propensity:
    """Logistic redemption propensity (see the module docstring).

    l2: ridge penalty on the standardised coefficients (intercept excluded); rate: multiplies the
    probability (1 for redemptions; the proxy redemption rate for category purchases); target:
    what the labels were.
    """

    l2: float = 1e-4
    rate: float = 1.0
    target: str = "redemption"
    coef_: np.ndarray = field(default_factory=lambda: np.zeros(len(FEATURES)), init=False)
    log_likelihood_: float = field(default=float("nan"), init=False)
    converged_: bool = field(default=False, init=False)
    iterations_: int = field(default=0, init=False)
    message_: str = field(default="", init=False)
    n_pairs_: int = field(default=0, init=False)
    positives_: int = field(default=0, init=False)

    def fit(self, columns: list[np.ndarray], y: np.ndarray) -> "Propensity":
        """Fit on pair columns (``design`` output for ``n`` pairs) and 0/1 labels ``y``."""
        X = np.column_stack([np.broadcast_to(col, y.shape) for col in columns])
        beta, result = logistic_regression(X, y, self.l2, maxiter=1000)
        self.coef_ = beta
        eta = fixed_matvec(X, beta)
        self.log_likelihood_ = float(np.sum(y * eta - nx.logaddexp(0.0, eta)))
        self.converged_ = bool(result.success) and bool(np.isfinite(self.log_likelihood_))
        self.iterations_ = int(result.nit)
        self.message_ = str(result.message)
        self.n_pairs_ = int(y.size)
        self.positives_ = int(y.sum())
        return self

    def predict_block(self, category: np.ndarray, brand: np.ndarray, product: np.ndarray,
                      customer: dict[str, np.ndarray], depth: np.ndarray,
                      history: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """``rate * sigmoid(beta . x)`` of ``design(...)`` for a dense ``(n, m)`` block of customers
        x offers, in one compiled pass (:func:`pair_eta` adds the pair terms), without the dozen
        ``(n, m)`` feature arrays; ``tests/oracles.py`` holds the plain numpy predictor it is
        checked against.

        ``customer`` arrays are ``(n,)``, ``depth`` is ``(m,)``; ``history`` as in :func:`design`
        with ``(n,)`` ``response``, ``(m,)`` ``offer_lift`` and ``(n, m)`` pair arrays.
        """
        n, m = category.shape
        h = history or {}
        ds = customer["discount_share"]
        customer_part, offer_part = self.linear_parts(customer, depth, history, n, m)
        empty = np.zeros((0, 0))
        pair_arrays = [np.ascontiguousarray(h[k], dtype=float) if k in h else empty
                       for k in ("redeemed_offer", "sent_offer", "category_redeemed",
                                 "category_sent")]
        out = np.empty((n, m))
        _predict_block(np.asarray(self.coef_, dtype=float), float(self.rate), customer_part,
                       offer_part, np.ascontiguousarray(category, dtype=float),
                       np.ascontiguousarray(brand, dtype=float),
                       np.ascontiguousarray(product, dtype=float), np.asarray(ds, float).ravel(),
                       np.asarray(depth, float).ravel(), *pair_arrays, out)
        return out

    def linear_parts(self, customer: dict[str, np.ndarray], depth: np.ndarray,
                     history: dict[str, np.ndarray] | None, n: int, m: int
                     ) -> tuple[np.ndarray, np.ndarray]:
        """The ``(n,)`` customer and ``(m,)`` offer terms of ``beta . x``, each summed in
        ``FEATURES`` order on its own small shape (as :meth:`predict` sums them); the pair terms
        are added to their sum, pair by pair, by the compiled kernels."""
        h = history or {}
        zero_n, zero_m = np.zeros(n), np.zeros(m)
        by_customer = {"discount_share": customer["discount_share"],
                       "recency": customer["recency"],
                       "visits": nx.log1p(customer["visits"]),
                       "tenure": customer["tenure_weeks"] / 52.0,
                       "response": h.get("response", zero_n)}
        by_offer = {"intercept": np.ones(m), "depth": depth,
                    "offer_lift": h.get("offer_lift", zero_m)}
        parts: dict[str, Any] = {"customer": 0.0, "offer": 0.0}
        for name, kind, beta in zip(FEATURES, KIND, self.coef_):
            if beta != 0.0 and kind != "pair":
                col = by_customer[name] if kind == "customer" else by_offer[name]
                parts[kind] = parts[kind] + beta * np.asarray(col, dtype=float).ravel()
        return (np.broadcast_to(np.asarray(parts["customer"], float), (n,)).copy(),
                np.broadcast_to(np.asarray(parts["offer"], float), (m,)).copy())

    def describe(self) -> dict[str, Any]:
        """Coefficients, log-likelihood and convergence (for the manifest)."""
        return {"model": "logistic", "target": self.target, "rate": self.rate,
                "coefficients": dict(zip(FEATURES, np.round(self.coef_, 6).tolist())),
                "log_likelihood": self.log_likelihood_, "converged": self.converged_,
                "iterations": self.iterations_, "message": self.message_,
                "pairs": self.n_pairs_, "positives": self.positives_}


@nb.njit(inline="always")
def pair_eta(eta, coef, category, brand, product, depth_ds, has_history, redeemed, sent,
             cat_redeemed, cat_sent):  # pragma: no cover - compiled
    """``eta`` (the pair's customer and offer terms) plus its pair terms in ``FEATURES`` order:
    the one linear predictor of both compiled scorers (``_predict_block`` here and
    :func:`optimizer.scoring._pair_kernels.score_select`); a zero feature adds nothing."""
    c = min(category, 1.0)
    if coef[_CATEGORY] != 0.0 and c != 0.0:
        eta += coef[_CATEGORY] * c
    if coef[_LOG_CATEGORY] != 0.0:
        eta += coef[_LOG_CATEGORY] * math.log(c + 0.01)
    if coef[_BRAND] != 0.0 and brand != 0.0:
        eta += coef[_BRAND] * min(brand, 1.0)
    if coef[_PRODUCT] != 0.0 and product != 0.0:
        eta += coef[_PRODUCT] * min(product, 1.0)
    if coef[_DEPTH_X_DS] != 0.0:
        eta += coef[_DEPTH_X_DS] * depth_ds
    if has_history:
        if coef[_REDEEMED] != 0.0 and redeemed != 0.0:
            eta += coef[_REDEEMED] * redeemed
        if coef[_SENT] != 0.0 and sent != 0.0:
            eta += coef[_SENT] * sent
        if coef[_CAT_REDEEMED] != 0.0 and cat_redeemed != 0.0:
            eta += coef[_CAT_REDEEMED] * math.log1p(cat_redeemed)
        if coef[_CAT_SENT] != 0.0 and cat_sent != 0.0:
            eta += coef[_CAT_SENT] * math.log1p(cat_sent)
    return eta


@nb.njit(cache=True, nogil=True)
def _predict_block(coef, rate, customer_part, offer_part, category, brand, product, ds, depth,
                   redeemed, sent, cat_redeemed, cat_sent, out):  # pragma: no cover - compiled
    n, m = out.shape
    has_history = redeemed.shape[0] > 0
    for i in range(n):
        for j in range(m):
            eta = pair_eta(customer_part[i] + offer_part[j], coef, category[i, j], brand[i, j],
                           product[i, j], depth[j] * ds[i], has_history,
                           redeemed[i, j] if has_history else 0.0,
                           sent[i, j] if has_history else 0.0,
                           cat_redeemed[i, j] if has_history else 0.0,
                           cat_sent[i, j] if has_history else 0.0)
            out[i, j] = rate * (1.0 / (1.0 + math.exp(-eta)))


def simulate(rng: np.random.Generator, columns: list[np.ndarray], beta: np.ndarray) -> np.ndarray:
    """0/1 labels drawn from the logistic model with coefficients ``beta`` (for tests)."""
    eta = sum(b * np.asarray(c, float) for b, c in zip(beta, columns))
    return (rng.random(np.shape(eta)) < special.expit(eta)).astype(float)
