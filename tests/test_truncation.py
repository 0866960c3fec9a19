"""Keeping each customer's best few candidates: the run reports a bound over every eligible pair."""
from __future__ import annotations

from pathlib import Path

import pytest

from optimizer.apps.synthetic import write_demo_data
from optimizer.core.config import load_scenario
from optimizer.solve.exact import solve_exact
from optimizer.solve.lagrangian.method import dual_bound
from tests.random_world import run_with_problem
from tests.tiny_world import write_scenario

RULES = {"max_offers_per_customer": 2, "max_offers_per_category": 1, "cooldown_weeks": 4,
         "global_budget": 40.0, "sensitive_categories": ["INFANT FORMULA"]}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("trunc") / "data"
    write_demo_data(folder, customers=60, offers=12, seed=4)
    return folder


def _run(root: Path, data: Path, keep: int):
    path = write_scenario(root / "scenario.toml", data=str(data), output="run", rules=RULES,
                          solver={"polish_pairs": 0},
                          extra=f"\n[affinity]\ncandidates_per_customer = {keep}\n")
    return run_with_problem(load_scenario(path), write=False)


def test_bound_over_all_candidates_holds_the_untruncated_optimum(data, tmp_path):
    truncated, _ = _run(tmp_path / "few", data, keep=2)
    report = truncated.manifest["candidates"]
    assert report["candidates_per_customer"] == 2
    full, full_problem = _run(tmp_path / "all", data, keep=12)
    assert full.manifest["candidates"]["candidates_per_customer"] == "all"
    best_over_all = solve_exact(full_problem, time_limit_s=60)
    assert best_over_all.status == "optimal"
    slack = 1e-6 * max(1.0, best_over_all.objective)
    # a valid bound on the problem with every candidate, and at least the truncated bound
    assert report["bound_all_candidates"] >= best_over_all.objective - slack
    assert report["bound_all_candidates"] >= truncated.bound - slack
    assert report["gap_all_candidates"] >= truncated.gap - 1e-12
    # the truncated problem really lost candidates, so the comparison is not vacuous
    assert report["pairs"] < full.manifest["candidates"]["pairs"]


def test_bound_increase_compares_the_bounds_at_the_same_prices(data, tmp_path):
    """``bound_increase`` is the bound over every candidate less the same dual function over the
    kept candidates at the same (final) prices, not less the run's ``bound`` (the least of the
    solve, at other prices or the LP's)."""
    truncated, problem = _run(tmp_path / "few", data, keep=2)
    report = truncated.manifest["candidates"]
    kept = dual_bound(problem, truncated.solution.prices, problem.blocks)
    assert report["bound_increase"] == pytest.approx(report["bound_all_candidates"] - kept,
                                                     rel=1e-9, abs=1e-9)
    assert report["bound_kept_candidates"] == pytest.approx(kept, rel=1e-12)
    # the run's bound is another figure here, so the comparison is not vacuous
    assert abs(truncated.bound - kept) > 1e-6 * max(1.0, kept)
