"""BG/NBD and Gamma-Gamma: parameter recovery from data simulated from the models (lifetimes
style: the tests reproduce the published CDNOW estimates), prediction sanity and the fallback."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from optimizer.scoring import bgnbd, gamma_gamma
from optimizer.scoring.bgnbd import BGNBD
from optimizer.scoring.clv import LifetimeValue, RFMSummary
from optimizer.scoring.gamma_gamma import GammaGamma

# Fader, Hardie & Lee (2005a), CDNOW sample, weeks: r, alpha, a, b
CDNOW_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
# Fader, Hardie & Lee (2005b) / Fader & Hardie (2013), CDNOW spend: p, q, gamma
CDNOW_GG = {"p": 6.25, "q": 3.74, "gamma": 15.44}


def test_bgnbd_recovers_cdnow_parameters_from_simulated_customers():
    rng = np.random.default_rng(1)
    T = rng.uniform(27, 39, 30_000)  # CDNOW: first purchases spread over 12 weeks, 39 observed
    x, t_x = bgnbd.simulate(rng, T, **CDNOW_BGNBD)
    model = BGNBD().fit(x, t_x, T)
    assert model.converged_ and model.iterations_ > 0 and np.isfinite(model.log_likelihood_)
    fitted = model.params_
    assert fitted["r"] == pytest.approx(CDNOW_BGNBD["r"], rel=0.05)
    assert fitted["alpha"] == pytest.approx(CDNOW_BGNBD["alpha"], rel=0.1)
    # a and b are strongly correlated in the likelihood; their mean dropout is well identified
    mean_p = CDNOW_BGNBD["a"] / (CDNOW_BGNBD["a"] + CDNOW_BGNBD["b"])
    assert fitted["a"] / (fitted["a"] + fitted["b"]) == pytest.approx(mean_p, rel=0.05)
    for name in ("a", "b"):
        assert fitted[name] == pytest.approx(CDNOW_BGNBD[name], rel=0.3), name
    info = model.describe()
    assert set(info["params"]) == {"r", "alpha", "a", "b"} and info["converged"]


def test_bgnbd_pooled_weights_give_the_same_fit():
    rng = np.random.default_rng(1)
    T = rng.integers(20, 30, 5000).astype(float)
    x, t_x = bgnbd.simulate(rng, T, 0.5, 5.0, 1.2, 3.0)
    t_x = np.round(t_x)  # discrete time, as when purchases are counted by day or week
    keys, counts = np.unique(np.column_stack([x, t_x, T]), axis=0, return_counts=True)
    full = BGNBD().fit(x, t_x, T)
    pooled = BGNBD().fit(keys[:, 0], keys[:, 1], keys[:, 2], counts)
    assert pooled.log_likelihood_ == pytest.approx(full.log_likelihood_, rel=1e-6)


def test_bgnbd_prediction_matches_simulated_future_purchases():
    rng = np.random.default_rng(2)
    r, alpha, a, b = 0.5, 5.0, 1.5, 4.0
    n = 40_000
    lam, p = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    # simulate over T + t, then count purchases in (T, T + t]: a customer is alive until she
    # drops after her J-th repeat purchase
    T, t = 20.0, 10.0
    n_all = rng.poisson(lam * (T + t))
    J = rng.geometric(p)
    times = [np.sort(rng.uniform(0, T + t, k))[:j] for k, j in zip(n_all[:4000], J[:4000])]
    x = np.array([float((tt <= T).sum()) for tt in times])
    t_x = np.array([float(tt[tt <= T].max()) if (tt <= T).any() else 0.0 for tt in times])
    future = np.array([float((tt > T).sum()) for tt in times])
    model = BGNBD()
    model.params_ = {"r": r, "alpha": alpha, "a": a, "b": b}
    expected = model.predict(t, x, t_x, np.full(x.size, T))
    assert expected.mean() == pytest.approx(future.mean(), rel=0.1)
    heavy = x >= 3
    assert expected[heavy].mean() > expected[~heavy].mean()


def test_gamma_gamma_recovers_cdnow_parameters():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 15, 20_000).astype(float)
    m = gamma_gamma.simulate(rng, x, **CDNOW_GG)
    model = GammaGamma().fit(x, m)
    assert model.converged_
    for name, true in CDNOW_GG.items():
        assert model.params_[name] == pytest.approx(true, rel=0.15), name
    spend = model.predict(x, m)
    p, q, v = (model.params_[k] for k in ("p", "q", "gamma"))
    assert np.all(spend > 0)
    # shrinkage: a customer's expected spend lies between her mean and the population mean
    pop = p * v / (q - 1)
    assert np.all((spend - m) * (spend - pop) <= 1e-9)
    assert model.predict(np.array([0.0]), np.array([0.0]))[0] == pytest.approx(pop)


def _rfm(x, t_x, T, m) -> RFMSummary:
    return RFMSummary(x, t_x, T, m, np.ones(x.size, bool), "week")


class _Features:
    weeks_observed = 26
    spend = np.array([26.0, 52.0])


def test_lifetime_value_falls_back_to_run_rate_and_says_why(caplog):
    rfm = _rfm(np.array([0.0, 1.0]), np.array([0.0, 3.0]), np.array([10.0, 10.0]),
               np.array([0.0, 5.0]))
    with caplog.at_level(logging.WARNING):
        model = LifetimeValue(horizon_weeks=52).fit(rfm, _Features())
    info = model.describe()
    assert "repeat" in info["fallback"] and info["model"].startswith("run_rate")
    assert "run-rate" in caplog.text
    assert model.predict(rfm, _Features()).tolist() == [52.0, 104.0]


def test_lifetime_value_fits_both_models_on_simulated_customers():
    rng = np.random.default_rng(3)
    T = rng.uniform(20, 30, 5000)
    x, t_x = bgnbd.simulate(rng, T, **CDNOW_BGNBD)
    m = np.where(x > 0, gamma_gamma.simulate(rng, np.maximum(x, 1), **CDNOW_GG), 0.0)
    rfm = _rfm(x, t_x, T, m)
    model = LifetimeValue(horizon_weeks=52).fit(rfm, _Features())
    info = model.describe()
    assert info["fallback"] is None and info["converged"]
    assert info["bg_nbd"]["converged"] and info["gamma_gamma"]["converged"]
    clv = model.predict(rfm, _Features())
    assert np.all(clv >= 0) and clv[x >= 5].mean() > clv[x == 0].mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_objectives_equal_the_log_likelihoods_to_the_last_bit(seed):
    # the fits evaluate the likelihood through per-sample terms (log-gamma once per distinct
    # frequency): any last-bit difference would move the minimiser and so the fitted parameters
    rng = np.random.default_rng(seed)
    T = rng.integers(1, 300, 20_000).astype(float)
    x, t_x = bgnbd.simulate(rng, T, **CDNOW_BGNBD)
    t_x = np.round(t_x)
    m = rng.gamma(3.0, 10.0, x.size)
    bg_terms = bgnbd._Terms(x, t_x, T)
    gg_terms = gamma_gamma._Terms(x[x > 0], m[x > 0])
    for _ in range(20):
        bg = np.exp(rng.uniform(-3, 3, 4))
        gg = np.exp(rng.uniform(-3, 3, 3))
        assert np.array_equal(bg_terms(bg), bgnbd.log_likelihood(bg, x, t_x, T), equal_nan=True)
        assert np.array_equal(gg_terms(gg), gamma_gamma.log_likelihood(gg, x[x > 0], m[x > 0]),
                              equal_nan=True)


def test_minimize_bounded_finds_the_minimum_inside_and_on_the_box():
    """The fits' minimiser (projected L-BFGS, no BLAS): Rosenbrock's minimum (1, 1) unbounded,
    (0.5, 0.25) with x <= 0.5, by finite differences and with the gradient."""
    from optimizer.scoring.mle import minimize_bounded

    def value(x):
        return float(100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2)

    def both(x):
        return value(x), np.array([-400 * x[0] * (x[1] - x[0] ** 2) - 2 * (1 - x[0]),
                                   200 * (x[1] - x[0] ** 2)])

    start = np.array([-1.2, 1.0])
    for fun, jac in ((value, False), (both, True)):
        free = minimize_bounded(fun, start, jac=jac)
        assert free.success and np.allclose(free.x, [1.0, 1.0], atol=1e-5)
        boxed = minimize_bounded(fun, start, (-2.0, 0.5), jac=jac)
        assert boxed.success and np.allclose(boxed.x, [0.5, 0.25], atol=1e-5)
