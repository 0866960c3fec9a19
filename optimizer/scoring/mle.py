"""What every maximum-likelihood model of the package records about its fit (lifetimes-style),
the bounded quasi-Newton minimiser every fit of the package uses (:func:`minimize_bounded`) and
the one L2-penalised logistic regression of the propensity and repurchase models
(:func:`logistic_regression`)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from optimizer.core import numerics as nx
from optimizer.core.numerics import fixed_dot, fixed_matvec, fixed_tdot


@dataclass
class MaximumLikelihoodFit:
    """``penalizer``: L2 weight on the parameters (0 = plain maximum likelihood). Fitted
    attributes end in ``_``: parameters, log-likelihood, whether the optimiser converged, its
    iterations and message, and how many customers the fit used."""

    penalizer: float = 0.0
    params_: dict[str, float] = field(default_factory=dict, init=False)
    log_likelihood_: float = field(default=float("nan"), init=False)
    converged_: bool = field(default=False, init=False)
    iterations_: int = field(default=0, init=False)
    message_: str = field(default="", init=False)
    n_customers_: int = field(default=0, init=False)


@dataclass
class Minimum:
    """Where :func:`minimize_bounded` stopped: the point, its objective, the iterations, whether
    it converged and why it stopped (the fields a fit reads from scipy's ``OptimizeResult``)."""

    x: np.ndarray
    fun: float
    nit: int
    success: bool
    message: str


Objective = Callable[[np.ndarray], Any]


def minimize_bounded(fun: Objective, x0: np.ndarray, bounds: tuple[float, float] | None = None,
                     jac: bool = False, maxiter: int = 500, memory: int = 10,
                     ftol: float = 1e-12, gtol: float = 1e-9) -> Minimum:
    """Minimise ``fun`` from ``x0`` within the box ``bounds`` (the same ``(lower, upper)`` for
    every coordinate; ``None``: unbounded) by a projected limited-memory BFGS: the direction of
    the two-loop recursion (Nocedal & Wright 2006, *Numerical Optimization*, 2nd ed., Alg. 7.4)
    over the coordinates not held at a bound (as L-BFGS-B's, Byrd, Lu, Nocedal & Zhu 1995, "A
    limited memory algorithm for bound constrained optimization", SIAM J. Sci. Comput. 16(5),
    1190-1208, without its Cauchy point), a backtracking Armijo search along the projected path
    (N&W Alg. 3.1) and pairs kept only with positive curvature. ``jac``: ``fun`` returns
    ``(value, gradient)``; else the gradient is taken by central differences.

    Every product is :func:`~optimizer.core.numerics.fixed_dot` or elementwise numpy: scipy's
    L-BFGS-B calls BLAS (ddot, daxpy, dpotrf) whose rounding follows OpenBLAS's CPU kernel, so
    the fitted parameters, and the plan, differed between machines (docs/guarantees.md). Stops
    when the projected gradient is below ``gtol`` or a step lowers ``fun`` by less than
    ``ftol`` relative (converged), when no step along the direction lowers it (converged if the
    projected gradient is small, as finite-difference gradients allow), or after ``maxiter``."""
    lo, hi = bounds if bounds is not None else (-np.inf, np.inf)
    x = np.clip(np.asarray(x0, dtype=float), lo, hi)
    grad = _gradient(fun, jac, lo, hi)
    f, g = grad(x, None)
    pairs: list[tuple[np.ndarray, np.ndarray, float]] = []
    for it in range(maxiter):
        pg = float(np.max(np.abs(x - np.clip(x - g, lo, hi)), initial=0.0))
        if pg <= gtol:
            return Minimum(x, f, it, True, "projected gradient below tolerance")
        held = ((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0))
        d = _direction(np.where(held, 0.0, g), pairs)
        if not fixed_dot(d, g) < 0.0:  # not a descent direction: restart from the gradient
            pairs.clear()
            d = -np.where(held, 0.0, g)
        step = 1.0 if pairs else min(1.0, 1.0 / max(float(np.max(np.abs(d))), 1e-300))
        moved = _armijo(fun, jac, x, f, g, d, step, lo, hi)
        if moved is None:
            return Minimum(x, f, it, pg <= 1e-5,
                           "no decrease along the search direction")
        x_new, f_new = moved
        f_new, g_new = grad(x_new, f_new)
        s, y = x_new - x, g_new - g
        sy = fixed_dot(s, y)
        if sy > 1e-12 * fixed_dot(y, y):
            pairs = [*pairs[-(memory - 1):], (s, y, 1.0 / sy)] if memory > 1 else [(s, y, 1.0 / sy)]
        done = f - f_new <= ftol * max(abs(f), abs(f_new), 1.0)
        x, f, g = x_new, f_new, g_new
        if done:
            return Minimum(x, f, it + 1, True, "relative reduction below tolerance")
    return Minimum(x, f, maxiter, False, "iteration limit reached")


def _direction(g: np.ndarray, pairs: list[tuple[np.ndarray, np.ndarray, float]]) -> np.ndarray:
    """``-H g`` by the two-loop recursion (N&W Alg. 7.4), ``H0`` scaled by the newest pair."""
    q = g.copy()
    alphas = []
    for s, y, rho in reversed(pairs):
        a = rho * fixed_dot(s, q)
        q = q - a * y
        alphas.append(a)
    if pairs:
        s, y, rho = pairs[-1]
        q = q * (1.0 / (rho * fixed_dot(y, y)))
    for (s, y, rho), a in zip(pairs, reversed(alphas)):
        q = q + (a - rho * fixed_dot(y, q)) * s
    return -np.where(g == 0.0, 0.0, q)


def _armijo(fun: Objective, jac: bool, x: np.ndarray, f: float, g: np.ndarray, d: np.ndarray,
            step: float, lo: float, hi: float, c1: float = 1e-4
            ) -> tuple[np.ndarray, float] | None:
    """The first of ``step, step/2, ...`` (at most 60) whose projected point lowers ``fun`` by
    the Armijo condition ``f(x') <= f(x) + c1 g.(x' - x)`` (N&W Alg. 3.1); ``None`` if none."""
    for _ in range(60):
        x_new = np.clip(x + step * d, lo, hi)
        decrease = fixed_dot(g, x_new - x)
        if decrease >= 0.0:
            return None
        f_new = _value(fun, jac, x_new)
        if f_new <= f + c1 * decrease:
            return x_new, f_new
        step *= 0.5
    return None


def _value(fun: Objective, jac: bool, x: np.ndarray) -> float:
    return float(fun(x)[0]) if jac else float(fun(x))


def _gradient(fun: Objective, jac: bool, lo: float, hi: float
              ) -> Callable[[np.ndarray, float | None], tuple[float, np.ndarray]]:
    """``(x, fun(x) if known) -> (fun(x), gradient)``: ``fun``'s own, or central differences of
    step ``eps**(1/3) max(1, |x_i|)`` (one-sided at a bound; N&W section 8.1)."""
    if jac:
        def both(x: np.ndarray, known: float | None) -> tuple[float, np.ndarray]:
            value, g = fun(x)
            return float(value), np.asarray(g, dtype=float).copy()
        return both

    def central(x: np.ndarray, known: float | None) -> tuple[float, np.ndarray]:
        g = np.empty(x.size)
        h = np.finfo(float).eps ** (1 / 3) * np.maximum(1.0, np.abs(x))
        for i in range(x.size):  # a handful of parameters
            up, down = x.copy(), x.copy()
            up[i], down[i] = min(x[i] + h[i], hi), max(x[i] - h[i], lo)
            g[i] = (float(fun(up)) - float(fun(down))) / (up[i] - down[i])
        return (float(fun(x)) if known is None else known), g
    return central


def logistic_regression(X: np.ndarray, y: np.ndarray, l2: float, maxiter: int = 500
                        ) -> tuple[np.ndarray, Minimum]:
    """L2-penalised logistic regression of 0/1 labels ``y`` on the columns of ``X`` (column 0 =
    the intercept, not penalised), fitted on standardised columns by :func:`minimize_bounded`
    with the analytic gradient; returns the coefficients on ``X``'s own scale and where the
    minimiser stopped. A column constant to 1e-12 of its size is the intercept's job: its
    coefficient stays 0. Every product is a fixed-order sum (:mod:`optimizer.core.numerics`):
    OpenBLAS splits ``Z.T @ r`` over its threads, so the coefficients would follow them."""
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    mean[0], scale[0] = 0.0, 1.0
    constant = np.ptp(X, axis=0) <= 1e-12 * np.maximum(np.abs(mean), 1.0)
    constant[0] = False
    scale = np.where(constant, 1.0, scale)
    mean[constant] = 0.0
    Z = (X - mean) / scale
    Z[:, constant] = 0.0
    n = max(y.size, 1)
    penalty = np.full(Z.shape[1], l2)
    penalty[0] = 0.0

    def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = fixed_matvec(Z, beta)
        nll = float(np.sum(nx.logaddexp(0.0, eta) - y * eta)) / n
        grad = fixed_tdot(Z, special.expit(eta) - y) / n
        return nll + fixed_dot(penalty, beta**2), grad + 2 * penalty * beta

    rate = min(max(float(y.mean()) if y.size else 0.5, 1e-6), 1 - 1e-6)
    start = np.zeros(Z.shape[1])
    start[0] = nx.log(rate / (1 - rate))
    result = minimize_bounded(loss, start, jac=True, maxiter=maxiter)
    beta = result.x / scale
    beta[0] = result.x[0] - float(np.sum(result.x[1:] * mean[1:] / scale[1:]))
    return beta, result
