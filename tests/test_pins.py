"""Pinned lists (issue 24, item 2): rules.pin keeps last week's offers on the lists while their
flights run, releases the ones a rule forbids (by reason), and check re-verifies the pins."""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from optimizer.check.verify import check_run
from optimizer.cli import main
from optimizer.core.config import load_scenario
from tests.tiny_world import WEEK, base_world, offer, offers_of, score, write_scenario, write_world


def _world(**first: object) -> dict:
    world = base_world()
    world["offers"] = [offer(1, "BAKERY", **first), offer(2, "DAIRY")]
    world["scores"] = [score(c, o, value=1.0 if o == 1 else 1.1) for c in range(1, 5)
                       for o in (1, 2)]
    # last week customers 1-3 got offer 1; customer 4 got nothing
    world["history"] = [{"customer_id": c, "offer_id": 1, "week": WEEK - 1} for c in (1, 2, 3)]
    return world


def _run(root: Path, world: dict | None = None, *extra: str, check: bool = True, **rules
         ) -> tuple[Path, dict]:
    write_world(root / "data", world or _world())
    path = write_scenario(root / "scenario.toml", rules={"max_offers_per_customer": 1, **rules})
    result = CliRunner().invoke(main, ["run", str(path), "--quiet", *extra])
    assert result.exit_code == 0, result.output
    if check:
        checked = CliRunner().invoke(main, ["check", str(path)])
        assert checked.exit_code == 0, checked.output
    return root / "run", json.loads((root / "run" / "manifest.json").read_text())


def test_pin_keeps_last_weeks_offer_against_a_better_one(tmp_path):
    free_run, free = _run(tmp_path / "free")
    assignments = pl.read_parquet(free_run / "assignments.parquet")
    assert all(offers_of(assignments, c) == {2} for c in range(1, 5))  # 1.1 beats 1.0

    run, manifest = _run(tmp_path / "pinned", pin=True)
    assignments = pl.read_parquet(run / "assignments.parquet")
    assert all(offers_of(assignments, c) == {1} for c in (1, 2, 3))
    assert offers_of(assignments, 4) == {2}                  # no list last week: the best
    assert manifest["stability"]["pins"] == {"pinned": 3, "kept": 3, "released": {},
                                             "withheld_as_controls": 0}
    assert manifest["objective"] == pytest.approx(3 * 1.0 + 1.1)
    assert manifest["upper_bound"] >= manifest["objective"] - 1e-9
    assert manifest["upper_bound"] <= 3 * 1.0 + 1.1 + 1e-3 * 4.1  # the pinned problem's bound


def test_check_catches_a_dropped_pin(tmp_path):
    run, _ = _run(tmp_path, pin=True)
    assignments = pl.read_parquet(run / "assignments.parquet")
    swapped = assignments.with_columns(   # customer 1 gets offer 2 instead of her pinned offer 1
        offer_id=pl.when(pl.col("customer_id") == 1).then(pl.lit(2, assignments["offer_id"].dtype))
        .otherwise(pl.col("offer_id")))
    swapped.write_parquet(run / "assignments.parquet")
    report = check_run(load_scenario(tmp_path / "scenario.toml"), run, force=True)
    assert "pin" in report.rules, report.describe()
    assert "1 pin(s) dropped" in report.describe()


def test_pins_a_rule_forbids_are_released_by_reason(tmp_path):
    # cooldown forbids re-sending last week's offer: every pin is released by it
    run, manifest = _run(tmp_path / "cool", pin=True, cooldown_weeks=2)
    pins = manifest["stability"]["pins"]
    assert (pins["pinned"], pins["kept"], pins["released"]) == (3, 0, {"cooldown": 3})
    assert all(offers_of(pl.read_parquet(run / "assignments.parquet"), c) == {2}
               for c in range(1, 5))


def test_a_flight_that_ended_pins_nothing(tmp_path):
    world = _world(flight_budget=100.0, flight_start_week=WEEK - 3, flight_end_week=WEEK - 1)
    _, manifest = _run(tmp_path, world, pin=True)
    assert manifest["stability"]["pins"]["pinned"] == 0


def test_pins_beyond_the_budget_are_released_best_value_first(tmp_path):
    world = _world(budget=1.0)            # each pin costs 0.5 x 1.0: two fit
    world["scores"] = [score(c, o, value=(1.0 + c / 100) if o == 1 else 1.1)
                       for c in range(1, 5) for o in (1, 2)]
    run, manifest = _run(tmp_path, world, pin=True)
    pins = manifest["stability"]["pins"]
    assert (pins["pinned"], pins["kept"], pins["released"]) == (3, 2, {"budget": 1})
    assignments = pl.read_parquet(run / "assignments.parquet")
    assert [offers_of(assignments, c) for c in (1, 2, 3)] == [{2}, {1}, {1}]  # 1 worth least


def test_pin_with_channels_exits_2(tmp_path):
    world = _world()
    world["channels"] = [{"channel_id": "email", "capacity": None, "cost_per_contact": 0.0}]
    world["customer_channels"] = [{"customer_id": c, "channel_id": "email"} for c in range(1, 5)]
    write_world(tmp_path / "data", world)
    path = write_scenario(tmp_path / "scenario.toml", rules={"pin": True})
    result = CliRunner().invoke(main, ["run", str(path), "--quiet"])
    assert result.exit_code == 2 and "rules.pin" in result.output + (result.stderr or "")
