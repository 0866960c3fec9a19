"""The independent verifier: a good run passes, and each tampering is reported under its rule id."""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from optimizer.check.verify import CheckReport, check_run
from optimizer.core.config import load_scenario
from optimizer.core.errors import InputError, OptimizerError
from tests.check_fixtures import (
    GOOD,
    assignment_rows,
    reranked,
    write_inputs,
    write_run,
    write_scenario,
)


def _check(tmp_path: Path, rows: list[dict] | None = None, *, overrides: tuple[str, ...] = (),
           string_ids: bool = False, scores: list[tuple] | None = None, summary: bool = True,
           fmt: str = "parquet", extra_restrictions: list[tuple] = (), **rules) -> CheckReport:
    write_inputs(tmp_path / "data", string_ids=string_ids, scores=scores,
                 extra_restrictions=list(extra_restrictions))
    scenario = load_scenario(write_scenario(tmp_path, **rules), list(overrides))
    write_run(tmp_path / "run", assignment_rows() if rows is None else rows,
              string_ids=string_ids, summary=summary, fmt=fmt,
              budget_scale=scenario.rules.budget_scale)
    # the rules of hand-made tables alone: the folder's other files are tests/test_check_files.py's
    return check_run(scenario, complete=False)


def _with(*extra: tuple) -> list[dict]:
    return reranked(assignment_rows(GOOD + list(extra)))


def _replace(customer: int, offer: int, **changes) -> list[dict]:
    rows = assignment_rows()
    for row in rows:
        if row["customer_id"] == customer and row["offer_id"] == offer:
            row.update(changes)
    return rows


# --------------------------------------------------------------------------------------------------
# good runs


def test_good_run_passes(tmp_path):
    report = _check(tmp_path)
    assert report.violations == []
    assert report.ok
    assert report.assignments == len(GOOD)
    assert report.run_dir == (tmp_path / "run").resolve()
    assert "every hard rule holds" in report.describe()


def test_min_customers_shortfall_is_not_a_violation(tmp_path):
    # offer 7 has min_customers 4 and goes to one customer: a target, reported elsewhere
    assert _check(tmp_path).ok


def test_explicit_run_dir_and_csv_fallback(tmp_path):
    write_inputs(tmp_path / "data")
    scenario = load_scenario(write_scenario(tmp_path))
    other = write_run(tmp_path / "elsewhere", assignment_rows(), fmt="csv", summary=False)
    report = check_run(scenario, other, complete=False)
    assert report.ok, report.describe()
    assert report.assignments == len(GOOD)


def test_missing_run_folder_raises(tmp_path):
    write_inputs(tmp_path / "data")
    scenario = load_scenario(write_scenario(tmp_path))
    with pytest.raises(OptimizerError, match="run folder not found") as err:
        check_run(scenario, complete=False)
    assert not isinstance(err.value, InputError)  # not blamed on a table


def test_missing_assignments_file_raises(tmp_path):
    write_inputs(tmp_path / "data")
    scenario = load_scenario(write_scenario(tmp_path))
    (tmp_path / "run").mkdir()
    with pytest.raises(InputError) as err:
        check_run(scenario, complete=False)
    assert err.value.table == "assignments"


def test_unreadable_assignments_file_raises(tmp_path):
    write_inputs(tmp_path / "data")
    scenario = load_scenario(write_scenario(tmp_path))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "assignments.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(InputError) as err:
        check_run(scenario, complete=False)
    assert err.value.table == "assignments"


def test_assignments_missing_column_raises(tmp_path):
    write_inputs(tmp_path / "data")
    scenario = load_scenario(write_scenario(tmp_path))
    (tmp_path / "run").mkdir()
    pl.DataFrame(assignment_rows()).drop("score").write_parquet(tmp_path / "run" / "assignments.parquet")
    with pytest.raises(InputError) as err:
        check_run(scenario, complete=False)
    assert err.value.table == "assignments" and err.value.column == "score"


def test_empty_run_passes(tmp_path):
    assert _check(tmp_path, [], summary=False).ok


