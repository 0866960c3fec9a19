"""Huge but finite amounts and values that would overflow (issue 22, items 3 and 4).

Amounts up to ``MAX_AMOUNT`` (1e15) are planned with every budget kept and ``objective <=
upper_bound``; larger ones, and knobs that would overflow, are refused with exit 2 naming the
table, column and rows (or the knob); the manifest is always strict JSON.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner, Result

from optimizer.cli import main
from optimizer.core.errors import SolverError
from optimizer.io.runfolder import json_writer
from optimizer.model.problem import AssignmentProblem, CandidateBlock, OfferData, Prices, Solution
from optimizer.solve import certified
from optimizer.solve.lagrangian.repair import _keep_prefix

BIG_OFFER = 1001


@pytest.fixture
def demo(demo_500: Path) -> Path:
    """The session's 500-customer demo folder (tests/conftest.py); copied before any change."""
    return demo_500


def _world(demo: Path, root: Path, global_budget: float | None = 15000.0,
           **extra: str) -> Path:
    """A copy of the demo folder and a scenario on it; returns the scenario path."""
    shutil.copytree(demo, root / "data")
    rules = "" if global_budget is None else f"global_budget = {global_budget!r}\n"
    rules += "".join(f"{k} = {v}\n" for k, v in extra.items())
    path = root / "s.toml"
    path.write_text('name = "x"\nweek = 40\ndata = "data"\noutput = "out"\n[rules]\n'
                    'max_offers_per_customer = 5\nmax_offers_per_category = 1\n'
                    f'cooldown_weeks = 4\n{rules}[solver]\nseed = 0\n')
    return path


def _set_offer(data: Path, offer_id: int, **values: float) -> None:
    offers = pl.read_parquet(data / "offers.parquet")
    offers = offers.with_columns(
        [pl.when(pl.col("offer_id") == offer_id).then(pl.lit(v)).otherwise(pl.col(k)).alias(k)
         for k, v in values.items()])
    offers.write_parquet(data / "offers.parquet")


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _strict_json(path: Path) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name} in {path}")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.mark.parametrize("discount", [1e14, 1e15])
def test_a_huge_discount_breaks_no_other_offers_budget(demo, tmp_path, discount):
    """One offer costing 1e14 (or the largest allowed amount) a redemption, with a budget of
    the same size: the other offers' small budgets are kept (the repair's one running sum over
    all offers let them overspend by whole units, with status optimal and gap 0) and the
    objective never exceeds the bound."""
    scenario = _world(demo, tmp_path, global_budget=None)
    _set_offer(tmp_path / "data", BIG_OFFER, discount=discount, budget=discount)
    result = _invoke("run", str(scenario), "--quiet")
    assert result.exit_code == 0, result.output
    checked = _invoke("check", str(scenario))
    assert checked.exit_code == 0, checked.output
    manifest = _strict_json(tmp_path / "out" / "manifest.json")
    assert manifest["objective"] <= manifest["upper_bound"]
    assert 0 <= manifest["gap"] < 1


def test_an_amount_beyond_the_range_is_refused(demo, tmp_path):
    scenario = _world(demo, tmp_path)
    _set_offer(tmp_path / "data", BIG_OFFER, discount=1e16)
    result = _invoke("run", str(scenario), "--quiet")
    message = " ".join((result.stderr or result.output).split())
    assert result.exit_code == 2, result.output
    assert "table 'offers', column 'discount'" in message
    assert "at most 1e+15" in message and str(BIG_OFFER) in message  # the sample row
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("column", ["margin", "budget"])
def test_overflowing_offer_amounts_are_refused(demo, tmp_path, column):
    scenario = _world(demo, tmp_path)
    _set_offer(tmp_path / "data", BIG_OFFER, **{column: 1e308})
    result = _invoke("run", str(scenario), "--quiet")
    assert result.exit_code == 2, result.output
    assert f"table 'offers', column '{column}'" in " ".join((result.stderr or "").split())
    assert not (tmp_path / "out").exists()


def _scores_world(demo: Path, root: Path, value: float) -> Path:
    """The demo with a scores table of every customer x three offers, two of them at ``value``."""
    scenario = _world(demo, root)
    customers = pl.read_parquet(root / "data" / "customers.parquet").get_column("customer_id")
    n = customers.len()
    scores = pl.DataFrame({
        "customer_id": customers.to_list() * 3,
        "offer_id": [1002] * n + [1003] * n + [1005] * n,
        "p_redeem": [0.2] * (3 * n),
        "value": [1.0] * (3 * n),
    }).with_columns(pl.when(pl.int_range(pl.len()) < 2).then(value).otherwise(pl.col("value"))
                    .alias("value"))
    scores.write_parquet(root / "data" / "scores.parquet")
    return scenario


def test_scores_values_that_overflow_are_refused(demo, tmp_path):
    """``value = 1e308`` on two pairs made the objective and bound infinite, wrote ``Infinity``
    into manifest.json and reported gap 0."""
    scenario = _scores_world(demo, tmp_path, 1e308)
    result = _invoke("run", str(scenario), "--quiet")
    message = " ".join((result.stderr or "").split())
    assert result.exit_code == 2, result.output
    assert "table 'scores', column 'value'" in message and "(2 rows)" in message
    assert not (tmp_path / "out").exists()


