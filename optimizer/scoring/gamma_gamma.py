"""Gamma-Gamma model of spend per purchase (Fader, Hardie & Lee 2005, "RFM and CLV: using
iso-value curves for customer base analysis", Journal of Marketing Research 42(4), 415-430;
the likelihood as in Fader & Hardie 2013, "The Gamma-Gamma model of monetary value").

Model: the value of each of a customer's purchases is ``z ~ Gamma(p, nu)`` (shape ``p``, rate
``nu``), so her mean purchase value is ``p / nu``; across customers ``nu ~ Gamma(q, gamma)``
(shape ``q``, rate ``gamma``). Spend is assumed independent of purchase frequency.

Sufficient statistics: ``frequency`` x (repeat purchases, x >= 1) and ``monetary_value`` m_x (the
mean value of those x purchases). Parameters (all > 0): ``p``, ``q``, ``gamma``. Fitted by maximum
likelihood over log-parameters with a projected L-BFGS
(:func:`~optimizer.scoring.mle.minimize_bounded`). ``predict`` is the conditional expected
spend per purchase ``p (gamma + x m_x) / (p x + q - 1)`` (needs q > 1); customers without a repeat
purchase get the population mean ``p gamma / (q - 1)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from optimizer.core import numerics as nx
from optimizer.core.numerics import fixed_dot
from optimizer.scoring.mle import MaximumLikelihoodFit, minimize_bounded

PARAMS = ("p", "q", "gamma")


def log_likelihood(params: np.ndarray, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per-customer log-likelihood of mean value ``m`` over ``x`` purchases, vectorised."""
    p, q, v = params
    px = p * x
    return (special.gammaln(px + q) - special.gammaln(px) - special.gammaln(q) + q * nx.log(v)
            + (px - 1) * nx.log(m) + px * nx.log(x) - (px + q) * nx.log(x * m + v))


class _Terms:
    """:func:`log_likelihood` for one sample at many parameters, the same values to the last bit:
    what does not depend on the parameters is taken once, and the log-gamma terms, which
    depend on ``x`` only, are evaluated once per distinct ``x`` (frequencies are small
    integers: a few dozen values for a million customers) and gathered; every operation is
    the one :func:`log_likelihood` does, on the same operands, in the same order."""

    def __init__(self, x: np.ndarray, m: np.ndarray) -> None:
        self.x = x
        self.distinct, self.inverse = np.unique(x, return_inverse=True)
        self.log_m, self.log_x, self.xm = nx.log(m), nx.log(x), x * m

    def __call__(self, params: np.ndarray) -> np.ndarray:
        p, q, v = params
        pu = p * self.distinct
        head = (special.gammaln(pu + q) - special.gammaln(pu) - special.gammaln(q)
                + q * nx.log(v))[self.inverse]
        px = p * self.x
        return (head + (px - 1) * self.log_m + px * self.log_x
                - (px + q) * nx.log(self.xm + v))


@dataclass
class GammaGamma(MaximumLikelihoodFit):
    """The Gamma-Gamma model (see the module docstring). ``penalizer``: L2 weight on the
    parameters (0 = plain maximum likelihood)."""


    def fit(self, frequency: np.ndarray, monetary_value: np.ndarray) -> "GammaGamma":
        """Maximum-likelihood fit on customers with x >= 1 and m_x > 0 (others are skipped)."""
        x = np.asarray(frequency, float)
        m = np.asarray(monetary_value, float)
        keep = (x > 0) & (m > 0)
        x, m = x[keep], m[keep]
        n = max(x.size, 1)
        terms = _Terms(x, m)

        def objective(log_params: np.ndarray) -> float:
            params = nx.exp(log_params)
            value = -float(terms(params).sum()) / n
            value += self.penalizer * fixed_dot(params, params)
            return value if np.isfinite(value) else 1e300

        start = nx.log([1.0, 2.0, max(float(np.mean(m)) if m.size else 1.0, 1e-3)])
        result = minimize_bounded(objective, start, (-12.0, 12.0), maxiter=500)
        self.params_ = dict(zip(PARAMS, nx.exp(result.x).tolist()))
        self.log_likelihood_ = float(log_likelihood(nx.exp(result.x), x, m).sum())
        self.converged_ = bool(result.success) and bool(np.isfinite(self.log_likelihood_))
        self.iterations_ = int(result.nit)
        self.message_ = str(result.message)
        self.n_customers_ = int(x.size)
        return self

    def predict(self, frequency: np.ndarray, monetary_value: np.ndarray) -> np.ndarray:
        """Conditional expected value of a purchase (the population mean when x = 0)."""
        p, q, v = (self.params_[k] for k in PARAMS)
        x = np.asarray(frequency, float)
        m = np.nan_to_num(np.asarray(monetary_value, float))
        x = np.where(m > 0, x, 0.0)
        return p * (v + x * m) / (p * x + q - 1)

    def describe(self) -> dict[str, object]:
        """Parameters, log-likelihood and convergence (for the manifest)."""
        return {"model": "gamma_gamma", "params": self.params_,
                "log_likelihood": self.log_likelihood_, "converged": self.converged_,
                "iterations": self.iterations_, "message": self.message_,
                "customers": self.n_customers_}


def simulate(rng: np.random.Generator, frequency: np.ndarray, p: float, q: float, gamma: float
             ) -> np.ndarray:
    """Draw each customer's mean purchase value over ``frequency`` (>= 1) purchases.

    nu ~ Gamma(q, rate gamma); the sum of x values ~ Gamma(p x, rate nu), so the mean ~
    Gamma(p x, rate nu x).
    """
    x = np.asarray(frequency, float)
    nu = rng.gamma(q, 1.0 / gamma, x.size)
    return rng.gamma(p * x, 1.0 / (nu * x))
