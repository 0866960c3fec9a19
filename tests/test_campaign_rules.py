"""Always-on campaign rules at the command line (issue 24): offer groups (exclusive offers).

One 500-customer demo is run without and with the rule; the rule must change the answer, hold in
the plan, be re-verified by ``offeropt check`` and be shown in the manifest and the report."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner, Result

from optimizer.check.base import assignments_table
from optimizer.check.verify import rule_violations
from optimizer.cli import main
from optimizer.core.config import load_scenario
from optimizer.io.validate import load_inputs

SCENARIO = ('name = "x"\nweek = 40\ndata = "data"\noutput = "out"\n[rules]\n'
            'max_offers_per_customer = 5\nmax_offers_per_category = 1\ncooldown_weeks = 4\n'
            'global_budget = 15000.0\n[solver]\nseed = 0\n')


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _world(demo: Path, root: Path) -> Path:
    shutil.copytree(demo, root / "data")
    (root / "s.toml").write_text(SCENARIO)
    return root / "s.toml"


def _per_customer(run: Path) -> pl.DataFrame:
    return pl.read_parquet(run / "assignments.parquet").group_by("customer_id").len()


@pytest.fixture(scope="module")
def plain_run(demo_500: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo run without any campaign table."""
    root = tmp_path_factory.mktemp("plain")
    scenario = _world(demo_500, root)
    result = _invoke("run", str(scenario), "--quiet")
    assert result.exit_code == 0, result.output
    return root / "out"