# --------------------------------------------------------------------------------------------------
# IDs, pairs, ranks, values


def test_unknown_offer(tmp_path):
    report = _check(tmp_path, _replace(5, 7, offer_id=999, expected_cost=0.15), summary=False)
    assert report.rules == {"unknown_offer"}
    (v,) = report.violations
    assert v.count == 1 and v.sample[0]["offer_id"] == 999 and "999" in v.message


def test_unknown_customer(tmp_path):
    report = _check(tmp_path, _replace(5, 7, customer_id=77), summary=False)
    assert report.rules == {"unknown_customer"}


def test_duplicate_pair(tmp_path):
    report = _check(tmp_path, _with((5, 2, 7, 0.3)))
    assert "duplicate_pair" in report.rules
    v = next(v for v in report.violations if v.rule == "duplicate_pair")
    assert v.count == 1


def test_rank_gap(tmp_path):
    assert _check(tmp_path, _replace(1, 4, rank=3)).rules == {"rank"}


def test_rank_repeated_and_not_starting_at_one(tmp_path):
    rows = _replace(1, 4, rank=1)
    rows = [{**r, "rank": r["rank"] + 1} if r["customer_id"] == 2 else r for r in rows]
    report = _check(tmp_path, rows)
    assert report.rules == {"rank"}
    assert report.violations[0].count == 2


def test_p_redeem_out_of_range(tmp_path):
    assert "p_redeem" in _check(tmp_path, _replace(6, 4, p_redeem=1.5, expected_cost=1.5)).rules


def test_expected_cost_mismatch(tmp_path):
    report = _check(tmp_path, _replace(6, 4, expected_cost=0.25), summary=False)
    assert report.rules == {"expected_cost"}


# --------------------------------------------------------------------------------------------------
# pair rules


def test_exclude_case_insensitive(tmp_path):
    # customer 1 excludes "pork"; offer 1 is in "PORK"
    report = _check(tmp_path, _with((1, 3, 1, 0.5)))
    assert report.rules == {"exclude"}
    (v,) = report.violations
    assert v.count == 1 and v.sample[0]["excluded"] == ["PORK"]


def test_exclude_through_a_product_category(tmp_path):
    # offer 4 has no category of its own; one of its products is SNACKS; customer 2 excludes it
    report = _check(tmp_path, _with((2, 3, 4, 0.2)))
    assert report.rules == {"exclude"}


def test_exclude_of_own_category_with_odd_spelling(tmp_path):
    # offer 9 is "snacks " in the offers table; customer 2 excludes " Snacks"
    assert _check(tmp_path, _with((2, 3, 9, 0.1))).rules == {"exclude"}


def test_window_not_started(tmp_path):
    assert _check(tmp_path, _with((5, 2, 5, 0.2))).rules == {"window"}


def test_window_ended(tmp_path):
    assert _check(tmp_path, _with((5, 2, 6, 0.2))).rules == {"window"}


def test_window_boundaries_are_inclusive(tmp_path):
    # week 41: offer 5 (start_week 41) is active; week 39: offer 6 (end_week 39) is active
    assert "window" not in _check(tmp_path, _with((5, 2, 5, 0.2)), week=41).rules
    assert "window" not in _check(tmp_path, _with((5, 2, 6, 0.2)), week=39).rules


def test_sensitive_without_opt_in(tmp_path):
    report = _check(tmp_path, _with((1, 3, 3, 0.4)))
    assert report.rules == {"sensitive"}
    assert report.violations[0].sample[0]["categories"] == ["INFANT FORMULA"]


def test_sensitive_policy_exclude(tmp_path):
    # customer 3 opted in, but under "exclude" sensitive offers go to nobody
    report = _check(tmp_path, sensitive_policy="exclude")
    assert report.rules == {"sensitive"}


def test_sensitive_policy_allow(tmp_path):
    assert _check(tmp_path, _with((1, 3, 3, 0.4)), sensitive_policy="allow").ok


