"""The compiled eligibility pass (``EligibilityRules.allowed``) against the per-reason masks of
``EligibilityRules.reasons`` (the numpy path ``offeropt explain`` and the bound use)."""
from __future__ import annotations

import numpy as np
import pytest

from optimizer.model.eligibility import REASONS, EligibilityRules


def _random_rules(rng: np.random.Generator, n_customers: int, n_offers: int) -> EligibilityRules:
    def keys(share: float) -> np.ndarray:
        return np.flatnonzero(rng.random(n_customers * n_offers) < share).astype(np.int64)

    return EligibilityRules(n_offers, rng.random(n_offers) < 0.8, rng.random(n_offers) < 0.1,
                            rng.random(n_offers) < 0.4, keys(0.2), keys(0.3), keys(0.2),
                            rng.random(n_offers) < 0.1)


@pytest.mark.parametrize("seed", range(40))
def test_allowed_is_no_reason_and_audits_every_reason(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_offers, n_customers = int(rng.integers(1, 12)), int(rng.integers(1, 30))
    rules = _random_rules(rng, n_customers, n_offers)
    lo = int(rng.integers(0, n_customers))
    customers = np.arange(lo, int(rng.integers(lo, n_customers)) + 1)
    if seed % 2:  # the affinity path: every offer, a broadcast view
        offer = np.broadcast_to(np.arange(n_offers), (customers.size, n_offers))
    else:  # the scores path's layout: listed offers in order, -1 in empty slots
        slots = int(rng.integers(1, n_offers + 1))
        offer = np.full((customers.size, slots), -1)
        for i in range(customers.size):
            k = int(rng.integers(0, slots + 1))
            offer[i, :k] = np.sort(rng.choice(n_offers, k, replace=False))
    reasons = rules.reasons(customers, offer)
    blocked = np.any(list(reasons.values()), axis=0)
    assert (rules.allowed(customers, offer) == ((offer >= 0) & ~blocked)).all()
    for name in REASONS:
        assert rules.audit[name] == int(reasons[name].sum()), name
    assert rules.audit["removed"] == int(blocked.sum())
    assert rules.audit["considered"] == int((offer >= 0).sum())


@pytest.mark.parametrize("seed", range(10))
def test_membership_walk_matches_isin(seed: int) -> None:
    """The sorted-walk membership both paths share, against numpy's ``isin``: keys as chunks
    lay them out (customers in order, offers in order, -1 slots stepping back)."""
    from optimizer.model.eligibility import _member

    rng = np.random.default_rng(seed)
    n_offers, n_customers = 7, 40
    sorted_keys = np.unique(rng.integers(0, n_customers * n_offers, 60)).astype(np.int64)
    customers = np.arange(5, 30)
    offer = np.where(rng.random((customers.size, n_offers)) < 0.2, -1,
                     np.arange(n_offers)[None, :])
    keys = customers[:, None] * n_offers + np.maximum(offer, 0)
    got = _member(keys, sorted_keys, customers[0] * n_offers, (customers[-1] + 1) * n_offers)
    assert (got == np.isin(keys, sorted_keys)).all()


def test_int32_customer_indices_past_the_key_range_of_int32() -> None:
    # 5 M customers x 500 offers: a pair key passes 2**31; indices come from the scores table as
    # int32, and a chunk's key range computed in int32 wrapped around (cooldown pairs missed)
    n_offers, customer = 500, 5_000_000
    none = np.zeros(n_offers, dtype=bool)
    cooldown = np.array([customer * n_offers + 7], dtype=np.int64)
    rules = EligibilityRules(n_offers, ~none, none, none, np.zeros(0, dtype=np.int64),
                             np.zeros(0, dtype=np.int64), cooldown, none)
    customers = np.array([customer, customer + 1], dtype=np.int32)
    offer = np.array([[7, 8], [7, -1]])
    assert rules.allowed(customers, offer).tolist() == [[False, True], [True, False]]
    assert rules.reasons(customers, offer)["cooldown"].tolist() == [[True, False], [False, False]]


@pytest.mark.parametrize("seed", range(20))
def test_rows_of_every_offer_take_the_row_kernel_with_the_same_mask_and_audit(seed: int) -> None:
    # the affinity chunks (every offer, customers increasing, here with gaps) go through
    # _eligibility_kernels.dense_cells: the same mask and counts as the cell-by-cell walk
    from optimizer.model import _eligibility_kernels as dense
    from optimizer.model import eligibility

    rng = np.random.default_rng(100 + seed)
    n_offers, n_customers = int(rng.integers(1, 15)), int(rng.integers(2, 40))
    rules = _random_rules(rng, n_customers, n_offers)
    customers = np.flatnonzero(rng.random(n_customers) < 0.6).astype(np.int64)
    if customers.size == 0:
        customers = np.array([n_customers - 1])
    offer = np.broadcast_to(np.arange(n_offers, dtype=np.int64), (customers.size, n_offers))
    assert dense.every_offer_in_order(customers, offer, n_offers)
    assert not dense.every_offer_in_order(customers[::-1].copy(), offer, n_offers) \
        or customers.size == 1
    args = (rules.n_offers, rules.active, rules.forbidden_for_all, rules.needs_opt_in,
            rules.excluded_category, rules.excluded_keys, rules.opted_in_keys,
            rules.cooldown_keys)
    walked, walked_counts = np.zeros(offer.shape, bool), np.zeros(7, np.int64)
    eligibility._allowed_cells(customers, offer, *args[:5], *args[5:], walked, walked_counts)
    rows, row_counts = np.zeros(offer.shape, bool), np.zeros(7, np.int64)
    dense.dense_cells(customers, *args, rows, row_counts)
    assert np.array_equal(rows, walked)
    assert row_counts.tolist() == walked_counts.tolist()