def test_scores_values_at_the_top_of_the_range_are_planned(demo, tmp_path):
    scenario = _scores_world(demo, tmp_path, 1e15)
    result = _invoke("run", str(scenario), "--quiet")
    assert result.exit_code == 0, result.output
    manifest = _strict_json(tmp_path / "out" / "manifest.json")
    assert math.isfinite(manifest["objective"]) and manifest["objective"] >= 2e15
    assert manifest["objective"] <= manifest["upper_bound"]
    assert _invoke("check", str(scenario)).exit_code == 0


@pytest.mark.parametrize("knob", ["rules.budget_scale=1e300", "rules.global_budget=1e300",
                                  "objective.margin_weight=1e300",
                                  "objective.redemption_value=1e300"])
def test_knobs_that_would_overflow_are_refused(demo, tmp_path, knob):
    scenario = _world(demo, tmp_path)
    result = _invoke("run", str(scenario), "--quiet", "--set", knob)
    assert result.exit_code == 2, result.output
    assert knob.split("=")[0] in (result.stderr or "")
    assert not (tmp_path / "out").exists()


def test_the_manifest_writer_refuses_non_standard_json(tmp_path):
    with pytest.raises(ValueError):
        json_writer({"upper_bound": float("inf")})(tmp_path / "m.json")
    with pytest.raises(ValueError):
        json_writer({"gap": np.float64("nan")})(tmp_path / "m.json")


def test_each_offers_running_sum_starts_from_zero():
    """A group of huge weights sorted before a group of small ones: each group's cut is exact at
    its own scale (the global running sum minus the sum before the group was off by units)."""
    n_big, n_small = 1000, 50
    group = np.r_[np.zeros(n_big, dtype=np.int64), np.ones(n_small, dtype=np.int64)]
    weight = np.r_[np.full(n_big, 1e14 / 3), np.full(n_small, 0.1)]
    priority = np.r_[np.ones(n_big), np.arange(n_small, 0, -1, dtype=float)]
    capacity = np.array([1e16, 2.0])
    keep = _keep_prefix(group, priority, weight, capacity)
    small = keep[n_big:]
    assert small.sum() == 20  # 20 x 0.1 = 2.0 fits; the 21st does not
    assert weight[n_big:][small].sum() <= 2.0 * (1 + 1e-12)


def _one_offer_problem(budget: float) -> AssignmentProblem:
    offers = OfferData(discount=np.ones(1), budget=np.array([budget]),
                       max_customers=np.array([np.inf]), min_customers=np.zeros(1, dtype=np.int64),
                       categories=np.zeros((1, 1), dtype=np.int64), category_names=["c"])
    block = CandidateBlock(customers=np.arange(2), offer=np.zeros((2, 1), dtype=np.int64),
                           value=np.array([[3.0], [2.0]]), cost=np.array([[1.0], [1.0]]),
                           p_redeem=np.array([[0.5], [0.5]]), cap=np.array([1, 1]))
    return AssignmentProblem(offers=offers, blocks=[block], max_per_category=None,
                             global_budget=np.inf, n_customers=2)


def _solution(chosen: list[list[bool]], objective: float, bound: float) -> Solution:
    return Solution(chosen=[np.array(chosen)], objective=objective, bound=bound,
                    status="optimal", method="lagrangian", iterations=1, prices=Prices.zeros(1))


def test_a_plan_over_a_budget_or_above_its_bound_is_never_reported():
    problem = _one_offer_problem(budget=1.0)
    with pytest.raises(SolverError, match="breaks a cap or a budget"):
        certified(problem, _solution([[True], [True]], 5.0, 5.0))
    with pytest.raises(SolverError, match="exceeds its upper bound"):
        certified(problem, _solution([[True], [False]], 3.0, 2.5))
    with pytest.raises(SolverError, match="not a finite number"):
        certified(problem, _solution([[True], [False]], 3.0, np.inf))
    rounding = certified(problem, _solution([[True], [False]], 3.0, 3.0 * (1 - 1e-15)))
    assert rounding.bound == rounding.objective and rounding.gap == 0.0
    assert certified(problem, _solution([[True], [False]], 3.0, 3.5)).bound == 3.5


def test_check_sees_a_small_overspend_beside_a_huge_offer(demo, tmp_path):
    """``offeropt check`` sums each offer on its own: a cent over a small budget is caught even
    when another offer spends 1e14."""
    scenario = _world(demo, tmp_path, global_budget=None)
    _set_offer(tmp_path / "data", BIG_OFFER, discount=1e14, budget=None)
    assert _invoke("run", str(scenario), "--quiet").exit_code == 0
    out = tmp_path / "out"
    assignments = pl.read_parquet(out / "assignments.parquet")
    summary = pl.read_parquet(out / "offers_summary.parquet")
    assert assignments.filter(pl.col("offer_id") == BIG_OFFER).height > 0
    small = summary.filter(pl.col("budget").is_not_null() & (pl.col("customers") > 0)).row(
        0, named=True)
    extra = small["budget"] - small["expected_cost"] + 0.01  # one cent over its budget
    row = assignments.with_row_index("i").filter(pl.col("offer_id") == small["offer_id"]).row(
        0, named=True)["i"]
    tampered = assignments.with_columns(
        pl.when(pl.int_range(pl.len()) == row).then(pl.col("expected_cost") + extra)
        .otherwise(pl.col("expected_cost")).alias("expected_cost"))
    tampered.write_parquet(out / "assignments.parquet")
    checked = _invoke("check", str(scenario))
    assert checked.exit_code == 1, checked.output
    assert "[budget] 1 offer(s) exceed their budget" in checked.output
    assert f"offer {small['offer_id']}" in checked.output
