"""``offeropt measure`` checked by hand on run folders built here, a few customers each.

The estimate (docs/contract.md, "Measurement: offeropt measure"): the difference in means,
treated minus control, CUPED-adjusted on pre-period sales with ``theta = cov(x, y) / var(x)``
over both arms; pooled over runs with weights ``n_t n_c / (n_t + n_c)``; ``mde = (z(0.975) +
z(0.8)) x se``; the interval a bootstrap over customers. Every expected figure below is worked
out in the comments, not read from the code. Degenerate inputs (no control group, outcomes of
nobody in the arms) exit 2 instead of reporting a lift of 0 with a zero-width interval.
"""
from __future__ import annotations

import json
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from optimizer.apps.measure import Settings, measure_runs
from optimizer.cli import main

I64 = pl.Int64


def _table(rows: dict[str, list[Any]], schema: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema)


def build_run(root: Path, week: int, sends: list[tuple[int, int]], universal: list[int],
              per_offer: tuple[tuple[int, int], ...] = ()) -> Path:
    """A run folder of week ``week`` over the data folder ``root/data`` (made by
    :func:`build_data`): its sends, universal controls and per-offer control pairs."""
    run = root / f"run{week}"
    run.mkdir(parents=True, exist_ok=True)
    (run / "manifest.json").write_text(json.dumps(
        {"scenario": {"week": week, "data": str(root / "data")}}))
    _table({"customer_id": [c for c, _ in sends], "offer_id": [o for _, o in sends]},
           {"customer_id": I64, "offer_id": I64}).write_parquet(run / "assignments.parquet")
    rows = ([(c, None, week, "universal_holdout") for c in universal]
            + [(c, o, week, "offer_holdout") for c, o in per_offer])
    pl.DataFrame(rows, schema={"customer_id": I64, "offer_id": I64, "week": I64,
                               "reason": pl.Utf8}, orient="row").write_parquet(
        run / "controls.parquet")
    return run