def test_sensitive_through_a_product_category(tmp_path):
    # DAIRY (a product of offer 4) made sensitive: nobody opted in to it
    report = _check(tmp_path, sensitive_categories=["Infant Formula", " dairy"])
    assert report.rules == {"sensitive"}
    assert report.violations[0].count == 3


def test_opt_in_needs_every_sensitive_category(tmp_path):
    # offer 4 spans DAIRY and SNACKS, both sensitive here; customer 1 opts in to DAIRY only,
    # customer 4 to both, customer 6 to none
    extra = [(1, "dairy", "opt_in"), (4, "Dairy", "opt_in"), (4, "SNACKS", "opt_in")]
    report = _check(tmp_path, extra_restrictions=extra,
                    sensitive_categories=["DAIRY", "SNACKS", "INFANT FORMULA"])
    assert report.rules == {"sensitive"}
    (v,) = report.violations
    assert v.count == 2
    assert sorted(r["customer_id"] for r in v.sample) == [1, 6]
    assert [r["categories"] for r in v.sample] == [["SNACKS"], ["DAIRY", "SNACKS"]]


def test_cooldown(tmp_path):
    # customer 4 got offer 2 in week 38; the cooldown covers weeks 36..39
    report = _check(tmp_path, _with((4, 3, 2, 0.25)), max_offers_per_window=None)
    assert report.rules == {"cooldown", "max_customers"}  # offer 2 also reaches a third customer
    v = next(v for v in report.violations if v.rule == "cooldown")
    assert v.count == 1 and v.sample[0]["last_sent"] == 38


def test_cooldown_zero_forbids_nothing(tmp_path):
    report = _check(tmp_path, _with((4, 3, 2, 0.25)), cooldown_weeks=0, max_offers_per_window=None)
    assert report.rules == {"max_customers"}


def test_cooldown_ignores_history_before_the_cooldown(tmp_path):
    # history (4, 1, 35) is outside a 4-week cooldown but inside a 5-week one
    assert _check(tmp_path).ok
    assert _check(tmp_path, cooldown_weeks=5).rules == {"cooldown"}


# --------------------------------------------------------------------------------------------------
# customer caps


def test_max_offers_per_customer(tmp_path):
    report = _check(tmp_path, overrides=("rules.max_offers_per_customer=1",))
    assert report.rules == {"max_offers_per_customer"}
    assert report.violations[0].count == 4  # customers 1..4 get two offers


def test_max_offers_per_customer_by_tampering(tmp_path):
    report = _check(tmp_path, _with((1, 3, 8, 0.1), (1, 4, 9, 0.1)), max_offers_per_category=None,
                    max_offers_per_window=None)
    assert report.rules == {"max_offers_per_customer"}


def test_max_offers_per_category(tmp_path):
    # customer 5 already has offer 7 (BAKERY); offer 2 is BAKERY too
    report = _check(tmp_path, _with((5, 2, 2, 0.25)))
    assert "max_offers_per_category" in report.rules


def test_max_offers_per_category_only(tmp_path):
    rows = _with((5, 2, 2, 0.25))
    rows = [r for r in rows if not (r["customer_id"] == 2 and r["offer_id"] == 2)]
    rows = [r for r in rows if not (r["customer_id"] == 1 and r["offer_id"] == 2)]
    rows = [{**r, "rank": 1} if r["customer_id"] == 1 else r for r in rows]
    report = _check(tmp_path, rows)
    assert report.rules == {"max_offers_per_category"}


def test_category_cap_counts_product_categories(tmp_path):
    # offer 4 counts in DAIRY and in SNACKS; offer 9 is SNACKS
    report = _check(tmp_path, _with((1, 3, 9, 0.1)))
    assert report.rules == {"max_offers_per_category"}
    assert report.violations[0].sample[0]["category"] == "SNACKS"


def test_category_cap_none_is_off(tmp_path):
    assert _check(tmp_path, _with((1, 3, 9, 0.1)), max_offers_per_category=None).ok


