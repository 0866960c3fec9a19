"""BG/NBD model of repeat purchasing (Fader, Hardie & Lee 2005, "Counting your customers the easy
way: an alternative to the Pareto/NBD model", Marketing Science 24(2), 275-284).

Model, per customer, after her first purchase at time 0:

* while active, she buys as a Poisson process of rate ``lambda``; ``lambda ~ Gamma(r, alpha)``
  across customers (shape ``r``, rate ``alpha``);
* after every repeat purchase she drops out for good with probability ``p``;
  ``p ~ Beta(a, b)`` across customers.

Sufficient statistics of a customer observed until ``T`` (time since her first purchase):
``frequency`` x = number of repeat purchases, ``recency`` t_x = time of her last purchase (0 when
x = 0). Purchases are counted per distinct day (or week) so a basket of many lines is one purchase;
time is in the same unit.

Parameters (all > 0): ``r``, ``alpha`` (Gamma shape and rate of the purchase rate), ``a``, ``b``
(Beta parameters of the dropout probability). Fitted by maximum likelihood (eq. 6 of the paper)
over log-parameters with a projected L-BFGS (:func:`~optimizer.scoring.mle.minimize_bounded`);
customers sharing (x, t_x, T) are pooled with weights.
The lifetimes package's ``BetaGeoFitter`` is the model of this API: ``fit`` then
``conditional_expected_number_of_purchases_up_to_time`` (here ``predict``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from optimizer.core import numerics as nx
from optimizer.core.numerics import fixed_dot
from optimizer.scoring.mle import MaximumLikelihoodFit, minimize_bounded

PARAMS = ("r", "alpha", "a", "b")


def log_likelihood(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
                   ) -> np.ndarray:
    """Per-customer log-likelihood of eq. (6), vectorised. ``params`` = (r, alpha, a, b)."""
    r, alpha, a, b = params
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * nx.log(alpha)
    a2 = (special.gammaln(a + b) + special.gammaln(b + x)
          - special.gammaln(b) - special.gammaln(a + b + x))
    a3 = -(r + x) * nx.log(alpha + T)
    repeat = x > 0
    a4 = np.full_like(a3, -np.inf)
    xs, ts = x[repeat], t_x[repeat]
    a4[repeat] = nx.log(a) - nx.log(b + xs - 1) - (r + xs) * nx.log(alpha + ts)
    return a1 + a2 + nx.logaddexp(a3, a4)


class _Terms:
    """:func:`log_likelihood` for one sample at many parameters, the same values to the last bit:
    the log-gamma terms depend on ``x`` only and are evaluated once per distinct ``x`` (a few
    dozen repeat counts) and gathered; every operation is the one :func:`log_likelihood` does,
    on the same operands, in the same order."""

    def __init__(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> None:
        self.x, self.T = x, T
        self.distinct, self.inverse = np.unique(x, return_inverse=True)
        self.repeat = x > 0
        self.xs, self.ts = x[self.repeat], t_x[self.repeat]

    def __call__(self, params: np.ndarray) -> np.ndarray:
        r, alpha, a, b = params
        u = self.distinct
        a1 = (special.gammaln(r + u) - special.gammaln(r) + r * nx.log(alpha))[self.inverse]
        a2 = (special.gammaln(a + b) + special.gammaln(b + u)
              - special.gammaln(b) - special.gammaln(a + b + u))[self.inverse]
        a3 = -(r + self.x) * nx.log(alpha + self.T)
        a4 = np.full_like(a3, -np.inf)
        xs = self.xs
        a4[self.repeat] = nx.log(a) - nx.log(b + xs - 1) - (r + xs) * nx.log(alpha + self.ts)
        return a1 + a2 + nx.logaddexp(a3, a4)


@dataclass
class BGNBD(MaximumLikelihoodFit):
    """The BG/NBD model (see the module docstring). ``penalizer``: L2 weight on the parameters
    (0 = plain maximum likelihood; lifetimes' ``penalizer_coef``)."""


    def fit(self, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray,
            weights: np.ndarray | None = None) -> "BGNBD":
        """Maximum-likelihood fit on per-customer (or pooled, with ``weights``) statistics."""
        x = np.asarray(frequency, float)
        t_x = np.asarray(recency, float)
        T = np.asarray(T, float)
        w = np.ones_like(x) if weights is None else np.asarray(weights, float)
        total = float(w.sum())
        terms = _Terms(x, t_x, T)

        def objective(log_params: np.ndarray) -> float:
            params = nx.exp(log_params)
            ll = terms(params)
            value = -fixed_dot(w, ll) / total + self.penalizer * fixed_dot(params, params)
            return value if np.isfinite(value) else 1e300

        start = nx.log([1.0, max(float(np.average(T, weights=w)), 1e-3), 1.0, 1.0])
        result = minimize_bounded(objective, start, (-12.0, 12.0), maxiter=500)
        self.params_ = dict(zip(PARAMS, nx.exp(result.x).tolist()))
        self.log_likelihood_ = fixed_dot(w, log_likelihood(nx.exp(result.x), x, t_x, T))
        self.converged_ = bool(result.success) and bool(np.isfinite(self.log_likelihood_))
        self.iterations_ = int(result.nit)
        self.message_ = str(result.message)
        self.n_customers_ = int(round(total))
        return self

    def predict(self, t: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray
                ) -> np.ndarray:
        """Expected number of purchases in ``(T, T + t]`` given each customer's history (eq. 10)."""
        r, alpha, a, b = (self.params_[k] for k in PARAMS)
        x = np.asarray(frequency, float)
        t_x = np.asarray(recency, float)
        T = np.asarray(T, float)
        z = t / (alpha + T + t)
        hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
        head = (a + b + x - 1) / (a - 1)  # finite for a < 1 too (2F1 continues)
        numer = head * (1 - nx.exp((r + x) * nx.log((alpha + T) / (alpha + T + t))) * hyp)
        odds = np.where(x > 0, a / np.maximum(b + x - 1, 1e-12)
                        * nx.exp((r + x) * nx.log((alpha + T) / (alpha + t_x))), 0.0)
        expected = numer / (1 + odds)
        return np.where(np.isfinite(expected), np.maximum(expected, 0.0), 0.0)

    def probability_alive(self, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray
                          ) -> np.ndarray:
        """P(still active at T | x, t_x, T) (eq. 11)."""
        r, alpha, a, b = (self.params_[k] for k in PARAMS)
        x = np.asarray(frequency, float)
        odds = np.where(x > 0, a / np.maximum(b + x - 1, 1e-12)
                        * nx.exp((r + x) * nx.log((alpha + np.asarray(T, float))
                                                  / (alpha + np.asarray(recency, float)))), 0.0)
        return 1.0 / (1.0 + odds)

    def describe(self) -> dict[str, object]:
        """Parameters, log-likelihood and convergence (for the manifest)."""
        return {"model": "bg_nbd", "params": self.params_, "log_likelihood": self.log_likelihood_,
                "converged": self.converged_, "iterations": self.iterations_,
                "message": self.message_, "customers": self.n_customers_}


def simulate(rng: np.random.Generator, T: np.ndarray, r: float, alpha: float, a: float,
             b: float) -> tuple[np.ndarray, np.ndarray]:
    """Draw (frequency, recency) of customers observed for ``T`` under the BG/NBD model.

    Vectorised: the number of Poisson purchases n in (0, T], the repeat purchase J ~ Geometric(p)
    after which she drops out, x = min(n, J), and t_x = T * Beta(x, n - x + 1) (the x-th of n
    uniform order statistics).
    """
    T = np.asarray(T, float)
    lam = rng.gamma(r, 1.0 / alpha, T.size)
    p = rng.beta(a, b, T.size)
    n = rng.poisson(lam * T)
    x = np.minimum(n, rng.geometric(np.clip(p, 1e-12, 1.0)))
    t_x = np.zeros_like(T)
    repeat = x > 0
    t_x[repeat] = T[repeat] * rng.beta(x[repeat], n[repeat] - x[repeat] + 1)
    return x.astype(float), t_x
