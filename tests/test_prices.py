"""Critical prices (coordinate step) against a plain per-group sort."""
from __future__ import annotations

import numpy as np

from optimizer.solvers.prices import critical_price


def _reference(group, crit, weight, capacity):
    price = np.zeros(capacity.shape[0])
    for g in range(capacity.shape[0]):
        if not np.isfinite(capacity[g]):
            continue
        mine = (group == g) & (crit > 0) & (weight > 0)
        order = np.argsort(-crit[mine], kind="stable")
        running = np.cumsum(weight[mine][order])
        spill = np.flatnonzero(running > capacity[g] * (1 + 1e-12))
        price[g] = crit[mine][order][spill[0]] if spill.size else 0.0
    return price


def test_bucketed_critical_price_matches_a_full_sort():
    rng = np.random.default_rng(0)
    for _ in range(40):
        groups = int(rng.integers(1, 30))
        k = int(rng.integers(1, 4000))
        group = rng.integers(0, groups, k)
        crit = rng.lognormal(0, 2, k) * np.where(rng.random(k) < 0.2, -1, 1)
        weight = rng.random(k)
        capacity = np.where(rng.random(groups) < 0.2, np.inf, rng.random(groups) * k / groups / 2)
        np.testing.assert_allclose(critical_price(group, crit, weight, capacity),
                                   _reference(group, crit, weight, capacity))


def test_nothing_over_capacity_means_zero_prices():
    group = np.array([0, 0, 1])
    price = critical_price(group, np.array([1.0, 2.0, 3.0]), np.ones(3), np.array([5.0, np.inf]))
    assert (price == 0).all()
