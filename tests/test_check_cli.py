"""``offeropt check`` through the command line: exit 1 naming the rule for each kind of violation.

tests/test_check.py covers each rule in the library (:func:`optimizer.check.verify.check_run`); here every
hard rule is broken once in a run folder and the command must exit 1 and print ``[rule]``, while
the untampered run exits 0. See tests/check_fixtures.py for the tiny world.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from optimizer.cli import main
from tests.check_fixtures import (
    GOOD,
    assignment_rows,
    complete_run,
    reranked,
    write_inputs,
    write_run,
    write_scenario,
)


def _with(*extra: tuple) -> list[dict]:
    return reranked(assignment_rows(GOOD + list(extra)))


def _overspend() -> list[dict]:
    # offer 1 (discount 2, budget 4) spends 3; customers 2 and 3 at p 1.0 and 0.75 make it 4.5
    rows = assignment_rows()
    for row in rows:
        if (row["customer_id"], row["offer_id"]) == (2, 1):
            row.update(p_redeem=1.0, expected_cost=2.0, score=2.0)
        if (row["customer_id"], row["offer_id"]) == (3, 1):
            row.update(p_redeem=0.75, expected_cost=1.5, score=1.5)
    return rows


# rule -> (assignment rows, scenario rules, --set overrides)
CASES = {
    "exclude": (_with((1, 3, 1, 0.5)), {}, ()),              # customer 1 excludes "pork"
    "sensitive": (_with((1, 3, 3, 0.4)), {}, ()),            # infant formula without opt-in
    "cooldown": (_with((4, 3, 2, 0.25)), {"max_offers_per_window": None}, ()),  # sent week 38
    "window": (_with((1, 3, 5, 0.1)), {}, ()),               # offer 5 starts in week 41
    "excluded_category": (assignment_rows(), {}, ("rules.excluded_categories=['frozen', 'pork']",)),
    "budget": (_overspend(), {}, ()),
    "max_customers": (_with((3, 3, 2, 0.25)), {}, ()),
    "global_budget": (assignment_rows(), {}, ("rules.global_budget=1",)),
    "max_offers_per_customer": (assignment_rows(), {}, ("rules.max_offers_per_customer=1",)),
    "max_offers_per_category": (_with((1, 3, 9, 0.1)), {}, ()),  # offer 4 is SNACKS too
    "frequency_window": (_with((6, 2, 8, 0.1)), {}, ()),     # 2 in history + 2 now > 3
}


def _invoke(tmp_path: Path, rows: list[dict], rules: dict, overrides: tuple[str, ...]):
    write_inputs(tmp_path / "data")
    scenario = write_scenario(tmp_path, **rules)
    write_run(tmp_path / "run", rows)
    complete_run(tmp_path / "run", scenario, overrides)  # a whole run folder, as run writes it
    args = ["check", str(scenario)]
    for text in overrides:
        args += ["--set", text]
    return CliRunner().invoke(main, args)


def test_good_run_exits_0(tmp_path):
    result = _invoke(tmp_path, assignment_rows(), {}, ())
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok:")


@pytest.mark.parametrize("rule", sorted(CASES))
def test_each_violation_exits_1_naming_the_rule(tmp_path, rule):
    rows, rules, overrides = CASES[rule]
    result = _invoke(tmp_path, rows, rules, overrides)
    assert result.exit_code == 1, result.output
    assert f"[{rule}]" in result.output, result.output


def test_check_of_a_missing_run_exits_2(tmp_path):
    write_inputs(tmp_path / "data")
    result = CliRunner().invoke(main, ["check", str(write_scenario(tmp_path))])
    assert result.exit_code == 2
    assert "run folder not found" in " ".join(result.output.split())


def test_a_missing_run_folder_is_not_blamed_on_a_table(tmp_path):
    from click.testing import CliRunner

    from optimizer.cli import main
    scenario = tmp_path / "s.toml"
    scenario.write_text('name = "x"\nweek = 1\ndata = "data"\noutput = "run"\n')
    (tmp_path / "data").mkdir()
    result = CliRunner().invoke(main, ["check", str(scenario), str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "run folder not found" in message and "table" not in message, message
