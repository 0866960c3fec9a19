"""The target bonus: the least bonus per offer that brings min_customers candidates in; the
shards' answer against the plain definition (tests/oracles.py)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.oracles import target_bonus


def test_bonus_is_the_least_that_brings_the_target_in():
    rng = np.random.default_rng(2)
    for trial in range(200):
        n_groups = int(rng.integers(1, 8))
        k = int(rng.integers(0, 60))
        group = rng.integers(0, n_groups, k)
        margin = rng.normal(0.0, 1.0, k)
        margin[rng.random(k) < 0.05] = -np.inf  # candidates that can never come in
        target = rng.integers(0, 12, n_groups) * (rng.random(n_groups) < 0.7)
        bonus = target_bonus(group, margin, target)
        for g in range(n_groups):
            mine = margin[group == g]
            wanted = min(int(target[g]), int(np.isfinite(mine).sum()))
            inside = int((mine + bonus[g] > 0).sum())
            assert bonus[g] >= 0
            assert inside >= wanted, f"trial {trial} group {g}"
            if (mine > 0).sum() >= target[g]:
                assert bonus[g] == 0, f"trial {trial} group {g}: target already met"
            elif bonus[g] > 1e-9:  # any smaller bonus leaves the target unmet
                assert int((mine + 0.999 * bonus[g] > 0).sum()) < wanted, f"trial {trial}"


@pytest.mark.parametrize("split", [None, 20])
@pytest.mark.parametrize("seed, n, shard", [(0, 10, 4), (1, 5000, 1 << 20), (2, 30_000, 7_000)])
def test_target_bonus_on_shards_is_the_plain_functions(seed, n, shard, split, monkeypatch):
    """The bonus from the shards' counts, sketches, tallies and crossing buckets
    (:meth:`.executor.ShardedCandidates.target_bonus`) is :func:`target_bonus`'s over every
    targeted candidate gathered (the oracle), to the bit: targets met, short, and beyond the candidates,
    ties and candidates that can never come in, on one shard or several, the crossing buckets
    of more than ``split`` candidates narrowed first or not."""
    # margins one per slot, written in by hand (not each customer's two limits)
    monkeypatch.setattr("optimizer.solve.lagrangian.margins.compact", lambda problem: False)
    from optimizer.solve.lagrangian._kernels import serial_map
    from optimizer.solve.lagrangian.critical import Candidates
    from tests.test_shards import CallsSeen
    from tests.test_solver_vs_exact import random_problem

    m = 12
    problem = random_problem(seed, n, m, 8, multi=False, per_category=None, global_share=None,
                             block=1000)
    rng = np.random.default_rng(seed)
    margins = [np.round(rng.normal(-0.3, 0.5, b.offer.shape), 2) for b in problem.blocks]
    for margin in margins:
        margin[rng.random(margin.shape) < 0.02] = -np.inf
    ex = CallsSeen(problem, shard, serial_map)
    ex.split_above = split
    for held, spec in zip(ex.shards, ex.specs):
        for mine, (b, first, end) in zip(held.margins, spec.pieces):
            mine[...] = margins[b][first:end]
    per_offer = n * 4.5 / m  # candidates an offer, about
    min_customers = np.array([0, 0.05, 0.3, 0.5, 0.8, 2.0] * 2) * per_offer
    min_customers = np.maximum(min_customers.astype(np.int64), [0, 1] * 6)
    targeted = min_customers > 0
    budget_price, glob, count_price = rng.random(m) * 0.05, 0.01, rng.random(m) * 0.05
    got = ex.candidates.target_bonus(targeted, budget_price, glob, count_price, min_customers)
    whole = Candidates([b.offer for b in problem.blocks], [b.cost for b in problem.blocks],
                       margins)
    want = target_bonus(*whole.targeted(targeted, budget_price, glob, count_price),
                        min_customers)
    np.testing.assert_array_equal(got, want)
    if n > 10:
        assert (want > 0).sum() >= 4 and (targeted & (want == 0)).any()  # short ones and met
    assert ("kept_collect" in getattr(ex, "seen", ())) == (split is not None and n > 10)