def build_data(root: Path, customers: list[int], pre: dict[int, float], week: int) -> None:
    """The input folder: customers, two offers (discounts 2 and 1) and the pre-period sales
    ``pre`` (one line each in week ``week - 1``)."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    _table({"customer_id": customers}, {"customer_id": I64}).write_parquet(
        data / "customers.parquet")
    _table({"offer_id": [10, 11], "discount": [2.0, 1.0], "budget": [None, None]},
           {"offer_id": I64, "discount": pl.Float64, "budget": pl.Float64}).write_parquet(
        data / "offers.parquet")
    _lines(pre, week - 1).write_parquet(data / "transactions.parquet")


def _lines(sales: dict[int, float], week: int) -> pl.DataFrame:
    return _table({"customer_id": list(sales), "product_id": [1] * len(sales),
                   "week": [week] * len(sales), "sales_value": list(sales.values())},
                  {"customer_id": I64, "product_id": I64, "week": I64,
                   "sales_value": pl.Float64})


def write_outcomes(folder: Path, sales: pl.DataFrame, redemptions: list[tuple[int, int, int]]
                   ) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    sales.write_parquet(folder / "transactions.parquet")
    pl.DataFrame(redemptions, schema={"customer_id": I64, "offer_id": I64, "week": I64},
                 orient="row").write_parquet(folder / "redemptions.parquet")
    return folder


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    """Week 40: customers 1-3 sent offer 10, 4-5 the universal control, 6 neither.

    pre-period sales x: 1: 4, 2: 8, 3: 0, 4: 2, 5: 4; outcome sales y: 10, 14, 6, 5, 9 (and 100
    for customer 6, in no arm); customer 1 redeemed offer 10 (discount 2)."""
    build_data(tmp_path, [1, 2, 3, 4, 5, 6], {1: 4, 2: 8, 3: 0, 4: 2, 5: 4}, 40)
    run = build_run(tmp_path, 40, [(1, 10), (2, 10), (3, 10)], [4, 5])
    out = write_outcomes(tmp_path / "out", _lines({1: 10, 2: 14, 3: 6, 4: 5, 5: 9, 6: 100}, 40),
                         [(1, 10, 40)])
    return run, out


def test_cuped_difference_by_hand(tiny: tuple[Path, Path]):
    run, out = tiny
    total = measure_runs([run], out, Settings(weeks=1, bootstrap=400))["total"]
    # both arms: x = 4 8 0 2 4 (mean 3.6), y = 10 14 6 5 9 (mean 8.8)
    # cov(x, y) = 198 / 5 - 3.6 x 8.8 = 7.92; var(x) = 100 / 5 - 3.6^2 = 7.04; theta = 1.125
    # treated: mean y 10, mean x 4; control: mean y 7, mean x 3
    # lift = (10 - 7) - 1.125 x (4 - 3) = 1.875
    assert total["treated_customers"] == 3 and total["control_customers"] == 2
    assert total["treated_mean_sales"] == pytest.approx(10.0)
    assert total["control_mean_sales"] == pytest.approx(7.0)
    assert total["incremental_sales_per_customer"] == pytest.approx(1.875)
    assert total["incremental_sales_total"] == pytest.approx(1.875 * 3)
    # redemptions r = 1 0 0 | 0 0: cov(x, r) = 4 / 5 - 3.6 x 0.2 = 0.08; theta = 0.08 / 7.04
    assert total["incremental_redemptions_per_customer"] == pytest.approx(1 / 3 - 0.08 / 7.04)
    # margin 0.25 y - 2 x r = 0.5 3.5 1.5 | 1.25 2.25: cov = 41.5 / 5 - 3.6 x 1.8 = 1.82
    assert total["treated_mean_margin"] == pytest.approx(5.5 / 3)
    assert total["incremental_margin_per_customer"] == pytest.approx(
        (5.5 / 3 - 1.75) - 1.82 / 7.04)
    k = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)
    assert total["mde_sales_per_customer"] == pytest.approx(k * total["se"])
    assert total["se"] > 0 and total["ci_low"] < total["ci_high"]


def test_total_treated_arm_is_intention_to_treat(tmp_path: Path):
    """Customer 6 was planned offer 11 only, and that send was withheld by the per-offer control:
    she is still in the program arm (not in the universal control), so the total counts her
    among the treated with her outcomes; leaving her out (treated = sent an offer) would choose
    the arm by the per-offer draw."""
    build_data(tmp_path, [1, 2, 3, 4, 5, 6, 7], {1: 4, 2: 8, 3: 0, 4: 2, 5: 4, 6: 2}, 40)
    run = build_run(tmp_path, 40, [(1, 10), (2, 10), (3, 10)], [4, 5], per_offer=((6, 11),))
    out = write_outcomes(tmp_path / "out",
                         _lines({1: 10, 2: 14, 3: 6, 4: 5, 5: 9, 6: 3, 7: 100}, 40), [])
    total = measure_runs([run], out, Settings(weeks=1, bootstrap=200))["total"]
    # treated 1 2 3 6: x = 4 8 0 2, y = 10 14 6 3; control 4 5: x = 2 4, y = 5 9
    # mean x = 20 / 6, mean y = 47 / 6; cov(x, y) = 204 / 6 - (20 / 6)(47 / 6) = 71 / 9;
    # var(x) = 104 / 6 - (20 / 6)^2 = 56 / 9; theta = 71 / 56
    # lift = (33 / 4 - 7) - 71 / 56 x (14 / 4 - 3) = 1.25 - 71 / 112
    # (the old arm, 1 2 3 only, gave 1.875 on 3 treated: the cuped difference by hand above)
    assert total["treated_customers"] == 4 and total["control_customers"] == 2
    assert total["treated_mean_sales"] == pytest.approx(33 / 4)
    assert total["incremental_sales_per_customer"] == pytest.approx(1.25 - 71 / 112)
    assert total["incremental_sales_total"] == pytest.approx((1.25 - 71 / 112) * 4)


def test_pooled_over_runs_by_hand(tiny: tuple[Path, Path]):
    run40, out = tiny
    # week 41: customers 4 and 5 sent offer 10, customer 1 held out; y = 8, 12 | 4 and the
    # pre-period (weeks before 41) x = 2, 4 | 4: cov(x, y) = 80 / 3 - (10 / 3) x 8 = 0, so
    # theta = 0 and the lift is 10 - 4 = 6
    run41 = build_run(run40.parent, 41, [(4, 10), (5, 10)], [1])
    lines = pl.concat([pl.read_parquet(out / "transactions.parquet"),
                       _lines({4: 8, 5: 12, 1: 4}, 41)])
    write_outcomes(out, lines, [(1, 10, 40)])
    result = measure_runs([run40, run41], out, Settings(weeks=1, bootstrap=200))
    assert [r["total"]["incremental_sales_per_customer"] for r in result["runs"]] == \
        pytest.approx([1.875, 6.0])
    # weights n_t n_c / (n_t + n_c): 3 x 2 / 5 = 1.2 and 2 x 1 / 3
    w40, w41 = 1.2, 2 / 3
    assert result["total"]["incremental_sales_per_customer"] == pytest.approx(
        (w40 * 1.875 + w41 * 6.0) / (w40 + w41))
    assert result["total"]["treated_customers"] == 5
    assert result["total"]["control_customers"] == 3


def test_bootstrap_interval_matches_the_normal_one_on_many_customers(tmp_path: Path):
    # no pre-period sales: theta = 0, the lift is the plain difference in means and its
    # standard error sqrt(s_t^2 / n_t + s_c^2 / n_c)
    rng = np.random.default_rng(1)
    n_t, n_c = 3000, 1000
    y = np.concatenate([rng.gamma(2, 5, n_t) + 1.0, rng.gamma(2, 5, n_c)])
    ids = list(range(n_t + n_c))
    build_data(tmp_path, ids, {}, 40)
    run = build_run(tmp_path, 40, [(c, 10) for c in range(n_t)], list(range(n_t, n_t + n_c)))
    out = write_outcomes(tmp_path / "out", _lines(dict(zip(ids, y.tolist())), 40), [])
    total = measure_runs([run], out, Settings(weeks=1, bootstrap=2000))["total"]
    diff = y[:n_t].mean() - y[n_t:].mean()
    se = np.sqrt(y[:n_t].var(ddof=1) / n_t + y[n_t:].var(ddof=1) / n_c)
    assert total["incremental_sales_per_customer"] == pytest.approx(diff)
    assert total["se"] == pytest.approx(se, rel=0.1)
    assert total["ci_low"] == pytest.approx(diff - 1.96 * se, abs=0.2 * se)
    assert total["ci_high"] == pytest.approx(diff + 1.96 * se, abs=0.2 * se)


def _measure(*args: Any) -> Any:
    return CliRunner().invoke(main, ["measure", *[str(a) for a in args]])


def test_a_run_without_a_control_group_exits_2(tiny: tuple[Path, Path], tmp_path: Path):
    run, out = tiny
    (run / "controls.parquet").unlink()
    pl.DataFrame(schema={"customer_id": I64, "offer_id": I64, "week": I64,
                         "reason": pl.Utf8}).write_parquet(run / "controls.parquet")
    result = _measure(run, "--outcomes", out, "--weeks", "1", "--out", tmp_path / "m",
                      "--no-html")
    assert result.exit_code == 2, result.output
    assert "no control group" in result.output and "[measurement]" in result.output
    assert not (tmp_path / "m" / "measure.json").exists()


@pytest.mark.parametrize("case", ["unknown_customers", "no_rows_in_the_weeks"])
def test_outcomes_of_nobody_in_the_arms_exit_2(tiny: tuple[Path, Path], tmp_path: Path,
                                               case: str):
    run, _ = tiny
    if case == "unknown_customers":  # another shop's customers
        out = write_outcomes(tmp_path / "other", _lines({101: 5.0, 102: 7.0}, 40), [])
    else:  # outcome weeks after the window asked for
        out = write_outcomes(tmp_path / "later", _lines({1: 5.0, 4: 7.0}, 43), [])
    result = _measure(run, "--outcomes", out, "--weeks", "1", "--out", tmp_path / "m",
                      "--no-html")
    assert result.exit_code == 2, result.output
    assert "table 'transactions'" in result.output and "no row in weeks 40..40" in result.output


def test_weeks_past_the_last_outcome_week_exit_2_and_write_nothing(tiny: tuple[Path, Path],
                                                                    tmp_path: Path):
    """The outcomes hold week 40 only: weeks 41 and 42 would count as weeks without sales for
    every customer, diluting the lift, so asking for them is bad input (the tables named, the
    weeks they hold and the weeks asked); --weeks 1 measures."""
    run, out = tiny
    result = _measure(run, "--outcomes", out, "--weeks", "3", "--out", tmp_path / "m")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "table 'transactions'" in text and "column 'week'" in text
    assert "weeks 40..42" in text and "transactions weeks 40..40" in text
    assert "redemptions weeks 40..40" in text and "--weeks 1 or less" in text
    assert not (tmp_path / "m").exists()
    assert _measure(run, "--outcomes", out, "--weeks", "1", "--out", tmp_path / "m",
                    "--no-html").exit_code == 0


def test_weeks_past_the_last_sales_week_exit_2_though_redemptions_go_on(tmp_path: Path):
    """Transactions hold week 40 only, redemptions go on to week 42: weeks 41 and 42 would
    still count as weeks without sales for every customer (sales come from transactions), so
    the bound is the transactions' last week, not the later of the two tables'."""
    build_data(tmp_path, [1, 2, 3, 4, 5], {1: 4, 2: 8, 3: 0, 4: 2, 5: 4}, 40)
    run = build_run(tmp_path, 40, [(1, 10), (2, 10), (3, 10)], [4, 5])
    out = write_outcomes(tmp_path / "out", _lines({1: 10, 2: 14, 3: 6, 4: 5, 5: 9}, 40),
                         [(1, 10, 40), (2, 10, 42)])
    result = _measure(run, "--outcomes", out, "--weeks", "3", "--out", tmp_path / "m")
    assert result.exit_code == 2, result.output
    assert "--weeks 1 or less" in " ".join(result.output.split())
    assert not (tmp_path / "m").exists()
    # the default window stops at the last sales week too
    assert measure_runs([run], out, Settings(bootstrap=200))["runs"][0]["weeks"] == [40, 40]
    assert _measure(run, "--outcomes", out, "--weeks", "1", "--out", tmp_path / "m",
                    "--no-html").exit_code == 0


def test_an_error_message_prints_brackets_as_written(tiny: tuple[Path, Path], tmp_path: Path):
    _, out = tiny
    result = _measure(tmp_path / "[bold]runs", "--outcomes", out, "--no-html")
    assert result.exit_code == 2
    assert "[bold]runs" in " ".join(result.output.split())


def test_a_page_that_cannot_be_written_leaves_no_measure_json(tiny: tuple[Path, Path],
                                                              tmp_path: Path):
    run, out = tiny
    blocker = tmp_path / "file"
    blocker.write_text("a file where the page's folder should be")
    result = _measure(run, "--outcomes", out, "--weeks", "1", "--out", tmp_path / "m",
                      "--html", blocker / "page.html")
    assert result.exit_code == 3, result.output
    assert not (tmp_path / "m" / "measure.json").exists()


def test_outcome_ids_that_no_customer_of_the_run_can_have_are_left_out(tiny: tuple[Path, Path],
                                                                       tmp_path: Path):
    """The run's customers are integers; the outcome tables store text IDs, one of them "06"
    (no integer customer prints so: another system's customer). It names no customer of the
    run, like customer 6 in the `tiny` outcomes, so the figures are those of the integer
    outcomes (the cuped difference by hand above). Its null key crashed the per-customer sums
    (exit 70)."""
    run, out = tiny
    text = pl.read_parquet(out / "transactions.parquet").with_columns(
        pl.col("customer_id").cast(pl.Utf8).replace("6", "06"))
    red = pl.DataFrame({"customer_id": ["1", "07"], "offer_id": [10, 10], "week": [40, 40]})
    other = tmp_path / "text_ids"
    other.mkdir()
    text.write_parquet(other / "transactions.parquet")
    red.write_parquet(other / "redemptions.parquet")
    result = _measure(run, "--outcomes", other, "--weeks", "1", "--out", tmp_path / "m",
                      "--no-html", "--bootstrap", "200")
    assert result.exit_code == 0, result.output
    total = json.loads((tmp_path / "m" / "measure.json").read_text())["total"]
    assert total["treated_customers"] == 3 and total["control_customers"] == 2
    assert total["incremental_sales_per_customer"] == pytest.approx(1.875)
    assert total["incremental_redemptions_per_customer"] == pytest.approx(1 / 3 - 0.08 / 7.04)


@pytest.mark.parametrize("page", ["--no-html", "elsewhere"])
def test_a_page_of_an_earlier_measure_is_not_left_beside_a_new_json(tiny: tuple[Path, Path],
                                                                    tmp_path: Path, page: str):
    """measure --out m wrote m/measure.json and m/measure.html; measuring again into m with
    --no-html (or the page elsewhere) replaced measure.json and left the old page beside it,
    a page of other figures read as the new ones'. It is removed."""
    run, out = tiny
    assert _measure(run, "--outcomes", out, "--weeks", "1", "--out", tmp_path / "m",
                    "--bootstrap", "50").exit_code == 0
    assert (tmp_path / "m" / "measure.html").is_file()
    extra = ["--no-html"] if page == "--no-html" else ["--html", tmp_path / "p" / "page.html"]
    result = _measure(run, "--outcomes", out, "--weeks", "1", "--out", tmp_path / "m",
                      "--bootstrap", "60", *extra)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m" / "measure.json").read_text())["settings"]["bootstrap"] == 60
    assert not (tmp_path / "m" / "measure.html").exists()
    assert (page == "--no-html") or (tmp_path / "p" / "page.html").is_file()