def test_frequency_window_with_history(tmp_path):
    # customer 6: 2 history rows in weeks 37..39 (the week-36, week-40 and unknown-offer rows do
    # not count) + 1 offer now = 3; a second offer makes 4 > 3
    assert _check(tmp_path).ok
    report = _check(tmp_path, _with((6, 2, 8, 0.1)))
    assert report.rules == {"frequency_window"}
    v = report.violations[0]
    assert v.sample == [{"customer_id": 6, "offers": 2, "history": 2, "total": 4}]


def test_frequency_window_length(tmp_path):
    # a 5-week window reaches week 36: customer 6 then has 3 history rows + 1 now
    assert _check(tmp_path, window_weeks=5).rules == {"frequency_window"}


def test_frequency_window_off(tmp_path):
    assert _check(tmp_path, _with((6, 2, 8, 0.1)), max_offers_per_window=None).ok


# --------------------------------------------------------------------------------------------------
# offer and global caps


def test_budget_overspent(tmp_path):
    # offer 1 (discount 2, budget 4) spends 3; raising two p_redeem values makes it 4.5
    rows = _replace(2, 1, p_redeem=1.0, expected_cost=2.0, score=2.0)
    rows = [{**r, "p_redeem": 0.75, "expected_cost": 1.5, "score": 1.5}
            if (r["customer_id"], r["offer_id"]) == (3, 1) else r for r in rows]
    report = _check(tmp_path, rows)
    assert report.rules == {"budget"}
    (v,) = report.violations
    assert v.count == 1 and v.sample[0]["offer_id"] == 1 and v.sample[0]["spent"] == pytest.approx(4.5)
    assert "offer 1 spends 4.5 of budget 4" in v.message


def test_budget_scale(tmp_path):
    report = _check(tmp_path, overrides=("rules.budget_scale=0.5",))
    assert report.rules == {"budget"}  # offer 1: 3 > 4 * 0.5
    assert "budget_scale 0.5" in report.violations[0].message


def test_budget_exactly_at_cap_passes(tmp_path):
    # offer 1 spends exactly 4.0 (p 0.5, 0.5, 1.0 * discount 2)
    assert _check(tmp_path, _replace(4, 1, p_redeem=1.0, expected_cost=2.0, score=2.0)).ok


def test_understated_expected_cost_cannot_hide_overspend(tmp_path):
    # written costs sum to 3 <= 4 * 0.9, but p_redeem * discount sums to 4 > 3.6
    report = _check(tmp_path, _replace(2, 1, p_redeem=1.0, expected_cost=1.0, score=2.0),
                    budget_scale=0.9)
    assert report.rules == {"budget", "expected_cost"}


def test_max_customers(tmp_path):
    # offer 2 (max_customers 2) goes to customers 1 and 2; customer 3 makes three
    report = _check(tmp_path, _with((3, 3, 2, 0.25)))
    assert report.rules == {"max_customers"}


def test_global_budget(tmp_path):
    report = _check(tmp_path, overrides=("rules.global_budget=1",))
    assert report.rules == {"global_budget"}
    assert "global_budget 1" in report.violations[0].message


def test_global_budget_is_not_scaled(tmp_path):
    # total spend is 5.7; scaling offer budgets does not scale the global budget
    assert _check(tmp_path, global_budget=5.8, budget_scale=2.0).ok
    assert _check(tmp_path, global_budget=5.6, budget_scale=2.0).rules == {"global_budget"}


# --------------------------------------------------------------------------------------------------
# scores table


def _scores() -> list[tuple]:
    rows = [(c, o, p, 2 * p) for c, _, o, p in GOOD]
    return rows + [(5, 8, 0.1, 0.3)]


def test_scores_table_good_run_passes(tmp_path):
    assert _check(tmp_path, scores=_scores()).ok


def test_scores_pair_not_listed(tmp_path):
    report = _check(tmp_path, _with((3, 3, 8, 0.1)), scores=_scores())
    assert report.rules == {"scores_pair"}


def test_scores_values_mismatch(tmp_path):
    report = _check(tmp_path, _replace(5, 7, score=0.61), scores=_scores())
    assert report.rules == {"scores_values"}
    v = report.violations[0]
    assert v.sample[0]["table_value"] == pytest.approx(0.6)


