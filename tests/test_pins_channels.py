"""``rules.pin`` with the channels tables (docs/contract.md, "Stable lists" and "Channels"): a kept
pin goes out on her cheapest consented channel with room, a pin that cannot go out is released by
reason, and ``offeropt check`` justifies each release by channel room itself."""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from optimizer.apps.explain import explain_customer
from optimizer.check.verify import check_run
from optimizer.cli import main
from optimizer.core.config import load_scenario
from tests.tiny_world import (
    WEEK,
    base_world,
    offer,
    run_world,
    score,
    write_scenario,
    write_world,
)

CHANNELS = [{"channel_id": "email", "capacity": None, "cost_per_contact": 0.1},
            {"channel_id": "sms", "capacity": 2, "cost_per_contact": 0.05}]


def _world(consent: dict[int, list[str]], channels: list[dict] | None = None) -> dict:
    """Offers 1 (BAKERY) and 2 (DAIRY); customers 1-3 had offer 1 last week, worth 1.0 + c / 100
    now (customer 3's pin first in the pass), offer 2 1.1 for everybody."""
    world = base_world()
    world["offers"] = [offer(1, "BAKERY"), offer(2, "DAIRY")]
    world["scores"] = [score(c, o, value=(1.0 + c / 100) if o == 1 else 1.1)
                       for c in range(1, 5) for o in (1, 2)]
    world["history"] = [{"customer_id": c, "offer_id": 1, "week": WEEK - 1} for c in (1, 2, 3)]
    world["channels"] = channels or CHANNELS
    world["customer_channels"] = [{"customer_id": c, "channel_id": k}
                                  for c, ks in consent.items() for k in ks]
    return world


def _sent(run: Path) -> dict[int, tuple[int, str]]:
    a = pl.read_parquet(run / "assignments.parquet")
    return {r["customer_id"]: (r["offer_id"], r["channel_id"]) for r in a.to_dicts()}


def _drop(run: Path, customer: int, reason: str) -> None:
    """Take customer's pin (offer 1) out of the plan, its release counted under ``reason``."""
    path = run / "assignments.parquet"
    pl.read_parquet(path).filter(pl.col("customer_id") != customer).write_parquet(path)
    manifest = json.loads((run / "manifest.json").read_text())
    record = manifest["stability"]["pins"]
    record["kept"] -= 1
    record["released"][reason] = record["released"].get(reason, 0) + 1
    (run / "manifest.json").write_text(json.dumps(manifest))


def _unjustified(root: Path) -> str:
    report = check_run(load_scenario(root / "scenario.toml"), root / "run", force=True)
    assert "pin" in report.rules, report.describe()
    text = report.describe()
    assert "released + withheld_as_controls" not in text   # the counts agree
    return text


def test_pins_go_out_on_the_cheapest_consented_channel_with_room(tmp_path):
    world = _world({1: ["email", "sms"], 2: ["email", "sms"], 3: ["email", "sms"], 4: ["email"]})
    run, manifest = run_world(tmp_path, world, pin=True)   # run_world checks: exit 0
    assert manifest["stability"]["pins"] == {"pinned": 3, "kept": 3, "released": {},
                                             "withheld_as_controls": 0}
    # best value first: customers 3 and 2 fill sms (cheaper), customer 1 goes by email
    assert _sent(run) == {3: (1, "sms"), 2: (1, "sms"), 1: (1, "email"), 4: (2, "email")}
    contact = 0.05 * 2 + 0.1 * 2
    assert manifest["objective"] == pytest.approx(1.03 + 1.02 + 1.01 + 1.1 - contact)
    assert manifest["upper_bound"] >= manifest["objective"] - 1e-9
    used = {r["channel_id"]: r["contacts"] for r in manifest["channels"]}
    assert used == {"email": 2, "sms": 2}


