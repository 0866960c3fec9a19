"""Channels at the command line (issue 24): tiny worlds where a channel's capacity, a missing
consent, a cost per contact or the contact budget changes the answer; every run passes
``offeropt check``, which finds a channel rule broken in a tampered plan."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
from click.testing import CliRunner

from optimizer.check.base import assignments_table
from optimizer.check.verify import rule_violations
from optimizer.cli import main
from optimizer.core.config import load_scenario
from optimizer.io.validate import load_inputs
from tests.tiny_world import base_world, offer, score, write_scenario, write_world


def _run(root: Path, channels: list[dict[str, Any]] | None,
         consent: dict[int, list[str]] | None, **rules: Any) -> tuple[pl.DataFrame, Path]:
    """Four customers, offers 1 (value 1.0) and 2 (value 0.5) scored for each, two offers per
    customer; with ``channels`` and ``consent`` (customer -> channels) when given. Runs, checks
    and returns the assignments and the scenario."""
    world = base_world()
    world["offers"] = [offer(1, "BAKERY"), offer(2, "DAIRY")]
    world["scores"] = [score(c, o, 0.5, 1.0 if o == 1 else 0.5) for c in range(1, 5)
                       for o in (1, 2)]
    if channels is not None and consent is not None:
        world["channels"] = channels
        world["customer_channels"] = [{"customer_id": c, "channel_id": ch}
                                      for c, chs in consent.items() for ch in chs]
    write_world(root / "data", world)
    scenario = write_scenario(root / "s.toml", rules={"max_offers_per_customer": 2, **rules})
    runner = CliRunner()
    result = runner.invoke(main, ["run", str(scenario), "--quiet"])
    assert result.exit_code == 0, result.output
    checked = runner.invoke(main, ["check", str(scenario)])
    assert checked.exit_code == 0, checked.output
    return pl.read_parquet(root / "run" / "assignments.parquet"), scenario


EVERYONE = {c: ["email", "sms"] for c in range(1, 5)}


def test_without_the_tables_nothing_changes(tmp_path):
    plain, _ = _run(tmp_path, None, None)
    assert len(plain) == 8 and "channel_id" not in plain.columns
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert "channels" not in manifest and "contact_budget" not in manifest
    assert "no_channel_consent" not in manifest["eligibility_audit"]["caps"]
    assert 'id="channels"' not in (tmp_path / "run" / "report.html").read_text()


def test_a_capacity_binds_and_the_most_valuable_pairs_keep_it(tmp_path):
    channels = [{"channel_id": "email", "capacity": 3, "cost_per_contact": 0.0}]
    plan, _ = _run(tmp_path, channels, {c: ["email"] for c in range(1, 5)})
    assert len(plan) == 3
    assert set(plan.get_column("offer_id")) == {1}
    assert set(plan.get_column("channel_id")) == {"email"}
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    row = manifest["channels"][0]
    assert row["contacts"] == 3 and row["capacity"] == 3
    assert 'id="channels"' in (tmp_path / "run" / "report.html").read_text()


def test_a_customer_without_consent_gets_nothing(tmp_path):
    channels = [{"channel_id": "email", "capacity": None, "cost_per_contact": 0.0}]
    plan, _ = _run(tmp_path, channels, {1: ["email"], 2: ["email"], 3: ["email"]})
    assert set(plan.get_column("customer_id")) == {1, 2, 3}
    assert len(plan) == 6
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["eligibility_audit"]["caps"]["no_channel_consent"] == 1


def test_cost_moves_offers_to_the_cheaper_channel(tmp_path):
    channels = [{"channel_id": "email", "capacity": None, "cost_per_contact": 0.2},
                {"channel_id": "sms", "capacity": 5, "cost_per_contact": 0.05}]
    plan, _ = _run(tmp_path, channels, EVERYONE)
    assert len(plan) == 8
    by = dict(plan.group_by("channel_id").len().iter_rows())
    assert by == {"sms": 5, "email": 3}
    # email's three are the least valuable pairs (offer 2): sms went to the best
    assert set(plan.filter(pl.col("channel_id") == "email").get_column("offer_id")) == {2}
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert abs(manifest["objective"] - (4 * 1.5 - 5 * 0.05 - 3 * 0.2)) < 1e-9


def test_a_pair_worth_less_than_its_contact_is_not_sent(tmp_path):
    channels = [{"channel_id": "sms", "capacity": None, "cost_per_contact": 0.6}]
    plan, _ = _run(tmp_path, channels, EVERYONE | {c: ["sms"] for c in range(1, 5)})
    assert len(plan) == 4 and set(plan.get_column("offer_id")) == {1}


def test_the_contact_budget_binds(tmp_path):
    channels = [{"channel_id": "email", "capacity": None, "cost_per_contact": 0.1}]
    plan, _ = _run(tmp_path, channels, {c: ["email"] for c in range(1, 5)},
                   contact_budget=0.45)
    assert len(plan) == 4 and set(plan.get_column("offer_id")) == {1}
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["contact_budget"]["contact_cost"] <= 0.45 + 1e-12


def test_check_finds_broken_channel_rules(tmp_path):
    channels = [{"channel_id": "email", "capacity": 2, "cost_per_contact": 0.1},
                {"channel_id": "sms", "capacity": None, "cost_per_contact": 0.3}]
    plan, scenario_path = _run(tmp_path, channels, {1: ["email"], 2: ["email", "sms"],
                                                    3: ["sms"], 4: ["sms"]},
                               contact_budget=10.0)
    assert set(plan.filter(pl.col("customer_id") == 1).get_column("channel_id")) == {"email"}
    scenario = load_scenario(scenario_path)
    inputs = load_inputs(tmp_path / "data")

    def rules_broken(frame: pl.DataFrame) -> dict[str, int]:
        raw = assignments_table(frame, tmp_path / "assignments.parquet")
        return {v.rule: v.count for v in rule_violations(raw, inputs, scenario)}

    assert rules_broken(plan) == {}
    all_email = plan.with_columns(pl.lit("email").alias("channel_id"))
    broken = rules_broken(all_email)
    assert broken["channel_capacity"] == 1
    assert broken["channel_consent"] == int((plan.get_column("customer_id") >= 3).sum())
    assert rules_broken(plan.drop("channel_id"))["channel_missing"] == len(plan)
    tight = scenario.model_copy(update={"rules": scenario.rules.model_copy(
        update={"contact_budget": 0.1})})
    assert "contact_budget" in {v.rule for v in rule_violations(
        assignments_table(plan, tmp_path / "a.parquet"), inputs, tight)}


def test_check_verifies_the_manifests_channel_figures(tmp_path):
    """The manifest's per-channel contacts, contact cost and consenting customers, and the
    contact budget's contact cost, are recomputed from the assignments and the tables: an edited
    one is a ``manifest`` violation (any edit passed)."""
    import shutil
    channels = [{"channel_id": "email", "capacity": 2, "cost_per_contact": 0.1},
                {"channel_id": "sms", "capacity": None, "cost_per_contact": 0.3}]
    _, scenario = _run(tmp_path, channels, EVERYONE, contact_budget=10.0)
    runner = CliRunner()
    edits = {"channels[channel_id=email].contacts": ("channels", "contacts", 7),
             "channels[channel_id=email].contact_cost": ("channels", "contact_cost", 7.0),
             "channels[channel_id=email].consenting_customers":
                 ("channels", "consenting_customers", 7),
             "contact_budget.contact_cost": ("contact_budget", "contact_cost", 7.0)}
    for k, (said, (entry, figure, value)) in enumerate(edits.items()):
        run = tmp_path / f"edited{k}"
        shutil.copytree(tmp_path / "run", run)
        manifest = json.loads((run / "manifest.json").read_text())
        target = manifest[entry][0] if entry == "channels" else manifest[entry]
        assert target[figure] != value
        target[figure] = value
        (run / "manifest.json").write_text(json.dumps(manifest))
        result = runner.invoke(main, ["check", str(scenario), str(run)])
        assert result.exit_code == 1 and f"{said} is" in result.output, result.output
