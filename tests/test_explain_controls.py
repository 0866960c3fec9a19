"""``offeropt explain`` on a run with ``[measurement]`` control groups: an offer the plan chose
and a control withheld reads ``control`` (it read ``repair``, "the final repair left it out",
which was not why), and the withheld offers hold their slots as given ones do."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from optimizer.apps.explain import explain_customer
from optimizer.apps.pipeline import run_scenario
from optimizer.apps.synthetic import write_demo_data
from optimizer.cli import main
from optimizer.core.config import load_scenario

SCENARIO = """
name = "held"
week = 40
data = "data"
output = "runs/held"
[rules]
max_offers_per_customer = 3
max_offers_per_category = 1
cooldown_weeks = 4
global_budget = 60
[affinity]
model = "heuristic"
[solver]
max_iterations = 12
[measurement]
holdout_share = 0.3
offer_holdout_share = 0.3
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("explain_controls")
    write_demo_data(root / "data", 300, 25, 3)
    (root / "held.toml").write_text(SCENARIO)
    run_scenario(load_scenario(root / "held.toml"))
    return root


def _controls(world: Path, reason: str) -> pl.DataFrame:
    return pl.read_parquet(world / "runs/held/controls.parquet").filter(pl.col("reason") == reason)


def test_a_per_offer_control_pair_reads_control(world: Path) -> None:
    pairs = _controls(world, "offer_holdout")
    assert pairs.height > 0
    for customer in pairs.get_column("customer_id").unique().sort().head(5).to_list():
        result = explain_customer(load_scenario(world / "held.toml"), str(customer))
        held = {str(o) for o in pairs.filter(pl.col("customer_id") == customer)["offer_id"]}
        status = {str(r["offer_id"]): r["status"] for r in result.offers}
        assert {o for o, s in status.items() if s == "control"} == held
        assert result.control is None
        given = sum(s == "given" for s in status.values())
        # the withheld pairs hold their slots: a full list does not read "repair"
        if given + len(held) >= result.cap:
            assert "repair" not in status.values()


def test_a_universal_control_reads_control_up_to_her_cap(world: Path) -> None:
    universal = _controls(world, "universal_holdout").get_column("customer_id")
    assert universal.len() > 0
    for customer in universal.head(5).to_list():
        result = explain_customer(load_scenario(world / "held.toml"), str(customer))
        statuses = [r["status"] for r in result.offers]
        assert result.control == "universal_holdout"
        assert "given" not in statuses and "repair" not in statuses
        assert 1 <= statuses.count("control") <= result.cap
        for r in result.offers:
            if r["status"] == "control":
                assert r["reduced_value"] > 0 and "universal control" in r["why"]
    out = CliRunner().invoke(main, ["explain", str(world / "held.toml"),
                                    str(universal[0]), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["control"] == "universal_holdout"
    text = CliRunner().invoke(main, ["explain", str(world / "held.toml"), str(universal[0])])
    assert text.exit_code == 0 and "universal control" in " ".join(text.output.split())


def test_controls_kept_only_as_csv_explain_alike(world: Path, tmp_path: Path) -> None:
    """explain reads the run's controls with the one reader of a run's arms
    (:func:`optimizer.io.runview.read_run_arm`, Parquet else CSV): a run folder holding them only
    as CSV explains a universal control and a per-offer control pair as with Parquet."""
    shutil.copytree(world, tmp_path / "w")
    run = tmp_path / "w" / "runs" / "held"
    assert (run / "controls.csv").is_file()
    (run / "controls.parquet").unlink()
    customers = [_controls(world, reason).get_column("customer_id")[0]
                 for reason in ("universal_holdout", "offer_holdout")]
    for customer in customers:
        want = explain_customer(load_scenario(world / "held.toml"), str(customer))
        got = explain_customer(load_scenario(tmp_path / "w" / "held.toml"), str(customer))
        assert got.control == want.control
        assert [(r["offer_id"], r["status"]) for r in got.offers] == [
            (r["offer_id"], r["status"]) for r in want.offers]
        assert "control" in {r["status"] for r in got.offers}