@pytest.fixture(scope="module")
def grouped(demo_500: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo with two groups: every offer (at most 2 per customer), and the two offers the
    plain plan gives together most often (at most 1 of them)."""
    root = tmp_path_factory.mktemp("grouped")
    scenario = _world(demo_500, root)
    offers = pl.read_parquet(root / "data" / "offers.parquet").get_column("offer_id").to_list()
    rows = [{"group_id": "all", "offer_id": o, "max_per_customer": 2} for o in offers]
    rows += [{"group_id": "pair", "offer_id": o, "max_per_customer": 1} for o in offers[:2]]
    pl.DataFrame(rows).write_csv(root / "data" / "offer_groups.csv")
    result = _invoke("run", str(scenario), "--quiet")
    assert result.exit_code == 0, result.output
    return scenario


def test_groups_change_the_answer_and_hold(plain_run: Path, grouped: Path):
    run = grouped.parent / "out"
    assert _per_customer(plain_run).get_column("len").max() > 2  # the rule has work to do
    assert _per_customer(run).get_column("len").max() <= 2
    offers = pl.read_parquet(grouped.parent / "data" / "offers.parquet")
    pair = offers.get_column("offer_id").head(2).to_list()
    both = (pl.read_parquet(run / "assignments.parquet").filter(pl.col("offer_id").is_in(pair))
            .group_by("customer_id").len())
    assert both.height == 0 or both.get_column("len").max() <= 1
    result = _invoke("check", str(grouped))
    assert result.exit_code == 0, result.output


def test_groups_in_manifest_and_report(grouped: Path):
    run = grouped.parent / "out"
    manifest = json.loads((run / "manifest.json").read_text())
    by_name = {g["group_id"]: g for g in manifest["offer_groups"]}
    assert set(by_name) == {"all", "pair"}
    assignments = pl.read_parquet(run / "assignments.parquet")
    assert by_name["all"]["assignments"] == assignments.height
    assert by_name["all"]["customers"] == assignments.get_column("customer_id").n_unique()
    assert by_name["all"]["customers_at_limit"] == int(
        (_per_customer(run).get_column("len") == 2).sum())
    html = (run / "report.html").read_text()
    assert 'id="offer-groups"' in html and "<td>pair</td>" in html


def test_check_finds_a_plan_breaking_a_group(plain_run: Path, grouped: Path):
    """The plain plan, checked against the grouped inputs, breaks the groups (check re-derives
    the rule from the tables, not from the solver)."""
    scenario = load_scenario(grouped)
    inputs = load_inputs(grouped.parent / "data")
    raw = assignments_table(pl.read_parquet(plain_run / "assignments.parquet"),
                            plain_run / "assignments.parquet")
    found = [v for v in rule_violations(raw, inputs, scenario) if v.rule == "offer_group"]
    assert found and found[0].count > 0 and "group" in found[0].message
    assert found[0].sample and "group_id" in found[0].sample[0]


@pytest.fixture(scope="module")
def aged(demo_500: Path, plain_run: Path, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[Path, str]:
    """The demo with an ``age_band`` column (every 3rd customer under 21, every 7th empty) and a
    rule that the plain plan's most assigned category goes only to customers aged 21 or more."""
    root = tmp_path_factory.mktemp("aged")
    scenario = _world(demo_500, root)
    customers = pl.read_parquet(root / "data" / "customers.parquet")
    index = pl.int_range(pl.len())
    customers = customers.with_columns(
        pl.when(index % 7 == 0).then(None).when(index % 3 == 0).then(18).otherwise(35)
        .alias("age_band"))
    customers.write_parquet(root / "data" / "customers.parquet")
    offers = pl.read_parquet(root / "data" / "offers.parquet")
    top = (pl.read_parquet(plain_run / "assignments.parquet").join(offers, on="offer_id")
           .filter(pl.col("category").is_not_null()).group_by("category").len().sort(["len", "category"], descending=True)
           .get_column("category")[0])
    scenario.write_text(SCENARIO + f'\n[[rules.eligibility]]\noffer_category = "{top}"\n'
                        'require = "age_band >= 21"\n')
    result = _invoke("run", str(scenario), "--quiet")
    assert result.exit_code == 0, result.output
    return scenario, top


def _young_in_category(run: Path, data: Path, category: str) -> int:
    customers = pl.read_parquet(data / "customers.parquet")
    offers = pl.read_parquet(data / "offers.parquet").filter(pl.col("category") == category)
    return (pl.read_parquet(run / "assignments.parquet")
            .join(offers.select("offer_id"), on="offer_id")
            .join(customers, on="customer_id")
            .filter(~(pl.col("age_band") >= 21).fill_null(False)).height)


def test_attribute_rule_changes_the_answer_and_holds(plain_run: Path, aged: tuple[Path, str]):
    scenario, top = aged
    data = scenario.parent / "data"
    assert _young_in_category(plain_run, data, top) > 0  # the rule has work to do
    assert _young_in_category(scenario.parent / "out", data, top) == 0
    audit = json.loads((scenario.parent / "out" / "manifest.json").read_text())[
        "eligibility_audit"]["pairs"]
    assert audit["customer_attribute"] > 0
    assert "customer_attribute" in (scenario.parent / "out" / "report.html").read_text()
    result = _invoke("check", str(scenario))
    assert result.exit_code == 0, result.output


def test_plain_run_has_no_attribute_reason(plain_run: Path):
    audit = json.loads((plain_run / "manifest.json").read_text())["eligibility_audit"]["pairs"]
    assert "customer_attribute" not in audit


def test_check_finds_an_offer_to_a_customer_failing_the_rule(plain_run: Path,
                                                             aged: tuple[Path, str]):
    scenario_path, _ = aged
    scenario = load_scenario(scenario_path)
    inputs = load_inputs(scenario_path.parent / "data", customer_columns=("age_band",))
    raw = assignments_table(pl.read_parquet(plain_run / "assignments.parquet"),
                            plain_run / "assignments.parquet")
    found = [v for v in rule_violations(raw, inputs, scenario) if v.rule == "customer_attribute"]
    assert found and found[0].count > 0 and "age_band >= 21" in found[0].message


def _funder_spend(run: Path, data: Path) -> dict[str, float]:
    offers = pl.read_parquet(data / "offers.parquet").select("offer_id", "funded_by")
    spend = (pl.read_parquet(run / "assignments.parquet").join(offers, on="offer_id")
             .group_by("funded_by").agg(pl.col("expected_cost").sum()))
    return dict(spend.iter_rows())


@pytest.fixture(scope="module")
def funded(demo_500: Path, plain_run: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[Path, str, float]:
    """The demo with a ``funders`` table: the funder the plain plan spends most on gets a
    budget of a third of that spend; another funder a redemption commitment it cannot meet."""
    root = tmp_path_factory.mktemp("funded")
    scenario = _world(demo_500, root)
    spend = _funder_spend(plain_run, root / "data")
    top = max(sorted(spend), key=lambda f: spend[f])
    other = next(f for f in sorted(spend) if f != top)
    budget = spend[top] / 3
    pl.DataFrame({"funded_by": [top, other], "budget": [budget, None],
                  "min_redemptions": [None, 1e6]}).write_csv(root / "data" / "funders.csv")
    result = _invoke("run", str(scenario), "--quiet")
    assert result.exit_code == 0, result.output
    return scenario, top, budget


def test_funder_budget_changes_the_answer_and_holds(plain_run: Path,
                                                    funded: tuple[Path, str, float]):
    scenario, top, budget = funded
    data = scenario.parent / "data"
    assert _funder_spend(plain_run, data)[top] > budget * 2.9
    spent = _funder_spend(scenario.parent / "out", data)[top]
    assert spent <= budget * (1 + 1e-9)
    assert spent >= budget * 0.9  # the budget is used, not shunned
    result = _invoke("check", str(scenario))
    assert result.exit_code == 0, result.output


def test_funders_in_manifest_and_report(funded: tuple[Path, str, float]):
    scenario, top, budget = funded
    run = scenario.parent / "out"
    manifest = json.loads((run / "manifest.json").read_text())
    rows = {r["funded_by"]: r for r in manifest["funders"]}
    spend = _funder_spend(run, scenario.parent / "data")
    assert rows[top]["budget"] == pytest.approx(budget)
    assert rows[top]["expected_cost"] == pytest.approx(spend[top])
    assert rows[top]["shadow_price"] > 0
    other = next(r for name, r in rows.items() if name != top)
    assert other["budget"] is None and other["redemption_shortfall"] > 0
    assert other["redemption_shortfall"] == pytest.approx(
        other["min_redemptions"] - other["expected_redemptions"])
    html = (run / "report.html").read_text()
    assert 'id="funders"' in html and top in html


def test_check_finds_a_funder_over_budget(plain_run: Path, funded: tuple[Path, str, float]):
    scenario_path, top, _ = funded
    scenario = load_scenario(scenario_path)
    inputs = load_inputs(scenario_path.parent / "data")
    raw = assignments_table(pl.read_parquet(plain_run / "assignments.parquet"),
                            plain_run / "assignments.parquet")
    found = [v for v in rule_violations(raw, inputs, scenario) if v.rule == "funder_budget"]
    assert found and found[0].count == 1 and top in found[0].message


def _edited_manifest_check(scenario: Path, tmp_path: Path, name: str, edit: Any) -> Result:
    """``offeropt check`` of a copy of the scenario's run whose manifest ``edit`` changed."""
    run = tmp_path / name
    shutil.copytree(scenario.parent / "out", run)
    manifest = json.loads((run / "manifest.json").read_text())
    edit(manifest)
    (run / "manifest.json").write_text(json.dumps(manifest))
    return _invoke("check", str(scenario), str(run))


@pytest.mark.parametrize("entry, figure, value", [
    ("offer_groups", "assignments", 1), ("offer_groups", "customers", 1),
    ("offer_groups", "customers_at_limit", 1), ("offer_groups", "offers", [1]),
    ("funders", "expected_cost", 1.5), ("funders", "expected_redemptions", 1.5),
    ("funders", "budget_used", 0.5), ("funders", "redemption_shortfall", 0.0),
    ("funders", "offers", 99)])
def test_check_verifies_the_manifests_group_and_funder_figures(
        grouped: Path, funded: tuple[Path, str, float], tmp_path: Path, entry: str, figure: str,
        value: Any):
    """Each figure the manifest publishes per offer group and per funder is recomputed from the
    assignments and the inputs: an edited one is a ``manifest`` violation (any edit passed)."""
    scenario = grouped if entry == "offer_groups" else funded[0]
    key = "group_id" if entry == "offer_groups" else "funded_by"
    manifest = json.loads((scenario.parent / "out" / "manifest.json").read_text())
    # the entry whose figure differs from the edited value (the funders' second row has no
    # budget, so its budget_used is empty; the first has)
    row = next(r for r in manifest[entry] if r[figure] not in (value, None))

    def edit(m: dict[str, Any]) -> None:
        next(r for r in m[entry] if r[key] == row[key])[figure] = value

    result = _edited_manifest_check(scenario, tmp_path, f"{entry}-{figure}", edit)
    assert result.exit_code == 1, result.output
    assert f"{entry}[{key}={row[key]}].{figure} is" in result.output, result.output
