"""Always-on campaign rules at the command line (issue 24): offer groups (exclusive offers).

One 500-customer demo is run without and with the rule; the rule must change the answer, hold in
the plan, be re-verified by ``offeropt check`` and be shown in the manifest and the report."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result

from optimizer.check import assignments_table, rule_violations
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
