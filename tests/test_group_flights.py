"""Group flights (issue 24, item 1, "or a group of offers"): a ``flights`` table row shared by the
offers whose ``flight_id`` names it. Its week share is a budget shared by those offers (their
summed expected cost), priced in the Lagrangian as a funder's budget is, a row of the exact
model, re-derived and verified by ``offeropt check``; the pacing table has one row per week."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.check.verify import check_run
from optimizer.cli import main
from optimizer.core.config import load_scenario
from optimizer.model.flights import plan_flights
from optimizer.model.funders import with_group_flights
from tests.flight_runs import (
    cost_by_offer,
    flight_scenario,
    run_flight_week,
    run_weeks_with_history,
)
from tests.random_world import random_world
from tests.test_flights import flights_against_exact
from tests.tiny_world import WEEK


def _offers() -> pl.DataFrame:
    return pl.DataFrame({"o": pl.Series([0, 1, 2], dtype=pl.Int32), "offer_id": [7, 8, 9],
                         "flight_id": ["spring", "spring", None]})


def _flights(budget: float = 90.0, start: int = 38, end: int = 43) -> pl.DataFrame:
    return pl.DataFrame({"flight_id": ["spring", "idle"], "flight_budget": [budget, 5.0],
                         "flight_start_week": [start, 10], "flight_end_week": [end, 12]})


def test_group_share_sums_its_offers_spend():
    # weeks 38..43; offers 7 and 8 spent 12 + 8 (history) and 30 (spend table, wins over
    # history's 99) before week 40: 40 left over 4 weeks, shared by both offers
    history = pl.DataFrame({"c": [0, 0, 0, 0], "o": pl.Series([0, 1, 1, 2], dtype=pl.Int32),
                            "week": pl.Series([38, 38, 39, 39], dtype=pl.Int64),
                            "expected_cost": [12.0, 8.0, 99.0, 50.0]})
    spend = pl.DataFrame({"o": pl.Series([1], dtype=pl.Int32),
                          "week": pl.Series([39], dtype=pl.Int64), "amount": [30.0]})
    plan = plan_flights(_offers(), history, spend, None, 40, "even", _flights())
    assert plan.group_share == pytest.approx([(90 - 50) / 4])
    assert plan.group_of.tolist() == [0, 0, -1] and plan.group_names == ["spring"]
    assert np.isinf(plan.week_budget).all()                  # no offer's own budget changes
    weeks = plan.weeks.filter(pl.col("k") == 3).sort("week")  # key: 3 offers + row 0
    assert weeks.get_column("spent").to_list()[:2] == pytest.approx([20.0, 30.0])
    shared = with_group_flights(None, plan, 3)
    assert shared is not None and shared.n_flights == 1 and shared.n_listed == 0
    assert shared.of_offer.tolist() == [0, 0, -1]
    forecast = pl.DataFrame({"o": pl.Series([0, 1, 1], dtype=pl.Int32),
                             "week": pl.Series([40, 40, 41], dtype=pl.Int64),
                             "demand": [1.0, 1.0, 2.0]})
    by_demand = plan_flights(_offers(), None, None, forecast, 40, "forecast", _flights())
    assert by_demand.group_share == pytest.approx([90 * 2 / 4])  # its offers' demand, summed


# --------------------------------------------------------------------------------------------------
# through the command line


def _with_group(src: Path, dst: Path, offer_ids: list[int], budget: float, start: int, end: int
                ) -> None:
    shutil.copytree(src, dst)
    offers = pl.read_parquet(dst / "offers.parquet")
    offers.with_columns(flight_id=pl.when(pl.col("offer_id").is_in(offer_ids))
                        .then(pl.lit("spring"))).write_parquet(dst / "offers.parquet")
    pl.DataFrame({"flight_id": ["spring"], "flight_budget": [budget], "flight_start_week": [start],
                  "flight_end_week": [end]}).write_parquet(dst / "flights.parquet")


def _open_heaviest(costs: dict[int, float], data: Path, last_week: int, k: int) -> list[int]:
    """The ``k`` offers spending most that can be sent from WEEK to ``last_week`` without a
    funder."""
    offers = pl.read_parquet(data / "offers.parquet").filter(
        pl.col("end_week").is_null() | (pl.col("end_week") >= last_week),
        pl.col("start_week").is_null() | (pl.col("start_week") <= WEEK))
    open_ids = set(offers.get_column("offer_id").to_list())
    return sorted((o for o in costs if o in open_ids), key=lambda o: (-costs[o], o))[:k]


def test_group_flight_shares_the_week_and_check_agrees(demo_500, free_week_costs, tmp_path):
    group = _open_heaviest(free_week_costs, demo_500, WEEK, 3)
    free = sum(free_week_costs[o] for o in group)
    data = tmp_path / "data"
    # a 2-week flight from week 40 worth the group's free week: half of it this week, shared
    _with_group(demo_500, data, group, free, WEEK, WEEK + 1)
    path = flight_scenario(tmp_path, data)
    run = run_flight_week(path)
    costs = cost_by_offer(run)
    spent = sum(costs[o] for o in group)
    assert spent <= free / 2 * (1 + 1e-9) + 1e-6 and spent > 0.9 * free / 2
    # the share binds the group's sum, not each offer: the offers' split differs from an even cut
    assert max(costs[o] for o in group) > free / 6 * 1.05
    pacing = pl.read_parquet(run / "pacing.parquet")
    assert pacing.columns[:2] == ["offer_id", "flight_id"]
    assert pacing.get_column("flight_id").to_list() == ["spring", "spring"]
    assert pacing.get_column("kind").to_list() == ["this_week", "projected"]
    assert pacing.get_column("spent")[0] == pytest.approx(spent)
    import json
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["group_flights"][0]["flight_id"] == "spring"
    assert manifest["group_flights"][0]["offers"] == 3
    assert "funders" not in manifest
    assert "Group flight spring" in (run / "report.html").read_text()
    checked = CliRunner().invoke(main, ["check", str(path)])
    assert checked.exit_code == 0, checked.output
    # the manifest's group flight figures are recomputed: each edited one is found
    for figure, value in (("week_budget", 1.0), ("expected_cost", 1.0), ("budget_used", 0.5),
                          ("offers", 7)):
        edited = tmp_path / f"edited-{figure}"
        shutil.copytree(run, edited)
        changed = json.loads((run / "manifest.json").read_text())
        changed["group_flights"][0][figure] = value
        (edited / "manifest.json").write_text(json.dumps(changed))
        checked = CliRunner().invoke(main, ["check", str(path), str(edited)])
        assert checked.exit_code == 1, checked.output
        assert f"group_flights[flight_id=spring].{figure} is" in checked.output, checked.output
    # check re-derives the share: halve the flight under the run and it sees the overspend
    pl.read_parquet(data / "flights.parquet").with_columns(
        pl.col("flight_budget") / 2).write_parquet(data / "flights.parquet")
    report = check_run(load_scenario(path), run, force=True)
    assert "flight_budget" in report.rules, report.describe()
    assert "group flight" in report.describe()


@pytest.mark.slow
def test_three_week_group_flight_with_append_history_spends_its_budget(demo_500, free_week_costs,
                                                                       tmp_path):
    group = _open_heaviest(free_week_costs, demo_500, WEEK + 2, 3)
    budget = 1.5 * sum(free_week_costs[o] for o in group)  # half the group's free spend per week
    data = tmp_path / "data"
    _with_group(demo_500, data, group, budget, WEEK, WEEK + 2)
    total = run_weeks_with_history(tmp_path, data, list(group), budget)
    history = pl.read_parquet(data / "history.parquet")
    sent = history.filter(pl.col("offer_id").is_in(group) & (pl.col("week") >= WEEK))
    assert float(sent.get_column("expected_cost").sum()) == pytest.approx(total)


# --------------------------------------------------------------------------------------------------
# against the exact model


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), n_customers=st.integers(1, 25), n_offers=st.integers(2, 10),
       pacing=st.sampled_from(["even", "front_loaded", "forecast"]), campaign=st.booleans())
def test_group_flights_hold_and_bound_exact_optimum(seed, n_customers, n_offers, pacing,
                                                    campaign):
    world, rules = random_world(seed, n_customers, n_offers, targets=False, campaign=campaign)
    rng = np.random.default_rng(seed + 7)
    world["flights"] = [{"flight_id": f"f{g}", "flight_budget": round(float(
        rng.uniform(0.0, 0.3 * n_customers)), 3), "flight_start_week": int(rng.integers(
            WEEK - 3, WEEK + 1)), "flight_end_week": int(rng.integers(WEEK, WEEK + 3))}
        for g in range(2)]
    for row in world["offers"]:
        if row.get("funded_by") is None and rng.random() < 0.7:  # one shared budget an offer
            row["flight_id"] = f"f{int(rng.integers(0, 2))}"
        if rng.random() < 0.3:  # an offer's own flight too, on top of its group's
            row.update(flight_budget=round(float(rng.uniform(0.0, 3.0)), 3),
                       flight_start_week=WEEK - 1, flight_end_week=WEEK + 1)
    for row in world.get("history", []):
        row["expected_cost"] = round(float(rng.uniform(0.0, 0.5)), 3)
    result, problem = flights_against_exact(world, rules, pacing, rng)
    funders = problem.funders
    if any(r.get("flight_id") for r in world["offers"]) and funders is not None:
        spend = funders.per_funder(problem.usage(result.solution.chosen).spend)
        assert (spend <= funders.budget * (1 + 1e-9) + 1e-9).all()
