"""Property tests through the real pipeline on random instances with every rule switched on.

Each example writes a random input folder (tests/random_world.py: up to 30 customers and 15
offers; windows, budgets, min/max customers, multi-category and category-less offers, exclude and
opt-in rows in odd spellings, history for the cooldown and the frequency window, a ``scores`` table)
and a scenario with every cap, a global budget, ``budget_scale`` (0 included) and sensitive
categories under a random policy, runs ``run_scenario`` and asserts:

* every hard rule holds, by :func:`optimizer.check.verify.check_run` (an independent code path reading
  the raw inputs and the written tables);
* the reported upper bound is never below the exact optimum of the same instance
  (:func:`optimizer.solve.exact.solve_exact` on the problem the pipeline handed its solver), and
  the objective never above it; the objective is the sum of the written scores;
* without ``min_customers`` targets, the objective is at least ``1 - OBJECTIVE_TOLERANCE`` (1%) of
  the exact optimum: the Lagrangian plan is polished on its core by CP-SAT (the default,
  ``solver.polish_pairs``), and these instances fit in the core whole. With targets the solver
  trades value for reaching them by design (the exact model ignores targets), so only the above
  is asserted: measured, such plans came as low as 35% of the target-free optimum (seed 944704,
  10 customers, 15 offers: one offer steered towards min_customers 10).
* the pure Lagrangian (``solver.polish_pairs = 0``) is checked apart with its own honest tolerance
  ``LAGRANGIAN_TOLERANCE``, so the two paths stay tested separately.

Example counts: ``QUICK_EXAMPLES`` in the default run plus ``THOROUGH_EXAMPLES`` under
``@pytest.mark.slow`` (run by ``.ci/run``: ``python -m pytest -q`` runs everything).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from optimizer.check.verify import check_run
from optimizer.core.config import load_scenario
from optimizer.solve.exact import solve_exact
from tests.random_world import run_and_check, run_with_problem, write_random_world

# The polished plan (the default path) against the exact optimum, without targets: the issue's
# criterion. See the module docstring for what was measured.
OBJECTIVE_TOLERANCE = 0.01
# The pure Lagrangian (polish off). Measured (tests/random_world.py instances without targets,
# seeds drawn by numpy, 1..30 customers, 1..15 offers, every rule on): over 620 instances the
# worst objective / exact optimum was 0.778 (a 22.2% loss), the next-worst run of 500 gave 0.797
# (seed 582367: 3 customers, 15 offers), 2.6% of instances below 0.95 and the median 1.0. Tiny
# knapsack-like instances (a few customers on one tight budget) are where the Lagrangian repair
# loses most. The tolerance (25%) is the measured worst plus a little room for what hypothesis
# finds; it is not a design target.
LAGRANGIAN_TOLERANCE = 0.25
# ~0.25 s per example (inputs loaded and validated by the run and again by check): 60 in the
# default run and 300 more under @slow keep the file near 90 s on 2 cores;
# OFFEROPT_PROPERTY_EXAMPLES=N raises the thorough count (e.g. 2000 for a nightly run).
QUICK_EXAMPLES = 60
THOROUGH_EXAMPLES = int(os.environ.get("OFFEROPT_PROPERTY_EXAMPLES", "300"))

INSTANCES = dict(seed=st.integers(0, 10**6), n_customers=st.integers(1, 30),
                 n_offers=st.integers(1, 15), string_ids=st.booleans(), targets=st.booleans())


def _check_example(seed: int, n_customers: int, n_offers: int, string_ids: bool,
                   targets: bool, polished: bool = True, campaign: bool = False,
                   close: bool = True, channels: bool = False) -> None:
    tolerance = OBJECTIVE_TOLERANCE if polished else LAGRANGIAN_TOLERANCE
    solver = {} if polished else {"polish_pairs": 0}
    with tempfile.TemporaryDirectory(prefix="offeropt-prop-") as tmp:
        root = Path(tmp)
        scenario = load_scenario(write_random_world(root, seed, n_customers, n_offers,
                                                    string_ids=string_ids, targets=targets,
                                                    campaign=campaign, channels=channels,
                                                    **solver))
        result, problem, report = run_and_check(scenario, root)
        assert report.assignments == result.assignments.height
        exact = solve_exact(problem, time_limit_s=60)
        assert exact.status == "optimal"
        slack = 1e-6 * max(1.0, abs(exact.objective))
        assert result.bound >= exact.objective - slack, (result.bound, exact.objective)
        assert result.objective <= exact.objective + slack, (result.objective, exact.objective)
        written = float(result.assignments.get_column("score").sum())
        if channels:  # the objective pays each contact; the polish has no channel rows
            written -= sum(c["contact_cost"] for c in result.manifest["channels"])
            assert (result.manifest["solver"]["polish"] or {}).get("status") in (None, "skipped")
        assert abs(written - result.objective) <= 1e-9 * max(1.0, abs(written))
        polish = result.manifest["solver"]["polish"]
        # these instances fit in the core whole; with polish off nothing is recorded as solved
        assert channels or (polish["whole_problem"] if polished else polish is None), polish
        if close and not targets:
            assert result.objective >= (1 - tolerance) * exact.objective - slack, (
                result.objective, exact.objective, polish)


_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow],
                 derandomize=False, print_blob=True)


@settings(max_examples=QUICK_EXAMPLES, **_SETTINGS)
@given(**INSTANCES)
def test_rules_hold_bound_valid_objective_close(seed, n_customers, n_offers, string_ids, targets):
    _check_example(seed, n_customers, n_offers, string_ids, targets)


@pytest.mark.slow
@settings(max_examples=THOROUGH_EXAMPLES, **_SETTINGS)
@given(**INSTANCES)
def test_rules_hold_bound_valid_objective_close_thorough(seed, n_customers, n_offers, string_ids,
                                                         targets):
    _check_example(seed, n_customers, n_offers, string_ids, targets)


@settings(max_examples=30, **_SETTINGS)
@given(**INSTANCES)
# its bound stalls far above its plans, and the best plan is the first pass's: one the passes
# skip while the bound falls, so it must be made after them
@example(seed=7, n_customers=7, n_offers=5, string_ids=False, targets=False)
def test_pure_lagrangian_rules_hold_bound_valid(seed, n_customers, n_offers, string_ids, targets):
    """The Lagrangian alone (``polish_pairs = 0``), with its own tolerance."""
    _check_example(seed, n_customers, n_offers, string_ids, targets, polished=False)


@settings(max_examples=40, **_SETTINGS)
@given(**INSTANCES)
def test_campaign_rules_hold_bound_valid_objective_close(seed, n_customers, n_offers, string_ids,
                                                         targets):
    """The same with offer groups, funders and a rule on a customers column (issue 24): check
    re-verifies them, the bound stays above the exact optimum of the problem with them."""
    _check_example(seed, n_customers, n_offers, string_ids, targets, campaign=True)


@settings(max_examples=20, **_SETTINGS)
@given(**INSTANCES)
def test_pure_lagrangian_campaign_rules_hold_bound_valid(seed, n_customers, n_offers, string_ids,
                                                         targets):
    """The campaign rules with the Lagrangian alone (``polish_pairs = 0``): rules, a valid bound,
    never above the optimum. Not its closeness: on these tiny worlds, funder and offer budgets
    on a handful of customers are knapsacks its repair can lose much on (seed 90, 30 customers,
    4 offers: 72% of the optimum; the polished default path is held to 1% above)."""
    _check_example(seed, n_customers, n_offers, string_ids, targets, polished=False,
                   campaign=True, close=False)


@settings(max_examples=30, **_SETTINGS)
@given(**INSTANCES, campaign=st.booleans())
def test_channel_rules_hold_bound_valid(seed, n_customers, n_offers, string_ids, targets,
                                        campaign):
    """Channels, consent, contact costs and a contact budget (issue 24), with or without the
    other campaign rules: check re-verifies them, the bound stays above the exact optimum of the
    problem with them (its channel variables), the plan never above it."""
    _check_example(seed, n_customers, n_offers, string_ids, targets, campaign=campaign,
                   close=False, channels=True)


@settings(max_examples=8, **_SETTINGS)
@given(seed=st.integers(0, 10**6), n_customers=st.integers(1, 20), n_offers=st.integers(1, 10))
def test_written_run_folder_passes_check(seed, n_customers, n_offers):
    """The whole folder as ``offeropt run`` writes it (report and manifest included) passes."""
    with tempfile.TemporaryDirectory(prefix="offeropt-prop-") as tmp:
        scenario = load_scenario(write_random_world(Path(tmp), seed, n_customers, n_offers))
        result, _ = run_with_problem(scenario)
        report = check_run(scenario)
        assert report.ok, report.describe()
        assert report.assignments == result.assignments.height
