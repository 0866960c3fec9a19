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
