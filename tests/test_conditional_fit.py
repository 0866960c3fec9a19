"""Issue 25: the repurchase fit learns its pair terms within her offers of a week (conditional
logit) when the held-out sends say that ranks them better, and keeps the pooled fit otherwise."""
from __future__ import annotations

import numpy as np

from optimizer.scoring import repurchase, repurchase_fit
from optimizer.scoring.conditional import conditional_logit, grouped_auc

CORE = repurchase.CORE
NAMES = repurchase.NAMES
WEEK_SHIFT = 2**21


def _campaigns(n_customers: int, offers: int, confounded: bool, seed: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every customer sent ``offers`` offers in one week (a campaign). Within her offers she
    redeems the ones whose products she bought most (``product_log``, weight 1.5); across
    customers, when ``confounded``, those who buy much of everything redeem little (a customer
    term the features do not show, -3.5 x her mean ``product_log``): the pooled fit mixes the
    two. Returns the design (:data:`NAMES`), labels, customers and groups (customer x week)."""
    rng = np.random.default_rng(seed)
    c = np.repeat(np.arange(n_customers), offers)
    level = rng.gamma(2.0, 0.6, n_customers)
    product_log = np.maximum(level[c] + rng.normal(0, 0.7, c.size), 0.0)
    X = np.zeros((c.size, len(NAMES)))  # the columns outside the core set stay 0
    X[:, 0] = 1.0
    X[:, NAMES.index("product_weeks")] = rng.random(c.size) * 0.2
    X[:, NAMES.index("category_weeks")] = rng.random(c.size) * 0.2
    X[:, NAMES.index("product_log")] = product_log
    X[:, NAMES.index("product_rarity")] = rng.random(c.size)
    habit = rng.poisson(1.0, n_customers)
    X[:, NAMES.index("redeemed_log")] = np.log1p(habit)[c]
    eta = -3.0 + 1.5 * product_log + 0.8 * np.log1p(habit)[c]
    if confounded:
        eta += -3.5 * level[c]
    y = (rng.random(c.size) < 1 / (1 + np.exp(-eta))).astype(float)
    return X, y, c, c * WEEK_SHIFT + 20


def test_conditional_logit_recovers_the_within_household_weight_the_pooled_fit_misses():
    X, y, c, group = _campaigns(6_000, 8, confounded=True, seed=1)
    X = X[:, [NAMES.index(n) for n in CORE]]
    at = CORE.index("product_log")
    pooled, ok = repurchase_fit.logistic(X, y)
    assert ok and pooled[at] < 0.0  # the across-customer term turns the pooled weight round
    within, ok = repurchase_fit.within_fit(X, y, group, CORE)
    assert ok and abs(within[at] - 1.5) < 0.2
    # the customer term is still fitted (pooled, on top of the within-household offset)
    assert within[CORE.index("redeemed_log")] > 0.3
    # and the within fit orders her own offers better
    assert (grouped_auc(X @ within, y, group) > grouped_auc(X @ pooled, y, group) + 0.05)


def test_conditional_logit_ignores_groups_without_a_choice():
    X, y, c, group = _campaigns(2_000, 6, confounded=False, seed=2)
    cols = [NAMES.index("product_log"), NAMES.index("product_rarity")]
    beta, ok = conditional_logit(X[:, cols], y, group)
    # a group where nobody redeemed (or everything was) carries no within information: adding
    # such groups, with any features, changes nothing
    extra = X[:500].copy()
    extra[:, cols] = np.random.default_rng(3).normal(5, 3, (500, 2))
    more, ok2 = conditional_logit(np.vstack([X, extra])[:, cols],
                                  np.concatenate([y, np.zeros(500)]),
                                  np.concatenate([group, np.full(500, -1)]))
    assert ok and ok2
    np.testing.assert_allclose(more, beta, rtol=1e-6, atol=1e-8)
    none, ok = conditional_logit(X[:, cols], np.zeros(y.size), group)
    assert not ok and np.all(none == 0.0)


def test_the_held_out_check_keeps_the_within_fit_where_it_ranks_better():
    X, y, c, group = _campaigns(6_000, 8, confounded=True, seed=4)
    keep, figures = repurchase_fit._within_check(X, y, c % 4 == 0, group, CORE)
    assert keep and figures["kept"] == "within"
    assert figures["within"]["within_auc"] > figures["pooled"]["within_auc"] + 0.05


def test_the_held_out_check_keeps_the_pooled_fit_where_the_signal_is_across_customers():
    # product_log the same for all her offers: only the pooled fit can learn it (it is a
    # customer's level in disguise), the conditional logit sees no contrast
    X, y, c, group = _campaigns(6_000, 8, confounded=False, seed=5)
    rng = np.random.default_rng(6)
    level = rng.gamma(2.0, 0.6, 6_000)
    X[:, NAMES.index("product_log")] = level[c]
    eta = -4.0 + 1.5 * level[c]
    y = (rng.random(c.size) < 1 / (1 + np.exp(-eta))).astype(float)
    keep, figures = repurchase_fit._within_check(X, y, c % 4 == 0, group, CORE)
    assert not keep and figures["kept"] == "pooled"
    assert figures["pooled"]["auc"] > figures["within"]["auc"]
