"""The whole problem's LP bound (optimizer/solve/lp.py, the start's second bound:
optimizer/solve/lagrangian/start.py) with the week's pins fixed and with the change penalty's
bonus: added to the pins' value, it stays at or above the exact optimum of the problem the
solver saw (x = 1 on the pins, last week's pairs worth the penalty more)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from optimizer.io.validate import load_inputs
from optimizer.model import pins, stability
from optimizer.solve.exact import solve_exact
from optimizer.solve.lagrangian import start
from tests.random_world import run_and_check
from tests.test_pins import _pinned_scenario, _pinned_world
from tests.tiny_world import WEEK


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("pin, penalty", [(True, 0.0), (False, 0.3), (True, 0.3)])
def test_the_lp_bound_holds_the_exact_optimum_with_pins_and_change_penalty(seed, pin, penalty):
    world, rules = _pinned_world(seed, 20, 6, campaign=True, channels=True)
    lps, plans = [], []
    real_lp, real_apply = start.sample_lp, pins.apply

    def spy_lp(problem, customers, seed, shards=None):
        lp = real_lp(problem, customers, seed, shards)
        if lp is not None and lp[1]:  # the whole problem's LP: its bound is the start's bound
            lps.append((lp[0].bound, problem.fixed_value))
        return lp

    def spy_apply(problem, plan):
        plans.append(plan)
        return real_apply(problem, plan)

    with tempfile.TemporaryDirectory(prefix="offeropt-lp-") as tmp, \
            pytest.MonkeyPatch.context() as patch:
        patch.setattr(start, "sample_lp", spy_lp)
        patch.setattr(pins, "apply", spy_apply)
        root = Path(tmp)
        scenario = _pinned_scenario(root, world, rules, pin, penalty, {"polish_pairs": 0})
        _, problem, _ = run_and_check(scenario, root)
        history = load_inputs(scenario.data).history
    assert lps, "no whole-problem LP bound was computed: the test would prove nothing"
    if penalty:  # the penalised problem the solver saw
        stability.add_bonus(problem, stability.from_history(history, WEEK,
                                                            problem.offers.n_offers), penalty)
    plan = plans[0] if plans else None
    if pin:
        assert plan is not None and plan.kept > 0  # pins were fixed: not vacuous
    exact = solve_exact(problem, time_limit_s=60,
                        pinned=plan.masks if plan is not None else None,
                        pinned_channels=plan.channel if plan is not None else None)
    assert exact.status == "optimal"
    slack = 1e-6 * max(1.0, abs(exact.objective))
    for bound, fixed in lps:
        assert np.isfinite(bound)
        assert bound + fixed >= exact.objective - slack, (bound, fixed, exact.objective)
