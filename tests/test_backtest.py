"""``offeropt backtest``: the library (fitted lists beat the baselines on small demo data, the
calibration table, the files) and the thin CLI adapter."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner, Result

from optimizer.apps.backtest import better_half, calibration_table, run_backtest, top_lists
from optimizer.apps.backtest_stats import calibration_scores
from optimizer.apps.synthetic import SENSITIVE_CATEGORIES, write_demo_data
from optimizer.cli import main
from optimizer.core.bootstrap import bootstrap_ratio
from optimizer.core.config import load_scenario
from tests.tiny_world import csv_floats_not_at_six_decimals, tree_bytes


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
    assert set(table) == {"fitted", "fitted_score", "buy_again", "offer_first", "popular",
                          "random"}
    # like for like: every customer-first method gets the same list sizes (offer-first's picks
    # can leave lists short), and every method the same replayed sends
    assert len({r["list_pairs"] for m, r in table.items() if m != "offer_first"}) == 1
    assert 0 < table["offer_first"]["list_pairs"] <= table["fitted"]["list_pairs"]
    assert len({r["replay_pairs"] for r in table.values()}) == 1
    # intervals over customers hold the points
    for r in table.values():
        assert r["recall_lo"] <= r["recall"] <= r["recall_hi"]
        assert r["precision_lo"] <= r["precision"] <= r["precision_hi"]
    scores = result.info["calibration_scores"]
    assert scores["sends"] == result.info["holdout_sends"]
    for name in ("log_loss", "brier"):
        assert scores[f"{name}_ci95"][0] <= scores[name] <= scores[f"{name}_ci95"][1]
    assert 0 < scores["brier"] < scores["log_loss"]
    fitted, popular, random = table["fitted"], table["popular"], table["random"]
    for metric in ("recall", "precision", "redeemed_when_sent", "category_precision",
                   "category_recall"):
        assert fitted[metric] > random[metric], metric
    for metric in ("recall", "precision", "category_precision", "category_recall"):
        assert fitted[metric] > popular[metric], metric
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


def test_top_lists_fill_past_a_crowded_category():
    # the best offers all share one category: the list still fills with the next categories
    score = np.array([[9.0, 8.0, 7.0, 6.0, 5.0, 1.0, 0.5]])
    cats = np.array([[0], [0], [0], [0], [0], [1], [2]])
    lists = top_lists(score, np.ones_like(score, bool), np.array([3]), cats, per_category=1)
    assert lists[0].tolist() == [True, False, False, False, False, True, True]


def test_better_half_per_customer():
    c = np.array([0, 0, 0, 0, 1, 1, 1, 2])
    score = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.2, 0.8, 1.0])
    kept = better_half(c, score)
    assert kept.tolist() == [False, True, False, True, False, False, True, False]


def test_log_loss_brier_and_their_intervals_by_hand():
    # four sends of two customers: p = .2 .5 | .9 .1, redeemed 0 1 | 1 0
    # log loss = -(ln .8 + ln .5 + ln .9 + ln .9) / 4; Brier = (.04 + .25 + .01 + .01) / 4
    p, y = np.array([0.2, 0.5, 0.9, 0.1]), np.array([0, 1, 1, 0])
    scores = calibration_scores(p, y, np.array([0, 0, 1, 1]), 2, seed=0)
    assert scores["log_loss"] == pytest.approx(-(np.log(0.8) + np.log(0.5) + 2 * np.log(0.9)) / 4)
    assert scores["brier"] == pytest.approx(0.0775)
    assert scores["sends"] == 4 and scores["observed_rate"] == 0.5
    # resampling the two customers: each resample's Brier is a mix of theirs, .145 and .01
    low, high = scores["brier_ci95"]
    assert 0.01 - 1e-12 <= low <= 0.0775 <= high <= 0.145 + 1e-12


def test_bootstrap_ratio_of_customers_alike_is_their_ratio():
    # every customer redeems 1 of her 4 kept sends: any resample's ratio is 1/4
    low, high = bootstrap_ratio(np.ones(50), np.full(50, 4.0), seed=3)
    assert low == pytest.approx(0.25) and high == pytest.approx(0.25)
    assert np.isnan(bootstrap_ratio(np.zeros(3), np.zeros(3), seed=0)).all()


def test_calibration_deciles():
    predicted = np.linspace(0, 1, 1000)
    table = calibration_table(predicted, predicted > 0.5)
    assert table.height == 10 and table.get_column("pairs").to_list() == [100] * 10


def test_cli_backtest_writes_json_and_csv(scenario_path: Path, tmp_path: Path):
    result = CliRunner().invoke(main, ["backtest", str(scenario_path), "--holdout-weeks", "2",
                                       "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "fitted" in result.output and "calibration" in result.output
    assert "log loss" in result.output and "Brier" in result.output
    data = json.loads((tmp_path / "backtest.json").read_text())
    assert {row["method"] for row in data["table"]} == {"fitted", "fitted_score", "buy_again",
                                                        "offer_first", "popular", "random"}
    assert data["calibration_scores"]["brier"] > 0
    assert data["fallback"] is None and "warning" not in result.stderr  # redemptions to learn
    csv = pl.read_csv(tmp_path / "backtest.csv")
    assert csv.height == 6 and {"recall_lo", "recall_hi"} <= set(csv.columns)
    # floats at 6 decimals, as every CSV output (it printed 0.6990595611285266)
    assert csv_floats_not_at_six_decimals(tmp_path / "backtest.csv") == []
    page = (tmp_path / "backtest.html").read_text()
    for part in ('id="chart-reliability"', 'id="chart-recall"', 'id="calibration-scores"',
                 "offer_first", "Brier"):
        assert part in page, part
    assert page.count("<svg") == 2 and 'id="fallback"' not in page
    assert not list(tmp_path.glob(".*tmp*"))


def test_cli_backtest_rejects_zero_weeks(scenario_path: Path):
    result = CliRunner().invoke(main, ["backtest", str(scenario_path), "--holdout-weeks", "0"])
    assert result.exit_code == 2


def test_backtest_has_its_own_folder_that_the_next_run_keeps(scenario_path: Path):
    """By default the backtest writes beside the run folder, never inside it: the next run
    replaces its folder whole and used to delete the backtest (issue 23, item 8). Re-run, it
    writes the same bytes but timings.json (backtest.json held the fit's ``seconds``)."""
    from optimizer.core.config import load_scenario
    output = load_scenario(scenario_path).output
    done = CliRunner().invoke(main, ["backtest", str(scenario_path), "--holdout-weeks", "2"])
    assert done.exit_code == 0, done.output
    folder = output.with_name(output.name + "-backtest")
    assert (folder / "backtest.json").is_file() and not (output / "backtest.json").exists()
    ran = CliRunner().invoke(main, ["run", str(scenario_path), "--quiet"])
    assert ran.exit_code == 0, ran.output
    assert (folder / "backtest.json").is_file()
    before = tree_bytes(folder)
    again = CliRunner().invoke(main, ["backtest", str(scenario_path), "--holdout-weeks", "2"])
    assert again.exit_code == 0, again.output   # its own earlier folder is replaced
    after = tree_bytes(folder)
    assert {k: v for k, v in after.items() if k != "timings.json"} == {
        k: v for k, v in before.items() if k != "timings.json"}
    assert sorted(after) == ["backtest.csv", "backtest.html", "backtest.json", "timings.json"]
    assert json.loads(after["timings.json"])["seconds"]["propensity"] >= 0


def test_backtest_on_inputs_without_purchases(tmp_path: Path):
    """A scores-path folder whose transactions table is empty (``demo-data
    --scores-per-customer``): the fit has no purchase before the cutoff and still backtests."""
    result = CliRunner().invoke(main, ["demo-data", str(tmp_path / "data"), "--customers", "300",
                                       "--offers", "20", "--seed", "0",
                                       "--scores-per-customer", "5"])
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(tmp_path / "data" / "transactions.parquet").height == 0
    path = tmp_path / "scenario.toml"
    path.write_text('name = "bt"\nweek = 40\ndata = "data"\noutput = "run"\n[rules]\n'
                    "max_offers_per_customer = 3\n")
    result = CliRunner().invoke(main, ["backtest", str(path), "--holdout-weeks", "3"])
    assert result.exit_code == 0, result.output
    table = json.loads((tmp_path / "run-backtest" / "backtest.json").read_text())["table"]
    assert {row["method"] for row in table} >= {"fitted", "buy_again", "popular"}


def _weeks(folder: Path, table: str) -> tuple[int, int]:
    weeks = pl.read_parquet(folder / f"{table}.parquet").get_column("week")
    return int(weeks.min()), int(weeks.max())


def test_cli_backtest_refuses_more_weeks_than_the_history(scenario_path: Path, tmp_path: Path):
    """Holding out more weeks than the history holds leaves no send before the cutoff: the fit
    would rest on nothing. Refused (exit 2), naming the tables' weeks and the weeks asked, and
    nothing is written."""
    first, last = _weeks(scenario_path.parent / "data", "history")
    n = 40 - first + 1  # cutoff one week before the first send
    out = tmp_path / "bt"
    result = CliRunner().invoke(main, ["backtest", str(scenario_path), "--holdout-weeks", str(n),
                                       "--out", str(out)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "history" in message and f"weeks {first}..{last}" in message, message
    assert f"weeks {first - 1}..39" in message and f"before {first - 1}" in message, message
    assert f"--holdout-weeks {40 - first - 1}" in message, message
    assert not out.exists()
    # the largest holdout that leaves a week of sends to fit on still runs
    fits = CliRunner().invoke(main, ["backtest", str(scenario_path), "--holdout-weeks",
                                     str(40 - first - 1), "--out", str(out)])
    assert fits.exit_code == 0, fits.output


def test_backtest_refuses_held_out_weeks_with_nothing_in_them(scenario_path: Path,
                                                               tmp_path: Path):
    """A scenario week past the data: the held-out weeks hold no send, redemption or purchase,
    so there is nothing to measure (exit 2, nothing written)."""
    out = tmp_path / "bt"
    result = CliRunner().invoke(main, ["backtest", str(scenario_path), "--holdout-weeks", "3",
                                       "--set", "week=60", "--out", str(out)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "weeks 57..59" in message and "nothing to measure" in message, message
    assert not out.exists()


def _backtest_copy(scenario_path: Path, tmp_path: Path,
                   edit: Callable[[str, pl.DataFrame], pl.DataFrame]) -> tuple[Result, Path]:
    """``backtest --holdout-weeks 3`` (weeks 37..39 held out) of a copy of the module's data
    with each table as ``edit(name, table)`` returns it; the result and the ``--out`` folder."""
    data = tmp_path / "data"
    data.mkdir()
    for file in (scenario_path.parent / "data").glob("*.parquet"):
        edit(file.stem, pl.read_parquet(file)).write_parquet(data / file.name)
    path = tmp_path / "scenario.toml"
    path.write_text(scenario_path.read_text())
    out = tmp_path / "bt"
    return CliRunner().invoke(main, ["backtest", str(path), "--holdout-weeks", "3",
                                     "--out", str(out)]), out


def test_backtest_refuses_held_out_weeks_without_a_redemption(scenario_path: Path,
                                                               tmp_path: Path):
    """Sends but no redemption in the held-out weeks: no truth pair, recall has no
    denominator. Refused (exit 2, naming redemptions), not a crash on NaN intervals."""
    result, out = _backtest_copy(scenario_path, tmp_path, lambda name, table: (
        table.filter(pl.col("week") < 37) if name == "redemptions" else table))
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "redemptions" in message and "no truth pair" in message, message
    assert not out.exists()


def test_backtest_without_redemptions_before_the_cutoff_says_it_judges_a_proxy(
        scenario_path: Path, tmp_path: Path):
    """Sends before the cutoff but no redemption: the fit has no redemption labels and falls
    back to a purchase proxy. The backtest still runs (exit 0) but says so: a warning on
    stderr, ``fallback`` in backtest.json, a warning at the top of the page."""
    result, out = _backtest_copy(scenario_path, tmp_path, lambda name, table: (
        table.filter(pl.col("week") >= 37) if name == "redemptions" else table))
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert "warning: no redemption before the cutoff week 37" in said, result.stderr
    written = json.loads((out / "backtest.json").read_text())
    fallback = written["fallback"]
    assert fallback.startswith("no redemption before the cutoff week 37") and (
        "without redemption labels" in fallback), fallback
    assert written["propensity"]["fallback"] and fallback.count(
        written["propensity"]["fallback"]) == 1  # the fit's own fallback, named
    assert written["popular_by"] == "history"
    assert 'id="fallback"' in (out / "backtest.html").read_text()


def test_backtest_refuses_a_replay_with_nothing_to_rank(scenario_path: Path, tmp_path: Path):
    """A single customer: the replay keeps half of each customer's held-out sends, and with no
    redeemed send of a customer with two or more its recall has no denominator. Refused (exit
    2), not a crash on NaN intervals nor a recall of 0 that means nothing."""
    reds = pl.read_parquet(scenario_path.parent / "data" / "redemptions.parquet")
    one = reds.filter(pl.col("week") >= 37).get_column("customer_id")[0]
    result, out = _backtest_copy(scenario_path, tmp_path, lambda name, table: (
        table.filter(pl.col("customer_id") == one) if "customer_id" in table.columns else table))
    assert result.exit_code == 2, result.output
    assert "nothing to rank" in " ".join(result.output.split()), result.output
    assert not out.exists()