def test_pins_without_channel_room_are_released_and_checked(tmp_path):
    # sms carries one: customer 3's pin (worth most) takes it, customer 1's has no other
    # channel; customer 2 consented to none
    world = _world({1: ["sms"], 3: ["sms"], 4: ["email"]},
                   [CHANNELS[0], {**CHANNELS[1], "capacity": 1}])
    run, manifest = run_world(tmp_path, world, pin=True)   # check accepts both releases
    record = manifest["stability"]["pins"]
    assert (record["pinned"], record["kept"]) == (3, 1)
    assert record["released"] == {"channel_capacity": 1, "no_channel_consent": 1}
    assert _sent(run) == {3: (1, "sms"), 4: (2, "email")}
    scenario = load_scenario(tmp_path / "scenario.toml")
    why = {c: {str(r["offer_id"]): r for r in explain_customer(scenario, str(c), run).offers}
           for c in (1, 2)}
    assert why[1]["1"]["status"] == why[2]["1"]["status"] == "pin_released"
    assert "no_channel_consent" in why[2]["1"]["why"]
    assert "channels" in why[1]["1"]["why"]
    # customer 3's pin dropped: customer 1's release loses its reason too (sms had room)
    _drop(run, 3, "channel_capacity")
    text = _unjustified(tmp_path)
    assert "{'customer_id': 1, 'offer_id': 1}" in text
    assert "{'customer_id': 3, 'offer_id': 1}" in text
    assert "{'customer_id': 2, 'offer_id': 1}" not in text  # no consent: still justified


def test_pins_beyond_the_contact_budget_are_released_and_checked(tmp_path):
    world = _world({c: ["email"] for c in range(1, 5)})
    run, manifest = run_world(tmp_path, world, pin=True, contact_budget=0.25)
    record = manifest["stability"]["pins"]
    assert (record["kept"], record["released"]) == (2, {"contact_budget": 1})
    assert _sent(run) == {3: (1, "email"), 2: (1, "email")}  # 0.05 left: no third contact
    _drop(run, 2, "contact_budget")    # customer 2's pin fit beside customer 3's
    text = _unjustified(tmp_path)
    assert "{'customer_id': 2, 'offer_id': 1}" in text
    assert "{'customer_id': 1, 'offer_id': 1}" in text  # 0.1 + 0.1 fits without customer 2's


def test_a_pin_dropped_from_a_plan_with_channel_room_is_caught(tmp_path):
    world = _world({1: ["email", "sms"], 2: ["email", "sms"], 3: ["email", "sms"], 4: ["email"]})
    run, _ = run_world(tmp_path, world, pin=True)
    _drop(run, 1, "channel_capacity")   # email has no capacity: nothing releases it
    text = _unjustified(tmp_path)
    assert "pin(s) missing from the plan without a reason" in text
    assert "{'customer_id': 1, 'offer_id': 1}" in text


def test_pins_withheld_as_controls_still_justify_channel_releases(tmp_path):
    # sms carries one; the pins' controls are not in the plan, so the check counts a withheld
    # pin on each channel she consented to
    world = _world({1: ["sms"], 2: ["sms"], 3: ["sms"], 4: ["email"]},
                   [CHANNELS[0], {**CHANNELS[1], "capacity": 1}])
    extra = '\n[measurement]\nholdout_share = 0.5\nsalt = "b"\n'   # customer 3 a control
    write_world(tmp_path / "data", world)
    path = write_scenario(tmp_path / "scenario.toml",
                          rules={"max_offers_per_customer": 1, "pin": True}, extra=extra)
    result = CliRunner().invoke(main, ["run", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "manifest.json").read_text())["stability"]["pins"]
    assert (record["kept"], record["withheld_as_controls"], record["released"]) == (
        0, 1, {"channel_capacity": 2})
    report = check_run(load_scenario(path), tmp_path / "run")
    assert report.ok, report.describe()


def test_change_penalty_with_channels_passes_check(tmp_path):
    # the manifest's penalized_objective is the objective (scores less contact costs) less the
    # penalty; check used to leave the contact costs out and flag every such run
    world = _world({c: ["email"] for c in range(1, 5)})
    _, manifest = run_world(tmp_path, world, change_penalty=0.05)   # checked: exit 0
    s = manifest["stability"]
    assert s["penalized_objective"] == pytest.approx(
        manifest["objective"] - 0.05 * s["changed_slots"])
    assert manifest["objective"] == pytest.approx(1.1 * 4 - 0.1 * 4)
