"""The target bonus: the least bonus per offer that brings min_customers candidates in."""
from __future__ import annotations

import numpy as np

from optimizer.solve.lagrangian.targets import target_bonus


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
