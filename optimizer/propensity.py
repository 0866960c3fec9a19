"""Redemption propensity: a logistic regression on a handful of customer x offer features.

For customer i and offer j, ``p_redeem[i, j] = rate * sigmoid(beta . x[i, j])`` with the features
``x`` (``FEATURES``, all built without loops from :class:`~optimizer.features.CustomerFeatures` and
the offer incidence matrices, see :func:`design`):

* ``category``: her recency-decayed spend share in j's categories (summed, capped at 1), and its
  log ``log(category + 0.01)`` (diminishing returns);
* ``brand``: her share of j's brand; ``product``: her summed share of j's listed products;
* ``discount_share``: her share of spend bought on discount (price sensitivity); ``depth``: j's
  discount over the average gross line value of its categories; ``depth x discount_share``;
* ``recency``: the decay weight of her last purchase; ``visits``: ``log1p`` of her decayed count
  of purchase days; ``tenure``: years since her first purchase;
* response history as of the week the offer is (or was) sent (:mod:`optimizer.response`):
  ``response`` her shrunk redemption rate of earlier offers and ``offer_lift`` the offer's own
  (target-encoded), both as log ratios to everyone's rate; ``redeemed_offer`` / ``sent_offer``:
  she redeemed / was sent this offer before; ``category_redeemed`` / ``category_sent``: ``log1p``
  of her earlier redemptions / sends of offers in j's categories.

The coefficients ``beta`` are fitted by maximum likelihood (L2-penalised, on standardised columns,
scipy L-BFGS-B with the analytic gradient) on offers sent in the weeks before the planning week and
whether they were redeemed (``target = "redemption"``, ``rate = 1``), or, without redemptions, on
sampled pairs labelled by whether she bought any of the offer's categories in those weeks
(``target = "category purchase"``; ``rate`` = ``affinity.proxy_redemption_rate`` turns that
calibrated purchase probability into a redemption probability). A logistic regression fitted by
maximum likelihood is calibrated on its training data (the mean prediction equals the observed
rate); ``offeropt backtest`` measures calibration on held-out weeks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, special

FEATURES = ("intercept", "category", "log_category", "brand", "product", "discount_share",
            "depth", "depth_x_discount_share", "recency", "visits", "tenure", "response",
            "offer_lift", "redeemed_offer", "sent_offer", "category_redeemed", "category_sent")
# what each feature varies with: the customer, the offer, or the pair (fixes the order of sums)
KIND = ("offer", "pair", "pair", "pair", "pair", "customer", "offer", "pair", "customer",
        "customer", "customer", "customer", "offer", "pair", "pair", "pair", "pair")
HISTORY = ("response", "offer_lift", "redeemed_offer", "sent_offer", "category_redeemed",
           "category_sent")


def design(category: np.ndarray, brand: np.ndarray, product: np.ndarray,
           customer: dict[str, np.ndarray], depth: np.ndarray,
           history: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
    """The feature columns in ``FEATURES`` order, broadcast together.

    ``category``, ``brand``, ``product``: pair arrays (``(n,)`` pairs or ``(n, m)`` blocks);
    ``customer``: per-customer arrays (``discount_share``, ``recency``, ``visits``,
    ``tenure_weeks``) shaped to broadcast against them; ``depth``: the offers' depth, likewise;
    ``history``: the point-in-time response features (:mod:`optimizer.response`, keys
    ``HISTORY``; ``None``: no history, all 0).
    """
    cat = np.minimum(category, 1.0)
    ds = customer["discount_share"]
    h = history or {}
    zero = np.zeros(1)
    return [np.ones(1), cat, np.log(cat + 0.01), np.minimum(brand, 1.0), np.minimum(product, 1.0),
            ds, depth, depth * ds, customer["recency"], np.log1p(customer["visits"]),
            customer["tenure_weeks"] / 52.0, h.get("response", zero), h.get("offer_lift", zero),
            h.get("redeemed_offer", zero), h.get("sent_offer", zero),
            np.log1p(h.get("category_redeemed", zero)), np.log1p(h.get("category_sent", zero))]


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
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        mean[0], scale[0] = 0.0, 1.0
        constant = np.ptp(X, axis=0) <= 1e-12 * np.maximum(np.abs(mean), 1.0)
        constant[0] = False
        scale = np.where(constant, 1.0, scale)
        mean[constant] = 0.0
        Z = (X - mean) / scale
        n = max(y.size, 1)
        Z[:, constant] = 0.0  # a constant column is the intercept's job: its coefficient stays 0
        penalty = np.full(Z.shape[1], self.l2)
        penalty[0] = 0.0

        def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
            eta = Z @ beta
            nll = float(np.sum(np.logaddexp(0.0, eta) - y * eta)) / n
            grad = Z.T @ (special.expit(eta) - y) / n
            return nll + float(penalty @ beta**2), grad + 2 * penalty * beta

        rate = min(max(float(y.mean()) if y.size else 0.5, 1e-6), 1 - 1e-6)
        start = np.zeros(Z.shape[1])
        start[0] = np.log(rate / (1 - rate))
        result = optimize.minimize(loss, start, jac=True, method="L-BFGS-B",
                                   options={"maxiter": 1000})
        beta = result.x / scale
        beta[0] = result.x[0] - float(np.sum(result.x[1:] * mean[1:] / scale[1:]))
        self.coef_ = beta
        eta = X @ beta
        self.log_likelihood_ = float(np.sum(y * eta - np.logaddexp(0.0, eta)))
        self.converged_ = bool(result.success) and bool(np.isfinite(self.log_likelihood_))
        self.iterations_ = int(result.nit)
        self.message_ = str(result.message)
        self.n_pairs_ = int(y.size)
        self.positives_ = int(y.sum())
        return self

    def predict(self, columns: list[np.ndarray]) -> np.ndarray:
        """``rate * sigmoid(beta . x)``: the customer terms and the offer terms (``KIND``) are
        summed on their own small shapes, then the pair terms are added in place, always in the
        same order, so a pair's value never depends on the chunk it is scored in."""
        parts: dict[str, Any] = {"customer": 0.0, "offer": 0.0}
        pair_terms = []
        for kind, beta, col in zip(KIND, self.coef_, columns):
            if beta == 0.0:
                continue
            if kind == "pair":
                pair_terms.append((beta, col))
            else:
                parts[kind] = parts[kind] + beta * np.asarray(col)
        full = np.broadcast_shapes(*(np.shape(col) for col in columns))
        eta = np.broadcast_to(parts["customer"] + parts["offer"], full).copy()
        for beta, col in pair_terms:
            eta += beta * col
        return self.rate * special.expit(eta, out=eta)

    def describe(self) -> dict[str, Any]:
        """Coefficients, log-likelihood and convergence (for the manifest)."""
        return {"model": "logistic", "target": self.target, "rate": self.rate,
                "coefficients": dict(zip(FEATURES, np.round(self.coef_, 6).tolist())),
                "log_likelihood": self.log_likelihood_, "converged": self.converged_,
                "iterations": self.iterations_, "message": self.message_,
                "pairs": self.n_pairs_, "positives": self.positives_}


def simulate(rng: np.random.Generator, columns: list[np.ndarray], beta: np.ndarray) -> np.ndarray:
    """0/1 labels drawn from the logistic model with coefficients ``beta`` (for tests)."""
    eta = sum(b * np.asarray(c, float) for b, c in zip(beta, columns))
    return (rng.random(np.shape(eta)) < special.expit(eta)).astype(float)