def test_scores_p_redeem_mismatch(tmp_path):
    report = _check(tmp_path, _replace(5, 7, p_redeem=0.31, expected_cost=0.155), scores=_scores())
    assert report.rules == {"scores_values"}


# --------------------------------------------------------------------------------------------------
# offers_summary


def test_summary_mismatch(tmp_path):
    report = _check(tmp_path)
    assert report.ok
    path = tmp_path / "run" / "offers_summary.parquet"
    summ = pl.read_parquet(path)
    summ.with_columns(pl.when(pl.col("offer_id") == 1).then(pl.lit(5, pl.UInt32))
                      .otherwise(pl.col("customers")).alias("customers")).write_parquet(path)
    scenario = load_scenario(tmp_path / "scenario.toml")
    report = check_run(scenario, complete=False)
    assert report.rules == {"summary"}
    assert report.violations[0].sample[0]["offer_id"] == 1


def test_summary_missing_an_assigned_offer(tmp_path):
    _check(tmp_path)
    path = tmp_path / "run" / "offers_summary.parquet"
    pl.read_parquet(path).filter(pl.col("offer_id") != 7).write_parquet(path)
    report = check_run(load_scenario(tmp_path / "scenario.toml"), complete=False)
    assert report.rules == {"summary"}


def test_summary_lists_every_offer_an_unassigned_one_with_zero(tmp_path):
    """The summary has a row per offer, as the run writes it: offer 8, given to no one, reads 0
    customers and passes; its row gone (which agreed with every sum, exit 0) hides its budget
    and any min_customers shortfall: a violation."""
    assert _check(tmp_path).ok
    path = tmp_path / "run" / "offers_summary.parquet"
    summ = pl.read_parquet(path)
    assert summ.filter(pl.col("offer_id") == 8).get_column("customers").to_list() == [0]
    summ.filter(pl.col("offer_id") != 8).write_parquet(path)
    report = check_run(load_scenario(tmp_path / "scenario.toml"), complete=False)
    assert report.rules == {"summary"}
    assert "1 offer(s) of 'offers' have no row in offers_summary.parquet" in report.describe()


# --------------------------------------------------------------------------------------------------
# ID types


def test_string_ids_good_run_passes(tmp_path):
    report = _check(tmp_path, string_ids=True)
    assert report.ok, report.describe()


def test_string_ids_unknown_offer(tmp_path):
    report = _check(tmp_path, _replace(5, 7, offer_id="999"), string_ids=True, summary=False)
    # "O999" is not an offer
    assert report.rules == {"unknown_offer"}


def test_string_ids_rule_still_applies(tmp_path):
    assert _check(tmp_path, _with((1, 3, 1, 0.5)), string_ids=True).rules == {"exclude"}


def test_integer_inputs_string_run_ids_compare_as_integers(tmp_path):
    write_inputs(tmp_path / "data")
    scenario = load_scenario(write_scenario(tmp_path))
    run = tmp_path / "run"
    run.mkdir()
    frame = pl.DataFrame(assignment_rows()).with_columns(
        pl.col("customer_id").cast(pl.Utf8), pl.col("offer_id").cast(pl.Utf8))
    frame.write_parquet(run / "assignments.parquet")
    # every rule reads them as the integers they print (no unknown customer or offer); a run
    # keeps the inputs' types, so the Parquet's text columns are a violation of their own
    assert check_run(scenario, complete=False).rules == {"column_types"}
    # a text ID that is not a plain integer does not match an integer master (as in validate)
    frame.with_columns(pl.when(pl.col("offer_id") == "7").then(pl.lit("07"))
                       .otherwise(pl.col("offer_id")).alias("offer_id")
                       ).write_parquet(run / "assignments.parquet")
    assert check_run(scenario, complete=False).rules == {"unknown_offer", "column_types"}


def test_describe_lists_violations(tmp_path):
    report = _check(tmp_path, _with((1, 3, 1, 0.5)))
    text = report.describe()
    assert "[exclude]" in text and "1 rule violation" in text
