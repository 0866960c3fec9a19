"""Flights and pacing (issue 24, item 1): an offer's flight budget becomes this week's budget by
the pacing rule; spend so far comes from history's expected_cost or the spend table; check
re-derives the week's share; a flight run week by week spends its budget and never more."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.check.verify import check_run
from optimizer.cli import main
from optimizer.core.config import load_scenario
from optimizer.core.errors import InputError
from optimizer.model.flights import plan_flights
from optimizer.solve.exact import solve_exact
from tests.flight_runs import (
    cost_by_offer,
    flight_scenario,
    run_flight_week,
    run_weeks_with_history,
)
from tests.random_world import random_world, run_and_check
from tests.tiny_world import WEEK, write_scenario, write_world

# --------------------------------------------------------------------------------------------------
# the pacing rule


def _offers(budget: float = 100.0, start: int = 38, end: int = 43) -> pl.DataFrame:
    return pl.DataFrame({"o": pl.Series([0, 1], dtype=pl.Int32), "offer_id": [7, 8],
                         "flight_budget": [budget, None], "flight_start_week": [start, None],
                         "flight_end_week": [end, None]},
                        schema_overrides={"flight_start_week": pl.Int64,
                                          "flight_end_week": pl.Int64})


def _history(rows: list[tuple[int, int, float | None]]) -> pl.DataFrame:
    return pl.DataFrame({"c": [0] * len(rows), "o": pl.Series([r[0] for r in rows], dtype=pl.Int32),
                         "week": pl.Series([r[1] for r in rows], dtype=pl.Int64),
                         "expected_cost": pl.Series([r[2] for r in rows], dtype=pl.Float64)})


def _spend(rows: list[tuple[int, int, float]]) -> pl.DataFrame:
    return pl.DataFrame({"o": pl.Series([r[0] for r in rows], dtype=pl.Int32),
                         "week": pl.Series([r[1] for r in rows], dtype=pl.Int64),
                         "amount": [r[2] for r in rows]})


def test_even_pacing_carries_underspend_forward():
    # weeks 38..43; 30 spent in 38..39, so 70 remain over 4 weeks at week 40
    plan = plan_flights(_offers(), _history([(0, 38, 12.0), (0, 38, 8.0), (0, 39, 10.0)]),
                        None, None, 40, "even")
    assert plan.week_budget[0] == pytest.approx(70 / 4)
    assert np.isinf(plan.week_budget[1])                       # no flight: no cap
    weeks = plan.weeks.filter(pl.col("k") == 0).sort("week")
    # what the rule gave in the earlier weeks, from the spend before each
    assert weeks.get_column("planned").to_list()[:3] == pytest.approx([100 / 6, 80 / 5, 70 / 4])


def test_front_loaded_and_forecast_weights():
    front = plan_flights(_offers(), None, None, None, 40, "front_loaded")
    # weights 4, 3, 2, 1 over weeks 40..43: 4 / 10 of the 100 left
    assert front.week_budget[0] == pytest.approx(40.0)
    forecast = _spend([(0, 40, 1.0), (0, 41, 3.0)]).rename({"amount": "demand"})
    plan = plan_flights(_offers(), None, None, forecast, 40, "forecast")
    assert plan.week_budget[0] == pytest.approx(25.0)          # 1 of 4 units of demand left


def test_spend_table_wins_and_overspend_leaves_nothing():
    history = _history([(0, 38, 5.0), (0, 39, None)])
    with pytest.raises(InputError) as err:                     # week 39's cost is unknown
        plan_flights(_offers(), history, None, None, 40, "even")
    assert err.value.table == "history" and err.value.column == "expected_cost"
    plan = plan_flights(_offers(), history, _spend([(0, 39, 20.0), (0, 38, 50.0)]), None, 40,
                        "even")
    assert plan.week_budget[0] == pytest.approx(30 / 4)        # the spend rows, not history
    over = plan_flights(_offers(), None, _spend([(0, 38, 150.0)]), None, 40, "even")
    assert over.week_budget[0] == 0.0
    last = plan_flights(_offers(), None, _spend([(0, 39, 60.0)]), None, 43, "front_loaded")
    assert last.week_budget[0] == pytest.approx(40.0)          # the last week gets what remains


# --------------------------------------------------------------------------------------------------
# through the command line


def _with_flight(src: Path, dst: Path, offer_id: int, budget: float, start: int, end: int
                 ) -> None:
    shutil.copytree(src, dst)
    offers = pl.read_parquet(dst / "offers.parquet")
    mine = pl.col("offer_id") == offer_id
    offers.with_columns(flight_budget=pl.when(mine).then(pl.lit(budget)),
                        flight_start_week=pl.when(mine).then(pl.lit(start)),
                        flight_end_week=pl.when(mine).then(pl.lit(end))
                        ).write_parquet(dst / "offers.parquet")


def _heaviest(costs: dict[int, float], data: Path, last_week: int) -> int:
    """The offer spending most that can be sent until ``last_week`` (its window and budget)."""
    offers = pl.read_parquet(data / "offers.parquet").filter(
        pl.col("end_week").is_null() | (pl.col("end_week") >= last_week),
        pl.col("start_week").is_null() | (pl.col("start_week") <= WEEK))
    open_ids = set(offers.get_column("offer_id").to_list())
    return max((o for o in costs if o in open_ids), key=lambda o: (costs[o], -o))


def test_flight_caps_the_week_and_check_agrees(demo_500, free_week_costs, tmp_path):
    offer = _heaviest(free_week_costs, demo_500, WEEK)
    free = free_week_costs[offer]
    data = tmp_path / "data"
    # a 4-week flight from week 40 with the free_week_costs week's spend: a quarter this week
    _with_flight(demo_500, data, offer, free, WEEK, WEEK + 3)
    path = flight_scenario(tmp_path, data)
    run = run_flight_week(path)
    spent = cost_by_offer(run)[offer]
    assert spent <= free / 4 * (1 + 1e-9) + 1e-6 and spent > 0.9 * free / 4
    pacing = pl.read_parquet(run / "pacing.parquet")
    assert pacing.height == 4 and pacing.get_column("kind").to_list() == [
        "this_week", "projected", "projected", "projected"]
    assert "Flights: planned vs spent by week" in (run / "report.html").read_text()
    checked = CliRunner().invoke(main, ["check", str(path)])
    assert checked.exit_code == 0, checked.output
    # the CSV copy of pacing must say what the Parquet copy says
    edited = tmp_path / "edited"
    shutil.copytree(run, edited)
    pacing.with_columns(pl.col("planned") * 2).write_csv(edited / "pacing.csv",
                                                         float_precision=6)
    checked = CliRunner().invoke(main, ["check", str(path), str(edited)])
    assert checked.exit_code == 1 and "[published_files]" in checked.output, checked.output
    assert "pacing.csv and pacing.parquet disagree on 4 row(s)" in checked.output
    # the pacing rows (both copies) and the manifest's curve are re-derived from the inputs and
    # the plan: an edited row, a dropped row or an edited curve is a pacing violation
    import json
    for case in ("planned", "dropped", "curve"):
        edited = tmp_path / f"pacing-{case}"
        shutil.copytree(run, edited)
        table = pacing.with_columns(pl.when(pl.col("kind") == "projected")
                                    .then(pl.col("planned") + 1.0).otherwise(pl.col("planned")))
        if case == "dropped":
            table = pacing.head(3)
        if case == "curve":
            manifest = json.loads((run / "manifest.json").read_text())
            manifest["flights"]["curve"][0]["spent"] = 0.5
            (edited / "manifest.json").write_text(json.dumps(manifest))
        else:
            table.write_parquet(edited / "pacing.parquet")
            table.write_csv(edited / "pacing.csv", float_precision=6)
        checked = CliRunner().invoke(main, ["check", str(path), str(edited)])
        assert checked.exit_code == 1 and "[pacing]" in checked.output, (case, checked.output)
        where = "manifest.json flights.curve" if case == "curve" else "pacing.parquet"
        assert f"[pacing] {where}" in checked.output, checked.output
    # check re-derives the share: halve the flight budget under the run and it sees the overspend
    offers = pl.read_parquet(data / "offers.parquet")
    offers.with_columns(pl.col("flight_budget") / 2).write_parquet(data / "offers.parquet")
    report = check_run(load_scenario(path), run, force=True)
    assert "flight_budget" in report.rules, report.describe()


@pytest.mark.slow
def test_three_week_flight_with_append_history_spends_its_budget(demo_500, free_week_costs,
                                                                 tmp_path):
    offer = _heaviest(free_week_costs, demo_500, WEEK + 2)
    budget = 1.5 * free_week_costs[offer]            # half a free week's spend per week
    data = tmp_path / "data"
    _with_flight(demo_500, data, offer, budget, WEEK, WEEK + 2)
    total = run_weeks_with_history(tmp_path, data, [offer], budget)
    history = pl.read_parquet(data / "history.parquet")
    sent = history.filter((pl.col("offer_id") == offer) & (pl.col("week") >= WEEK))
    assert float(sent.get_column("expected_cost").sum()) == pytest.approx(total)
    assert history.filter(pl.col("week") < WEEK).get_column("expected_cost").null_count() > 0


# --------------------------------------------------------------------------------------------------
# against the exact model


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), n_customers=st.integers(1, 25), n_offers=st.integers(1, 10),
       pacing=st.sampled_from(["even", "front_loaded", "forecast"]))
def test_flights_hold_and_bound_exact_optimum(seed, n_customers, n_offers, pacing):
    world, rules = random_world(seed, n_customers, n_offers, targets=False)
    rng = np.random.default_rng(seed + 1)
    for row in world["offers"]:
        if rng.random() < 0.6:
            start = int(rng.integers(WEEK - 3, WEEK + 1))
            row.update(flight_budget=round(float(rng.uniform(0.0, 3.0)), 3),
                       flight_start_week=start, flight_end_week=int(rng.integers(WEEK, WEEK + 3)))
    for row in world.get("history", []):
        row["expected_cost"] = round(float(rng.uniform(0.0, 0.5)), 3)
    # actual spend of some earlier flight weeks: it wins over history's expected cost
    world["spend"] = [{"offer_id": o["offer_id"], "week": w,
                       "amount": round(float(rng.uniform(0.0, 1.0)), 3)}
                      for o in world["offers"] for w in range(WEEK - 3, WEEK)
                      if rng.random() < 0.3]
    if not world["spend"]:
        del world["spend"]
    flights_against_exact(world, rules, pacing, rng)


def flights_against_exact(world: dict, rules: dict, pacing: str, rng: np.random.Generator,
                          ) -> tuple[Any, Any]:
    """Run ``world`` with ``rules`` and ``pacing`` (a seeded ``forecast`` table drawn from
    ``rng`` for ``forecast``), checked, against the exact model: its bound valid, its plan no
    better than the optimum and within 1% of it. Returns the result and its problem."""
    if pacing == "forecast":
        world["forecast"] = [{"offer_id": o["offer_id"], "week": w,
                              "demand": round(float(rng.uniform(0.1, 2.0)), 3)}
                             for o in world["offers"] for w in range(WEEK - 3, WEEK + 3)]
    with tempfile.TemporaryDirectory(prefix="offeropt-flights-") as tmp:
        root = Path(tmp)
        write_world(root / "data", world,
                    headers={"scores": ["customer_id", "offer_id", "p_redeem", "value"]})
        scenario = load_scenario(write_scenario(root / "scenario.toml",
                                                rules={**rules, "pacing": pacing}))
        result, problem, _ = run_and_check(scenario, root)
        exact = solve_exact(problem, time_limit_s=60)
        slack = 1e-6 * max(1.0, abs(exact.objective))
        assert result.bound >= exact.objective - slack
        assert result.objective <= exact.objective + slack
        assert result.objective >= 0.99 * exact.objective - slack
    return result, problem
