"""The held-out check's statistics (optimizer/scoring/ranking_stats.py) and the formula's Platt
calibration (optimizer/scoring/repurchase_fit.platt): the weighted AUC against an independent
count, the paired bootstrap of an AUC difference, and Platt scaling recovering a known
calibration."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import special
from scipy.stats import mannwhitneyu

from optimizer.core.bootstrap import poisson_weights
from optimizer.scoring._pair_kernels import platt_array
from optimizer.scoring.ranking_stats import auc, auc_difference, weighted_auc
from optimizer.scoring.repurchase_fit import platt


def _pairs_auc(score: np.ndarray, y: np.ndarray) -> float:
    """AUC by counting every (positive, negative) pair: the definition, pair by pair."""
    pos, neg = score[y > 0], score[y == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def test_auc_is_the_share_of_pairs_ordered_right_ties_half():
    rng = np.random.default_rng(0)
    score = rng.integers(0, 7, 300).astype(float)  # many ties
    y = (rng.random(300) < 0.2 + 0.05 * score).astype(float)
    assert auc(score, y) == pytest.approx(_pairs_auc(score, y), abs=1e-15)
    u = mannwhitneyu(score[y > 0], score[y == 0]).statistic
    assert auc(score, y) == u / ((y > 0).sum() * (y == 0).sum())  # exact, as the rank sum
    assert np.isnan(auc(score, np.zeros(300))) and np.isnan(auc(score, np.ones(300)))


def test_weighted_auc_is_the_auc_of_the_pairs_repeated_by_their_weights():
    rng = np.random.default_rng(1)
    score = rng.normal(size=200).round(1)
    y = (rng.random(200) < special.expit(score)).astype(float)
    weights = rng.poisson(1.0, (5, 200)).astype(float)
    got = weighted_auc(score, y, weights)
    for r in range(5):
        copies = weights[r].astype(int)
        assert got[r] == pytest.approx(_pairs_auc(np.repeat(score, copies), np.repeat(y, copies)),
                                       abs=1e-12)


def test_auc_difference_is_paired_over_customers_and_seeded():
    rng = np.random.default_rng(2)
    n, customers = 4000, 400
    customer = rng.integers(0, customers, n)
    signal = rng.normal(size=n)
    y = (rng.random(n) < special.expit(2 * signal - 2)).astype(float)
    good, noisy = signal, signal + rng.normal(scale=2.0, size=n)
    clear = auc_difference(good, noisy, y, customer, seed=5)
    assert clear["auc_difference"] == pytest.approx(auc(good, y) - auc(noisy, y), abs=1e-15)
    assert 0 < clear["ci95"][0] < clear["auc_difference"] < clear["ci95"][1]
    assert clear["customers"] == customers and clear["resamples"] == 200
    assert auc_difference(good, noisy, y, customer, seed=5) == clear  # seeded
    assert auc_difference(good, noisy, y, customer, seed=6)["ci95"] != clear["ci95"]
    reverse = auc_difference(noisy, good, y, customer, seed=5)
    assert reverse["ci95"] == pytest.approx([-clear["ci95"][1], -clear["ci95"][0]], abs=1e-12)
    # the same scores: a zero difference in every resample (paired)
    assert auc_difference(good, good.copy(), y, customer, seed=5)["ci95"] == [0.0, 0.0]
    # the resamples are the customers' own: each resample equals the AUCs of its weights
    w = np.concatenate([b for _, b in poisson_weights(np.random.default_rng(5), 200,
                                                      customers)], axis=1)
    by_hand = (weighted_auc(good, y, w[:, customer]) - weighted_auc(noisy, y, w[:, customer]))
    assert clear["ci95"] == pytest.approx(list(np.percentile(by_hand, [2.5, 97.5])), abs=1e-12)


def test_platt_recovers_a_known_calibration_and_refuses_a_reversed_one():
    rng = np.random.default_rng(4)
    p = rng.uniform(0.01, 0.4, 100_000)  # a formula's uncalibrated p_redeem
    y = (rng.random(p.size) < special.expit(-1.5 + 0.6 * special.logit(p))).astype(float)
    fit = platt(p, y)
    assert isinstance(fit, dict) and fit["calibrated"]
    assert fit["a"] == pytest.approx(-1.5, abs=0.15) and fit["b"] == pytest.approx(0.6, abs=0.06)
    assert fit["mean_predicted"] == pytest.approx(y.mean(), rel=1e-4)
    np.testing.assert_allclose(platt_array(p, fit["a"], fit["b"]),
                               special.expit(fit["a"] + fit["b"] * special.logit(p)), rtol=1e-12)
    reversed_ = platt(p, (rng.random(p.size) < 0.5 - p).astype(float))
    assert isinstance(reversed_, str) and "not above 0" in reversed_
