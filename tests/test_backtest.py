"""``offeropt backtest``: the library (fitted lists beat the baselines on small demo data, the
calibration table, the files) and the thin CLI adapter."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from optimizer.backtest import calibration_table, run_backtest, top_lists
from optimizer.cli import main
from optimizer.config import load_scenario
from optimizer.synthetic import SENSITIVE_CATEGORIES, write_demo_data


@pytest.fixture(scope="module")
def scenario_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("backtest")
    write_demo_data(root / "data", 3000, 40, seed=2)
    path = root / "scenario.toml"
    cats = ", ".join(f'"{c}"' for c in SENSITIVE_CATEGORIES)
    path.write_text(f'name = "bt"\nweek = 40\ndata = "data"\noutput = "run"\n[rules]\n'
                    f"max_offers_per_customer = 4\nmax_offers_per_category = 1\n"
                    f"cooldown_weeks = 2\nsensitive_categories = [{cats}]\n")
    return path


def test_fitted_lists_beat_random_and_are_calibrated(scenario_path: Path):
    result = run_backtest(load_scenario(scenario_path), holdout_weeks=3)
    table = {row["method"]: row for row in result.table.to_dicts()}
    assert set(table) == {"fitted", "popular", "random"}
    sizes = {m: r["list_pairs"] for m, r in table.items()}
    assert sizes["popular"] == sizes["random"] and sizes["fitted"] <= sizes["random"]
    assert sizes["fitted"] >= 0.95 * sizes["random"]
    fitted, random = table["fitted"], table["random"]
    assert fitted["redeemed_when_sent"] > random["redeemed_when_sent"]
    assert fitted["category_precision"] > random["category_precision"]
    assert result.info["cutoff"] == 37 and result.info["propensity"]["target"] == "redemption"
    cal = result.calibration
    assert cal.height == 10 and cal.get_column("pairs").sum() == result.info["holdout_sends"]
    predicted, observed = cal.get_column("predicted"), cal.get_column("observed")
    assert predicted.is_sorted() and observed[-1] > observed[0]
    assert abs(float((predicted - observed).mean())) < 0.03


def test_top_lists_respect_caps_and_categories():
    score = np.array([[5.0, 4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    allowed = np.array([[True, True, True, False, True], [True] * 5])
    cats = np.array([[0], [0], [1], [2], [-1]])  # offer 4 has no category
    lists = top_lists(score, allowed, np.array([3, 2]), cats, per_category=1)
    assert lists[0].tolist() == [True, False, True, False, True]
    assert lists[1].tolist() == [False, False, False, True, True]


def test_calibration_deciles():
    predicted = np.linspace(0, 1, 1000)
    table = calibration_table(predicted, predicted > 0.5)
    assert table.height == 10 and table.get_column("pairs").to_list() == [100] * 10


def test_cli_backtest_writes_json_and_csv(scenario_path: Path, tmp_path: Path):
    result = CliRunner().invoke(main, ["backtest", str(scenario_path), "--holdout-weeks", "2",
                                       "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "fitted" in result.output and "calibration" in result.output
    data = json.loads((tmp_path / "backtest.json").read_text())
    assert {row["method"] for row in data["table"]} == {"fitted", "popular", "random"}
    assert pl.read_csv(tmp_path / "backtest.csv").height == 3
    assert not list(tmp_path.glob(".*tmp*"))


def test_cli_backtest_rejects_zero_weeks(scenario_path: Path):
    result = CliRunner().invoke(main, ["backtest", str(scenario_path), "--holdout-weeks", "0"])
    assert result.exit_code == 2
